"""``sonet-node backup`` / ``restore`` on a data directory (in-process CLI), and the refused
downgrade on start. The round trip with a running node and devices is tests/e2e/test_backup_roundtrip.py."""

from __future__ import annotations

import fcntl
import json
import sqlite3
from pathlib import Path

import pytest
import trio

from sonet.node.store.migrations import LATEST_VERSION

from .cli_kit import error_line, init, json_error, json_lines, ok, run, snapshot

COMPLETE = "ab" * 16
PARTIAL = "cd" * 16


def _node_with_extras(capsys: pytest.CaptureFixture[str], data: Path) -> Path:
    """A node with a complete blob, a partial upload and an audit log beside its files."""
    init(capsys, data)
    blobs = data / "blobs"
    blobs.mkdir(exist_ok=True)
    (blobs / f"{COMPLETE}.meta").write_text('{"complete": true}')
    (blobs / f"{COMPLETE}.blob").write_bytes(b"\x01ciphertext" * 1000)
    (blobs / f"{PARTIAL}.meta").write_text('{"complete": false}')
    (blobs / f"{PARTIAL}.part").write_bytes(b"half")
    (data / "audit.log").write_text("entry 1\nentry 2\n")
    (data / "audit.head").write_text("signed head\n")
    return data


def _manifest(backup: Path) -> dict:
    return json.loads((backup / "manifest.json").read_text())


def test_backup_holds_the_node_and_restores_byte_for_byte(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = _node_with_extras(capsys, tmp_path / "node")
    backup = tmp_path / "backup"
    result = ok(run(capsys, "backup", "--data", data, backup))
    assert result.err == ""  # no progress when stderr is not a terminal
    assert f"into {backup}" in result.out
    manifest = _manifest(backup)
    assert manifest["format"] == "sonet-node-backup" and manifest["store"] == "sqlite"
    assert manifest["schema_version"] == LATEST_VERSION
    paths = {f["path"] for f in manifest["files"]}
    assert paths == {
        "node.db", "node.key", "node.toml", "audit.log", "audit.head",
        f"blobs/{COMPLETE}.meta", f"blobs/{COMPLETE}.blob", f"blobs/{PARTIAL}.meta",
    }  # fmt: skip
    assert (backup / "node.key").stat().st_mode & 0o077 == 0 and (backup / "node.db").stat().st_mode & 0o077 == 0

    target = tmp_path / "restored"
    out = ok(run(capsys, "restore", "--data", target, backup)).out
    assert "restored node localhost" in out
    before, after = snapshot(data), snapshot(target)
    for name in ("node.key", "node.toml", "audit.log", "audit.head", f"blobs/{COMPLETE}.blob", f"blobs/{COMPLETE}.meta"):
        assert after[name] == before[name], name
    assert f"blobs/{PARTIAL}.part" not in after  # a partial upload starts again
    assert ok(run(capsys, "config", "check", "--data", target)).code == 0
    with sqlite3.connect(target / "node.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION


def test_json_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = init(capsys, tmp_path / "node")
    [made] = json_lines(run(capsys, "backup", "--data", data, tmp_path / "b", "--json"))
    assert made["store"] == "sqlite" and made["files"] == 3 and made["created_at"].endswith("Z")
    [restored] = json_lines(run(capsys, "restore", "--data", tmp_path / "r", tmp_path / "b", "--json"))
    assert restored["fingerprint"] == made["fingerprint"] and restored["backup_created_at"] == made["created_at"]


def test_an_existing_destination_is_never_overwritten(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = init(capsys, tmp_path / "node")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    error_line(run(capsys, "backup", "--data", data, dest), "already exists", "never overwrites")
    assert snapshot(dest) == {"keep": b"mine"}
    error_line(run(capsys, "backup", "--data", data, data / "inside"), "inside the data directory")
    assert list(tmp_path.glob(".*partial*")) == []


@pytest.mark.parametrize("victim", ["node.db", "node.key", f"blobs/{COMPLETE}.blob", "audit.log"])
def test_one_changed_byte_is_refused_and_nothing_restored(capsys: pytest.CaptureFixture[str], tmp_path: Path, victim: str) -> None:
    data = _node_with_extras(capsys, tmp_path / "node")
    backup = tmp_path / "backup"
    ok(run(capsys, "backup", "--data", data, backup))
    raw = bytearray((backup / victim).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (backup / victim).write_bytes(bytes(raw))
    target = tmp_path / "restored"
    error_line(run(capsys, "restore", "--data", target, backup), victim, "does not match its SHA-256", "damaged")
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if "restoring" in p.name] == []


def test_missing_extra_and_foreign_files_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = _node_with_extras(capsys, tmp_path / "node")
    backup = tmp_path / "backup"
    ok(run(capsys, "backup", "--data", data, backup))
    target = tmp_path / "restored"

    blob = backup / "blobs" / f"{COMPLETE}.blob"
    kept = blob.read_bytes()
    blob.unlink()
    error_line(run(capsys, "restore", "--data", target, backup), f"blobs/{COMPLETE}.blob is missing", "incomplete")
    blob.write_bytes(kept)

    (backup / "blobs" / "extra.blob").write_bytes(b"x")
    error_line(run(capsys, "restore", "--data", target, backup), "extra.blob is not in the manifest")
    (backup / "blobs" / "extra.blob").unlink()

    manifest = _manifest(backup)
    manifest["files"].append({"path": "../escape", "bytes": 1, "sha256": "0" * 64})
    (backup / "manifest.json").write_text(json.dumps(manifest))
    error_line(run(capsys, "restore", "--data", target, backup), "'../escape'", "not part of a node backup")

    (backup / "manifest.json").write_text("{not json")
    error_line(run(capsys, "restore", "--data", target, backup), "not a backup manifest")
    (backup / "manifest.json").unlink()
    error_line(run(capsys, "restore", "--data", target, backup), "not a node backup")
    json_error(run(capsys, "restore", "--data", target, tmp_path / "nothing", "--json"), "not a directory")
    assert not target.exists()


def test_a_backup_newer_than_the_code_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = init(capsys, tmp_path / "node")
    backup = tmp_path / "backup"
    ok(run(capsys, "backup", "--data", data, backup))
    manifest = _manifest(backup)
    manifest["schema_version"] = LATEST_VERSION + 1
    (backup / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "restored"
    error = json_error(run(capsys, "restore", "--data", target, backup, "--json"), f"schema version {LATEST_VERSION + 1}", "downgrade is refused")
    assert error["code"] == "backup_error"
    assert not target.exists()

    # the manifest and the database must agree (the manifest alone cannot hide a newer database)
    manifest["schema_version"] = LATEST_VERSION - 1
    (backup / "manifest.json").write_text(json.dumps(manifest))
    error_line(run(capsys, "restore", "--data", target, backup), f"schema version {LATEST_VERSION}", "damaged")
    assert not target.exists()


def test_restore_into_a_non_empty_directory_needs_force_and_a_stopped_node(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    old = init(capsys, tmp_path / "old")
    other = init(capsys, tmp_path / "other")
    (other / "blobs").mkdir(exist_ok=True)
    (other / "blobs" / f"{PARTIAL}.meta").write_text("{}")
    backup = tmp_path / "backup"
    ok(run(capsys, "backup", "--data", old, backup))
    before = snapshot(other)
    error_line(run(capsys, "restore", "--data", other, backup), "is not empty", "--force")
    assert snapshot(other) == before

    with open(other / "node.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        error_line(run(capsys, "restore", "--data", other, backup, "--force"), "running", "stop it")
    assert {k: v for k, v in snapshot(other).items() if k != "node.lock"} == before

    ok(run(capsys, "restore", "--data", other, backup, "--force"))
    after = snapshot(other)
    assert after["node.key"] == snapshot(old)["node.key"] != before["node.key"]
    assert not any(name.startswith("blobs/") for name in after)  # the replaced node's blobs are gone


def test_run_refuses_a_database_newer_than_the_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = init(capsys, tmp_path / "node")
    with sqlite3.connect(data / "node.db") as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    before = snapshot(data)
    line = error_line(run(capsys, "run", "--data", data), f"schema version {LATEST_VERSION + 1} is newer", "downgrade is refused")
    assert "node.db" in line
    assert snapshot(data)["node.db"] == before["node.db"]


def _sign_first_head(data: Path) -> None:
    """What the node's first start does: its key directory signs a head with node.key."""
    from sonet.node.directory import NodeDirectory
    from sonet.node.identity import load_node_key
    from sonet.node.store import SqliteStore

    async def go() -> None:
        async with await SqliteStore.open(data / "node.db") as store:
            directory = NodeDirectory(name="localhost", key=load_node_key(data), store=store, clock_ms=lambda: 1_000, on_new_head=lambda: None)
            await directory.start()
            assert await store.latest_head() is not None

    trio.run(go)


def test_run_refuses_a_key_that_is_not_the_databases(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = init(capsys, tmp_path / "node")
    _sign_first_head(data)
    other = init(capsys, tmp_path / "other")
    (data / "node.key").write_bytes((other / "node.key").read_bytes())  # a key from another backup
    before = snapshot(data)
    error_line(run(capsys, "run", "--data", data), "not signed by this node", "not the same node's", "same backup")
    after = snapshot(data)
    assert (after["node.db"], after["node.key"]) == (before["node.db"], before["node.key"])
