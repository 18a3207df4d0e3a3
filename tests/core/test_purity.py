"""Import discipline (ARCHITECTURE §1, §2): core/ is pure, crypto libraries stay in core/crypto/,
and imports point one way: ``core <- transport <- federation <- node``, ``transport <- client``.

Every .py file is parsed with ``ast`` (never imported), so a violation anywhere is found even in
code that no test executes. Relative imports are resolved against the file's package; calls of
``__import__`` / ``importlib.import_module`` with a literal name count as imports too.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "transport", "client", "node", "federation")

#: stdlib and third-party modules that would give core I/O, concurrency, clocks or randomness
IMPURE = frozenset(
    {"trio", "trio_websocket", "sqlite3", "psycopg", "socket", "time", "random", "asyncio", "threading", "os", "secrets", "uuid"}
    | {"sys", "pathlib", "subprocess", "shutil", "tempfile"}
)
#: the one exception: a package's ``__main__.py`` is an entry point (``python -m
#: sonet.core.mls.interop`` reads the vector files it is given and prints), run and never
#: imported, so it may do I/O; test_nothing_imports_an_entry_point keeps it that way
ENTRY_POINT = "__main__.py"
#: only core/crypto/ may import these
CRYPTO_LIBS = frozenset({"cryptography", "nacl", "pqcrypto"})
#: package -> first-party packages it must not import
LAYERING = {
    "core": frozenset({"transport", "client", "node", "federation"}),
    "transport": frozenset({"client", "node", "federation"}),
    "client": frozenset({"node", "federation"}),
    "federation": frozenset({"node", "client"}),
}


@dataclass(frozen=True)
class Import:
    path: str  # relative to the repository root
    line: int
    module: str  # absolute dotted name (relative imports resolved against the folder layout)
    relative: bool = False

    @property
    def top(self) -> str:
        """The package imported from: ``sonet.node.store`` -> node, ``trio.abc`` -> trio."""
        parts = self.module.split(".")
        return parts[1] if parts[0] == "sonet" and len(parts) > 1 else parts[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module}"


def _package_of(rel: Path) -> list[str]:
    """Dotted package that a module file belongs to (``core/crypto/aead.py`` -> core.crypto)."""
    return list(rel.parts[:-1])


def imports_in_source(source: str, rel: Path) -> Iterator[Import]:
    tree = ast.parse(source, filename=str(rel))
    package = _package_of(rel)
    where = rel.as_posix()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(where, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 >= len(package):
                    yield Import(where, node.lineno, "<relative import beyond the top-level package>")
                    continue
                prefix = ".".join(package[: len(package) - (node.level - 1)])
            else:
                prefix = ""
            relative = node.level > 0
            if node.module:
                module = f"{prefix}.{node.module}" if prefix else node.module
                yield Import(where, node.lineno, module, relative)
            else:  # from . import a, b  -> each name may be a submodule
                for alias in node.names:
                    yield Import(where, node.lineno, f"{prefix}.{alias.name}" if prefix else alias.name, relative)
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else None
            )
            if name in ("__import__", "import_module") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield Import(where, node.lineno, arg.value)


def python_files(package: str) -> list[Path]:
    base = ROOT / package
    return sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)


@functools.cache  # the tree does not change during a run: each package is parsed once, not once a rule
def imports_of(package: str) -> tuple[Import, ...]:
    found: list[Import] = []
    for path in python_files(package):
        rel = path.relative_to(ROOT)
        found.extend(imports_in_source(path.read_text(encoding="utf-8"), rel))
    return tuple(found)


def report(violations: list[Import], rule: str) -> str:
    return f"{rule}:\n  " + "\n  ".join(str(v) for v in violations)


# The rules --------------------------------------------------------------------------------


def impure_imports(found: list[Import]) -> list[Import]:
    """The imports of I/O, clocks or randomness, outside entry points."""
    return [i for i in found if i.top in IMPURE and Path(i.path).name != ENTRY_POINT]


def test_core_is_pure() -> None:
    violations = impure_imports(list(imports_of("core")))
    assert not violations, report(violations, "core/ must not do I/O, threads, clocks or randomness of its own")


def test_nothing_imports_an_entry_point() -> None:
    violations = [i for package in PACKAGES for i in imports_of(package) if i.module.split(".")[-1] == "__main__"]
    assert not violations, report(violations, "a __main__ module is an entry point: run it, never import it")


def test_crypto_libraries_only_in_core_crypto() -> None:
    violations = [
        i
        for package in PACKAGES
        for i in imports_of(package)
        if i.top in CRYPTO_LIBS and not i.path.startswith("core/crypto/")
    ]
    assert not violations, report(violations, "only core/crypto/ may import cryptography, nacl or pqcrypto")


@pytest.mark.parametrize("package", sorted(LAYERING))
def test_imports_point_one_way(package: str) -> None:
    forbidden = LAYERING[package]
    violations = [i for i in imports_of(package) if i.top in forbidden]
    assert not violations, report(violations, f"{package}/ must not import {', '.join(sorted(forbidden))}")


def test_first_party_imports_name_the_sonet_package() -> None:
    """``core`` and friends are installed as ``sonet.core`` etc.; a bare ``import core`` would
    load a second copy of every module (and each package's __init__ refuses it)."""
    roots = [*PACKAGES, "tests", "bench", "fuzz", "examples"]
    violations = [
        i
        for package in roots
        for i in imports_of(package)
        if not i.relative and i.module.split(".")[0] in PACKAGES
    ]
    assert not violations, report(violations, "import first-party code as sonet.<package>")


def test_no_relative_import_escapes_its_package() -> None:
    violations = [
        i for package in PACKAGES for i in imports_of(package) if i.module.startswith("<relative import beyond")
    ]
    assert not violations, report(violations, "relative import beyond the top-level package")


# The scanner itself -----------------------------------------------------------------------


def test_scanner_sees_the_tree() -> None:
    files = python_files("core")
    assert ROOT / "core" / "wire.py" in files
    assert ROOT / "core" / "crypto" / "__init__.py" in files
    modules = {i.module for i in imports_of("core")}
    assert "msgpack" in modules  # core/wire.py
    assert "cbor2" in modules  # core/canonical.py
    assert "core.errors" in modules  # relative imports are resolved
    crypto = [i for i in imports_of("core") if i.top == "cryptography"]
    assert crypto and all(i.path.startswith("core/crypto/") for i in crypto)


SNIPPET = '''
import os
import os.path as osp
import json, time, sys, pathlib, subprocess, shutil, tempfile
from random import randbytes
from socket import *
from trio import open_nursery
import sqlite3
from .errors import ProtocolError
from .. import limits
from ..node import store
from . import wire, handshake
import cryptography.hazmat.primitives.hashes
from nacl import bindings

def later():
    import asyncio
    import secrets
    import uuid
    import threading as th
    __import__("trio_websocket")
    importlib.import_module("psycopg")
    return th
'''


def test_scanner_finds_every_import_form() -> None:
    found = list(imports_in_source(SNIPPET, Path("core/crypto/x.py")))
    modules = [i.module for i in found]
    assert modules.count("os") == 1 and "os.path" in modules
    assert {"json", "time", "random", "socket", "trio", "sqlite3", "asyncio", "threading"} <= set(modules)
    assert {"trio_websocket", "psycopg"} <= set(modules)  # dynamic imports with literal names
    assert "core.crypto.errors" in modules  # from .errors inside core/crypto/
    assert "core.limits" in modules  # from .. import limits
    assert "core.node.store" not in modules and "core.node" in modules  # module part of "from ..node"
    assert {"core.crypto.wire", "core.crypto.handshake"} <= set(modules)
    assert {"cryptography.hazmat.primitives.hashes", "nacl"} <= set(modules)
    impure = {i.top for i in found} & IMPURE
    assert impure == IMPURE
    line = next(i for i in found if i.module == "asyncio")
    assert str(line) == "core/crypto/x.py:17: imports asyncio"


def test_only_an_entry_point_may_do_io() -> None:
    source = "import sys\nfrom pathlib import Path\nimport os\n"
    for module in ("core/mls/interop/runner.py", "core/mls/interop/__init__.py", "core/__main___helper.py"):
        found = impure_imports(list(imports_in_source(source, Path(module))))
        assert [i.module for i in found] == ["sys", "pathlib", "os"], module
    assert impure_imports(list(imports_in_source(source, Path("core/mls/interop/__main__.py")))) == []
    importer = list(imports_in_source("from . import __main__\n", Path("core/mls/interop/runner.py")))
    assert [i.module for i in importer] == ["core.mls.interop.__main__"]  # what the rule above looks for


def test_scanner_resolves_relative_imports_in_package_init() -> None:
    found = {i.module for i in imports_in_source("from . import wire\nfrom .crypto import aead\n", Path("core/__init__.py"))}
    assert found == {"core.wire", "core.crypto"}
    beyond = list(imports_in_source("from ... import x\n", Path("core/crypto/y.py")))
    assert beyond[0].module.startswith("<relative import beyond")


def test_layering_rules_would_catch_a_violation() -> None:
    found = list(imports_in_source("from sonet.node.store import base\nimport sonet.federation.link\n", Path("client/sdk.py")))
    assert [i.top for i in found if i.top in LAYERING["client"]] == ["node", "federation"]
    found = list(imports_in_source("from sonet.client import sdk\n", Path("core/x.py")))
    assert [i.top for i in found if i.top in LAYERING["core"]] == ["client"]
