"""The history half of a device's state (client/state.py): what client/history.py reads a
conversation's messages from, and the read marks of received ones.

A conversation's messages are already on the device, sealed by the vault: received 1:1 texts
(and this account's texts from its other devices, synced) in ``inbox``, received group texts in
``group_inbox``, and this device's own texts in ``sent`` and ``group_sent``, whose ``body``
column keeps what was sent (sealed like the inbox; added for the history, so a message sent
before it has none). A body is the content's fields as a canonical map (``{"text": ...}`` for a
text), like an inbox row's, so other content types can keep what they need in it.

Issue 17: a reply is a message of its own (``HISTORY_TYPES``); a reaction, edit or delete
(``GESTURE_TYPES``) is kept like one (in ``sent`` / ``inbox`` with its type, fields
``refers_to`` (hex), ``emoji``, ``remove``, ``text``; in ``group_inbox`` with ``type`` and the
fields beyond the text sealed in ``extra``) and folded into the message it names when the
history is read (client/history_fold.py, client/state_gestures.py).

Read marks: ``unread`` is 1 on a received text until the user read its conversation
(``mark_direct_read`` / ``mark_group_read``). Rows stored before the column existed count as
read: a device that upgrades does not show its whole past as new. ``DeviceState`` mixes this
in; it provides ``_db`` and ``vault``.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sonet.core import canonical
from sonet.core.content import Content

from .file_fields import file_fields
from .rich_fields import RICH_MESSAGES, rich_fields
from .vault import Vault

__all__ = [
    "HistoryState",
    "StoredMessage",
    "HISTORY_TYPES",
    "GESTURE_TYPES",
    "GROUP_INBOX_COLUMNS",
    "INBOX_COLUMNS",
    "SENT_BODY_COLUMNS",
    "HISTORY_INDEXES",
    "seal_body",
    "READ_TYPES",
    "content_fields",
    "sent_where",
    "group_sent_where",
]

#: the inbox types that are messages of a conversation (receipts, typing and alerts are not:
#: they change states or are shown once). Issue 17's content types join here.
HISTORY_TYPES = ("text", "reply", "file", "timer", *RICH_MESSAGES)
#: the messages a user reads: receipted (delivered, read) and counted unread, 1:1 and in groups
READ_TYPES = ("text", "reply", "file", *RICH_MESSAGES)
#: the inbox types that change the message they name (client/history_fold.py)
GESTURE_TYPES = ("reaction", "edit", "delete", "vote", "poll_close")

#: columns added to ``inbox`` and ``group_inbox`` for the read marks
INBOX_COLUMNS = {"unread": "INTEGER NOT NULL DEFAULT 0"}
#: and to ``group_inbox``: the content type, and the fields beyond the text (sealed; NULL for a text)
GROUP_INBOX_COLUMNS = {**INBOX_COLUMNS, "type": "TEXT NOT NULL DEFAULT 'text'", "extra": "BLOB"}
#: columns added to ``sent`` and ``group_sent``: the content type and its sealed fields
SENT_BODY_COLUMNS = {"type": "TEXT NOT NULL DEFAULT 'text'", "body": "BLOB"}
#: a conversation's newest messages without reading every row (the chat app asks often)
HISTORY_INDEXES = """
CREATE INDEX IF NOT EXISTS inbox_by_peer ON inbox (peer, type, sent_at);
CREATE INDEX IF NOT EXISTS inbox_unread ON inbox (peer) WHERE unread = 1;
CREATE INDEX IF NOT EXISTS sent_by_recipient ON sent (recipient, sent_at);
CREATE INDEX IF NOT EXISTS group_inbox_by_time ON group_inbox (group_id, sent_at);
CREATE INDEX IF NOT EXISTS group_inbox_unread ON group_inbox (group_id) WHERE unread = 1;
CREATE INDEX IF NOT EXISTS group_sent_by_group ON group_sent (group_id, sent_at);
CREATE INDEX IF NOT EXISTS group_inbox_by_id ON group_inbox (id);
"""


def sent_where(msg_id: bytes) -> bytes:
    return b"sent/" + msg_id


def group_sent_where(msg_id: bytes) -> bytes:
    return b"group/sent/" + msg_id


def content_fields(content: Content) -> dict:
    """What is kept of a message one writes or receives (a text, reply, reaction, edit or
    delete): its text and what it refers to (as hex, as ``recv --json`` prints ids)."""
    fields: dict = {}
    if content.text is not None:
        fields["text"] = content.text
    if content.refers_to is not None:
        fields["refers_to"] = content.refers_to.hex()
    if content.emoji is not None:
        fields.update(emoji=content.emoji, remove=bool(content.remove))
    if content.timer is not None:  # a timer (client/timer.py)
        fields["timer"] = content.timer
    if content.expires is not None:  # a disappearing message: when
        fields["expires"] = content.expires
    if content.file is not None:  # a file: where it lies, its key and digests (client/file_fields.py)
        fields["file"] = file_fields(content.file)
    fields.update(rich_fields(content))  # a location, contact, event, poll, vote or call (client/rich_fields.py)
    return fields


def seal_body(vault: Vault, fields: dict, where: bytes) -> bytes:
    """A sent message's fields as ``body`` holds them."""
    return vault.seal(canonical.dumps(fields), where)


@dataclass(frozen=True, kw_only=True)
class StoredMessage:
    """One message of a conversation as the device keeps it (client/history.py makes a
    ``HistoryItem`` of it)."""

    id: bytes
    #: the account that wrote it; "" for this device's own (``own``)
    sender: str
    at: int  # sent_at (ms)
    type: str
    fields: dict
    #: sent by this device: how far it got is in ``sent`` / ``group_sent`` (DeviceState.sent_message)
    own: bool
    #: a received one the user has not read yet
    unread: bool
    #: the order of its table (rowid; a group message's sequence number), for equal times
    order: int


class HistoryState:
    _db: sqlite3.Connection
    vault: Vault

    # provided by DeviceState (client/state.py), the only class built on this one
    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    # One conversation --------------------------------------------------------------------

    def direct_history(self, peer: str, limit: int) -> list[StoredMessage]:
        """The newest ``limit`` messages of the 1:1 conversation with ``peer`` from each side
        (this device's, the inbox's), newest first; the caller merges and cuts."""
        types = ", ".join("?" * len(HISTORY_TYPES))
        own = self._db.execute(
            f"SELECT id, sent_at, type, body, rowid FROM sent WHERE recipient = ? AND type IN ({types}) ORDER BY sent_at DESC, rowid DESC LIMIT ?",
            (peer, *HISTORY_TYPES, limit),
        ).fetchall()
        received = self._db.execute(
            f"SELECT id, sender, sent_at, type, body, unread, rowid FROM inbox WHERE peer = ? AND type IN ({types})"
            " ORDER BY sent_at DESC, rowid DESC LIMIT ?",
            (peer, *HISTORY_TYPES, limit),
        ).fetchall()
        return [
            StoredMessage(
                id=r[0], sender="", at=r[1], type=r[2], fields=self._body(r[3], sent_where(r[0])), own=True, unread=False, order=r[4]
            )
            for r in own
        ] + [
            StoredMessage(
                id=r[0], sender=r[1], at=r[2], type=r[3], fields=canonical.loads(self.vault.open_value(r[4], b"inbox/" + r[0])),
                own=False, unread=bool(r[5]), order=r[6],
            )  # fmt: skip
            for r in received
        ]

    def group_history(self, group: bytes, limit: int) -> list[StoredMessage]:
        """As ``direct_history``, for a group."""
        types = ", ".join("?" * len(HISTORY_TYPES))
        own = self._db.execute(
            f"SELECT id, sent_at, type, body, rowid FROM group_sent WHERE group_id = ? AND type IN ({types})"
            " ORDER BY sent_at DESC, rowid DESC LIMIT ?",
            (group, *HISTORY_TYPES, limit),
        ).fetchall()
        received = self._db.execute(
            f"SELECT id, sender, sent_at, body, unread, seq, type, extra FROM group_inbox WHERE group_id = ? AND type IN ({types})"
            " ORDER BY sent_at DESC, seq DESC LIMIT ?",
            (group, *HISTORY_TYPES, limit),
        ).fetchall()
        return [
            StoredMessage(
                id=r[0], sender="", at=r[1], type=r[2], fields=self._body(r[3], group_sent_where(r[0])), own=True, unread=False, order=r[4]
            )
            for r in own
        ] + [self.group_inbox_message(group, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in received]

    def group_inbox_message(
        self, group: bytes, msg_id: bytes, sender: str, at: int, body: bytes, unread: int, seq: int, kind: str, extra: bytes | None
    ) -> StoredMessage:
        """A ``group_inbox`` row as a StoredMessage: its text and the sealed fields beyond it."""
        where = b"group/inbox/" + group + b"/" + str(seq).encode()
        fields = {"text": self.vault.open_value(body, where).decode()}
        if extra is not None:
            fields.update(canonical.loads(self.vault.open_value(extra, where + b"/extra")))
        return StoredMessage(id=msg_id, sender=sender, at=at, type=kind, fields=fields, own=False, unread=bool(unread), order=seq)

    def _body(self, sealed: bytes | None, where: bytes) -> dict:
        return canonical.loads(self.vault.open_value(sealed, where)) if sealed is not None else {}

    def receipts_from(self, peer: str) -> dict[bytes, str]:
        """What ``peer``'s receipts say of the messages they name: id -> "delivered" or
        "read" (for the texts this account's other devices sent: this device has no ``sent``
        row for them, only the receipts that came to the account)."""
        rows = self._db.execute("SELECT id, body FROM inbox WHERE sender = ? AND type = 'receipt' ORDER BY rowid", (peer,)).fetchall()
        states: dict[bytes, str] = {}
        for msg_id, body in rows:
            fields = canonical.loads(self.vault.open_value(body, b"inbox/" + msg_id))
            if fields.get("receipt") not in ("delivered", "read"):
                continue
            for named in fields.get("ids", ()):
                key = bytes.fromhex(named)
                if states.get(key) != "read":
                    states[key] = fields["receipt"]
        return states

    # Every conversation ------------------------------------------------------------------

    def direct_peers(self) -> list[str]:
        """Every 1:1 conversation with a message: its peer."""
        types = ", ".join("?" * len(HISTORY_TYPES))
        rows = self._db.execute(
            f"SELECT recipient FROM sent UNION SELECT peer FROM inbox WHERE type IN ({types}) ORDER BY 1", HISTORY_TYPES
        ).fetchall()
        return [r[0] for r in rows]

    def unread_counts(self, me: str) -> tuple[dict[str, int], dict[bytes, int]]:
        """Received texts not read yet, per 1:1 peer and per group (``me``'s own synced texts
        are never unread)."""
        types = ", ".join("?" * len(HISTORY_TYPES))
        direct = self._db.execute(
            f"SELECT peer, count(*) FROM inbox WHERE unread = 1 AND sender != ? AND type IN ({types}) GROUP BY peer",
            (me, *HISTORY_TYPES),
        ).fetchall()
        groups = self._db.execute(
            "SELECT group_id, count(*) FROM group_inbox WHERE unread = 1 AND sender != ? GROUP BY group_id", (me,)
        ).fetchall()
        return dict(direct), dict(groups)

    # Read marks --------------------------------------------------------------------------

    def unread_direct(self, peer: str, me: str) -> list[tuple[str, bytes]]:
        """(sender, id) of the received texts of the conversation not read yet, in the order stored."""
        types = ", ".join("?" * len(HISTORY_TYPES))
        return self._db.execute(
            f"SELECT sender, id FROM inbox WHERE peer = ? AND unread = 1 AND sender != ? AND type IN ({types}) ORDER BY rowid",
            (peer, me, *HISTORY_TYPES),
        ).fetchall()

    def unread_group(self, group: bytes, me: str) -> list[tuple[str, bytes]]:
        return self._db.execute(
            "SELECT sender, id FROM group_inbox WHERE group_id = ? AND unread = 1 AND sender != ? ORDER BY seq", (group, me)
        ).fetchall()

    def mark_direct_read(self, peer: str) -> None:
        with self.transaction():
            self._db.execute("UPDATE inbox SET unread = 0 WHERE peer = ? AND unread = 1", (peer,))

    def mark_ids_read(self, ids: list[bytes]) -> None:
        """The received texts (1:1 or group) of these content ids are read (``recv --read``)."""
        with self.transaction():
            self._db.executemany("UPDATE inbox SET unread = 0 WHERE id = ? AND unread = 1", [(i,) for i in ids])
            self._db.executemany("UPDATE group_inbox SET unread = 0 WHERE unread = 1 AND id = ?", [(i,) for i in ids])

    def mark_group_read(self, group: bytes) -> None:
        with self.transaction():
            self._db.execute("UPDATE group_inbox SET unread = 0 WHERE group_id = ? AND unread = 1", (group,))

    def group_created(self) -> dict[bytes, int]:
        """Every group on this device -> when it was created here (nothing opened)."""
        return dict(self._db.execute("SELECT id, created FROM mls_groups").fetchall())
