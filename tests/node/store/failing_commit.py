"""A connection whose COMMIT fails, for the tests of what a failed group commit leaves."""

from __future__ import annotations

import sqlite3
from typing import Any


class FailingCommit:
    """A connection whose next COMMIT fails (rolled back, as SQLite does when a COMMIT cannot
    be written)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            self._conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)
