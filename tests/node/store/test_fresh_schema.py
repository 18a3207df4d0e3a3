"""A new SQLite database gets the latest schema from one script (node/store/fresh_schema.py),
not from every migration in turn: the script must build exactly what the migrations build,
and say the version it is of; a stale one is not used."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sonet.node.store import fresh_schema, migrations
from sonet.node.store.fresh_schema_gen import render
from sonet.node.store.migrations import LATEST_VERSION, migrate


def _new(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    return conn


def _everything(conn: sqlite3.Connection) -> tuple[int, list[tuple[str, str, str, str]], list[str]]:
    master = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    return conn.execute("PRAGMA user_version").fetchone()[0], master, list(conn.iterdump())


def test_the_script_builds_what_the_migrations_build(tmp_path: Path) -> None:
    by_migrations, by_script = _new(tmp_path / "m.db"), _new(tmp_path / "s.db")
    assert migrate(by_migrations, fresh_schema=False) == migrate(by_script) == LATEST_VERSION
    assert fresh_schema.FRESH_VERSION == LATEST_VERSION, "run `python -m sonet.node.store.fresh_schema_gen`"
    version, master, dump = _everything(by_script)
    assert (version, master, dump) == _everything(by_migrations)
    assert len(master) > 50 and any("INSERT INTO" in line for line in dump)  # schema and the counters' rows
    # and the file in the repository is what the generator writes now (no hand edits)
    assert Path(fresh_schema.__file__).read_text() == render()


def test_a_new_database_costs_one_script_not_every_migration(tmp_path: Path) -> None:
    conn = _new(tmp_path / "n.db")
    run: list[str] = []
    conn.set_trace_callback(run.append)
    migrate(conn)
    ddl = [s for s in run if s.lstrip().upper().startswith(("CREATE", "ALTER", "DROP"))]
    assert len(ddl) == sum(s.startswith("CREATE") for s in fresh_schema.FRESH_STATEMENTS)
    assert not any(s.startswith(("ALTER", "DROP")) for s in ddl)  # no table built twice


def test_a_stale_script_is_not_used_and_the_migrations_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a migration added without running the generator: the script is of an older version
    monkeypatch.setattr(migrations, "FRESH_VERSION", LATEST_VERSION - 1)
    monkeypatch.setattr(migrations, "FRESH_STATEMENTS", ("CREATE TABLE wrong (x)",))
    conn = _new(tmp_path / "old.db")
    assert migrate(conn) == LATEST_VERSION
    assert _everything(conn) == _everything(_migrated(tmp_path / "m.db"))


def test_a_database_with_tables_at_version_zero_runs_the_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # not empty: the script is for empty files only (a table of the same name would make it fail)
    conn = _new(tmp_path / "x.db")
    conn.execute("CREATE TABLE accounts_backup (x)")
    monkeypatch.setattr(migrations, "FRESH_STATEMENTS", ("CREATE TABLE wrong (x)",))
    assert migrate(conn) == LATEST_VERSION
    names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "wrong" not in names and {"accounts", "accounts_backup", "outbox_batches"} <= names


def _migrated(path: Path) -> sqlite3.Connection:
    conn = _new(path)
    migrate(conn, fresh_schema=False)
    return conn
