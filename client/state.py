"""A device's local state in its home directory: keys, account, pinned node, contacts, inbox.

One SQLite file (``state.db``, mode 0600) so that storing a received message and later marking
it shown are atomic and survive crashes. Message ids are the primary key of the inbox, which
makes a redelivered envelope invisible to the user (exactly-once view).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from core.crypto import HpkePrivateKey, SigningKey

__all__ = ["DeviceState", "Profile", "InboxMessage", "default_home", "StateError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (
    address TEXT NOT NULL, fingerprint TEXT NOT NULL, first_seen INTEGER NOT NULL,
    PRIMARY KEY (address, fingerprint));
CREATE TABLE IF NOT EXISTS inbox (
    id BLOB PRIMARY KEY, sender TEXT NOT NULL, sent_at INTEGER NOT NULL, received_at INTEGER NOT NULL,
    type TEXT NOT NULL, text TEXT NOT NULL, shown INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sent (
    id BLOB PRIMARY KEY, recipient TEXT NOT NULL, sent_at INTEGER NOT NULL, text TEXT NOT NULL, devices INTEGER NOT NULL);
"""


class StateError(Exception):
    """The home directory is missing, unregistered or unusable (one clear line)."""


def default_home() -> Path:
    env = os.environ.get("SONET_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("sonet"))


@dataclass(frozen=True, kw_only=True)
class Profile:
    address: str
    device_id: int
    node_url: str
    node_fingerprint: str
    identity: SigningKey
    hpke: HpkePrivateKey


@dataclass(frozen=True, kw_only=True)
class InboxMessage:
    id: bytes
    sender: str
    sent_at: int
    received_at: int
    type: str
    text: str


class DeviceState:
    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = home / "state.db"
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # Profile ----------------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def registered(self) -> bool:
        return self._get("address") is not None

    def save_profile(self, profile: Profile) -> None:
        values = {
            "address": profile.address.encode(),
            "device_id": str(profile.device_id).encode(),
            "node_url": profile.node_url.encode(),
            "node_fingerprint": profile.node_fingerprint.encode(),
            "identity": profile.identity.private_bytes(),
            "hpke": profile.hpke.private_bytes(),
        }
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", values.items())

    def profile(self) -> Profile:
        if not self.registered():
            raise StateError(f"no account in {self.home}: run `sonet register ADDRESS --node URL --invite TOKEN` first")
        get = lambda k: self._get(k) or b""  # noqa: E731
        return Profile(
            address=get("address").decode(),
            device_id=int(get("device_id")),
            node_url=get("node_url").decode(),
            node_fingerprint=get("node_fingerprint").decode(),
            identity=SigningKey.from_private_bytes(get("identity")),
            hpke=HpkePrivateKey.from_private_bytes(get("hpke")),
        )

    # Contacts (trust on first use of each device key, until key transparency lands) ------

    def known_devices(self, address: str) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT fingerprint FROM contacts WHERE address = ?", (address,))}

    def remember_devices(self, address: str, fingerprints: set[str], now: int) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # autocommit connection: one transaction, not one per row
            self._db.executemany(
                "INSERT OR IGNORE INTO contacts (address, fingerprint, first_seen) VALUES (?, ?, ?)",
                [(address, fp, now) for fp in fingerprints],
            )

    # Messages ---------------------------------------------------------------------------

    def store_received(self, messages: list[InboxMessage]) -> None:
        """Durably keep messages before they are acknowledged to the node."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # autocommit connection: one transaction, not one per row
            self._db.executemany(
                "INSERT OR IGNORE INTO inbox (id, sender, sent_at, received_at, type, text) VALUES (?, ?, ?, ?, ?, ?)",
                [(m.id, m.sender, m.sent_at, m.received_at, m.type, m.text) for m in messages],
            )

    def has_message(self, msg_id: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM inbox WHERE id = ?", (msg_id,)).fetchone() is not None

    def unshown(self) -> list[InboxMessage]:
        rows = self._db.execute(
            "SELECT id, sender, sent_at, received_at, type, text FROM inbox WHERE shown = 0 ORDER BY received_at, sent_at, rowid"
        ).fetchall()
        return [InboxMessage(id=r[0], sender=r[1], sent_at=r[2], received_at=r[3], type=r[4], text=r[5]) for r in rows]

    def mark_shown(self, ids: list[bytes]) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # autocommit connection: one transaction, not one per row
            self._db.executemany("UPDATE inbox SET shown = 1 WHERE id = ?", [(i,) for i in ids])

    def record_sent(self, msg_id: bytes, recipient: str, sent_at: int, text: str, devices: int) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO sent (id, recipient, sent_at, text, devices) VALUES (?, ?, ?, ?, ?)",
                (msg_id, recipient, sent_at, text, devices),
            )
