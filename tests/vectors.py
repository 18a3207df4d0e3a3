"""The one loader for the external test vectors kept in ``tests/data/vectors/`` (its README and
MANIFEST.tsv say where each file came from and under which licence).

Every file is checked against its MANIFEST row (size and sha256) on first use. A missing, changed
or unlisted file makes the test that wants it FAIL with a clear error: never skip, so a checkout
without the vectors cannot pass by testing nothing.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["vectors_dir", "manifest", "path", "load_json", "wycheproof", "transparency_dev", "unhex", "VectorsMissing"]

VECTORS_DIR = Path(__file__).resolve().parent / "data" / "vectors"


class VectorsMissing(RuntimeError):
    pass


def vectors_dir() -> Path:
    if not (VECTORS_DIR / "MANIFEST.tsv").is_file():
        raise VectorsMissing(f"test vectors not found: {VECTORS_DIR}/MANIFEST.tsv is missing")
    return VECTORS_DIR


@functools.cache
def manifest() -> dict[str, tuple[int, str]]:
    """path -> (bytes, sha256) of every vector file, from MANIFEST.tsv."""
    with (vectors_dir() / "MANIFEST.tsv").open(newline="") as f:
        return {row["path"]: (int(row["bytes"]), row["sha256"]) for row in csv.DictReader(f, delimiter="\t")}


@functools.cache
def path(relpath: str) -> Path:
    """The checked file ``relpath``: listed in the MANIFEST, present, with the listed digest."""
    listed = manifest().get(relpath)
    if listed is None:
        raise VectorsMissing(f"vector file {relpath} is not listed in {VECTORS_DIR}/MANIFEST.tsv")
    p = VECTORS_DIR / relpath
    if not p.is_file():
        raise VectorsMissing(f"vector file {relpath} is missing from {VECTORS_DIR}")
    data = p.read_bytes()
    if (len(data), hashlib.sha256(data).hexdigest()) != listed:
        raise VectorsMissing(f"vector file {relpath} differs from its MANIFEST.tsv row (size or sha256)")
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
    prefix = f"merkle-transparency-dev/testdata/{kind}/"
    listed = sorted(p for p in manifest() if p.startswith(prefix) and p.endswith(".json"))
    if not listed:
        raise VectorsMissing(f"no transparency-dev {kind} vectors listed in the MANIFEST")
    return [(p.removeprefix(prefix), load_json(p)) for p in listed]


def unhex(value: str | None) -> bytes:
    return bytes.fromhex(value or "")
