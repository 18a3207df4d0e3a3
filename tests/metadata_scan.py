"""What a node's database says about someone: every value of every column of every table that
names them (tests of the metadata a node keeps, in-process and against real node processes).

A needle matches a TEXT value that equals or contains it (case-insensitively: addresses are
compared in normal form, fingerprints in any case) and a BLOB that contains its UTF-8 bytes, so
an address inside a dedup key or a copy of an envelope is found as well as a column that holds
it. Sealed bodies are ciphertext: they never contain a needle by chance.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

__all__ = ["Finding", "values_naming", "dump"]

Finding = tuple[str, str, str]  # (table, column, the value, shortened)


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


def _open(db: Path) -> sqlite3.Connection:
    # read-only, and without touching the writer's WAL files (the node may still run)
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def values_naming(db: Path, needles: Iterable[str]) -> list[Finding]:
    """Every (table, column, value) of ``db`` whose value names one of ``needles``."""
    wanted = [n.lower() for n in needles if n]
    raw = [n.encode() for n in wanted]
    found: list[Finding] = []
    conn = _open(db)
    try:
        for table in _tables(conn):
            columns = _columns(conn, table)
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for column, value in zip(columns, row):
                    if isinstance(value, str) and any(n in value.lower() for n in wanted):
                        found.append((table, column, value[:120]))
                    elif isinstance(value, bytes) and any(n in value.lower() for n in raw):
                        found.append((table, column, value[:120].hex()))
    finally:
        conn.close()
    return found


def dump(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table (for a failing test's message)."""
    conn = _open(db)
    try:
        return {table: conn.execute(f'SELECT * FROM "{table}"').fetchall() for table in _tables(conn)}
    finally:
        conn.close()
