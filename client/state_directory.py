"""The key-transparency half of a device's state (client/state.py): the directory heads it
accepted per node, the node keys it pinned, the newest leaf it accepted per account, the
witness quorum, the directory changes this device made or approved, and the alerts that
self-monitoring and lookups raised.

Heads, node keys and leaf indices are public: they stay readable (not sealed), like the
contacts' keys. ``DeviceState`` mixes this in; it provides ``_db``, ``transaction``, ``get``
and ``put``.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sonet.core.keydir import decode_head

__all__ = ["DirectoryState", "Alert", "ALERT", "NOTICE", "DIRECTORY_SCHEMA"]

DIRECTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS heads (node TEXT PRIMARY KEY, head BLOB NOT NULL, cosigned INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS node_keys (node TEXT PRIMARY KEY, key BLOB NOT NULL, first_seen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries (account TEXT PRIMARY KEY, leaf INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, at INTEGER NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
    shown INTEGER NOT NULL DEFAULT 0, UNIQUE (kind, text));
CREATE TABLE IF NOT EXISTS approvals (kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, value));
"""

#: kinds of ``Alert``: something this device did not expect (shown loudly, and told to the
#: account's other devices), or an expected change worth a line
ALERT, NOTICE = "alert", "notice"


@dataclass(frozen=True, kw_only=True)
class Alert:
    """What key transparency found: a split view, a device or identity key nobody here added."""

    id: int
    at: int
    kind: str  # ALERT or NOTICE
    text: str


class DirectoryState:
    _db: sqlite3.Connection

    # provided by DeviceState (client/state.py), the only class built on this one
    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def put(self, key: str, value: bytes) -> None:
        raise NotImplementedError

    def accepted_head(self, node: str) -> bytes | None:
        """The largest signed head of ``node``'s directory this device accepted."""
        row = self._db.execute("SELECT head FROM heads WHERE node = ?", (node,)).fetchone()
        return row[0] if row else None

    def accept_head(self, node: str, head: bytes, *, cosigned: bool) -> None:
        """Keep ``head`` as the one to compare the next heads of ``node`` with — unless a head
        at least as large is held already (another process of this device may have accepted one
        meanwhile: the held head never goes back) — and, sticky, whether a cosigned head of
        ``node`` was ever accepted."""
        with self.transaction():
            row = self._db.execute("SELECT head FROM heads WHERE node = ?", (node,)).fetchone()
            if row is not None and decode_head(bytes(row[0])).size >= decode_head(head).size:
                head = bytes(row[0])
            self._db.execute(
                "INSERT INTO heads (node, head, cosigned) VALUES (?, ?, ?) ON CONFLICT (node) DO UPDATE SET"
                " head = excluded.head, cosigned = MAX(cosigned, excluded.cosigned)",
                (node, head, int(cosigned)),
            )

    def ever_cosigned(self, node: str) -> bool:
        row = self._db.execute("SELECT cosigned FROM heads WHERE node = ?", (node,)).fetchone()
        return bool(row and row[0])

    def pin_node_key(self, node: str, key: bytes, now: int) -> bytes:
        """Pin ``key`` as ``node``'s identity key if none is pinned yet (trust on first use);
        the pinned key."""
        with self.transaction():
            self._db.execute("INSERT OR IGNORE INTO node_keys (node, key, first_seen) VALUES (?, ?, ?)", (node, key, now))
            row = self._db.execute("SELECT key FROM node_keys WHERE node = ?", (node,)).fetchone()
        return row[0]

    def forget_node_key(self, node: str) -> bool:
        """Drop the pinned key of ``node`` (the user checked its new one): the next key the home
        node vouches for is pinned instead. False if none was pinned."""
        with self.transaction():
            return self._db.execute("DELETE FROM node_keys WHERE node = ?", (node,)).rowcount > 0

    def newest_entry(self, account: str) -> int | None:
        """The largest leaf index of ``account`` (in its node's log) this device accepted."""
        row = self._db.execute("SELECT leaf FROM entries WHERE account = ?", (account,)).fetchone()
        return row[0] if row else None

    def accept_entry(self, account: str, leaf: int) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO entries (account, leaf) VALUES (?, ?) ON CONFLICT (account) DO UPDATE SET leaf = MAX(leaf, excluded.leaf)",
                (account, leaf),
            )

    def witness_quorum(self) -> int | None:
        """Cosignatures required on a head; None: automatic (client/transparency.py)."""
        raw = self.get("witness_quorum")
        return int(raw) if raw else None

    def set_witness_quorum(self, quorum: int | None) -> None:
        self.put("witness_quorum", b"" if quorum is None else str(quorum).encode())

    def approve(self, kind: str, value: str) -> None:
        """Remember a directory change this device made or approved (client/monitor.py)."""
        with self.transaction():
            self._db.execute("INSERT OR IGNORE INTO approvals (kind, value) VALUES (?, ?)", (kind, value))

    def approved(self, kind: str, value: str) -> bool:
        return self._db.execute("SELECT 1 FROM approvals WHERE kind = ? AND value = ?", (kind, value)).fetchone() is not None

    def add_alert(self, kind: str, text: str, at: int) -> bool:
        """Record an alert or notice once; False if the same one is already recorded."""
        with self.transaction():
            cur = self._db.execute("INSERT OR IGNORE INTO alerts (at, kind, text) VALUES (?, ?, ?)", (at, kind, text))
        return cur.rowcount > 0

    def alerts(self, *, unshown: bool = False) -> list[Alert]:
        rows = self._db.execute(
            "SELECT id, at, kind, text FROM alerts" + (" WHERE shown = 0" if unshown else "") + " ORDER BY id"
        ).fetchall()
        return [Alert(id=r[0], at=r[1], kind=r[2], text=r[3]) for r in rows]

    def mark_alerts_shown(self, ids: list[int]) -> None:
        with self.transaction():
            self._db.executemany("UPDATE alerts SET shown = 1 WHERE id = ?", [(i,) for i in ids])
