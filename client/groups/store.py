"""The groups half of a device's state (client/state.py): per group its MLS state (and its
public view, on which the group's rules are checked), the next
sequence number it expects, its name, topic and the device's own outstanding submission; the
device's application messages on their way (``sends``: many at a time, in the order written; a
pending one has not reached the home node yet); the items that came early (the hold-back
buffer); the private keys of the device's published KeyPackages; the group messages received.

Everything secret is sealed by the vault with its table, group and row as associated data, like
the rest of state.db, so a sealed value cannot be moved to another group or row unnoticed. A
group's whole record is written in one statement and the caller groups writes that belong
together (a processed item, its next sequence number, the message it carried, the dropped held
copy) in one ``transaction``. ``DeviceState`` mixes this in; it provides ``_db``, ``vault`` and
``transaction``.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

from sonet.core import canonical

from ..state_history import READ_TYPES
from ..vault import Vault

__all__ = [
    "GroupState",
    "GroupRecord",
    "Outstanding",
    "GroupMessage",
    "HeldFull",
    "GROUPS_SCHEMA",
    "MAX_HELD_PER_GROUP",
    "MAX_HELD",
]

GROUPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS mls_groups (
    id BLOB PRIMARY KEY, next_seq INTEGER NOT NULL, created INTEGER NOT NULL, mls BLOB NOT NULL, public BLOB NOT NULL,
    info BLOB NOT NULL, own BLOB);
CREATE TABLE IF NOT EXISTS mls_sends (
    group_id BLOB NOT NULL, pos INTEGER NOT NULL, submitted INTEGER NOT NULL, item BLOB NOT NULL, PRIMARY KEY (group_id, pos));
CREATE TABLE IF NOT EXISTS mls_held (
    group_id BLOB NOT NULL, seq INTEGER NOT NULL, item BLOB NOT NULL, PRIMARY KEY (group_id, seq));
CREATE TABLE IF NOT EXISTS mls_key_packages (
    ref BLOB PRIMARY KEY, secret BLOB NOT NULL, created INTEGER NOT NULL, last_resort INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS group_inbox (
    group_id BLOB NOT NULL, seq INTEGER NOT NULL, sender TEXT NOT NULL, device INTEGER NOT NULL, id BLOB NOT NULL,
    sent_at INTEGER NOT NULL, received_at INTEGER NOT NULL, body BLOB NOT NULL, shown INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, seq));
"""

#: items held for one group until the gap before them fills, and for all groups; a node that
#: sends far-ahead items only fills these (the items beyond are refused, not acknowledged)
MAX_HELD_PER_GROUP = 1000
MAX_HELD = 5000
#: a group's MLS state (a big group's tree) is far beyond the default CBOR bound
_MAX_RECORD = 64 * 1024 * 1024


class HeldFull(Exception):
    """No room to hold another early item (the caps above)."""


@dataclass(frozen=True, kw_only=True)
class Outstanding:
    """The device's own submission to a group that is not ordered yet: at most one commit or
    proposal per group (``GroupRecord.own``), and any number of application messages
    (``GroupRecord.sends``). One with an empty ``ref`` was never made (it is made when sent)."""

    ref: bytes
    #: the ref of its first making: a remade one keeps it, so the caller waiting for it knows it
    origin: bytes
    #: "commit", "proposal" or "message" (an application message)
    kind: str
    #: the epoch it was made in
    epoch: int
    message: bytes = field(repr=False)
    welcome: bytes = field(repr=False)
    #: the group state after our own commit or proposal, adopted when it comes back ordered
    after: bytes | None = field(repr=False)
    #: how to make it again on top of a newer epoch (client/groups/ops.py)
    op: dict = field(repr=False)
    #: the home node answered GroupQueued for it
    submitted: bool
    #: it must be made again once the group has reached ``redo_epoch`` (another commit came first)
    redo: bool = False
    redo_epoch: int = 0

    def to_map(self) -> dict[str, Any]:
        return {
            "ref": self.ref, "origin": self.origin, "kind": self.kind, "epoch": self.epoch, "message": self.message, "welcome": self.welcome,
            "after": self.after, "op": self.op, "submitted": self.submitted, "redo": self.redo, "redo_epoch": self.redo_epoch,
        }  # fmt: skip

    @classmethod
    def from_map(cls, value: dict[str, Any]) -> Outstanding:
        return cls(**value)


@dataclass(frozen=True, kw_only=True)
class GroupRecord:
    id: bytes
    #: the sequence number of the next item to process
    next_seq: int
    created: int
    #: ``Group.to_bytes()`` of the current epoch
    mls: bytes = field(repr=False)
    #: ``PublicGroup.to_bytes()`` of the current epoch: what the group's rules are checked on
    #: (client/groups/rules.py)
    public: bytes = field(repr=False)
    name: str = ""
    topic: str = ""
    #: False once a commit removed this device
    active: bool = True
    own: Outstanding | None = None
    #: the device's application messages not ordered yet, in the order they were written
    #: (sent independently of each other; made again in that order after a ``stale_epoch``)
    sends: tuple[Outstanding, ...] = ()

    def but(self, **changes: Any) -> GroupRecord:
        return replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class GroupMessage:
    """An application message of a group, as received."""

    group: bytes
    seq: int
    sender: str
    device: int
    id: bytes
    sent_at: int
    received_at: int
    text: str
    #: the group's name on this device when the message was read
    group_name: str = ""
    #: "text", or an issue 17 type (client/state_history.py HISTORY_TYPES, GESTURE_TYPES)
    type: str = "text"
    #: its fields beyond the text: ``refers_to`` (hex), ``emoji``, ``remove``
    fields: dict = field(default_factory=dict)


class GroupState:
    _db: sqlite3.Connection
    vault: Vault

    # provided by DeviceState (client/state.py), the only class built on this one
    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    # Groups -----------------------------------------------------------------------------

    def save_group(self, record: GroupRecord) -> None:
        g = record.id
        info = canonical.dumps({"name": record.name, "topic": record.topic, "active": record.active})
        own = self.vault.seal(canonical.dumps(record.own.to_map()), b"group/own/" + g) if record.own is not None else None
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO mls_groups (id, next_seq, created, mls, public, info, own) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (g, record.next_seq, record.created, self.vault.seal(record.mls, b"group/mls/" + g),
                 self.vault.seal(record.public, b"group/public/" + g), self.vault.seal(info, b"group/info/" + g), own),
            )  # fmt: skip
            self._db.execute("DELETE FROM mls_sends WHERE group_id = ?", (g,))
            self._db.executemany(
                "INSERT INTO mls_sends (group_id, pos, submitted, item) VALUES (?, ?, ?, ?)",
                [(g, pos, int(s.submitted), self.vault.seal(canonical.dumps(s.to_map()), _send_where(g, pos)))
                 for pos, s in enumerate(record.sends)],
            )  # fmt: skip

    def group_record(self, group: bytes) -> GroupRecord | None:
        row = self._db.execute("SELECT id, next_seq, created, mls, public, info, own FROM mls_groups WHERE id = ?", (group,)).fetchone()
        return self._record(row) if row else None

    def group_records(self) -> list[GroupRecord]:
        rows = self._db.execute("SELECT id, next_seq, created, mls, public, info, own FROM mls_groups ORDER BY created, id").fetchall()
        return [self._record(r) for r in rows]

    def group_name(self, group: bytes) -> str:
        """A group's name on this device ("" if it has none or is not here); only its info is opened."""
        row = self._db.execute("SELECT info FROM mls_groups WHERE id = ?", (group,)).fetchone()
        return str(canonical.loads(self.vault.open_value(row[0], b"group/info/" + group))["name"]) if row else ""

    def group_ids(self) -> list[bytes]:
        """Every group's id (nothing opened)."""
        return [r[0] for r in self._db.execute("SELECT id FROM mls_groups ORDER BY id")]

    def group_records_with_own(self) -> list[GroupRecord]:
        """The groups with an own outstanding submission or message (only these are opened)."""
        rows = self._db.execute(
            "SELECT id, next_seq, created, mls, public, info, own FROM mls_groups"
            " WHERE own IS NOT NULL OR id IN (SELECT group_id FROM mls_sends) ORDER BY created, id"
        ).fetchall()
        return [self._record(r) for r in rows]

    def unsent_group_messages(self) -> int:
        """How many of the device's group messages have not reached the home node yet."""
        return self._db.execute("SELECT count(*) FROM mls_sends WHERE submitted = 0").fetchone()[0]

    def _record(self, row: tuple) -> GroupRecord:
        g, next_seq, created, mls, public, info, own = row
        meta = canonical.loads(self.vault.open_value(info, b"group/info/" + g))
        outstanding = None
        if own is not None:
            outstanding = Outstanding.from_map(canonical.loads(self.vault.open_value(own, b"group/own/" + g), max_bytes=_MAX_RECORD))
        return GroupRecord(
            id=g, next_seq=next_seq, created=created, mls=self.vault.open_value(mls, b"group/mls/" + g),
            public=self.vault.open_value(public, b"group/public/" + g), name=meta["name"],
            topic=meta["topic"], active=meta["active"], own=outstanding, sends=self._sends(g),
        )  # fmt: skip

    def _sends(self, g: bytes) -> tuple[Outstanding, ...]:
        rows = self._db.execute("SELECT pos, item FROM mls_sends WHERE group_id = ? ORDER BY pos", (g,)).fetchall()
        return tuple(
            Outstanding.from_map(canonical.loads(self.vault.open_value(item, _send_where(g, pos)), max_bytes=_MAX_RECORD)) for pos, item in rows
        )

    # Items that came early ---------------------------------------------------------------

    def hold_group_item(self, group: bytes, seq: int, item: bytes) -> None:
        """Keep ``item`` (a GroupItem's bytes) until the items before it came; HeldFull when
        the caps are reached (nothing stored). Holding the same one again changes nothing."""
        with self.transaction():
            if self._db.execute("SELECT 1 FROM mls_held WHERE group_id = ? AND seq = ?", (group, seq)).fetchone():
                return
            (mine,) = self._db.execute("SELECT count(*) FROM mls_held WHERE group_id = ?", (group,)).fetchone()
            (total,) = self._db.execute("SELECT count(*) FROM mls_held").fetchone()
            if mine >= MAX_HELD_PER_GROUP or total >= MAX_HELD:
                raise HeldFull(f"{mine} items of this group ({total} in all) already wait for earlier ones")
            where = b"group/held/" + group + b"/" + str(seq).encode()
            self._db.execute("INSERT INTO mls_held (group_id, seq, item) VALUES (?, ?, ?)", (group, seq, self.vault.seal(item, where)))

    def held_group_item(self, group: bytes, seq: int) -> bytes | None:
        row = self._db.execute("SELECT item FROM mls_held WHERE group_id = ? AND seq = ?", (group, seq)).fetchone()
        return self.vault.open_value(row[0], b"group/held/" + group + b"/" + str(seq).encode()) if row else None

    def held_group_seqs(self, group: bytes) -> list[int]:
        return [r[0] for r in self._db.execute("SELECT seq FROM mls_held WHERE group_id = ? ORDER BY seq", (group,))]

    def groups_with_held(self) -> list[bytes]:
        """The groups with items held for a gap before them."""
        return [bytes(r[0]) for r in self._db.execute("SELECT DISTINCT group_id FROM mls_held ORDER BY group_id")]

    def drop_held_group_items(self, group: bytes, *, below: int) -> None:
        """Forget the held items of ``group`` before ``below`` (processed, or before we joined)."""
        with self.transaction():
            self._db.execute("DELETE FROM mls_held WHERE group_id = ? AND seq < ?", (group, below))

    # KeyPackage private keys -------------------------------------------------------------

    def save_key_package_secret(self, ref: bytes, secret: bytes, *, created: int, last_resort: bool) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO mls_key_packages (ref, secret, created, last_resort) VALUES (?, ?, ?, ?)",
                (ref, self.vault.seal(secret, b"group/key_package/" + ref), created, int(last_resort)),
            )

    def key_package_secret(self, ref: bytes) -> tuple[bytes, bool] | None:
        """(the sealed secret, is it the last-resort one) of the KeyPackage ``ref``."""
        row = self._db.execute("SELECT secret, last_resort FROM mls_key_packages WHERE ref = ?", (ref,)).fetchone()
        return (self.vault.open_value(row[0], b"group/key_package/" + ref), bool(row[1])) if row else None

    def delete_key_package_secret(self, ref: bytes) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM mls_key_packages WHERE ref = ?", (ref,))

    def drop_last_resort_key_packages(self, *, keep: bytes) -> None:
        """A new last-resort KeyPackage replaces the old one (the node keeps only one)."""
        with self.transaction():
            self._db.execute("DELETE FROM mls_key_packages WHERE last_resort = 1 AND ref != ?", (keep,))

    # Group messages ----------------------------------------------------------------------

    def store_group_message(self, message: GroupMessage) -> None:
        """A text, reply, file, poll, location, contact card or event (READ_TYPES) is unread
        until the group's conversation is read (client/history.py); a reaction, edit, delete,
        vote or close never is (it changes a message, client/history_fold.py)."""
        where = b"group/inbox/" + message.group + b"/" + str(message.seq).encode()
        extra = self.vault.seal(canonical.dumps(message.fields), where + b"/extra") if message.fields else None
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO group_inbox (group_id, seq, sender, device, id, sent_at, received_at, body, unread, type, extra)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (message.group, message.seq, message.sender, message.device, message.id, message.sent_at, message.received_at,
                 self.vault.seal(message.text.encode(), where), int(message.type in READ_TYPES), message.type, extra),
            )  # fmt: skip

    def unshown_group_messages(self) -> list[GroupMessage]:
        """The group messages not marked shown yet, in the order they were received (a group's
        in its order), each with its group's current name."""
        rows = self._db.execute(
            "SELECT group_id, seq, sender, device, id, sent_at, received_at, body, type, extra FROM group_inbox WHERE shown = 0 ORDER BY rowid"
        ).fetchall()
        names: dict[bytes, str] = {}
        for g in {r[0] for r in rows}:
            record = self.group_record(g)
            names[g] = record.name if record is not None else ""
        return [
            GroupMessage(
                group=r[0], seq=r[1], sender=r[2], device=r[3], id=r[4], sent_at=r[5], received_at=r[6],
                text=self.vault.open_value(r[7], b"group/inbox/" + r[0] + b"/" + str(r[1]).encode()).decode(), group_name=names[r[0]],
                type=r[8], fields=canonical.loads(self.vault.open_value(r[9], b"group/inbox/" + r[0] + b"/" + str(r[1]).encode() + b"/extra"))
                if r[9] is not None else {},
            )  # fmt: skip
            for r in rows
        ]

    def mark_group_messages_shown(self, keys: list[tuple[bytes, int]]) -> None:
        with self.transaction():
            self._db.executemany("UPDATE group_inbox SET shown = 1 WHERE group_id = ? AND seq = ?", keys)

    def group_message_senders(self, group: bytes, ids: list[bytes]) -> dict[str, list[bytes]]:
        """Sender account -> the ``ids`` (content ids) of ``group`` it wrote (for read receipts)."""
        senders: dict[str, list[bytes]] = {}
        for i in ids:
            row = self._db.execute("SELECT sender FROM group_inbox WHERE group_id = ? AND id = ?", (group, i)).fetchone()
            if row is not None:
                senders.setdefault(row[0], []).append(i)
        return senders


def _send_where(group: bytes, pos: int) -> bytes:
    return b"group/send/" + group + b"/" + str(pos).encode()
