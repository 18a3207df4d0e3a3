"""A hub hand-over arriving at the new hub (docs/groups.md "Hand-over"; tables
``handover_parts`` and ``held_submits``, migration ``_HANDOVERS``).

The old hub sends the group's state in parts (core/groups/handover.py), each its own HANDOVER
item. The new hub keeps every part it is pushed (``_keep_part``; a duplicate changes nothing)
until it holds all parts of that hand-over, then adopts the group (node/store/sqlite_groups.py).
Parts are kept per (group, origin, the hand-over's sequence number): another node pushing parts
of its own cannot spoil the old hub's.

Submissions that reach the new hub before it adopts the group (a device that already applied
the hand-over commit sends them straight here) are held (``_hold``) in the order they came,
taken once per (group, ref), and ordered in that order right after the adoption, before any
later one: nothing is lost or reordered. Both tables expire with the item TTL (a hand-over that
never completes is dropped with its parts and held submissions) and count against the disk
reserve (``Charges.stored``).
"""

from __future__ import annotations

from sonet.core.groups.items import GroupItem, handover_part
from sonet.core.wire import decode_struct, encode_struct

from .dialect import Connection
from .sqlite_budgets import Charges

__all__: list[str] = []  # private to the SQLite backend; SqliteStore is the public face


def _keep_part(conn: Connection, item: GroupItem, *, origin: str, now: int, ttl_ms: int, charges: Charges) -> list[GroupItem] | None:
    """Keep one HANDOVER part pushed by ``origin``; every part of its hand-over, in order, once
    all are here (else None)."""
    part, parts = handover_part(item)
    data = encode_struct(item)
    cursor = conn.execute(
        "INSERT INTO handover_parts (grp, origin, seq, part, parts, item, expires) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (item.group, origin, item.seq, part, parts, data, now + ttl_ms),
    )
    if cursor.rowcount:
        charges.stored(len(data))
    rows = conn.execute(
        "SELECT item FROM handover_parts WHERE grp = ? AND origin = ? AND seq = ? AND parts = ? ORDER BY part",
        (item.group, origin, item.seq, parts),
    ).fetchall()
    if len(rows) < parts:
        return None
    return [decode_struct(GroupItem, bytes(row[0])) for row in rows]


def _drop_parts(conn: Connection, group: bytes) -> None:
    """The group's kept parts (once adopted, or once its hand-over turned out invalid)."""
    conn.execute("DELETE FROM handover_parts WHERE grp = ?", (group,))


def _awaits_handover(conn: Connection, group: bytes, here: str) -> bool:
    """Whether ``here`` is to host ``group`` and does not yet: the hub it follows for the group
    named it the next hub (a hand-over commit's copy), or parts of a hand-over are here."""
    row = conn.execute("SELECT hub FROM member_groups WHERE grp = ?", (group,)).fetchone()
    if row is not None and row[0] == here:
        return True
    return conn.execute("SELECT 1 FROM handover_parts WHERE grp = ? LIMIT 1", (group,)).fetchone() is not None


def _hold(conn: Connection, item: GroupItem, *, origin: str, now: int, ttl_ms: int, charges: Charges) -> None:
    """Hold a SUBMIT of a device of ``origin`` until the group is adopted here (a retried push
    of a held one changes nothing)."""
    data = encode_struct(item)
    cursor = conn.execute(
        "INSERT INTO held_submits (grp, ref, origin, item, expires) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (item.group, item.ref, origin, data, now + ttl_ms),
    )
    if cursor.rowcount:
        charges.stored(len(data))


def _next_held(conn: Connection, group: bytes, now: int) -> tuple[int, GroupItem, str] | None:
    """(its row, the item, its origin) of the group's earliest held submission, if any."""
    row = conn.execute(
        "SELECT id, item, origin FROM held_submits WHERE grp = ? AND expires > ? ORDER BY id LIMIT 1", (group, now)
    ).fetchone()
    if row is None:
        return None
    return row[0], decode_struct(GroupItem, bytes(row[1])), row[2]


def _release(conn: Connection, held: int) -> None:
    conn.execute("DELETE FROM held_submits WHERE id = ?", (held,))


def _purge_handovers(conn: Connection, now: int) -> None:
    for table in ("handover_parts", "held_submits"):
        conn.execute(f"DELETE FROM {table} WHERE expires <= ?", (now,))
