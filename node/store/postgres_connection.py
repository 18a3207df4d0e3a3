"""A psycopg 3 connection with the surface the store's SQL modules use (``dialect.py``):
``execute``/``executemany`` taking ``?`` placeholders and returning a cursor (``fetchone``,
``fetchall``, iteration, ``rowcount`` summed over ``executemany``, ``close``).

Parameters are bound client side (``psycopg.ClientCursor``): the values become typed literals
(``'\\x..'::bytea``, plain integers), so expressions SQLite types loosely (``? + 1``,
``CASE WHEN ? > x``) need no casts; psycopg quotes them, so this is not string pasting.
Integral ``numeric`` results (``sum()`` of BIGINT) come back as ``int``, as from SQLite.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
import sqlite3
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg.adapt import Loader

from .dialect import Connection, IntegrityError

__all__ = ["PgConnection", "configure", "to_format_style"]


@functools.lru_cache(maxsize=1024)
def to_format_style(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (a literal ``%`` doubled). The store's SQL has no
    ``?`` or ``%`` inside string literals; statements SQLite alone knows are refused loudly,
    its index hints dropped."""
    if "INSERT OR " in sql or "PRAGMA" in sql:
        raise AssertionError(f"SQLite-only statement sent to PostgreSQL: {sql[:80]!r}")
    # SQLite's index hints (INDEXED BY): PostgreSQL's planner chooses on its own
    sql = _INDEX_HINT.sub("", sql)
    return sql.replace("%", "%%").replace("?", "%s")


_INDEX_HINT = re.compile(r"\s+INDEXED BY \w+")


class _IntegralNumericLoader(Loader):
    """``numeric`` (what PostgreSQL's sum() of BIGINT gives) as int when it is whole."""

    def load(self, data: Any) -> int | Decimal:
        text = bytes(data).decode()
        return Decimal(text) if "." in text or "N" in text else int(text)


def configure(conn: psycopg.Connection[Any]) -> None:
    """Per pooled connection: client-side binding, integral numerics as int, and a COMMIT that
    returns only once flushed to the WAL whatever the server's default (a store's return is a
    durable acknowledgement)."""
    conn.cursor_factory = psycopg.ClientCursor
    conn.adapters.register_loader("numeric", _IntegralNumericLoader)
    conn.execute("SET synchronous_commit = on")
    conn.commit()  # the pool takes the connection back only when idle


class PgConnection:
    """Wraps one psycopg connection for the duration of one transaction."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        cursor = self.raw.cursor()
        try:
            cursor.execute(to_format_style(sql), tuple(params))
        except psycopg.errors.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        return cursor

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        cursor = self.raw.cursor()
        try:
            cursor.executemany(to_format_style(sql), [tuple(p) for p in seq])
        except psycopg.errors.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        return cursor


if TYPE_CHECKING:  # both connections are what the SQL modules are written against
    _pg: Connection = PgConnection(cast(Any, None))
    _sqlite: Connection = sqlite3.connect(":memory:")
