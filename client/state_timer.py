"""The disappearing-messages half of a device's state (client/state.py): each conversation's
timer, and when each kept message disappears (client/timer.py uses these).

``timers``: a conversation's key (a contact's address, or a group's id as hex) -> its timer in
ms (0: off) and the ``(sent_at, id)`` of the timer message that set it: the latest one wins on
every device, whichever order they arrive in (ties by id).

``expiring``: a message id and when it disappears; ``erase_expired`` deletes every row that
holds a message of that id (``inbox``, ``sent``, ``pending``, ``group_inbox``, ``group_sent`` and
its receipts' ``group_sent_devices``, ``deleted_here``) once its time came: its sealed body and fields go with the row, and the
database is opened with ``secure_delete`` (client/state.py) so the freed pages are zeroed.
``DeviceState`` mixes this in; it provides ``_db`` and ``transaction``.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager

__all__ = ["TIMER_SCHEMA", "TimerState", "ERASED_TABLES"]

TIMER_SCHEMA = """
CREATE TABLE IF NOT EXISTS timers (
    conversation TEXT PRIMARY KEY, timer INTEGER NOT NULL, set_at INTEGER NOT NULL, set_id BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS expiring (id BLOB NOT NULL, expires INTEGER NOT NULL, PRIMARY KEY (id, expires));
CREATE INDEX IF NOT EXISTS expiring_by_time ON expiring (expires);
"""

#: every table that keeps a message (or what names it) by its id
ERASED_TABLES = ("inbox", "sent", "pending", "group_inbox", "group_sent", "group_sent_devices", "deleted_here")
#: ids per DELETE statement (SQLite's default limit of host parameters is 999)
_IDS_PER_QUERY = 500


class TimerState:
    _db: sqlite3.Connection

    # provided by DeviceState (client/state.py), the only class built on this one
    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def conversation_timer(self, conversation: str) -> int:
        """The conversation's timer in ms (0: off)."""
        row = self._db.execute("SELECT timer FROM timers WHERE conversation = ?", (conversation,)).fetchone()
        return int(row[0]) if row else 0

    def set_conversation_timer(self, conversation: str, timer: int, *, set_at: int, set_id: bytes) -> bool:
        """Take a timer message's setting unless a later one is kept; True if it is now the one."""
        with self.transaction():
            row = self._db.execute("SELECT set_at, set_id FROM timers WHERE conversation = ?", (conversation,)).fetchone()
            if row is not None and (row[0], bytes(row[1])) >= (set_at, set_id):
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO timers (conversation, timer, set_at, set_id) VALUES (?, ?, ?, ?)",
                (conversation, timer, set_at, set_id),
            )
            return True

    def note_expiry(self, msg_id: bytes, expires: int) -> None:
        """The message ``msg_id`` kept on this device disappears at ``expires`` (ms)."""
        with self.transaction():
            self._db.execute("INSERT OR IGNORE INTO expiring (id, expires) VALUES (?, ?)", (msg_id, expires))

    def message_expiry(self, msg_id: bytes) -> int | None:
        """When the kept message ``msg_id`` disappears (ms), or None."""
        return self._db.execute("SELECT min(expires) FROM expiring WHERE id = ?", (msg_id,)).fetchone()[0]

    def next_expiry(self) -> int | None:
        """When the next kept message disappears (ms), or None."""
        return self._db.execute("SELECT min(expires) FROM expiring").fetchone()[0]

    def erase_expired(self, now: int) -> list[bytes]:
        """Delete every message whose time came by ``now``; their ids."""
        with self.transaction():
            ids = [bytes(r[0]) for r in self._db.execute("SELECT DISTINCT id FROM expiring WHERE expires <= ?", (now,))]
            for start in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[start : start + _IDS_PER_QUERY]
                marks = ",".join("?" * len(chunk))
                for table in ERASED_TABLES:
                    self._db.execute(f"DELETE FROM {table} WHERE id IN ({marks})", chunk)  # noqa: S608 - fixed names
            self._db.execute("DELETE FROM expiring WHERE expires <= ?", (now,))
        return ids
