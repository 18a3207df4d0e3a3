"""Delivery status of this device's group messages (docs/groups.md, "Receipts and typing").

A group text's content id is known to the group's members only. Every member device that
stores it sends a ``delivered`` receipt (and ``read`` with ``recv --read``) for it to the
sender's account, exactly as for a 1:1 text (client/receiving.py: one sealed 1:1 receipt per
sender account per receive, 1:1 and group ids together). The sending device keeps, per group
text, the member devices of the other accounts at the epoch it was sent in, one row each, and
marks a row when that device's receipt comes: a receipt counts only from a device that was a
member then (any other receipt naming the id changes nothing), and only on the device that sent
the text (no other device has the rows). ``sonet sent`` shows the counts.

The rows name accounts and devices in clear, as ``group_inbox`` names senders and ``sent``
recipients; the group, its state and the texts stay sealed (client/groups/store.py).
``DeviceState`` (client/state.py) mixes ``GroupSentState`` in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..state_history import group_sent_where, seal_body
from ..vault import Vault
from .store import GroupRecord

if TYPE_CHECKING:
    # MLS is imported by the functions that read a group's state: DeviceState (client/state.py)
    # holds this table, and a command that never touches a group must not load MLS (~0.2 s)
    from sonet.core.mls.group import Group

__all__ = ["GROUP_SENT_SCHEMA", "GroupSent", "GroupSentState", "note_sent", "note_ordered", "others"]

GROUP_SENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS group_sent (
    id BLOB PRIMARY KEY, group_id BLOB NOT NULL, sent_at INTEGER NOT NULL, epoch INTEGER NOT NULL,
    state TEXT NOT NULL, code TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS group_sent_devices (
    id BLOB NOT NULL, account TEXT NOT NULL, device INTEGER NOT NULL, delivered_at INTEGER, read_at INTEGER,
    PRIMARY KEY (id, account, device));
"""

#: a group text still on this device (its home node not reached yet); on its way to the hub;
#: put in the group's order by it; refused by it
PENDING, QUEUED, ORDERED, FAILED = "pending", "queued", "ordered", "failed"


@dataclass(frozen=True, kw_only=True)
class GroupSent:
    """A group text this device sent and how many member devices have it."""

    id: bytes
    group: bytes
    sent_at: int
    #: PENDING, QUEUED, ORDERED or FAILED (``code``: the hub's refusal)
    state: str
    code: str
    #: the member devices of the other accounts when it was sent
    devices: int
    #: of those, how many sent a delivered (or read) receipt, and how many a read one
    delivered: int
    read: int
    #: when the last of ``devices`` confirmed it, once all have (None before)
    delivered_at: int | None
    read_at: int | None
    #: "text", or a reply, reaction, edit or delete (client/gestures.py)
    type: str = "text"


def others(group: Group, me: str) -> list[tuple[str, int]]:
    """The member devices of ``group`` that are not this account's."""
    from .ops import member_devices

    return sorted(key for key in member_devices(group) if key[0] != me)


def note_sent(
    state: GroupSentState, msg_id: bytes, record: GroupRecord, me: str, sent_at: int, *, text: str | None = None,
    kind: str = "text", fields: dict | None = None,
) -> None:
    """Keep a group text that is about to be submitted (pending until the home node holds
    it), with the members it goes to now, and the text (or a reply's, reaction's, edit's or
    delete's ``fields``) for the history."""
    from sonet.core.mls.group import Group

    group = Group.from_bytes(record.mls)
    state.record_group_sent(msg_id, record.id, sent_at, group.epoch, others(group, me), text=text, kind=kind, fields=fields)


def note_ordered(state: GroupSentState, msg_id: bytes, epoch: int, mls: bytes, me: str) -> None:
    """The hub ordered the text (made in ``epoch``, of the group state ``mls``): if it was
    made again in a later epoch (another commit came first), its members are that epoch's."""
    if state.group_sent_ordered(msg_id, epoch):
        from sonet.core.mls.group import Group

        state.set_group_sent_members(msg_id, epoch, others(Group.from_bytes(mls), me))


class GroupSentState:
    _db: sqlite3.Connection
    vault: Vault

    # provided by DeviceState (client/state.py), the only class built on this one
    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def record_group_sent(
        self, msg_id: bytes, group: bytes, sent_at: int, epoch: int, members: Iterable[tuple[str, int]], *, text: str | None = None,
        kind: str = "text", fields: dict | None = None,
    ) -> None:
        """``text`` (or ``fields`` of another ``kind``) is kept, sealed, for the history
        (client/state_history.py)."""
        kept = fields if fields is not None else {"text": text} if text is not None else None
        body = seal_body(self.vault, kept, group_sent_where(msg_id)) if kept is not None else None
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO group_sent (id, group_id, sent_at, epoch, state, type, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (msg_id, group, sent_at, epoch, PENDING, kind, body),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO group_sent_devices (id, account, device) VALUES (?, ?, ?)", [(msg_id, a, d) for a, d in members]
            )

    def group_sent_submitted(self, msg_id: bytes) -> None:
        """The home node holds it now (GroupQueued): on its way to the hub."""
        with self.transaction():
            self._db.execute("UPDATE group_sent SET state = ? WHERE id = ? AND state = ?", (QUEUED, msg_id, PENDING))

    def group_sent_ordered(self, msg_id: bytes, epoch: int) -> bool:
        """Mark it ordered; True when it was made in another epoch than recorded."""
        with self.transaction():
            row = self._db.execute("SELECT epoch FROM group_sent WHERE id = ?", (msg_id,)).fetchone()
            self._db.execute("UPDATE group_sent SET state = ?, code = '' WHERE id = ?", (ORDERED, msg_id))
        return row is not None and row[0] != epoch

    def set_group_sent_members(self, msg_id: bytes, epoch: int, members: Iterable[tuple[str, int]]) -> None:
        """The members it went to after all: receipts of those still members are kept."""
        wanted = set(members)
        with self.transaction():
            present = {(a, d) for a, d in self._db.execute("SELECT account, device FROM group_sent_devices WHERE id = ?", (msg_id,))}
            self._db.executemany(
                "DELETE FROM group_sent_devices WHERE id = ? AND account = ? AND device = ?", [(msg_id, a, d) for a, d in present - wanted]
            )
            self._db.executemany(
                "INSERT INTO group_sent_devices (id, account, device) VALUES (?, ?, ?)", [(msg_id, a, d) for a, d in wanted - present]
            )
            self._db.execute("UPDATE group_sent SET epoch = ? WHERE id = ?", (epoch, msg_id))

    def group_sent_failed(self, msg_id: bytes, code: str) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE group_sent SET state = ?, code = ? WHERE id = ? AND state IN (?, ?)", (FAILED, code, msg_id, PENDING, QUEUED)
            )

    def forget_group_sent(self, msg_id: bytes) -> None:
        """A text that never left this device (refused before it was submitted); one the hub
        refused (failed) or ordered meanwhile is kept."""
        with self.transaction():
            if self._db.execute("DELETE FROM group_sent WHERE id = ? AND state IN (?, ?)", (msg_id, PENDING, QUEUED)).rowcount:
                self._db.execute("DELETE FROM group_sent_devices WHERE id = ?", (msg_id,))

    def record_group_receipt(self, msg_ids: list[bytes], kind: str, at: int, *, account: str, device: int) -> None:
        """A receipt of ``account``'s ``device``: counts for the group texts it was a member
        device of; ``read`` implies ``delivered``. Anything else changes nothing."""
        if kind not in ("delivered", "read"):
            return
        read = kind == "read"
        with self.transaction():
            self._db.executemany(
                "UPDATE group_sent_devices SET delivered_at = COALESCE(delivered_at, ?),"
                " read_at = CASE WHEN ? THEN COALESCE(read_at, ?) ELSE read_at END WHERE id = ? AND account = ? AND device = ?",
                [(at, read, at, i, account, device) for i in msg_ids],
            )

    def group_sent_messages(self, limit: int) -> list[GroupSent]:
        """The ``limit`` most recent group texts this device sent, newest first."""
        rows = self._db.execute(
            _GROUP_SENT_ROWS + " GROUP BY s.id ORDER BY s.sent_at DESC, s.rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_group_sent(r) for r in rows]

    def group_sent_message(self, msg_id: bytes) -> GroupSent | None:
        row = self._db.execute(_GROUP_SENT_ROWS + " WHERE s.id = ? GROUP BY s.id", (msg_id,)).fetchone()
        return _group_sent(row) if row else None


_GROUP_SENT_ROWS = (
    "SELECT s.id, s.group_id, s.sent_at, s.state, s.code, count(d.device), count(d.delivered_at), count(d.read_at),"
    " max(d.delivered_at), max(d.read_at), s.type FROM group_sent s LEFT JOIN group_sent_devices d ON d.id = s.id"
)


def _group_sent(r: tuple) -> GroupSent:
    return GroupSent(
        id=r[0], group=r[1], sent_at=r[2], state=r[3], code=r[4], devices=r[5], delivered=r[6], read=r[7],
        delivered_at=r[8] if r[5] and r[6] == r[5] else None, read_at=r[9] if r[5] and r[7] == r[5] else None, type=r[10],
    )  # fmt: skip
