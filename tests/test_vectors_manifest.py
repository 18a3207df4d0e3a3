"""tests/data/vectors/ holds exactly the files its MANIFEST lists, unchanged, and the loader refuses
anything else with a clear error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests import vectors

OWN_FILES = {"MANIFEST.tsv", "README.md"}


def test_the_folder_matches_the_manifest() -> None:
    root = vectors.vectors_dir()
    on_disk = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in OWN_FILES and p.parent.name != "LICENSES"
    }
    listed = vectors.manifest()
    assert on_disk == set(listed)
    for rel, (size, digest) in listed.items():
        data = (root / rel).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest), rel


def test_every_source_has_its_licence() -> None:
    root = vectors.vectors_dir()
    assert "Apache License" in (root / "LICENSES" / "Apache-2.0.txt").read_text()
    assert "Cloudflare" in (root / "LICENSES" / "BSD-3-Clause-circl.txt").read_text()


def test_an_unlisted_file_is_refused() -> None:
    with pytest.raises(vectors.VectorsMissing, match="not listed"):
        vectors.path("wycheproof/nonexistent_test.json")


def test_a_changed_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rel = "circl-rfc7748/rfc7748_kat_test.json"
    (tmp_path / "circl-rfc7748").mkdir()
    (tmp_path / rel).write_bytes((vectors.VECTORS_DIR / rel).read_bytes() + b" ")
    (tmp_path / "MANIFEST.tsv").write_bytes((vectors.VECTORS_DIR / "MANIFEST.tsv").read_bytes())
    monkeypatch.setattr(vectors, "VECTORS_DIR", tmp_path)
    vectors.manifest.cache_clear()
    vectors.path.cache_clear()
    try:
        with pytest.raises(vectors.VectorsMissing, match="differs from its MANIFEST"):
            vectors.path(rel)
        (tmp_path / rel).unlink()
        with pytest.raises(vectors.VectorsMissing, match="is missing"):
            vectors.path(rel)
    finally:
        monkeypatch.undo()
        vectors.manifest.cache_clear()
        vectors.path.cache_clear()
