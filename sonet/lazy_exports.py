"""A package's names imported when first asked for (PEP 562 module ``__getattr__``).

A package whose ``__init__`` re-exports its submodules' names would load all of them on the
first import of any one; the CLIs' start-up (tests/test_cli_imports.py) must not pay for a
server, trio-websocket or prometheus_client that a command never uses."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, submodule_of: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: a name in ``submodule_of`` is imported from its
    submodule on first use and then kept on the package (later lookups skip this)."""

    def __getattr__(name: str) -> Any:
        submodule = submodule_of.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{submodule}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
