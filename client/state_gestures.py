"""The gestures half of a device's state (client/state.py): find a kept message by its content
id, read a conversation's reactions, edits and deletes, erase a deleted message's text, and the
messages deleted on this device only.

Replies, reactions, edits and deletes are kept where texts are (client/state_history.py): this
device's own in ``sent`` / ``group_sent``, received ones in ``inbox`` / ``group_inbox``, each
with its type. Deleting for everyone erases: the text of the message (and of every edit of it)
is overwritten in place with an empty sealed body, so no later read of state.db finds it;
the row, its id and the delete stay, for the "deleted" placeholder and to recognise a copy
delivered again. Deleting for me hides the message on this device (``deleted_here``) and erases
it the same way. ``DeviceState`` mixes this in; it provides ``_db``, ``vault`` and
``transaction``.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sonet.core import canonical
from sonet.core.groups.items import group_hex

from .state_history import GESTURE_TYPES, HISTORY_TYPES, StoredMessage, group_sent_where, seal_body, sent_where
from .vault import Vault

__all__ = ["GESTURES_SCHEMA", "GestureState", "KeptMessage"]

GESTURES_SCHEMA = """
CREATE TABLE IF NOT EXISTS deleted_here (id BLOB PRIMARY KEY, at INTEGER NOT NULL);
"""

_MESSAGES = ", ".join(f"'{t}'" for t in HISTORY_TYPES)


@dataclass(frozen=True, kw_only=True)
class KeptMessage:
    """A message (a text or reply) this device keeps, found by its content id."""

    id: bytes
    #: the 1:1 peer's address, or None in a group
    peer: str | None
    group: bytes | None
    #: the account that wrote it (this account for its own, from any of its devices)
    author: str
    at: int
    type: str
    #: written on this device (``sent`` / ``group_sent``)
    own: bool
    #: still waiting on this device to be sent (1:1: ``sent`` state "pending")
    pending: bool

    @property
    def conversation(self) -> str:
        """The conversation's key (client/history.py)."""
        return self.peer if self.group is None else group_hex(self.group)  # type: ignore[return-value]


class GestureState:
    _db: sqlite3.Connection
    vault: Vault

    # provided by DeviceState (client/state.py), the only class built on this one
    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def find_messages(self, msg_id: bytes, me: str) -> list[KeptMessage]:
        """Every text or reply with content id ``msg_id``, one per conversation (this device's
        own row first: a text sent here and synced back is this device's). One, as a rule: a
        member of two groups can reuse an id of one in the other, which is why the gestures of
        a conversation look only in it (``find_message``)."""
        found: dict[tuple[str | None, bytes | None], KeptMessage] = {}

        def keep(kept: KeptMessage) -> None:
            found.setdefault((kept.peer, kept.group), kept)

        for r in self._db.execute(f"SELECT recipient, sent_at, type, node_state FROM sent WHERE id = ? AND type IN ({_MESSAGES})", (msg_id,)):
            keep(KeptMessage(id=msg_id, peer=r[0], group=None, author=me, at=r[1], type=r[2], own=True, pending=r[3] == "pending"))
        for r in self._db.execute(f"SELECT group_id, sent_at, type FROM group_sent WHERE id = ? AND type IN ({_MESSAGES})", (msg_id,)):
            keep(KeptMessage(id=msg_id, peer=None, group=r[0], author=me, at=r[1], type=r[2], own=True, pending=False))
        for r in self._db.execute(f"SELECT peer, sender, sent_at, type FROM inbox WHERE id = ? AND type IN ({_MESSAGES})", (msg_id,)):
            keep(KeptMessage(id=msg_id, peer=r[0], group=None, author=r[1], at=r[2], type=r[3], own=False, pending=False))
        rows = self._db.execute(f"SELECT group_id, sender, sent_at, type FROM group_inbox WHERE id = ? AND type IN ({_MESSAGES}) ORDER BY seq", (msg_id,))
        for r in rows:
            keep(KeptMessage(id=msg_id, peer=None, group=r[0], author=r[1], at=r[2], type=r[3], own=False, pending=False))
        return list(found.values())

    def find_message(self, msg_id: bytes, me: str, *, peer: str | None = None, group: bytes | None = None) -> KeptMessage | None:
        """The text or reply with content id ``msg_id`` in the conversation with ``peer`` or
        in ``group`` (the first in the order of ``find_messages`` when neither is given)."""
        for kept in self.find_messages(msg_id, me):
            if (peer is None and group is None) or (kept.peer, kept.group) == (peer, group):
                return kept
        return None

    def message_text(self, kept: KeptMessage) -> dict:
        """The fields of a message ``find_message`` found (its text, a reply's ``refers_to``)."""
        if kept.own:
            table, where = ("sent", sent_where(kept.id)) if kept.group is None else ("group_sent", group_sent_where(kept.id))
            row = self._db.execute(f"SELECT body FROM {table} WHERE id = ?", (kept.id,)).fetchone()
            return canonical.loads(self.vault.open_value(row[0], where)) if row and row[0] is not None else {}
        if kept.group is None:
            row = self._db.execute("SELECT body FROM inbox WHERE id = ?", (kept.id,)).fetchone()
            return canonical.loads(self.vault.open_value(row[0], b"inbox/" + kept.id)) if row else {}
        row = self._db.execute(
            "SELECT id, sender, sent_at, body, unread, seq, type, extra FROM group_inbox WHERE group_id = ? AND id = ? ORDER BY seq LIMIT 1",
            (kept.group, kept.id),
        ).fetchone()
        return self.group_inbox_message(kept.group, *row).fields if row else {}  # type: ignore[attr-defined]

    def conversation_gestures(
        self, *, peer: str | None = None, group: bytes | None = None, since: int = 0, kinds: tuple[str, ...] = GESTURE_TYPES
    ) -> list[StoredMessage]:
        """Every reaction, edit and delete (or those of ``kinds``) kept of a conversation (this
        device's and received) made at ``since`` or later, oldest first."""
        found: list[StoredMessage] = []
        gestures = ", ".join(f"'{k}'" for k in kinds if k in GESTURE_TYPES) or "''"
        if group is None:
            own = self._db.execute(
                f"SELECT id, sent_at, type, body, rowid FROM sent WHERE recipient = ? AND type IN ({gestures}) AND sent_at >= ?", (peer, since)
            )
            for r in own.fetchall():
                fields = canonical.loads(self.vault.open_value(r[3], sent_where(r[0]))) if r[3] is not None else {}
                found.append(StoredMessage(id=r[0], sender="", at=r[1], type=r[2], fields=fields, own=True, unread=False, order=r[4]))
            received = self._db.execute(
                f"SELECT id, sender, sent_at, type, body, rowid FROM inbox WHERE peer = ? AND type IN ({gestures}) AND sent_at >= ?", (peer, since)
            )
            for r in received.fetchall():
                fields = canonical.loads(self.vault.open_value(r[4], b"inbox/" + r[0]))
                found.append(StoredMessage(id=r[0], sender=r[1], at=r[2], type=r[3], fields=fields, own=False, unread=False, order=r[5]))
        else:
            own = self._db.execute(
                f"SELECT id, sent_at, type, body, rowid FROM group_sent WHERE group_id = ? AND type IN ({gestures}) AND sent_at >= ?", (group, since)
            )
            for r in own.fetchall():
                fields = canonical.loads(self.vault.open_value(r[3], group_sent_where(r[0]))) if r[3] is not None else {}
                found.append(StoredMessage(id=r[0], sender="", at=r[1], type=r[2], fields=fields, own=True, unread=False, order=r[4]))
            received = self._db.execute(
                f"SELECT id, sender, sent_at, body, unread, seq, type, extra FROM group_inbox WHERE group_id = ? AND type IN ({gestures})"
                " AND sent_at >= ?",
                (group, since),
            )
            found += [self.group_inbox_message(group, *r) for r in received.fetchall()]  # type: ignore[attr-defined]
        # by the author's time, then as kept (one sender's arrive in the order sent); only the
        # order of one author's own gestures matters (history_fold.py), so every device agrees
        found.sort(key=lambda m: (m.at, m.order))
        return found

    def has_deletes(self, *, peer: str | None = None, group: bytes | None = None) -> bool:
        """Whether a conversation holds any delete (cheap: no row is opened)."""
        if group is None:
            return self._db.execute(
                "SELECT 1 FROM inbox WHERE peer = ? AND type = 'delete' UNION ALL SELECT 1 FROM sent WHERE recipient = ? AND type = 'delete' LIMIT 1",
                (peer, peer),
            ).fetchone() is not None  # fmt: skip
        return self._db.execute(
            "SELECT 1 FROM group_inbox WHERE group_id = ? AND type = 'delete' UNION ALL SELECT 1 FROM group_sent WHERE group_id = ? AND type = 'delete' LIMIT 1",
            (group, group),
        ).fetchone() is not None  # fmt: skip

    def erase_message(self, kept: KeptMessage, edits: list[StoredMessage]) -> None:
        """Overwrite the text of ``kept`` and of its ``edits`` (rows of its conversation) in place."""
        with self.transaction():
            self._erase(kept.id, kept.own, kept.group, keep={})
            for edit in edits:
                self._erase(edit.id, edit.own, kept.group, keep={"refers_to": edit.fields.get("refers_to", "")}, seq=edit.order)

    def _erase(self, msg_id: bytes, own: bool, group: bytes | None, *, keep: dict, seq: int | None = None) -> None:
        if own and group is None:
            self._db.execute("UPDATE sent SET body = ? WHERE id = ?", (seal_body(self.vault, keep, sent_where(msg_id)), msg_id))
        elif own:
            self._db.execute("UPDATE group_sent SET body = ? WHERE id = ?", (seal_body(self.vault, keep, group_sent_where(msg_id)), msg_id))
        elif group is None:
            self._db.execute("UPDATE inbox SET body = ? WHERE id = ?", (self.vault.seal(canonical.dumps(keep), b"inbox/" + msg_id), msg_id))
        else:
            rows = self._db.execute("SELECT seq FROM group_inbox WHERE group_id = ? AND id = ?", (group, msg_id)).fetchall()
            for (row_seq,) in rows:
                if seq is not None and row_seq != seq:
                    continue
                where = b"group/inbox/" + group + b"/" + str(row_seq).encode()
                extra = self.vault.seal(canonical.dumps(keep), where + b"/extra") if keep else None
                self._db.execute(
                    "UPDATE group_inbox SET body = ?, extra = ? WHERE group_id = ? AND seq = ?", (self.vault.seal(b"", where), extra, group, row_seq)
                )

    def hide_here(self, msg_id: bytes, at: int) -> None:
        """Delete for me: this device no longer shows the message."""
        with self.transaction():
            self._db.execute("INSERT OR IGNORE INTO deleted_here (id, at) VALUES (?, ?)", (msg_id, at))

    def hidden_here(self) -> set[bytes]:
        return {r[0] for r in self._db.execute("SELECT id FROM deleted_here")}
