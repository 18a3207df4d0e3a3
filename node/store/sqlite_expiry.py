"""When the next stored envelope expires: what the node's expiry loop (node/expiry.py) sleeps
until, so a disappearing message leaves the mailbox, the outbox or a relay queue (the outbox
table holds both) when it expires, not at the next minute's purge. Two index lookups
(``mailbox_expiry``, ``outbox_expiry``)."""

from __future__ import annotations

import sqlite3

__all__ = ["_next_expiry"]


def _next_expiry(conn: sqlite3.Connection, after: int) -> int | None:
    """The earliest ``expires`` above ``after`` of a mailbox envelope or an outbox item."""
    found = [
        conn.execute(f"SELECT min(expires) FROM {table} WHERE expires > ?", (after,)).fetchone()[0]
        for table in ("mailbox", "outbox")
    ]
    due = [f for f in found if f is not None]
    return min(due) if due else None
