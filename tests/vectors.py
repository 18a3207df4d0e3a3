"""The one loader for the shared external test vectors (see ../shared/vectors/README.md).

The directory comes from env ``SONET_VECTORS``, else ``<repo root>/../shared/vectors``. If it is
missing, every vector test FAILS with a clear error: never skip, so a CI box without the vectors
cannot pass by testing nothing.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["vectors_dir", "path", "load_json", "wycheproof", "transparency_dev", "unhex", "VectorsMissing"]

REPO_ROOT = Path(__file__).resolve().parent.parent


class VectorsMissing(RuntimeError):
    pass


@functools.cache
def vectors_dir() -> Path:
    env = os.environ.get("SONET_VECTORS")
    candidate = Path(env) if env else REPO_ROOT.parent / "shared" / "vectors"
    if not (candidate / "README.md").is_file():
        how = f"SONET_VECTORS={env!r}" if env else f"default location {candidate}"
        raise VectorsMissing(
            f"shared test vectors not found ({how}); set SONET_VECTORS to the vectors directory "
            "(the one holding README.md, wycheproof/, nist-acvp/, ...)"
        )
    return candidate


def path(relpath: str) -> Path:
    p = vectors_dir() / relpath
    if not p.is_file():
        raise VectorsMissing(f"vector file {relpath} is missing from {vectors_dir()}")
    return p


@functools.cache
def load_json(relpath: str) -> Any:
    with path(relpath).open("rb") as f:
        return json.load(f)


def wycheproof(name: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(group, test) pairs of ``wycheproof/<name>_test.json`` (``name`` may also be a file name)."""
    rel = name if name.endswith(".json") else f"{name}_test.json"
    data = load_json(f"wycheproof/{rel}")
    for group in data["testGroups"]:
        for test in group["tests"]:
            yield group, test


def transparency_dev(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(path under the folder, case) of every JSON file of
    ``merkle-transparency-dev/testdata/<kind>/`` and its subfolders, sorted by path."""
    base = vectors_dir() / "merkle-transparency-dev" / "testdata" / kind
    files = sorted(base.rglob("*.json"))
    if not files:
        raise VectorsMissing(f"no transparency-dev {kind} vectors under {base}")
    return [(p.relative_to(base).as_posix(), load_json(p.relative_to(vectors_dir()).as_posix())) for p in files]


def unhex(value: str | None) -> bytes:
    return bytes.fromhex(value or "")
