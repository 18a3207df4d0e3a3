"""Sonet: federated, end-to-end-encrypted, post-quantum messaging.

The subpackages live at the top of the repository (core/, client/, node/, federation/) and are
installed as ``sonet.core``, ``sonet.client``, ``sonet.node`` and ``sonet.federation`` (see
``[tool.setuptools.package-dir]`` in pyproject.toml). Each refuses to be imported under its bare
folder name, so no module exists twice.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sonet")
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"
