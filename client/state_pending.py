"""The pending half of a device's state (client/state.py): texts that could not be sent yet
because the recipient's keys could not be fetched (its node unreachable), kept until the device
can send them (client/pending.py).

Each one is a row of ``sent`` in state "pending" (so ``sonet sent`` lists it, with why it
waits in ``code``/``note``) plus a row of ``pending`` holding its text, sealed by the vault
like every other message text, and its attempts. Sending it turns the ``sent`` row into an
ordinary one (same id) and deletes the ``pending`` row in one transaction; giving up marks the
``sent`` row "failed" with the reason and deletes the ``pending`` row. The text itself stays in
``sent`` for the history (client/state_history.py). A reply, reaction, edit or delete waits
the same way (issue 17, client/gestures.py): its type and fields are those of its ``sent`` row,
its ``pending`` row holds its text ("" for a reaction or delete). ``DeviceState`` mixes this
in; it provides ``_db``, ``vault`` and ``transaction``.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sonet.core import canonical

from .state_history import seal_body, sent_where
from .vault import Vault

__all__ = ["PendingState", "PendingSend", "PendingFull", "PENDING_SCHEMA", "MAX_PENDING", "MAX_PENDING_BYTES"]

PENDING_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id BLOB PRIMARY KEY, recipient TEXT NOT NULL, created INTEGER NOT NULL, size INTEGER NOT NULL,
    text BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_attempt INTEGER);
"""

#: texts waiting on one device at most, and their UTF-8 bytes at most (a text is up to 64 KiB)
MAX_PENDING = 100
MAX_PENDING_BYTES = 2 * 1024 * 1024


class PendingFull(Exception):
    """No room for another pending text on this device (the caps above)."""


@dataclass(frozen=True, kw_only=True)
class PendingSend:
    id: bytes
    recipient: str
    created: int
    text: str = field(repr=False)
    attempts: int
    last_attempt: int | None
    #: why it waits: the last failure's code and message
    code: str
    message: str
    #: "text", or a reply, reaction, edit or delete with its ``fields`` (client/gestures.py)
    kind: str = "text"
    fields: dict = field(default_factory=dict, repr=False)


class PendingState:
    _db: sqlite3.Connection
    vault: Vault

    # provided by DeviceState (client/state.py), the only class built on this one
    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def add_pending(
        self, msg_id: bytes, recipient: str, text: str, *, created: int, code: str, message: str, kind: str = "text",
        fields: dict | None = None,
    ) -> None:
        """Keep ``text`` (or a message of another ``kind`` with its ``fields``) to send later;
        PendingFull (nothing stored) when the caps are reached."""
        size = len(text.encode())
        with self.transaction():
            count, used = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM pending").fetchone()
            if count >= MAX_PENDING or used + size > MAX_PENDING_BYTES:
                raise PendingFull(
                    f"{count} message{'s' if count != 1 else ''} ({used // 1024} KiB) already wait on this device to be sent "
                    f"(at most {MAX_PENDING} and {MAX_PENDING_BYTES // (1024 * 1024)} MiB)"
                )
            self._db.execute(
                "INSERT INTO pending (id, recipient, created, size, text) VALUES (?, ?, ?, ?, ?)",
                (msg_id, recipient, created, size, self.vault.seal(text.encode(), b"pending/" + msg_id)),
            )
            kept = fields if fields is not None else {"text": text}
            self._db.execute(  # with the text for the history, which outlives the pending row
                "INSERT INTO sent (id, recipient, sent_at, devices, node_state, code, note, type, body) VALUES (?, ?, ?, 0, 'pending', ?, ?, ?, ?)",
                (msg_id, recipient, created, code, message, kind, seal_body(self.vault, kept, sent_where(msg_id))),
            )

    def pending_sends(self) -> list[PendingSend]:
        """Every pending text, oldest first (the order they were written in)."""
        rows = self._db.execute(
            "SELECT p.id, p.recipient, p.created, p.text, p.attempts, p.last_attempt, s.code, s.note, s.type, s.body"
            " FROM pending p JOIN sent s ON s.id = p.id ORDER BY p.rowid"
        ).fetchall()
        return [
            PendingSend(
                id=r[0], recipient=r[1], created=r[2], text=self.vault.open_value(r[3], b"pending/" + r[0]).decode(),
                attempts=r[4], last_attempt=r[5], code=r[6], message=r[7], kind=r[8],
                fields=canonical.loads(self.vault.open_value(r[9], sent_where(r[0]))) if r[8] != "text" and r[9] is not None else {},
            )
            for r in rows
        ]

    def pending_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM pending").fetchone()[0]

    def pending_reason(self, recipient: str) -> tuple[str, str] | None:
        """(code, message) of the oldest text still waiting for ``recipient``, or None."""
        row = self._db.execute(
            "SELECT s.code, s.note FROM pending p JOIN sent s ON s.id = p.id WHERE p.recipient = ? ORDER BY p.rowid LIMIT 1",
            (recipient,),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def pending_attempted(self, msg_id: bytes, at: int, code: str, message: str) -> None:
        """Another attempt failed for a reason that does not end it."""
        with self.transaction():
            self._db.execute("UPDATE pending SET attempts = attempts + 1, last_attempt = ? WHERE id = ?", (at, msg_id))
            self._db.execute("UPDATE sent SET code = ?, note = ? WHERE id = ? AND node_state = 'pending'", (code, message, msg_id))

    def pending_sent(self, msg_id: bytes, *, devices: int, state: str) -> None:
        """The home node accepted it: an ordinary sent message from now on (``state`` as in
        ``record_sent``), its ``pending`` row gone."""
        with self.transaction():
            self._db.execute(
                "UPDATE sent SET node_state = ?, devices = ?, code = '', note = '' WHERE id = ? AND node_state = 'pending'",
                (state, devices, msg_id),
            )
            self._db.execute("DELETE FROM pending WHERE id = ?", (msg_id,))

    def pending_failed(self, msg_id: bytes, code: str, message: str) -> None:
        """Given up: "failed" with the reason in ``sent``, its ``pending`` row gone."""
        with self.transaction():
            self._db.execute(
                "UPDATE sent SET node_state = 'failed', code = ?, note = ? WHERE id = ? AND node_state = 'pending'",
                (code, message, msg_id),
            )
            self._db.execute("DELETE FROM pending WHERE id = ?", (msg_id,))
