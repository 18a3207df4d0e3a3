"""The embedded SQLite backend of the Store contract (see ``base.py`` for the semantics).

One connection, used from one worker thread at a time (``trio.to_thread`` with a
CapacityLimiter(1)). WAL + ``synchronous=FULL`` means a COMMIT has reached the disk when it
returns, so a method's return is a durable acknowledgement. Every mutating method is exactly one
``BEGIN IMMEDIATE`` transaction: the write lock is taken up front, so checks and writes see the
same state even while another process (the ``sonet-node invite`` CLI) writes to the same file.

The SQL is plain functions of a connection: accounts, devices, prekeys and mailboxes here, the
federation tables (outboxes, delivery rows, peer keys) in ``sqlite_federation.py``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar

import trio

from core.crypto import normalize_fingerprint
from core.errors import LocalProtocolError
from federation.peers import PeerError, validate_peer

from .base import (
    AccountExists,
    AccountRow,
    DeliveryRow,
    DeviceRow,
    Inbound,
    InviteInvalid,
    MailboxItem,
    NewEnvelope,
    OutboundItem,
    Peer,
    PeerExists,
    PeerInvalid,
    PrekeySet,
    QueuedItem,
    Quota,
    QuotaExceeded,
    StaleDeviceList,
    StatusUpdate,
    StoreError,
)
from .migrations import migrate
from .sqlite_federation import (
    _INSERT_ENVELOPE,
    _deliveries,
    _device_exists,
    _envelope_row,
    _expire_outbox,
    _is_known,
    _mailbox_usage,
    _outbox,
    _outbox_counts,
    _outbox_done,
    _queue_outbound,
    _receive,
    _set_peer_key,
)

__all__ = ["SqliteStore", "BUSY_TIMEOUT_S"]

#: How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_S = 5.0

T = TypeVar("T")
Mailbox = tuple[str, int]


def _connect(path: str) -> sqlite3.Connection:
    # Create the file ourselves so it is 0600 from the start (SQLite gives the -wal and -shm
    # files the same mode as the database file).
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"cannot enable WAL journal on {path!r} (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")  # fsync the WAL on every commit
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteStore:
    """Store backed by one SQLite file. Create with ``await SqliteStore.open(path)``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Self:
        """Open (creating and migrating as needed) the database at ``path``."""
        try:
            conn = await trio.to_thread.run_sync(_connect, os.fspath(path))
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database: {exc}") from exc
        return cls(conn)

    async def close(self) -> None:
        def close(conn: sqlite3.Connection) -> None:
            self._conn = None
            conn.close()

        if self._conn is not None:
            await self._call(close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Plumbing --------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the worker thread, one call at a time.

        The thread is never abandoned on cancellation: a transaction always finishes (commit
        or rollback) before the caller sees the cancellation, so nothing is left half-done.
        """

        def run() -> T:
            conn = self._conn
            if conn is None:
                raise StoreError("store is closed")
            try:
                return fn(conn, *args)
            except sqlite3.Error as exc:
                raise StoreError(f"database error: {exc}") from exc

        return await trio.to_thread.run_sync(run, limiter=self._limiter)

    async def _transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` as one durable transaction; roll back on any error."""

        def in_transaction(conn: sqlite3.Connection, *args: Any) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return await self._call(in_transaction, *args)

    async def _snapshot(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the reads of ``fn(conn, *args)`` on one consistent snapshot of the database."""

        def in_snapshot(conn: sqlite3.Connection, *args: Any) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                conn.execute("COMMIT")

        return await self._call(in_snapshot, *args)

    # Invites ---------------------------------------------------------------------------

    async def add_invite(self, token_hash: bytes, *, now: int, expires_at: int) -> None:
        await self._transaction(_add_invite, token_hash, now, expires_at)

    # Accounts and devices --------------------------------------------------------------

    async def register_account(
        self,
        *,
        account: str,
        fingerprint: str,
        record: bytes,
        account_identity: bytes,
        device_list: bytes,
        invite_hash: bytes | None,
        now: int,
    ) -> DeviceRow:
        return await self._transaction(
            _register_account, account, fingerprint, record, account_identity, device_list, invite_hash, now
        )

    async def devices(self, account: str) -> list[DeviceRow]:
        return await self._call(_devices, account)

    async def device_by_fingerprint(self, fingerprint: str) -> DeviceRow | None:
        return await self._call(_device_by_fingerprint, fingerprint)

    async def account(self, account: str) -> AccountRow | None:
        return await self._call(_account, account)

    async def add_device(
        self, *, account: str, fingerprint: str, record: bytes, device_list: bytes, expected_version: int, now: int
    ) -> DeviceRow:
        return await self._transaction(_add_device, account, fingerprint, record, device_list, expected_version, now)

    async def remove_device(
        self, *, account: str, device_id: int, device_list: bytes, expected_version: int
    ) -> bool:
        return await self._transaction(_remove_device, account, device_id, device_list, expected_version)

    # Federation peers --------------------------------------------------------------------

    async def add_peer(self, *, name: str, url: str, fingerprint: str, via: str | None, now: int) -> Peer:
        try:
            fields = validate_peer(name=name, url=url, fingerprint=fingerprint, via=via)
        except PeerError as exc:
            raise PeerInvalid(str(exc)) from None
        return await self._transaction(_add_peer, *fields, now)

    async def remove_peer(self, name: str) -> bool:
        return await self._transaction(_remove_peer, name.strip().lower())

    async def peers(self) -> list[Peer]:
        return await self._call(_peers)

    async def set_peer_key(self, name: str, *, fingerprint: str, key: bytes) -> bool:
        try:
            pin = normalize_fingerprint(fingerprint)
        except LocalProtocolError:
            return False  # no peer can be pinned to a malformed fingerprint
        return await self._transaction(_set_peer_key, name.strip().lower(), pin, key)

    # Prekeys ---------------------------------------------------------------------------

    async def publish_prekeys(
        self,
        account: str,
        device_id: int,
        *,
        signed_prekey: bytes | None,
        pq_last_resort: bytes | None,
        one_time: Sequence[tuple[int, bytes]],
        pq_one_time: Sequence[tuple[int, bytes]],
        max_one_time: int,
    ) -> tuple[int, int]:
        return await self._transaction(
            _publish_prekeys,
            account,
            device_id,
            signed_prekey,
            pq_last_resort,
            list(one_time),
            list(pq_one_time),
            max_one_time,
        )

    async def take_bundle(self, account: str, device_id: int) -> PrekeySet:
        return await self._transaction(_take_bundle, account, device_id)

    async def prekey_counts(self, account: str, device_id: int) -> tuple[int, int]:
        return await self._call(_prekey_counts, account, device_id)

    # Mailboxes -------------------------------------------------------------------------

    async def enqueue(
        self, envelopes: Sequence[NewEnvelope], *, now: int, quota: Quota, outbound: Sequence[OutboundItem] = ()
    ) -> int:
        if not envelopes and not outbound:
            return 0
        return await self._transaction(_enqueue, list(envelopes), now, quota, list(outbound))

    async def pending(
        self, account: str, device_id: int, *, after_seq: int, limit: int, now: int
    ) -> list[MailboxItem]:
        if limit < 1:
            raise ValueError("limit must be at least 1")  # SQLite reads LIMIT -1 as "all"
        return await self._call(_pending, account, device_id, after_seq, limit, now)

    async def ack(self, account: str, device_id: int, ids: Sequence[bytes], *, now: int) -> int:
        if not ids:
            return 0
        return await self._transaction(_ack, account, device_id, list(ids), now)

    async def purge_expired(self, *, now: int) -> int:
        return await self._transaction(_purge_expired, now)

    async def stats(self) -> dict[str, int]:
        return await self._snapshot(_stats)

    # Federation: outboxes, deliveries ------------------------------------------------------

    async def receive(self, items: Sequence[Inbound], *, now: int, quota: Quota) -> list[str]:
        if not items:
            return []
        return await self._transaction(_receive, list(items), now, quota)

    async def outbox(self, dest: str, *, limit: int, max_bytes: int, now: int) -> list[QueuedItem]:
        if limit < 1:
            raise ValueError("limit must be at least 1")  # SQLite reads LIMIT -1 as "all"
        return await self._call(_outbox, dest, limit, max_bytes, now)

    async def outbox_done(
        self,
        dest: str,
        seqs: Sequence[int],
        *,
        now: int,
        statuses: Sequence[StatusUpdate] = (),
        reports: Sequence[OutboundItem] = (),
    ) -> None:
        if seqs or statuses or reports:
            await self._transaction(_outbox_done, dest, list(seqs), now, list(statuses), list(reports))

    async def outbox_counts(self) -> dict[str, int]:
        return await self._call(_outbox_counts)

    async def outbox_destinations(self) -> list[str]:
        return sorted(await self.outbox_counts())

    async def deliveries(self, sender_account: str, sender_device: int, ids: Sequence[bytes]) -> list[DeliveryRow]:
        if not ids:
            return []
        return await self._snapshot(_deliveries, sender_account, sender_device, sorted(set(ids)))

    async def expire_outbox(self, *, now: int) -> list[QueuedItem]:
        return await self._transaction(_expire_outbox, now)


# The SQL, as plain functions of a connection. Each runs on the worker thread, inside the
# transaction opened by SqliteStore._transaction where it writes.

_DEVICE_COLUMNS = "account, device_id, fingerprint, record, created_at"


def _device_row(row: tuple[Any, ...]) -> DeviceRow:
    account, device_id, fingerprint, record, created_at = row
    return DeviceRow(
        account=account,
        device_id=device_id,
        fingerprint=fingerprint,
        record=bytes(record),
        created_at=created_at,
    )


def _add_invite(conn: sqlite3.Connection, token_hash: bytes, now: int, expires_at: int) -> None:
    try:
        conn.execute(
            "INSERT INTO invites (token_hash, created_at, expires_at) VALUES (?, ?, ?)",
            (token_hash, now, expires_at),
        )
    except sqlite3.IntegrityError as exc:
        raise StoreError("an invite with this hash already exists") from exc


def _register_account(
    conn: sqlite3.Connection,
    account: str,
    fingerprint: str,
    record: bytes,
    account_identity: bytes,
    device_list: bytes,
    invite_hash: bytes | None,
    now: int,
) -> DeviceRow:
    # The invite is checked first, so that without a valid invite nobody can probe which
    # accounts exist.
    if invite_hash is not None:
        consumed = conn.execute(
            "UPDATE invites SET used_at = ?, used_by = ?"
            " WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
            (now, account, invite_hash, now),
        ).rowcount
        if consumed != 1:
            raise InviteInvalid("the invite is unknown, already used or expired")
    if conn.execute("SELECT 1 FROM accounts WHERE account = ?", (account,)).fetchone():
        raise AccountExists(f"account {account!r} already exists")
    if conn.execute("SELECT 1 FROM devices WHERE fingerprint = ?", (fingerprint,)).fetchone():
        raise AccountExists("a device with this identity key is already registered")
    conn.execute(
        "INSERT INTO accounts (account, created_at, account_identity, device_list, device_list_version,"
        " last_device_id) VALUES (?, ?, ?, ?, 1, 1)",
        (account, now, account_identity, device_list),
    )
    conn.execute(
        f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, 1, ?, ?, ?)",
        (account, fingerprint, record, now),
    )
    return DeviceRow(
        account=account, device_id=1, fingerprint=fingerprint, record=bytes(record), created_at=now
    )


def _devices(conn: sqlite3.Connection, account: str) -> list[DeviceRow]:
    rows = conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE account = ? ORDER BY device_id", (account,)
    )
    return [_device_row(row) for row in rows]


def _device_by_fingerprint(conn: sqlite3.Connection, fingerprint: str) -> DeviceRow | None:
    row = conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE fingerprint = ?", (fingerprint,)
    ).fetchone()
    return None if row is None else _device_row(row)


def _account(conn: sqlite3.Connection, account: str) -> AccountRow | None:
    row = conn.execute(
        "SELECT account, account_identity, device_list, device_list_version, created_at"
        " FROM accounts WHERE account = ?",
        (account,),
    ).fetchone()
    if row is None:
        return None
    name, identity, device_list, version, created_at = row
    return AccountRow(
        account=name,
        account_identity=bytes(identity),
        device_list=bytes(device_list),
        device_list_version=version,
        created_at=created_at,
    )


def _check_list_version(conn: sqlite3.Connection, account: str, expected_version: int) -> int:
    """The account's last device id, after checking its list is still at ``expected_version``."""
    row = conn.execute(
        "SELECT device_list_version, last_device_id FROM accounts WHERE account = ?", (account,)
    ).fetchone()
    if row is None:
        raise StoreError(f"no account {account!r}")
    version, last_device_id = row
    if version != expected_version:
        raise StaleDeviceList(
            f"the device list of {account!r} is at version {version}, not {expected_version}"
        )
    return last_device_id


def _replace_device_list(
    conn: sqlite3.Connection, account: str, device_list: bytes, version: int, last_device_id: int
) -> None:
    conn.execute(
        "UPDATE accounts SET device_list = ?, device_list_version = ?, last_device_id = ?"
        " WHERE account = ?",
        (device_list, version, last_device_id, account),
    )


def _add_device(
    conn: sqlite3.Connection,
    account: str,
    fingerprint: str,
    record: bytes,
    device_list: bytes,
    expected_version: int,
    now: int,
) -> DeviceRow:
    last_device_id = _check_list_version(conn, account, expected_version)
    if conn.execute("SELECT 1 FROM devices WHERE fingerprint = ?", (fingerprint,)).fetchone():
        raise AccountExists("a device with this identity key is already registered")
    # The counter, not max(device_id): the id of a removed device is never given out again.
    device_id = last_device_id + 1
    conn.execute(
        f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
        (account, device_id, fingerprint, record, now),
    )
    _replace_device_list(conn, account, device_list, expected_version + 1, device_id)
    return DeviceRow(
        account=account, device_id=device_id, fingerprint=fingerprint, record=bytes(record), created_at=now
    )


def _remove_device(
    conn: sqlite3.Connection, account: str, device_id: int, device_list: bytes, expected_version: int
) -> bool:
    last_device_id = _check_list_version(conn, account, expected_version)
    # Its mailbox, dedup records and prekeys go with it (ON DELETE CASCADE).
    deleted = conn.execute(
        "DELETE FROM devices WHERE account = ? AND device_id = ?", (account, device_id)
    ).rowcount
    if deleted != 1:
        return False  # nothing written: the list stays as it was
    _replace_device_list(conn, account, device_list, expected_version + 1, last_device_id)
    return True


# Prekey kinds as stored: X25519 one-time / signed prekeys, ML-KEM-768 one-time / last resort.
_X25519 = "x25519"
_MLKEM = "mlkem768"


def _too_many_prekeys(message: str) -> StoreError:
    exc = StoreError(message)
    exc.code = "too_many_prekeys"
    return exc


def _publish_prekeys(
    conn: sqlite3.Connection,
    account: str,
    device_id: int,
    signed_prekey: bytes | None,
    pq_last_resort: bytes | None,
    one_time: list[tuple[int, bytes]],
    pq_one_time: list[tuple[int, bytes]],
    max_one_time: int,
) -> tuple[int, int]:
    if not _device_exists(conn, account, device_id):
        raise StoreError(f"no device {device_id} of {account!r}")
    for kind, blob in ((_X25519, signed_prekey), (_MLKEM, pq_last_resort)):
        if blob is not None:
            conn.execute(
                "INSERT INTO prekeys (account, device_id, kind, key_id, blob, one_time)"
                " VALUES (?, ?, ?, 0, ?, 0)"
                " ON CONFLICT (account, device_id, kind) WHERE one_time = 0 DO UPDATE SET blob = excluded.blob",
                (account, device_id, kind, blob),
            )
    for kind, keys in ((_X25519, one_time), (_MLKEM, pq_one_time)):
        fresh: dict[int, bytes] = {}
        for key_id, blob in keys:
            if key_id in fresh:
                continue  # the first of several keys with one id wins
            known = conn.execute(
                "SELECT 1 FROM prekeys WHERE account = ? AND device_id = ? AND kind = ?"
                " AND key_id = ? AND one_time = 1",
                (account, device_id, kind, key_id),
            ).fetchone()
            if known is None:  # stored, or handed out already: ignored either way
                fresh[key_id] = blob
        (stored,) = conn.execute(
            "SELECT count(*) FROM prekeys WHERE account = ? AND device_id = ? AND kind = ?"
            " AND one_time = 1 AND taken = 0",
            (account, device_id, kind),
        ).fetchone()
        if stored + len(fresh) > max_one_time:
            # Raising rolls back the whole transaction, the other kind's keys included.
            raise _too_many_prekeys(
                f"{stored} + {len(fresh)} one-time {kind} prekeys exceed the limit of {max_one_time}"
            )
        conn.executemany(
            "INSERT INTO prekeys (account, device_id, kind, key_id, blob, one_time) VALUES (?, ?, ?, ?, ?, 1)",
            [(account, device_id, kind, key_id, blob) for key_id, blob in fresh.items()],
        )
    return _prekey_counts(conn, account, device_id)


def _pop_one_time(conn: sqlite3.Connection, account: str, device_id: int, kind: str) -> bytes | None:
    row = conn.execute(
        "SELECT seq, blob FROM prekeys WHERE account = ? AND device_id = ? AND kind = ?"
        " AND one_time = 1 AND taken = 0 ORDER BY seq LIMIT 1",
        (account, device_id, kind),
    ).fetchone()
    if row is None:
        return None
    seq, blob = row
    conn.execute("UPDATE prekeys SET taken = 1, blob = x'' WHERE seq = ?", (seq,))
    return bytes(blob)


def _current(conn: sqlite3.Connection, account: str, device_id: int, kind: str) -> bytes | None:
    row = conn.execute(
        "SELECT blob FROM prekeys WHERE account = ? AND device_id = ? AND kind = ? AND one_time = 0",
        (account, device_id, kind),
    ).fetchone()
    return None if row is None else bytes(row[0])


def _take_bundle(conn: sqlite3.Connection, account: str, device_id: int) -> PrekeySet:
    one_time = _pop_one_time(conn, account, device_id, _X25519)
    pq = _pop_one_time(conn, account, device_id, _MLKEM)
    if pq is None:
        pq = _current(conn, account, device_id, _MLKEM)  # the last-resort key is never popped
    return PrekeySet(
        signed_prekey=_current(conn, account, device_id, _X25519), pq_prekey=pq, one_time=one_time
    )


def _prekey_counts(conn: sqlite3.Connection, account: str, device_id: int) -> tuple[int, int]:
    counts = dict(
        conn.execute(
            "SELECT kind, count(*) FROM prekeys WHERE account = ? AND device_id = ?"
            " AND one_time = 1 AND taken = 0 GROUP BY kind",
            (account, device_id),
        ).fetchall()
    )
    return counts.get(_X25519, 0), counts.get(_MLKEM, 0)


def _enqueue(
    conn: sqlite3.Connection, batch: list[NewEnvelope], now: int, quota: Quota, outbound: list[OutboundItem]
) -> int:
    # Keep the first of several envelopes with the same id in one mailbox: it counts once.
    unique: dict[tuple[str, int, bytes], NewEnvelope] = {}
    for env in batch:
        unique.setdefault((env.account, env.device_id, env.id), env)

    mailboxes = dict.fromkeys((env.account, env.device_id) for env in unique.values())
    for account, device_id in mailboxes:
        if not conn.execute(
            "SELECT 1 FROM devices WHERE account = ? AND device_id = ?", (account, device_id)
        ).fetchone():
            raise StoreError(f"no mailbox for device {device_id} of {account!r}")

    # An envelope already expired on arrival could never be delivered: it is not stored.
    fresh = [e for e in unique.values() if e.expires > now and not _is_known(conn, e, now)]

    # Only mailboxes that receive something are checked: a retransmission of envelopes that
    # are already stored is accepted (as duplicates) even when their mailbox is full.
    added: dict[Mailbox, tuple[int, int]] = {}
    for e in fresh:
        count, size = added.get((e.account, e.device_id), (0, 0))
        added[(e.account, e.device_id)] = (count + 1, size + len(e.body))
    for (account, device_id), (add_count, add_size) in added.items():
        count, size = _mailbox_usage(conn, account, device_id, now)
        if count + add_count > quota.max_envelopes or size + add_size > quota.max_bytes:
            raise QuotaExceeded(f"mailbox of device {device_id} of {account!r} is full")

    # Inserted in batch order, so seq follows the order the sender gave.
    conn.executemany(_INSERT_ENVELOPE, [_envelope_row(e, now) for e in fresh])
    # An item already expired could never be delivered: like an envelope, it is not queued.
    for item in outbound:
        if item.expires > now:
            _queue_outbound(conn, item, now)
    return len(fresh)


def _pending(
    conn: sqlite3.Connection, account: str, device_id: int, after_seq: int, limit: int, now: int
) -> list[MailboxItem]:
    rows = conn.execute(
        "SELECT seq, id, expires, kind, body, stored_at FROM mailbox"
        " WHERE account = ? AND device_id = ? AND seq > ? AND expires > ?"
        " ORDER BY seq LIMIT ?",
        (account, device_id, after_seq, now, limit),
    )
    return [
        MailboxItem(seq=seq, id=bytes(id_), expires=expires, kind=kind, body=bytes(body), stored_at=at)
        for seq, id_, expires, kind, body, at in rows
    ]


def _ack(conn: sqlite3.Connection, account: str, device_id: int, ids: list[bytes], now: int) -> int:
    unique_ids = list(dict.fromkeys(ids))  # an id listed twice counts once
    # Remember the ids of unexpired envelopes (expired ones need no dedup), then delete.
    remembered = conn.executemany(
        "INSERT OR REPLACE INTO acked_ids (account, device_id, id, expires)"
        " SELECT account, device_id, id, expires FROM mailbox"
        " WHERE account = ? AND device_id = ? AND id = ? AND expires > ?",
        [(account, device_id, id_, now) for id_ in unique_ids],
    ).rowcount
    conn.executemany(
        "DELETE FROM mailbox WHERE account = ? AND device_id = ? AND id = ?",
        [(account, device_id, id_) for id_ in unique_ids],
    )
    return remembered


def _purge_expired(conn: sqlite3.Connection, now: int) -> int:
    dropped = conn.execute("DELETE FROM mailbox WHERE expires <= ?", (now,)).rowcount
    conn.execute("DELETE FROM acked_ids WHERE expires <= ?", (now,))
    # An expired invite can never be used again; forgetting it makes no difference to
    # register_account (unknown and expired are both InviteInvalid) and keeps stats() honest.
    conn.execute("DELETE FROM invites WHERE expires_at <= ?", (now,))
    return dropped


def _stats(conn: sqlite3.Connection) -> dict[str, int]:
    (accounts,) = conn.execute("SELECT count(*) FROM accounts").fetchone()
    (devices,) = conn.execute("SELECT count(*) FROM devices").fetchone()
    envelopes, envelope_bytes = conn.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM mailbox"
    ).fetchone()
    (acked_ids,) = conn.execute("SELECT count(*) FROM acked_ids").fetchone()
    (invites_open,) = conn.execute(
        "SELECT count(*) FROM invites WHERE used_at IS NULL"
    ).fetchone()
    (outbox,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
    return {
        "accounts": accounts,
        "devices": devices,
        "envelopes": envelopes,
        "envelope_bytes": envelope_bytes,
        "acked_ids": acked_ids,
        "invites_open": invites_open,
        "outbox": outbox,
    }


def _add_peer(conn: sqlite3.Connection, name: str, url: str, fingerprint: str, via: str | None, now: int) -> Peer:
    if conn.execute("SELECT 1 FROM peers WHERE name = ?", (name,)).fetchone():
        raise PeerExists(f"peer {name} is already configured (remove it first to change it)")
    if via is not None and not conn.execute("SELECT 1 FROM peers WHERE name = ?", (via,)).fetchone():
        raise PeerInvalid(f"--via {via} is not a configured peer (add the relay first)")
    conn.execute(
        "INSERT INTO peers (name, url, fingerprint, via, added_at) VALUES (?, ?, ?, ?, ?)",
        (name, url, fingerprint, via, now),
    )
    return Peer(name=name, url=url, fingerprint=fingerprint, via=via, added_at=now)


def _remove_peer(conn: sqlite3.Connection, name: str) -> bool:
    users = [row[0] for row in conn.execute("SELECT name FROM peers WHERE via = ? ORDER BY name", (name,))]
    if users:
        raise PeerInvalid(f"peer {name} is the relay (--via) of {', '.join(users)}; remove those first")
    return conn.execute("DELETE FROM peers WHERE name = ?", (name,)).rowcount > 0


def _peers(conn: sqlite3.Connection) -> list[Peer]:
    rows = conn.execute("SELECT name, url, fingerprint, via, added_at, key FROM peers ORDER BY name")
    return [
        Peer(name=n, url=u, fingerprint=f, via=v, added_at=a, key=None if k is None else bytes(k))
        for n, u, f, v, a, k in rows
    ]
