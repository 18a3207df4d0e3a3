"""When the next stored envelope expires: what the node's expiry loop (node/expiry.py) sleeps
until, so a disappearing message leaves the mailbox, the outbox or a relay queue (the outbox
table holds both) when it expires, not at the next minute's purge, and so do the records that
name it after it left (its dedup records, ``acked_ids`` and a relay's ``outbox_sent``, and its
sender's delivery-status row, ``deliveries.vanishes``: node/store/vanishing.py; a group item's
records: a timed one's expire at its time). One index lookup per table."""

from __future__ import annotations

from .dialect import Connection
from .sqlite_mailbox import SHORT_LIVED_ACKED

__all__ = ["_next_expiry"]


#: the rows of a table whose expiry is indexed (an ordinary acked id's is its day's, in acked_days)
_ONLY = {"acked_ids": f" AND {SHORT_LIVED_ACKED}"}


def _next_expiry(conn: Connection, after: int, outbox: bool = True) -> int | None:
    """The earliest ``expires`` above ``after`` of a mailbox envelope, an outbox item (unless
    not ``outbox``: the SQLite store knows its outboxes from memory, outbox_log.py) or a dedup
    record, or ``vanishes`` of a delivery row (the loop's outbox expiry drops ``outbox_sent``)."""
    found = [
        conn.execute(
            f"SELECT min({column}) FROM {table} WHERE {column} > ?{_ONLY.get(table, '')}", (after,)  # noqa: S608 - fixed names
        ).fetchone()[0]
        for table, column in (
            ("mailbox", "expires"), *((("outbox", "expires"),) if outbox else ()), ("outbox_sent", "expires"),
            # an ordinary acked id goes with its day (acked_days), a short-lived one at its time
            ("acked_days", "expires"), ("acked_ids", "expires"),
            ("deliveries", "vanishes"),
            # a timed group item's records go at its time too (docs/groups.md "Disappearing messages on nodes")
            ("hub_refs", "expires"), ("group_seen", "expires"), ("group_submissions", "expires"), ("group_waiting", "expires"),
        )
    ]
    due = [f for f in found if f is not None]
    return min(due) if due else None
