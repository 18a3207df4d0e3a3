"""Review of ``sonet-node backup`` / ``restore``: a PostgreSQL node whose database cannot be
reached is one line naming it without the password (not a lost node.db), and hostile
manifests are refused in one line before anything is written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sonet.node.config import CONFIG_FILE, NodeConfig

from .cli_kit import error_line, init, json_error, run


def test_backup_of_an_unreachable_postgresql_node_is_one_line_without_the_password(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = init(capsys, tmp_path / "node")
    url = "postgresql://sonet:s3cret@127.0.0.1:1/sonet"
    (data / CONFIG_FILE).write_text(replace(NodeConfig.load(data), storage_database=url).to_toml())
    assert NodeConfig.load(data).storage_database == url
    (data / "node.db").unlink()  # a PostgreSQL node has none
    line = error_line(run(capsys, "backup", "--data", data, tmp_path / "b"), "postgresql://sonet:***@127.0.0.1:1/sonet", "pg_dump")
    assert "s3cret" not in line and "missing" not in line
    assert json_error(run(capsys, "backup", "--data", data, tmp_path / "b", "--json"))["code"] == "backup_error"
    assert not (tmp_path / "b").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]


@pytest.mark.parametrize(
    "manifest",
    [b"[" * 200_000, b'{"format": ' * 100_000, b"\xff\xfe not utf-8", b"null", b'{"format": "sonet-node-backup", "format_version": 1, "files": "x"}'],
)
def test_a_hostile_manifest_is_one_line_and_nothing_is_written(capsys: pytest.CaptureFixture[str], tmp_path: Path, manifest: bytes) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "manifest.json").write_bytes(manifest)
    error_line(run(capsys, "restore", "--data", tmp_path / "restored", backup), "manifest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup"]


def test_a_symlink_in_a_backup_is_refused_and_nothing_read_through_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = init(capsys, tmp_path / "node")
    backup = tmp_path / "backup"
    run(capsys, "backup", "--data", data, backup)
    secret = tmp_path / "elsewhere.key"
    secret.write_bytes((backup / "node.key").read_bytes())
    (backup / "node.key").unlink()
    (backup / "node.key").symlink_to(secret)  # same bytes, same digest: only the link is wrong
    error_line(run(capsys, "restore", "--data", tmp_path / "restored", backup), "node.key", "not a regular file")
    (backup / "node.key").unlink()
    (backup / "blobs").symlink_to(tmp_path, target_is_directory=True)  # a directory link too
    (backup / "node.key").write_bytes(secret.read_bytes())
    error_line(run(capsys, "restore", "--data", tmp_path / "restored", backup), "blobs", "not a regular file")
    assert not (tmp_path / "restored").exists()
