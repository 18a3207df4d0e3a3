"""The expiry purge of the groups' records (sqlite_groups.py keeps them): its own module, so a
node's start-up purge and each periodic one run without importing sqlite_groups.py, whose group
routing loads the hub and MLS (~0.1 s of a node's start-up CPU)."""

from __future__ import annotations

from .dialect import Connection
from .sqlite_group_bodies import _purge_group_bodies
from .sqlite_group_trees import _purge_group_trees
from .sqlite_handover import _purge_handovers


def _purge_groups(conn: Connection, now: int) -> None:
    """Dedup records whose items can no longer be retransmitted (they expired)."""
    for table in ("hub_refs", "group_seen", "group_submissions", "group_waiting"):
        conn.execute(f"DELETE FROM {table} WHERE expires <= ?", (now,))
    _purge_group_trees(conn, now)
    _purge_group_bodies(conn)
    _purge_handovers(conn, now)
