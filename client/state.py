"""A device's local state in its home directory (``state.db``, mode 0600).

Secrets — identity keys, the account key, prekey secrets, session records, message texts —
are sealed by the :class:`~client.vault.Vault` before they reach SQLite. Writes that belong
together (new session states, received messages, consumed prekeys) share one transaction via
:meth:`DeviceState.transaction`, committed before anything is acknowledged to the node.
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from sonet.core import canonical
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey
from sonet.core.groups.items import GROUP_REFUSALS

from .groups.events import GROUP_EVENTS_SCHEMA, GroupEventState
from .groups.sent import GROUP_SENT_SCHEMA, GroupSent, GroupSentState
from .groups.store import GROUPS_SCHEMA, GroupState
from .state_directory import ALERT, DIRECTORY_SCHEMA, NOTICE, Alert, DirectoryState
from .state_gestures import GESTURES_SCHEMA, GestureState
from .state_history import GROUP_INBOX_COLUMNS, HISTORY_INDEXES, HISTORY_TYPES, INBOX_COLUMNS, SENT_BODY_COLUMNS, HistoryState, seal_body, sent_where
from .state_pending import PENDING_SCHEMA, PendingSend, PendingState
from .state_presence import PresenceState
from .state_timer import TIMER_SCHEMA, TimerState
from .state_call import CALLS_SCHEMA, CallState
from .vault import Vault, VaultError

__all__ = ["DeviceState", "Profile", "InboxMessage", "Contact", "SentMessage", "PendingSend", "Alert", "ALERT", "NOTICE", "default_home", "check_home", "StateError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS prekeys (
    kind TEXT NOT NULL, key_id INTEGER NOT NULL, secret BLOB NOT NULL, created INTEGER NOT NULL,
    one_time INTEGER NOT NULL, PRIMARY KEY (kind, key_id));
CREATE TABLE IF NOT EXISTS sessions (
    address TEXT NOT NULL, device INTEGER NOT NULL, record BLOB NOT NULL, PRIMARY KEY (address, device));
CREATE TABLE IF NOT EXISTS previous_sessions (
    address TEXT NOT NULL, device INTEGER NOT NULL, slot INTEGER NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (address, device, slot));
CREATE TABLE IF NOT EXISTS contacts (
    address TEXT PRIMARY KEY, identity BLOB NOT NULL, seen_identity BLOB NOT NULL, first_seen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbox (
    id BLOB PRIMARY KEY, sender TEXT NOT NULL, peer TEXT NOT NULL, sent_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL, type TEXT NOT NULL, body BLOB NOT NULL, shown INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sent (
    id BLOB PRIMARY KEY, recipient TEXT NOT NULL, sent_at INTEGER NOT NULL, devices INTEGER NOT NULL,
    delivered_at INTEGER, read_at INTEGER);
"""

#: columns added to ``sent`` since the first schema: what the recipient's node did with the
#: message, as the home node reports it. Rows from before federation were all to accounts of
#: the home node, which accepted them at once.
_SENT_COLUMNS = {
    "node_state": "TEXT NOT NULL DEFAULT 'accepted'",
    "code": "TEXT NOT NULL DEFAULT ''",
    "note": "TEXT NOT NULL DEFAULT ''",
    **SENT_BODY_COLUMNS,  # what was sent, for the history (client/state_history.py)
}


#: the tables of what ``recv`` shows once each (a ``shown`` column): messages, group messages, group events
_SHOWN_TABLES = ("inbox", "group_inbox", "group_events")

#: state.db's tables (the statements of each part of the client's state), made before the columns
#: later versions added (``_LATER_COLUMNS``) and then the indexes (HISTORY_INDEXES, over them)
_TABLES = _SCHEMA + DIRECTORY_SCHEMA + PENDING_SCHEMA + GROUPS_SCHEMA + GROUP_SENT_SCHEMA + GROUP_EVENTS_SCHEMA + GESTURES_SCHEMA + TIMER_SCHEMA + CALLS_SCHEMA
_LATER_COLUMNS = {"sent": _SENT_COLUMNS, "group_sent": SENT_BODY_COLUMNS, "inbox": INBOX_COLUMNS, "group_inbox": GROUP_INBOX_COLUMNS}
#: every table and index that statements above make (each names one)
_SCHEMA_NAMES = frozenset(re.findall(r"CREATE\s+(?:TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s+(\w+)", _TABLES + HISTORY_INDEXES))
#: what ``Vault`` writes last when it makes a home's vault: a home without it is still being made
_VAULT_MADE = "vault.json"


class StateError(Exception):
    """The home directory is missing, unregistered or unusable (one clear line)."""


#: the files that make a directory a node's data directory (sonet-node init writes them; the
#: client may not import the node package, so the names are repeated here)
_NODE_FILES = ("node.toml", "node.key")


@contextmanager
def _made_alone(home: Path) -> Iterator[None]:
    """While a new home is made (its vault key, then its state.db), another process making the
    same home waits for it (a lock on the directory) and then opens what it made: two at once
    would each make a vault key, and one would seal its state with a key that is not the one
    left on disk; and a new state.db's switch to WAL fails at once ("database is locked")
    while another connection makes the same switch. A home with its vault and a state.db
    (the switch writes its first page) is opened without the lock."""
    db = home / "state.db"
    if (home / _VAULT_MADE).exists() and db.exists() and db.stat().st_size:
        yield
        return
    directory = os.open(home, os.O_RDONLY)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        yield
    finally:
        os.close(directory)  # (releases the lock)


def default_home() -> Path:
    env = os.environ.get("SONET_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("sonet"))


def check_home(home: Path, *, create: bool) -> None:
    """Refuse a home that cannot be one, before anything is written: a file, a directory in (or
    under) a node's data directory, or -- unless ``create`` (only ``register`` and ``link
    begin`` make a new home) -- a directory without device state, so a mistyped ``--home``
    never leaves state files behind."""
    if home.exists() and not home.is_dir():
        raise StateError(f"the device home {home} is a file, not a directory")
    for directory in (home.resolve(), *home.resolve().parents):
        if any((directory / name).exists() for name in _NODE_FILES):
            raise StateError(f"the device home {home} is inside the node data directory {directory}: use a directory of its own")
    if not create and not (home / "state.db").is_file():
        raise StateError(f"no account in {home} (no device state there): run `sonet register` (or `sonet link begin`) first, or check --home")


@dataclass(frozen=True, kw_only=True)
class Profile:
    address: str
    device_id: int
    node_url: str
    node_fingerprint: str
    mode: CryptoMode
    identity: SigningKey  # this device's identity (signs prekeys, records, the channel)
    identity_dh: bytes | None = field(repr=False)  # X25519 secret of the device's PQXDH identity key
    hpke: HpkePrivateKey  # this device's sealed-sender key
    account_key: SigningKey  # the account identity key, shared by the account's devices


@dataclass(frozen=True, kw_only=True)
class InboxMessage:
    id: bytes
    sender: str  # who wrote it (our own address for messages synced from our other devices)
    peer: str  # the conversation: the other party
    sent_at: int
    received_at: int
    type: str
    fields: dict  # type-specific: text, receipt ids, typing state


@dataclass(frozen=True, kw_only=True)
class Contact:
    address: str
    identity: bytes  # the account identity key we trust
    seen_identity: bytes  # the one the directory shows now; differs after a change

    @property
    def changed(self) -> bool:
        return self.identity != self.seen_identity


@dataclass(frozen=True, kw_only=True)
class SentMessage:
    """A text this device sent, and how far it got."""

    id: bytes
    to: str
    sent_at: int
    devices: int  # the recipient's devices it was encrypted for
    #: "pending" (still on this device: the recipient's keys could not be fetched; ``code``/
    #: ``message`` say why; sent by itself when the device next connects, client/pending.py),
    #: "sent" (the home node holds it; the recipient's node has not confirmed it yet),
    #: "queued" (waiting in a node's outbox; ``code``/``message`` say why, when known),
    #: "accepted" (the recipient's node stored it for every device), "failed" (given up:
    #: ``code``/``message`` say why), "delivered" / "read" (the recipient's receipt came)
    state: str
    code: str
    message: str
    delivered_at: int | None
    read_at: int | None
    #: a group text (client/groups/sent.py): its group and the group's name here (``to`` is
    #: empty, ``devices`` the member devices of the other accounts when it was sent, and
    #: ``state`` "pending" / "queued" / "ordered" / "failed" until all of them delivered or read it),
    #: with how many of them sent a delivered (or read) and a read receipt
    group: bytes | None = None
    group_name: str = ""
    delivered: int = 0
    read: int = 0
    #: "text", or a reply, reaction, edit or delete (client/gestures.py)
    type: str = "text"


#: the kv rows a Profile is made of
_PROFILE_KEYS = ("address", "device_id", "node_url", "node_fingerprint", "mode", "identity", "identity_dh", "hpke", "account_key")
_PROFILE_ROWS = f"SELECT key, value FROM kv WHERE key IN ({', '.join('?' * len(_PROFILE_KEYS))})"


class DeviceState(DirectoryState, PendingState, GroupState, GroupSentState, GroupEventState, HistoryState, GestureState, TimerState, PresenceState, CallState):
    def __init__(self, home: Path, *, create: bool = True) -> None:
        self.home = home
        check_home(home, create=create)
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(f"cannot create the device home {home}: {exc.strerror or exc}") from None
        path = home / "state.db"
        with _made_alone(home):
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            try:
                self.vault = Vault.open(home, create=True)
            except VaultError as exc:
                raise StateError(str(exc)) from None
            try:
                self._db = sqlite3.connect(path, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA secure_delete=ON")  # what is deleted (a disappearing message) is zeroed
                if not self._schema_complete():  # (an existing state's open writes nothing)
                    self._make_schema()
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise StateError(f"the device state {path} is busy: another sonet process is writing it; try again") from None
                raise StateError(f"{path} is not a usable device state database: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise StateError(f"{path} is not a usable device state database: {exc}") from None
        self._depth = 0
        #: (the sealed rows it was made from, the profile): see profile()
        self._profile: tuple[tuple[bytes | None, ...], Profile] | None = None

    def close(self) -> None:
        self._db.close()

    def _schema_complete(self) -> bool:
        """Whether state.db has every table, later column and index (read, no write lock)."""
        if not _SCHEMA_NAMES <= {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}:
            return False
        return all(columns.keys() <= self._columns(table) for table, columns in _LATER_COLUMNS.items())

    def _make_schema(self) -> None:
        """Make a new state.db's schema, or bring one of an earlier version up to date (nothing
        is lost), in one transaction: one commit (with synchronous=FULL one fsync) instead of
        one per statement, ~60 ms per new device. BEGIN IMMEDIATE takes the write lock first
        (another process making it waits, then finds it made): a deferred BEGIN reads the schema
        before it writes, and fails at once with "database is locked" when another process
        wrote it in between."""
        self._db.executescript("BEGIN IMMEDIATE;" + _TABLES)  # (executescript would commit a BEGIN before it)
        try:
            for table, columns in _LATER_COLUMNS.items():
                present = self._columns(table)
                for name, declaration in columns.items():
                    if name not in present:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
            for index in filter(str.strip, HISTORY_INDEXES.split(";")):
                self._db.execute(index)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes; nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    # Sealed key/value -------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return self.vault.open_value(row[0], b"kv/" + key.encode()) if row else None

    def put(self, key: str, value: bytes) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, self.vault.seal(value, b"kv/" + key.encode()))
            )

    def delete(self, key: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM kv WHERE key = ?", (key,))

    def get_int(self, key: str, default: int = 0) -> int:
        raw = self.get(key)
        return int(raw) if raw is not None else default

    def put_int(self, key: str, value: int) -> None:
        self.put(key, str(value).encode())

    # Profile ----------------------------------------------------------------------------

    def registered(self) -> bool:
        return self._db.execute("SELECT 1 FROM kv WHERE key = 'address'").fetchone() is not None

    def save_profile(self, profile: Profile) -> None:
        with self.transaction():
            self.put("address", profile.address.encode())
            self.put_int("device_id", profile.device_id)
            self.put("node_url", profile.node_url.encode())
            self.put("node_fingerprint", profile.node_fingerprint.encode())
            self.put("mode", profile.mode.value.encode())
            self.put("identity", profile.identity.private_bytes())
            self.put("identity_dh", profile.identity_dh or b"")
            self.put("hpke", profile.hpke.private_bytes())
            self.put("account_key", profile.account_key.private_bytes())

    def profile(self) -> Profile:
        """The registered profile. Its keys are opened and parsed once and kept while their
        sealed rows stay the same bytes (sealing is randomized: any write, by this process or
        another, changes them): parsing the ML-DSA keys on every send and receive cost ~1 ms."""
        rows = dict(self._db.execute(_PROFILE_ROWS, _PROFILE_KEYS).fetchall())
        if "address" not in rows:
            raise StateError(f"no account in {self.home}: run `sonet register ADDRESS --node URL --invite TOKEN` first")
        stamp = tuple(rows.get(key) for key in _PROFILE_KEYS)
        if self._profile is not None and self._profile[0] == stamp:
            return self._profile[1]

        def get(key: str) -> bytes:
            return self.vault.open_value(rows[key], b"kv/" + key.encode()) if key in rows else b""

        profile = Profile(
            address=get("address").decode(),
            device_id=int(get("device_id") or b"0"),
            node_url=get("node_url").decode(),
            node_fingerprint=get("node_fingerprint").decode(),
            mode=CryptoMode(get("mode").decode()),
            identity=SigningKey.from_private_bytes(get("identity")),
            identity_dh=get("identity_dh") or None,
            hpke=HpkePrivateKey.from_private_bytes(get("hpke")),
            account_key=SigningKey.from_private_bytes(get("account_key")),
        )
        self._profile = (stamp, profile)
        return profile

    # Prekey secrets ---------------------------------------------------------------------

    def save_prekey(self, kind: str, key_id: int, secret: bytes, *, created: int, one_time: bool) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO prekeys (kind, key_id, secret, created, one_time) VALUES (?, ?, ?, ?, ?)",
                (kind, key_id, self.vault.seal(secret, f"prekey/{kind}/{key_id}".encode()), created, int(one_time)),
            )

    def prekey(self, kind: str, key_id: int) -> bytes | None:
        row = self._db.execute("SELECT secret FROM prekeys WHERE kind = ? AND key_id = ?", (kind, key_id)).fetchone()
        return self.vault.open_value(row[0], f"prekey/{kind}/{key_id}".encode()) if row else None

    def prekey_is_one_time(self, kind: str, key_id: int) -> bool:
        row = self._db.execute("SELECT one_time FROM prekeys WHERE kind = ? AND key_id = ?", (kind, key_id)).fetchone()
        return bool(row and row[0])

    def delete_prekey(self, kind: str, key_id: int) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM prekeys WHERE kind = ? AND key_id = ?", (kind, key_id))

    def drop_signed_prekeys_before(self, cutoff: int, keep: set[tuple[str, int]]) -> None:
        """Forget rotated-out signed / last-resort prekey secrets whose grace period is over:
        those replaced (that is, whose successor of the same kind was made) before ``cutoff``.
        Counting from a key's own creation would drop a key that stayed current for weeks
        (a device offline) while messages made with it still wait in the mailbox."""
        with self.transaction():
            rows = self._db.execute("SELECT kind, key_id, created FROM prekeys WHERE one_time = 0 ORDER BY kind, key_id").fetchall()
            for (kind, key_id, _created), successor in zip(rows, rows[1:]):
                replaced_at = successor[2]
                if successor[0] == kind and replaced_at < cutoff and (kind, key_id) not in keep:
                    self._db.execute("DELETE FROM prekeys WHERE kind = ? AND key_id = ?", (kind, key_id))

    # Sessions ---------------------------------------------------------------------------

    def session(self, address: str, device: int) -> bytes | None:
        row = self._db.execute("SELECT record FROM sessions WHERE address = ? AND device = ?", (address, device)).fetchone()
        return self.vault.open_value(row[0], f"session/{address}/{device}".encode()) if row else None

    def save_session(self, address: str, device: int, record: bytes) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO sessions (address, device, record) VALUES (?, ?, ?)",
                (address, device, self.vault.seal(record, f"session/{address}/{device}".encode())),
            )

    def previous_sessions(self, address: str, device: int) -> list[bytes]:
        """Earlier sessions with this device, newest first (kept while the peer may still use
        one of them, e.g. after both sides started a session at the same time)."""
        rows = self._db.execute(
            "SELECT slot, record FROM previous_sessions WHERE address = ? AND device = ? ORDER BY slot", (address, device)
        ).fetchall()
        return [self.vault.open_value(r[1], f"previous_session/{address}/{device}/{r[0]}".encode()) for r in rows]

    def save_previous_sessions(self, address: str, device: int, records: list[bytes]) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM previous_sessions WHERE address = ? AND device = ?", (address, device))
            self._db.executemany(
                "INSERT INTO previous_sessions (address, device, slot, record) VALUES (?, ?, ?, ?)",
                [
                    (address, device, slot, self.vault.seal(record, f"previous_session/{address}/{device}/{slot}".encode()))
                    for slot, record in enumerate(records)
                ],
            )

    def drop_sessions(self, address: str, keep: set[int]) -> None:
        with self.transaction():
            for table in ("sessions", "previous_sessions"):
                for (device,) in self._db.execute(f"SELECT DISTINCT device FROM {table} WHERE address = ?", (address,)).fetchall():
                    if device not in keep:
                        self._db.execute(f"DELETE FROM {table} WHERE address = ? AND device = ?", (address, device))

    # Contacts ---------------------------------------------------------------------------

    def contact(self, address: str) -> Contact | None:
        row = self._db.execute("SELECT identity, seen_identity FROM contacts WHERE address = ?", (address,)).fetchone()
        return Contact(address=address, identity=row[0], seen_identity=row[1]) if row else None

    def see_identity(self, address: str, identity: bytes, now: int) -> Contact:
        """Record the account identity the directory shows; the first one seen is trusted."""
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO contacts (address, identity, seen_identity, first_seen) VALUES (?, ?, ?, ?)",
                (address, identity, identity, now),
            )
            self._db.execute("UPDATE contacts SET seen_identity = ? WHERE address = ?", (identity, address))
        contact = self.contact(address)
        assert contact is not None
        return contact

    def trust_seen_identity(self, address: str) -> bool:
        with self.transaction():
            cur = self._db.execute("UPDATE contacts SET identity = seen_identity WHERE address = ?", (address,))
        return cur.rowcount > 0

    # Messages ---------------------------------------------------------------------------

    def store_received(self, messages: list[InboxMessage]) -> None:
        """A text (or reply) is unread until its conversation is read (client/history.py)."""
        with self.transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO inbox (id, sender, peer, sent_at, received_at, type, body, unread) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (m.id, m.sender, m.peer, m.sent_at, m.received_at, m.type, self.vault.seal(canonical.dumps(m.fields), b"inbox/" + m.id),
                     int(m.type in HISTORY_TYPES))
                    for m in messages
                ],
            )  # fmt: skip

    def has_message(self, msg_id: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM inbox WHERE id = ?", (msg_id,)).fetchone() is not None

    def unshown(self) -> list[InboxMessage]:
        rows = self._db.execute(
            "SELECT id, sender, peer, sent_at, received_at, type, body FROM inbox WHERE shown = 0 ORDER BY rowid"
        ).fetchall()
        return [
            InboxMessage(
                id=r[0], sender=r[1], peer=r[2], sent_at=r[3], received_at=r[4], type=r[5],
                fields=canonical.loads(self.vault.open_value(r[6], b"inbox/" + r[0])),
            )
            for r in rows
        ]

    def unshown_mark(self) -> tuple[int, ...]:
        """Where ``has_unshown_since`` starts counting: the newest row of each table ``recv``
        prints from."""
        return tuple(self._db.execute(f"SELECT coalesce(max(rowid), 0) FROM {t}").fetchone()[0] for t in _SHOWN_TABLES)

    def has_unshown_since(self, mark: tuple[int, ...]) -> bool:
        """Whether a message, group message or group event stored after ``mark`` is to be shown:
        a line for ``recv`` to print (nothing is opened)."""
        return any(
            self._db.execute(f"SELECT 1 FROM {t} WHERE rowid > ? AND shown = 0 LIMIT 1", (after,)).fetchone() is not None
            for t, after in zip(_SHOWN_TABLES, mark, strict=True)
        )

    def has_unshown(self) -> bool:
        """Whether anything ``recv`` prints is stored and not shown yet (whichever receive
        stored it)."""
        return self.has_unshown_since((0,) * len(_SHOWN_TABLES))

    def mark_shown(self, ids: list[bytes]) -> None:
        with self.transaction():
            self._db.executemany("UPDATE inbox SET shown = 1 WHERE id = ?", [(i,) for i in ids])

    def record_sent(
        self, msg_id: bytes, recipient: str, sent_at: int, devices: int, *, state: str, text: str | None = None,
        kind: str = "text", fields: dict | None = None,
    ) -> None:
        """``state``: "accepted" when the home node is the recipient's, else "sent"; ``text``
        (or the ``fields`` of a message of another ``kind``: client/state_history.py) is kept,
        sealed, for the history."""
        kept = fields if fields is not None else {"text": text} if text is not None else None
        body = seal_body(self.vault, kept, sent_where(msg_id)) if kept is not None else None
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO sent (id, recipient, sent_at, devices, node_state, type, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (msg_id, recipient, sent_at, devices, state, kind, body),
            )

    def record_receipt(self, msg_ids: list[bytes], kind: str, at: int, *, recipient: str) -> None:
        """Only the account a message went to can confirm it. ``undelivered`` changes nothing
        here: it comes only for messages of a device this account removed, which is not us."""
        column = {"delivered": "delivered_at", "read": "read_at"}.get(kind)
        if column is None:
            return
        with self.transaction():
            self._db.executemany(
                f"UPDATE sent SET {column} = COALESCE({column}, ?) WHERE id = ? AND recipient = ?",
                [(at, i, recipient) for i in msg_ids],
            )

    def update_sent(self, updates: list[tuple[bytes, str, str, str]]) -> None:
        """(id, state, code, message) from the home node; a final state never changes."""
        with self.transaction():
            self._db.executemany(
                "UPDATE sent SET node_state = ?, code = ?, note = ? WHERE id = ? AND node_state IN ('sent', 'queued')",
                [(state, code, message, msg_id) for msg_id, state, code, message in updates],
            )

    def sent_messages(self, limit: int) -> list[SentMessage]:
        """The ``limit`` most recent sent messages, newest first."""
        rows = self._db.execute(
            "SELECT id, recipient, sent_at, devices, node_state, code, note, delivered_at, read_at, type FROM sent"
            " ORDER BY sent_at DESC, rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_sent_message(r) for r in rows]

    def all_sent_messages(self, limit: int) -> list[SentMessage]:
        """The ``limit`` most recent sent texts, 1:1 and group ones, newest first."""
        group_sent = self.group_sent_messages(limit)
        names: dict[bytes, str] = {}
        for g in group_sent:
            if g.group not in names:
                record = self.group_record(g.group)
                names[g.group] = record.name if record is not None else ""
        merged = self.sent_messages(limit) + [_group_sent_message(g, names[g.group]) for g in group_sent]
        return sorted(merged, key=lambda m: m.sent_at, reverse=True)[:limit]  # stable: each list keeps its order

    def sent_message(self, msg_id: bytes) -> SentMessage | None:
        """A 1:1 or group text this device sent."""
        row = self._db.execute(
            "SELECT id, recipient, sent_at, devices, node_state, code, note, delivered_at, read_at, type FROM sent WHERE id = ?",
            (msg_id,),
        ).fetchone()
        if row:
            return _sent_message(row)
        group_sent = self.group_sent_message(msg_id)
        return _group_sent_message(group_sent, self.group_name(group_sent.group)) if group_sent is not None else None


def _group_sent_message(g: GroupSent, name: str) -> SentMessage:
    state = "read" if g.read_at is not None else "delivered" if g.delivered_at is not None else g.state
    return SentMessage(
        id=g.id, to="", sent_at=g.sent_at, devices=g.devices, state=state, code=g.code, message=GROUP_REFUSALS.get(g.code, g.code),
        delivered_at=g.delivered_at, read_at=g.read_at, group=g.group, group_name=name, delivered=g.delivered, read=g.read, type=g.type,
    )  # fmt: skip


def _sent_message(row: tuple) -> SentMessage:
    msg_id, to, sent_at, devices, node_state, code, note, delivered_at, read_at, kind = row
    # a receipt says more than the node's state (and implies the node accepted it)
    state = "read" if read_at is not None else "delivered" if delivered_at is not None else node_state
    return SentMessage(
        id=msg_id, to=to, sent_at=sent_at, devices=devices, state=state, code=code, message=note,
        delivered_at=delivered_at, read_at=read_at, type=kind,
    )
