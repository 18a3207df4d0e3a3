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


def fail_next_commit(store: Any, monkeypatch: Any, *, skip: int = 0) -> None:
    """``store``'s next group commit, or the one after ``skip`` more, fails at its COMMIT
    (``FailingCommit``); the others run."""
    from sonet.node.store.group_commit import _run_group

    real = store._writes._call
    to_come = skip

    async def call(fn: Any, *args: Any) -> Any:
        nonlocal to_come
        if fn is _run_group and to_come >= 0:
            to_come -= 1
            if to_come < 0:
                return await real(lambda conn, group, observers: _run_group(FailingCommit(conn), group, observers), *args)
        return await real(fn, *args)

    monkeypatch.setattr(store._writes, "_call", call)
