"""``sonet-node backup`` / ``restore`` of a PostgreSQL node when its tools or arguments are
wrong: no pg_dump installed, a pg_dump older than the server, a --database that is not a
PostgreSQL URL, --database for a SQLite backup. Each is one line, never with the password."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from sonet.node import backup_postgres
from sonet.node.config import CONFIG_FILE, NodeConfig

from .cli_kit import error_line, init, ok, run

URL = "postgresql://sonet:s3cret@127.0.0.1:1/sonet"


def postgres_node(capsys: pytest.CaptureFixture[str], data: Path) -> Path:
    init(capsys, data)
    (data / CONFIG_FILE).write_text(replace(NodeConfig.load(data), storage_database=URL).to_toml())
    (data / "node.db").unlink()  # a PostgreSQL node has none
    return data


def test_no_pg_dump_installed_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = postgres_node(capsys, tmp_path / "node")
    monkeypatch.setattr(backup_postgres.shutil, "which", lambda name: None)
    monkeypatch.setattr(backup_postgres.glob, "glob", lambda pattern: [])
    line = error_line(run(capsys, "backup", "--data", data, tmp_path / "b"), "pg_dump is not installed", "postgresql-client")
    assert "s3cret" not in line
    assert not (tmp_path / "b").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]


def test_a_pg_dump_older_than_the_server_says_which_to_use(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = postgres_node(capsys, tmp_path / "node")
    fake = tmp_path / "bin" / "pg_dump"
    fake.parent.mkdir()
    # what pg_dump 15 says to a 16 server; it must also not have been given the password
    fake.write_text(
        "#!/bin/sh\ncase \"$*\" in *s3cret*) echo 'pg_dump: error: password on the command line' >&2; exit 1;; esac\n"
        "echo 'pg_dump: error: aborting because of server version mismatch' >&2\n"
        "echo 'pg_dump: detail: server version: 16.1; pg_dump version: 15.18' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(backup_postgres.shutil, "which", lambda name: str(fake.parent / name))
    line = error_line(
        run(capsys, "backup", "--data", data, tmp_path / "b"),
        "server version mismatch; server version: 16.1; pg_dump version: 15.18", "of the server's major version or newer",
    )
    assert "s3cret" not in line and "password on the command line" not in line


def test_restore_database_argument_is_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = init(capsys, tmp_path / "node")
    ok(run(capsys, "backup", "--data", data, tmp_path / "b"))
    line = error_line(run(capsys, "restore", "--data", tmp_path / "r", tmp_path / "b", "--database", "mysql://u:pw@h/d"), "postgresql://")
    assert "pw@" not in line
    error_line(run(capsys, "restore", "--data", tmp_path / "r", tmp_path / "b", "--database", URL), "sqlite", "leave it out")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(shutil.which("pg_restore") is None, reason="needs pg_restore")
def test_a_file_that_is_not_a_dump_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "database.dump"
    bogus.write_bytes(b"PGDMP" + bytes(200))
    with pytest.raises(backup_postgres.PostgresBackupError, match=r"is not a usable PostgreSQL dump: pg_restore failed: "):
        backup_postgres.dump_schema_version(bogus)


def test_strip_password_leaves_out_every_form_of_password() -> None:
    from sonet.node.store.database_url import strip_password

    assert strip_password("postgresql://u:pw@db.example:5432/sonet") == "postgresql://u@db.example:5432/sonet"
    assert strip_password("postgresql://u@h/db?sslmode=require&password=pw") == "postgresql://u@h/db?sslmode=require"
    assert strip_password("postgresql://u:pw@h/db?password=pw") == "postgresql://u@h/db"
    assert strip_password("postgresql:///sonet?host=/run/postgresql") == "postgresql:///sonet?host=/run/postgresql"
