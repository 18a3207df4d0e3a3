"""The presence half of a device's state (client/state.py; client/presence.py): the newest
``presence`` each sender sent, kept in ``inbox`` like typing notices. Only the newest one of a
sender is kept: a contact announces itself every few minutes, and older ones say nothing more.
``DeviceState`` mixes this in; it provides ``_db``, ``vault`` and ``transaction``."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager

from sonet.core import canonical

from .vault import Vault

__all__ = ["PresenceState", "PresenceSeen"]

_TYPE = "presence"


class PresenceSeen:
    """A sender's newest presence as kept: "online" / "offline" and when it was sent."""

    __slots__ = ("presence", "sent_at")

    def __init__(self, presence: str, sent_at: int) -> None:
        self.presence = presence
        self.sent_at = sent_at


class PresenceState:
    _db: sqlite3.Connection
    vault: Vault

    # provided by DeviceState (client/state.py), the only class built on this one
    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def newest_presence(self, sender: str) -> PresenceSeen | None:
        row = self._db.execute(
            "SELECT id, sent_at, body FROM inbox WHERE sender = ? AND type = ? ORDER BY sent_at DESC, rowid DESC LIMIT 1", (sender, _TYPE)
        ).fetchone()
        if row is None:
            return None
        fields = canonical.loads(self.vault.open_value(row[2], b"inbox/" + row[0]))
        return PresenceSeen(str(fields.get("presence", "offline")), row[1])

    def keep_newest_presence(self, sender: str) -> None:
        """Drop every ``presence`` of ``sender`` but the newest (by ``sent_at``)."""
        with self.transaction():
            self._db.execute(
                "DELETE FROM inbox WHERE sender = ? AND type = ? AND rowid NOT IN "
                "(SELECT rowid FROM inbox WHERE sender = ? AND type = ? ORDER BY sent_at DESC, rowid DESC LIMIT 1)",
                (sender, _TYPE, sender, _TYPE),
            )
