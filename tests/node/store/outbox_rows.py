"""The outbox as a table, for tests that check it with SQL on either backend: PostgreSQL keeps an
``outbox`` table; the SQLite store keeps its outboxes as batches (node/store/outbox_log.py), whose
items ``with_outbox_table`` copies into a TEMP table of that name on the connection."""

from __future__ import annotations

import sqlite3
from typing import Any

from sonet.node.store.outbox_log import QUEUED_ROW_COLUMNS, queued_rows

__all__ = ["with_outbox_table", "outbox_rows"]


def _is_log(conn: Any) -> bool:
    return isinstance(conn, sqlite3.Connection) and conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox_batches'"
    ).fetchone() is not None


def with_outbox_table(conn: Any) -> None:
    """Make ``outbox`` readable by SQL on ``conn``: a TEMP copy of the queued items on a SQLite
    store (made again at each call), nothing to do on PostgreSQL."""
    if not _is_log(conn):
        return
    conn.execute("DROP TABLE IF EXISTS temp.outbox")
    conn.execute(f"CREATE TEMP TABLE outbox ({QUEUED_ROW_COLUMNS})")
    rows = queued_rows(conn)
    if rows:
        conn.executemany(f"INSERT INTO temp.outbox VALUES ({', '.join('?' * 13)})", rows)


def outbox_rows(conn: Any) -> list[tuple[Any, ...]]:
    """Every queued item, in seq order, as rows of ``QUEUED_ROW_COLUMNS``."""
    if _is_log(conn):
        return queued_rows(conn)
    return [tuple(row) for row in conn.execute(f"SELECT {QUEUED_ROW_COLUMNS} FROM outbox ORDER BY seq").fetchall()]
