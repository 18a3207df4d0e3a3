"""Databases left at an older schema version with rows in them, on either backend: what the
migration tests open (and so migrate). One place for building them, so each test says only
which version and which rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sonet.node.store import SqliteStore

__all__ = ["Inserts", "at_version", "drop_database", "sqlite_at"]

#: (an INSERT whose VALUES are ``({marks})``, its rows), run in turn
Inserts = Sequence[tuple[str, Sequence[tuple[Any, ...]]]]

#: opens (and so migrates) the database: ``async with await opener() as store``
Opener = Callable[[], Any]


def at_version(
    request: pytest.FixtureRequest, tmp_path: Path, version: int, inserts: Inserts, *, backend: str, unchecked: bool = False
) -> Opener:
    """A database of ``backend`` ("sqlite", "postgresql") at schema ``version``, ``inserts``
    run into it. SQLite checks no foreign keys here (a plain connection); PostgreSQL does, and
    its triggers run, unless ``unchecked`` (then neither: rows may name devices that are not there)."""
    if backend == "sqlite":
        return sqlite_at(tmp_path / "node.db", version, inserts)
    if backend == "postgresql":
        import psycopg

        cluster = request.getfixturevalue("pg_cluster")
        name = f"v{version}_{tmp_path.name.lower().replace('-', '_')[:40]}"
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        request.addfinalizer(lambda: drop_database(cluster.url("postgres"), name))
        return _postgres_at(cluster.url(name), version, inserts, unchecked=unchecked)
    raise AssertionError(f"unknown backend {backend!r}")


def drop_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sqlite_at(path: Path, version: int, inserts: Inserts) -> Opener:
    from sonet.node.store.migrations import MIGRATIONS

    with closing(sqlite3.connect(path, isolation_level=None)) as conn:  # foreign keys are off by default
        for migration in MIGRATIONS[:version]:
            for statement in migration:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version:d}")
        for sql, rows in inserts:
            for row in rows:
                conn.execute(sql.format(marks=", ".join("?" * len(row))), row)
    return lambda: SqliteStore.open(path)


def _postgres_at(url: str, version: int, inserts: Inserts, *, unchecked: bool) -> Opener:
    import psycopg

    from sonet.node.store.postgres import PostgresStore
    from sonet.node.store.postgres_migrations import MIGRATIONS

    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for migration in MIGRATIONS[:version]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        if unchecked:
            conn.execute("SET LOCAL session_replication_role = replica")  # no foreign keys, no triggers
        for sql, rows in inserts:
            for row in rows:
                conn.execute(sql.format(marks=", ".join(["%s"] * len(row))), row)
    return lambda: PostgresStore.open(url)
