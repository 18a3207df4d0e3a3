"""What the store's SQL modules (``sqlite_*.py``) need to run on either backend.

The SQL is written once, in the subset SQLite and PostgreSQL share: ``?`` placeholders (the
PostgreSQL connection rewrites them), ``INSERT ... ON CONFLICT (...) DO UPDATE/DO NOTHING``
instead of ``INSERT OR REPLACE/IGNORE``, ``RETURNING`` instead of ``lastrowid``, ``CASE``
instead of the two-argument ``min``/``max``, bound empty bytes instead of ``x''``. The
connection is an ``sqlite3.Connection`` or a ``postgres_connection.PgConnection`` (the same
``execute``/``executemany``/cursor surface). What cannot be one statement lives here, small:
a unique-key violation's exception, and the database's size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

__all__ = ["Connection", "Cursor", "IntegrityError", "INTEGRITY_ERRORS", "database_bytes", "insert_rows"]


class Cursor(Protocol):
    """What the SQL modules read from a statement's result."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class Connection(Protocol):
    """The connection the SQL modules are written against: ``sqlite3.Connection`` or
    ``postgres_connection.PgConnection``."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...


class IntegrityError(Exception):
    """A constraint violation on the PostgreSQL connection (sqlite3 raises its own)."""


#: catch these where a constraint violation means something (e.g. a duplicate invite)
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, IntegrityError)


def database_bytes(conn: Connection) -> int:
    """The bytes the database holds in use (the ``max_database_bytes`` budget)."""
    if isinstance(conn, sqlite3.Connection):
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (free_pages,) = conn.execute("PRAGMA freelist_count").fetchone()
        return int((pages - free_pages) * page_size)
    (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(size)


#: rows per multi-row INSERT (12 columns: 768 parameters; SQLite allows 32,766, PostgreSQL 65,535)
ROWS_PER_INSERT = 64


def insert_rows(conn: Connection, head: str, rows: Sequence[tuple[Any, ...]], tail: str = "") -> None:
    """``head`` ("INSERT INTO t (a, b, ...)") ``VALUES`` each of ``rows``, in order, then ``tail``
    (e.g. an ON CONFLICT clause): ROWS_PER_INSERT rows per statement, the rest one statement
    each. A statement per row costs SQLite its per-statement work (trigger and foreign-key
    programs, the AUTOINCREMENT counter) per row: about a third of a mailbox row's insert.
    A DO UPDATE ``tail`` needs rows with distinct keys (PostgreSQL refuses to update a row twice
    in one statement)."""
    if not rows:
        return
    one = "(" + ", ".join("?" * len(rows[0])) + ")"
    full = len(rows) - len(rows) % ROWS_PER_INSERT
    if full:
        sql = f"{head} VALUES {', '.join([one] * ROWS_PER_INSERT)}{tail}"
        for start in range(0, full, ROWS_PER_INSERT):
            conn.execute(sql, [value for row in rows[start : start + ROWS_PER_INSERT] for value in row])
    if full < len(rows):
        conn.executemany(f"{head} VALUES {one}{tail}", rows[full:])
