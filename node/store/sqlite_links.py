"""Device-linking slots (node/linking.py), in the store so that every process of a node sees
them: a new device may wait on one process while the approving device talks to another.

One row per slot: its random key, the new device's ephemeral key, its expiry, the connection
waiting in it (``owner``, a random token of that connection's process), the address it comes
from and its device key, and once a device approved it, the approving account and the sealed
``LinkOffer`` (one-shot: ``approve`` sets them only while they are unset). Expired rows are
never answered and are deleted by the next ``open`` or ``purge``. The SQL is the subset SQLite
and PostgreSQL share (``dialect.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .dialect import Connection

__all__ = ["LinkSlotRow", "OPENED", "BUSY", "TAKEN", "APPROVED", "ALREADY_APPROVED", "UNKNOWN"]

#: what ``_open_link_slot`` did
OPENED, BUSY, TAKEN = "opened", "busy", "taken"
#: what ``_approve_link_slot`` found
APPROVED, ALREADY_APPROVED, UNKNOWN = "approved", "already_approved", "unknown"

_COLUMNS = "slot, ephemeral, expires, owner, source, device, approved_for, offer"


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkSlotRow:
    slot: bytes
    ephemeral: bytes
    expires: int
    #: the waiting connection's token (node/linking.py)
    owner: str
    #: the address the waiting connection comes from (fair shares between addresses)
    source: str
    #: the fingerprint of the device key the waiting connection authenticated with
    device: str
    #: the account whose device approved the slot, once one did
    approved_for: str | None = None
    #: the encoded LinkOffer for the waiting connection, once approved
    offer: bytes | None = None


def _row(raw: Any) -> LinkSlotRow:
    slot, ephemeral, expires, owner, source, device, approved_for, offer = raw
    return LinkSlotRow(
        slot=bytes(slot), ephemeral=bytes(ephemeral), expires=int(expires), owner=owner, source=source, device=device,
        approved_for=approved_for, offer=bytes(offer) if offer is not None else None,
    )  # fmt: skip


def _purge_link_slots(conn: Connection, now: int) -> int:
    return conn.execute("DELETE FROM link_slots WHERE expires <= ?", (now,)).rowcount


def _open_link_slot(conn: Connection, row: LinkSlotRow, now: int, max_slots: int, max_per_source: int) -> str:
    """Insert ``row`` within the bounds: OPENED; BUSY when only approved slots are left to make
    room; TAKEN when its key is (the caller draws another).

    An address holds at most ``max_per_source`` slots (its oldest waiting one makes room for
    its newest); when all ``max_slots`` are taken, the oldest waiting slot of the address that
    holds the most goes, so a flood from one address never stops devices elsewhere."""
    _purge_link_slots(conn, now)
    if conn.execute("SELECT 1 FROM link_slots WHERE slot = ?", (row.slot,)).fetchone() is not None:
        return TAKEN
    (mine,) = conn.execute("SELECT count(*) FROM link_slots WHERE source = ?", (row.source,)).fetchone()
    (total,) = conn.execute("SELECT count(*) FROM link_slots").fetchone()
    victim = None
    if mine >= max_per_source:
        victim = _oldest_waiting(conn, row.source)
    elif total >= max_slots:
        largest = conn.execute(
            "SELECT source FROM link_slots WHERE approved_for IS NULL GROUP BY source"
            " ORDER BY count(*) DESC, min(expires) LIMIT 1"
        ).fetchone()
        if largest is not None:
            victim = _oldest_waiting(conn, largest[0])
    if victim is not None:
        conn.execute("DELETE FROM link_slots WHERE slot = ?", (victim,))
        total -= 1
    if total >= max_slots:
        return BUSY
    conn.execute(
        f"INSERT INTO link_slots ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
        (row.slot, row.ephemeral, row.expires, row.owner, row.source, row.device),
    )
    return OPENED


def _oldest_waiting(conn: Connection, source: str) -> bytes | None:
    found = conn.execute(
        "SELECT slot FROM link_slots WHERE source = ? AND approved_for IS NULL ORDER BY expires LIMIT 1", (source,)
    ).fetchone()
    return bytes(found[0]) if found is not None else None


def _link_slot(conn: Connection, slot: bytes, now: int) -> LinkSlotRow | None:
    """The slot, unless it is unknown or expired."""
    found = conn.execute(f"SELECT {_COLUMNS} FROM link_slots WHERE slot = ? AND expires > ?", (slot, now)).fetchone()
    return _row(found) if found is not None else None


def _approve_link_slot(conn: Connection, slot: bytes, account: str, offer: bytes, now: int) -> str:
    """Bind the slot to ``account`` with its offer, once: APPROVED, ALREADY_APPROVED or UNKNOWN."""
    updated = conn.execute(
        "UPDATE link_slots SET approved_for = ?, offer = ? WHERE slot = ? AND expires > ? AND approved_for IS NULL",
        (account, offer, slot, now),
    ).rowcount
    if updated:
        return APPROVED
    return ALREADY_APPROVED if _link_slot(conn, slot, now) is not None else UNKNOWN


def _drop_link_slot(conn: Connection, slot: bytes) -> bool:
    """The slot is used (its device linked) or of no use (its connection ended)."""
    return conn.execute("DELETE FROM link_slots WHERE slot = ?", (slot,)).rowcount > 0
