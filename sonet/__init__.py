"""Sonet: federated, end-to-end-encrypted, post-quantum messaging.

The subpackages live at the top of the repository (core/, client/, node/, federation/) and are
installed as ``sonet.core``, ``sonet.client``, ``sonet.node`` and ``sonet.federation`` (see
``[tool.setuptools.package-dir]`` in pyproject.toml). Each refuses to be imported under its bare
folder name, so no module exists twice.

``sonet.__version__`` is read from the installed package's metadata the first time it is asked
for: importlib.metadata costs tens of milliseconds, which every CLI process would pay otherwise.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("sonet")
    except PackageNotFoundError:  # a checkout that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
