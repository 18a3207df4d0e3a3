"""The calls half of a device's state (client/state.py; client/calls.py drives them): each call
this device placed or was offered, as core/call.py's ``Call`` plus what the device shows of it.

``calls``: a call's id, when it started (ms, for the order of ``sonet call list``) and its
record, sealed by the vault like a message (the peer, the state, the remote session description
and candidates are the user's business only); the newest ``MAX_KEPT_CALLS`` are kept. ``DeviceState`` mixes this in; it provides
``_db``, ``vault`` and ``transaction``.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from sonet.core import canonical
from sonet.core.call import Call

from .vault import Vault

__all__ = ["CALLS_SCHEMA", "CallState", "KeptCall", "MAX_KEPT_CALLS"]

#: calls kept at most: the oldest go (a peer sending offer after offer cannot grow the state for ever)
MAX_KEPT_CALLS = 500

CALLS_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (id BLOB PRIMARY KEY, started_at INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS calls_by_start ON calls (started_at);
"""


@dataclass(frozen=True, kw_only=True)
class KeptCall:
    """One call as this device keeps it: its state machine's ``Call`` and its history."""

    call: Call
    #: "outgoing" (this account called) or "incoming"
    direction: str
    started_at: int
    answered_at: int | None = None
    ended_at: int | None = None
    #: the peer's ICE candidates so far (for whatever media engine the user runs)
    candidates: tuple[str, ...] = field(default_factory=tuple)

    def to_map(self) -> dict[str, Any]:
        c = self.call
        return {
            "peer": c.peer, "state": c.state, "since": c.since, "reason": c.reason, "remote_sdp": c.remote_sdp,
            "direction": self.direction, "started_at": self.started_at, "answered_at": self.answered_at,
            "ended_at": self.ended_at, "candidates": list(self.candidates),
        }  # fmt: skip

    @classmethod
    def from_map(cls, call_id: bytes, m: dict[str, Any]) -> "KeptCall":
        call = Call(id=call_id, peer=m["peer"], state=m["state"], since=m["since"], reason=m["reason"], remote_sdp=m["remote_sdp"])
        return cls(call=call, direction=m["direction"], started_at=m["started_at"], answered_at=m["answered_at"],
                   ended_at=m["ended_at"], candidates=tuple(m["candidates"]))  # fmt: skip


class CallState:
    _db: sqlite3.Connection
    vault: Vault

    # provided by DeviceState (client/state.py), the only class built on this one
    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _call_where(self, call_id: bytes) -> bytes:
        return b"calls/" + call_id

    def kept_call(self, call_id: bytes) -> KeptCall | None:
        row = self._db.execute("SELECT body FROM calls WHERE id = ?", (call_id,)).fetchone()
        if row is None:
            return None
        return KeptCall.from_map(call_id, canonical.loads(self.vault.open_value(row[0], self._call_where(call_id))))

    def keep_call(self, kept: KeptCall) -> None:
        call_id = kept.call.id
        body = self.vault.seal(canonical.dumps(kept.to_map()), self._call_where(call_id))
        with self.transaction():
            # an update keeps the row (and its rowid: the order of calls started in the same ms)
            self._db.execute(
                "INSERT INTO calls (id, started_at, body) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                (call_id, kept.started_at, body),
            )
            self._db.execute(
                "DELETE FROM calls WHERE id NOT IN (SELECT id FROM calls ORDER BY started_at DESC, rowid DESC LIMIT ?)", (MAX_KEPT_CALLS,)
            )

    def kept_calls(self, *, limit: int) -> list[KeptCall]:
        """The newest ``limit`` calls, newest first."""
        rows = self._db.execute("SELECT id FROM calls ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [k for k in (self.kept_call(bytes(r[0])) for r in rows) if k is not None]
