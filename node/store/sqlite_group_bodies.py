"""Group item bodies stored once per node (table ``group_bodies``, migration ``_GROUP_BODIES``).

A node delivers an ORDERED item into the mailbox of every member device it holds: a commit of
a 1,500-device group goes to ~500 mailboxes of each node, and a path commit is ~1.8 MB. So a
``Kind.GROUP`` mailbox row keeps its body column empty and names the body in ``body_ref``;
the body is stored once, found again by its SHA-256 (the same item delivered later to the
devices that had no room, or a VERDICT equal byte for byte, shares it too).

- What each device may hold is unchanged: a row's ``size`` is the item's length, which the
  device's group allowance counts (sqlite_groups.py ``_group_usage``). What the disk reserve
  and the database's maximum size see is the body once (``Charges.stored`` when it is new) plus
  each row.
- A body goes with its last row, whichever way that row goes (acknowledged, expired and
  purged, its device removed): the trigger ``group_body_release`` in the transaction that
  deletes it. ``_purge_group_bodies`` drops any body no row names (none should be left).
- Reading: ``pending`` takes a row's body from here when it names one (sqlite_mailbox.py
  ``_PENDING_BODY``), so what a device is delivered is the item's bytes, as before.
"""

from __future__ import annotations

import hashlib
from .dialect import Connection
from .base import NewEnvelope
from .sqlite_budgets import Charges
from .sqlite_mailbox import MailboxCounts

__all__: list[str] = []  # private to the SQLite backend; SqliteStore is the public face

_INSERT_GROUP_ROW = (
    "INSERT INTO mailbox (account, device_id, id, expires, kind, body, size, stored_at, body_ref, hub)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _shared_body(
    conn: Connection, body: bytes, charges: Charges, sender: tuple[str, int] | None = None, origin: str | None = None
) -> int:
    """The id of the stored body equal to ``body``, stored now (and charged) if there is none.
    ``sender``: the local device whose submission, ordered here, stores it: the body counts
    towards its and its account's stored bytes until it goes (trigger ``group_body_charge``);
    ``origin``: else the node that pushed that submission (its relay budget,
    ``group_body_origin_charge``)."""
    digest = hashlib.sha256(body).digest()
    row = conn.execute("SELECT id FROM group_bodies WHERE digest = ?", (digest,)).fetchone()
    if row is not None:
        return int(row[0])
    account, device = sender if sender is not None else (None, None)
    origin = None if sender is not None else origin
    [(body_id,)] = conn.execute(
        "INSERT INTO group_bodies (digest, body, size, sender_account, sender_device, origin) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (digest, body, len(body), account, device, origin),
    ).fetchall()
    if sender is not None:
        charges.sender(*sender, len(body))
    elif origin is not None:
        charges.relayed(origin, len(body))
    else:
        charges.stored(len(body))
    return int(body_id)


def _store_group_row(conn: Connection, env: NewEnvelope, body_ref: int, now: int, charges: Charges, hub: str | None = None) -> None:
    """``env`` (a Kind.GROUP envelope) into its mailbox as a row naming the stored body
    ``body_ref`` (``_shared_body`` of ``env.body``); the row itself is charged without a body.
    ``hub``: the other node whose hub pushed it (its rows of the device are counted, scope
    "group_hub": sqlite_groups.py ``_deliver``); None for this node's own groups."""
    conn.execute(_INSERT_GROUP_ROW, (env.account, env.device_id, env.id, env.expires, env.kind, b"", len(env.body), now, body_ref, hub))
    counts = MailboxCounts()  # written now: the next row's allowance check reads it
    counts.add(env.account, env.device_id, env.kind, 1, len(env.body))
    counts.apply(conn)
    charges.stored(0)


def _purge_group_bodies(conn: Connection) -> None:
    """Drop bodies that no mailbox row names (the release trigger leaves none; a safety net)."""
    conn.execute("DELETE FROM group_bodies WHERE NOT EXISTS (SELECT 1 FROM mailbox WHERE mailbox.body_ref = group_bodies.id)")
