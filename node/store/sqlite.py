"""The embedded SQLite backend of the Store contract (see ``base.py`` for the semantics).

One writer connection, used from one worker thread at a time (``trio.to_thread`` with a
CapacityLimiter(1)), and a read-only connection on its own thread for the hot reads (what to
deliver, what to push), which WAL lets read the last committed state while a write goes on.
WAL + ``synchronous=FULL`` means a COMMIT has reached the disk when it returns, so a method's
return is a durable acknowledgement. Every mutating method is all or
nothing inside a ``BEGIN IMMEDIATE`` transaction that the writes queued at the same moment
share, so they share one fsync (group commit, ``group_commit.py``: a failing write is undone
alone, by running the group again with a savepoint per write). The write
lock is taken up front, so checks and writes see the same state even while another process (the
``sonet-node invite`` CLI) writes to the same file.

The SQL is plain functions of a connection, one module per concern: peers, ``enqueue`` (one
transaction over mailboxes and outboxes) and store-wide stats here; invites, accounts and devices
in ``sqlite_accounts.py``; mailboxes (envelope insert, deduplication, quota usage, pending, ack,
purge) in ``sqlite_mailbox.py``; prekeys in ``sqlite_prekeys.py``; MLS KeyPackages in
``sqlite_key_packages.py``; the federation tables
(outboxes, delivery rows, peer keys) in ``sqlite_federation.py``; the key directory (log, heads,
cosignatures, witnessed heads, splits) in ``sqlite_keydir.py``; groups (hosted groups, member devices, dedup) in ``sqlite_groups.py``; the stored-bytes budgets that
``enqueue`` and ``receive`` enforce in their own transaction in ``sqlite_budgets.py``. Imports point one way:
``sqlite_mailbox`` <- ``sqlite_prekeys`` and ``sqlite_federation`` <- ``sqlite``, and
``sqlite_keydir`` and ``sqlite_prekeys`` <- ``sqlite_accounts`` <- ``sqlite``.

The same functions run on PostgreSQL (``postgres.py`` subclasses this class and replaces only
the plumbing): their SQL stays in the subset both databases read, against the ``Connection``
of ``dialect.py``. One exception: here the outboxes are batch rows and an index in memory
(``outbox_log.py``; this process is the file's one writer of them), where PostgreSQL keeps its
``outbox`` table; the functions of ``sqlite_federation.py`` take the log from the writer
connection (``log_of``) and use the table where there is none.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Self, TypeVar

import trio

from sonet.core.crypto import normalize_fingerprint
from sonet.core.errors import LocalProtocolError
from sonet.core.groups.items import GroupItem
from sonet.federation.peers import PeerError, validate_peer
from sonet.federation.ports import Page, Queued

from .base import (
    AccountRow,
    AccountSummary,
    InviteRow,
    GroupEffects,
    DeliveryRow,
    DeviceKeySet,
    DeviceRow,
    RemovedDeviceRow,
    HeadRow,
    Inbound,
    MailboxItem,
    NewEnvelope,
    OutboundItem,
    Peer,
    PeerExists,
    PeerInvalid,
    PrekeySet,
    QueuedItem,
    Quota,
    SenderRemoved,
    SplitRow,
    StatusUpdate,
    StoreError,
    WitnessRow,
)
from .dialect import Connection
from .group_commit import CommitObserver, GroupCommit
from .outbox_log import Logged, LogConnection, OutboxLog, log_of, move_rows, outbox_version, page_of
from .queue_tails import QueueTails
from .tail_capture import SqliteTails
from .migrations import migrate
from .sqlite_accounts import (
    _account,
    _account_disabled,
    _account_removed,
    _account_summaries,
    _account_summary,
    _admin_version,
    _bump_admin_version,
    _invites,
    _mailbox_usage,
    _remove_account,
    _revoke_invite,
    _set_account_disabled,
    _add_device,
    _add_invite,
    _device_by_fingerprint,
    _devices,
    _removed_device,
    _invite_usable,
    _register_account,
    _remove_device,
)
from .sqlite_federation import (
    _deliveries,
    _drop_vanished_deliveries,
    _expire_outbox,
    _expired_outbox,
    _outbox,
    _outbox_counts,
    _outbox_done,
    _queue_outbound_batch,
    _receive,
    _set_peer_key,
)
from .sqlite_keydir import (
    _add_cosignature,
    _cosigned_head,
    _directory_backfill,
    _directory_hashes,
    _directory_latest,
    _directory_leaves,
    _latest_head,
    _put_head,
    _record_split,
    _set_witnessed,
    _splits,
    _witnessed,
    _witnessed_all,
)
from .sqlite_budgets import Charges, DiskFree, UsageChanges, disk_free_at, enforce
from .sqlite_group_trees import _group_tree
from .sqlite_expiry import _next_expiry
from .sqlite_mailbox import _ack, _device_exists, _pending, _purge_expired_mail, _purge_expired_records, _store_envelopes
from .sqlite_prekeys import _prekey_counts, _publish_prekeys, _take_bundle
from .sqlite_key_packages import _key_package_count, _publish_key_packages, _take_key_packages
from .sqlite_links import LinkSlotRow, _approve_link_slot, _drop_link_slot, _link_slot, _open_link_slot, _purge_link_slots

__all__ = ["SqliteStore", "BUSY_TIMEOUT_S"]

#: How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_S = 5.0

#: The page size of a new database file (a file made before keeps its own). SQLite's default,
#: chosen by measurement (docs/performance.md, round 17): 16 KiB pages cut the receiving node's
#: CPU by ~13 % for ordinary traffic, but for a device holding many acknowledged ids (2,000,000)
#: its ack cost 1.5x as much: each acked id is a random insert into that device's range of the
#: index, which writes a whole page to the WAL and again at the checkpoint.
PAGE_SIZE = 4096

T = TypeVar("T")
Q = TypeVar("Q", QueuedItem, MailboxItem)


def _connect(path: str) -> LogConnection:
    # Create the file ourselves so it is 0600 from the start (SQLite gives the -wal and -shm
    # files the same mode as the database file).
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False, factory=LogConnection
    )
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE:d}")  # takes effect on a new, empty file only
        mode = _wal(conn)
        if mode != "wal":
            raise StoreError(f"cannot enable WAL journal on {path!r} (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")  # fsync the WAL on every commit
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
        move_rows(conn)
        # Statement journals (a savepoint's, when a group runs again after a failed write, see
        # group_commit.py) in memory, not in temporary files: only needed to undo a failed write.
        # Only after the migrations: a table a migration rebuilds would be journaled in memory
        # whole (dropping 2,000,000 delivery rows: 407 MB at the peak, 45 with temporary files).
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.outbox_log = OutboxLog()
        conn.outbox_log.load(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _wal(conn: sqlite3.Connection) -> str:
    """Turn WAL on; the journal mode it is in. Two processes opening a new file at once: the
    change to WAL answers "database is locked" at once to one of them (SQLite's busy timeout
    does not wait there; 11 of 300 such pairs failed), so it is tried again until the timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _connect_reader(path: str) -> sqlite3.Connection:
    """A second, read-only connection: in WAL mode it reads the last committed state while
    the writer's transactions and fsyncs go on (the hot reads -- what to deliver, what to
    push -- need not queue behind them)."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    return conn


class SqliteStore:
    """Store backed by one SQLite file. Create with ``await SqliteStore.open(path)``."""

    #: what the last commits stored into each mailbox (queue_tails.py); None where this
    #: process is not the file's only writer (PostgreSQL)
    _tails: SqliteTails | None = None
    #: the outboxes, known from memory (outbox_log.py); None where they are a table (PostgreSQL)
    _outbox_log: OutboxLog | None = None

    def __init__(self, conn: LogConnection, reader: sqlite3.Connection, disk_free: DiskFree) -> None:
        self._disk_free = disk_free
        self._conn: sqlite3.Connection | None = conn
        self._limiter = trio.CapacityLimiter(1)
        self._tails = SqliteTails()
        self._tails.setup(conn)
        self._outbox_log = conn.outbox_log
        observers: list[CommitObserver] = [self._tails] if self._outbox_log is None else [self._tails, self._outbox_log]
        self._writes = GroupCommit(self._call, observers=observers)
        self._reader: sqlite3.Connection | None = reader
        self._read_limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, disk_free: DiskFree | None = None) -> Self:
        """Open (creating and migrating as needed) the database at ``path``. ``disk_free()``
        is the free space the disk reserve is checked against (default: that of the file
        system holding ``path``)."""
        try:
            conn = await trio.to_thread.run_sync(_connect, os.fspath(path))
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database: {exc}") from exc
        try:
            reader = await trio.to_thread.run_sync(_connect_reader, os.fspath(path))
        except (sqlite3.Error, OSError) as exc:
            conn.close()
            raise StoreError(f"cannot open database: {exc}") from exc
        return cls(conn, reader, disk_free or disk_free_at(os.fspath(path)))

    async def close(self) -> None:
        def close(conn: sqlite3.Connection) -> None:
            self._conn = None
            conn.close()

        def close_reader(conn: sqlite3.Connection) -> None:
            self._reader = None
            conn.close()

        if self._reader is not None:
            await self._read(close_reader)
        if self._conn is not None:
            await self._call(close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Plumbing --------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the writer connection's thread, one call at a time.

        The thread is never abandoned on cancellation: a transaction always finishes (commit
        or rollback) before the caller sees the cancellation, so nothing is left half-done.
        """
        return await self._run_on("_conn", self._limiter, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the reads of ``fn(conn, *args)`` on the read connection (its own thread), which
        sees every transaction committed before the call."""
        return await self._run_on("_reader", self._read_limiter, fn, *args)

    async def _run_on(self, which: str, limiter: trio.CapacityLimiter, fn: Callable[..., T], *args: Any) -> T:
        def run() -> T:
            conn = getattr(self, which)
            if conn is None:
                raise StoreError("store is closed")
            try:
                return fn(conn, *args)
            except sqlite3.Error as exc:
                raise StoreError(f"database error: {exc}") from exc

        return await trio.to_thread.run_sync(run, limiter=limiter)

    async def _transaction(
        self,
        fn: Callable[..., T],
        *args: Any,
        cost: int = 1,
        after: Queued | None = None,
        queued: Callable[[Queued], object] | None = None,
        relaxed: bool = False,
    ) -> T:
        """Run ``fn(conn, *args)`` durably: committed (with the writes queued beside it, see
        ``group_commit.py``) before this returns; on an error in ``fn`` its writes are undone.
        ``after`` / ``queued``: in order with other writes (``GroupCommit.run``); ``relaxed``:
        a write that acknowledges nothing to anyone need not wait for the disk (ibid.)."""
        return await self._writes.run(fn, *args, cost=cost, after=after, queued=queued, relaxed=relaxed)

    async def _tail_or_read(
        self,
        tails: QueueTails[Any, Q] | None,
        key: Any,
        read: Callable[[], Awaitable[Page[Q]]],
        *,
        after: int,
        limit: int,
        max_bytes: int | None,
        now: int,
    ) -> Page[Q]:
        """One read of a queue (an outbox, a mailbox): answered by its committed tail when that
        can (queue_tails.py), else ``read()`` from the database, which may become the tail."""
        if tails is None:
            return await read()
        page = tails.answer(key, after=after, limit=limit, max_bytes=max_bytes, now=now)
        if page is not None:
            return page
        ticket, page = tails.begin_read(key), None
        try:
            page = await read()
            return page
        finally:
            tails.end_read(ticket, after=after, now=now, page=page)

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
        keys: DeviceKeySet | None = None,
    ) -> DeviceRow:
        return await self._transaction(
            _register_account, account, fingerprint, record, account_identity, device_list, invite_hash, now, keys
        )

    async def invite_usable(self, token_hash: bytes, *, account: str, now: int) -> bool:
        return await self._read(_invite_usable, token_hash, account, now)

    async def devices(self, account: str) -> list[DeviceRow]:
        return await self._call(_devices, account)

    async def device_by_fingerprint(self, fingerprint: str) -> DeviceRow | None:
        return await self._call(_device_by_fingerprint, fingerprint)

    async def removed_device(self, fingerprint: str) -> RemovedDeviceRow | None:
        return await self._call(_removed_device, fingerprint)

    async def account(self, account: str) -> AccountRow | None:
        return await self._call(_account, account)

    async def add_device(
        self,
        *,
        account: str,
        fingerprint: str,
        record: bytes,
        device_list: bytes,
        expected_version: int,
        now: int,
        keys: DeviceKeySet | None = None,
    ) -> DeviceRow:
        return await self._transaction(
            _add_device, account, fingerprint, record, device_list, expected_version, now, keys
        )

    async def remove_device(
        self, *, account: str, device_id: int, device_list: bytes, expected_version: int, now: int
    ) -> bool:
        return await self._transaction(_remove_device, account, device_id, device_list, expected_version, now)

    # Operator administration (node/admin.py) -------------------------------------------

    async def account_summaries(self) -> list[AccountSummary]:
        return await self._snapshot(_account_summaries)

    async def account_summary(self, account: str) -> AccountSummary | None:
        return await self._snapshot(_account_summary, account)

    async def mailbox_usage(self, account: str) -> dict[int, tuple[int, int]]:
        return await self._read(_mailbox_usage, account)

    async def account_disabled(self, account: str) -> bool:
        return await self._read(_account_disabled, account)

    async def set_account_disabled(self, account: str, *, disabled: bool, now: int) -> bool:
        return await self._transaction(_set_account_disabled, account, disabled, now)

    async def remove_account(self, account: str, *, now: int) -> list[str] | None:
        return await self._transaction(_remove_account, account, now)

    async def account_removed(self, account: str) -> int | None:
        return await self._read(_account_removed, account)

    async def admin_version(self) -> int:
        version = await self._read(_admin_version)
        if self._tails is not None:
            # The admin commands write from another process: what the tails hold may be gone
            # (a removed account's mailboxes). Their next commit would see it too (data_version).
            self._tails.admin_version(version)
        if self._outbox_log is not None:
            await self._outbox_news()
        return version

    def on_outbox_changed(self, wake: Callable[[set[str]], object]) -> None:
        if self._outbox_log is not None:
            self._outbox_log.reloaded = wake

    async def _outbox_news(self) -> None:
        """Another connection changed the outbox tables (nothing of the node's does; a second
        store on the file can, as tests do): the log reads them again, at the latest now (the
        node's next commit would too), and tells ``on_outbox_changed``'s callback (outbox_log.py)."""
        log = self._outbox_log
        assert log is not None
        if await self._read(outbox_version) != log.version:
            await self._transaction(_nothing)  # its begin reads the tables again (OutboxLog.begin)

    async def invites(self) -> list[InviteRow]:
        return await self._read(_invites)

    async def revoke_invite(self, token_hash: bytes) -> bool:
        return await self._transaction(_revoke_invite, token_hash)

    # Key directory -----------------------------------------------------------------------

    async def directory_hashes(self, start: int) -> list[bytes]:
        return await self._call(_directory_hashes, start)

    async def directory_leaves(self, start: int, end: int) -> list[bytes]:
        return await self._call(_directory_leaves, start, end)

    async def directory_latest(self, account: str) -> tuple[int, bytes] | None:
        return await self._call(_directory_latest, account)

    async def directory_backfill(self, *, now: int) -> int:
        return await self._transaction(_directory_backfill, now)

    async def put_head(self, *, size: int, root: bytes, head: bytes) -> None:
        await self._transaction(_put_head, size, root, head)

    async def latest_head(self) -> HeadRow | None:
        return await self._snapshot(_latest_head)

    async def cosigned_head(self, *, min_size: int) -> HeadRow | None:
        return await self._snapshot(_cosigned_head, min_size)

    async def add_cosignature(self, *, size: int, witness: str, cosignature: bytes) -> None:
        await self._transaction(_add_cosignature, size, witness, cosignature)

    async def witnessed(self, node: str) -> WitnessRow | None:
        return await self._call(_witnessed, node)

    async def witnessed_all(self) -> list[WitnessRow]:
        return await self._call(_witnessed_all)

    async def set_witnessed(self, row: WitnessRow) -> None:
        await self._transaction(_set_witnessed, row)

    async def record_split(self, row: SplitRow) -> bool:
        return await self._transaction(_record_split, row)

    async def splits(self) -> list[SplitRow]:
        return await self._call(_splits)

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
        # on the read connection: federation asks before each push, which must not wait
        # behind the group commit in progress
        return await self._read(_peers)

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

    async def take_bundle(self, account: str, device_id: int, *, one_time: bool = True) -> PrekeySet:
        return await self._transaction(_take_bundle, account, device_id, one_time)

    async def prekey_counts(self, account: str, device_id: int) -> tuple[int, int]:
        return await self._call(_prekey_counts, account, device_id)

    # MLS KeyPackages ---------------------------------------------------------------------

    async def publish_key_packages(
        self,
        account: str,
        device_id: int,
        *,
        one_time: Sequence[tuple[bytes, bytes]],
        last_resort: tuple[bytes, bytes] | None,
        max_one_time: int,
    ) -> int:
        return await self._transaction(
            _publish_key_packages, account, device_id, list(one_time), last_resort, max_one_time, cost=len(one_time) + 1
        )

    async def take_key_packages(self, account: str, *, one_time: bool = True) -> list[tuple[int, bytes]]:
        return await self._transaction(_take_key_packages, account, one_time)

    async def key_package_count(self, account: str, device_id: int) -> int:
        return await self._call(_key_package_count, account, device_id)

    # Groups ----------------------------------------------------------------------------

    async def create_group(self, *, account: str, device_id: int, group: bytes, state: bytes, now: int) -> bool:
        # sqlite_groups.py routes items through the hub and with it MLS (~0.2 s to import): it is
        # loaded where a group is used, not by every command that opens the store
        from .sqlite_groups import _create_group

        return await self._transaction(_create_group, account, device_id, group, state, now)

    async def group_tree(self, group: bytes, epoch: int, *, offset: int, length: int, now: int) -> tuple[int, bytes] | None:
        return await self._read(_group_tree, group, epoch, offset, length, now)

    async def group_submit(
        self, item: GroupItem, *, account: str, device_id: int, hub: str, node: str, now: int, ttl_ms: int, quota: Quota
    ) -> GroupEffects:
        from .sqlite_groups import _group_submit  # (see create_group)

        return await self._transaction(
            _group_submit, item, account, device_id, hub, node, now, ttl_ms, quota, self._disk_free
        )

    # Mailboxes -------------------------------------------------------------------------

    async def enqueue(
        self,
        envelopes: Sequence[NewEnvelope],
        *,
        now: int,
        quota: Quota,
        outbound: Sequence[OutboundItem] = (),
        sender: tuple[str, int] | None = None,
    ) -> int:
        if not envelopes and not outbound:
            return 0
        return await self._transaction(
            _enqueue, list(envelopes), now, quota, list(outbound), sender, self._disk_free, cost=len(envelopes) + len(outbound)
        )

    async def pending(
        self, account: str, device_id: int, *, after_seq: int, limit: int, now: int, max_bytes: int | None = None
    ) -> Page[MailboxItem]:
        if limit < 1:
            raise ValueError("limit must be at least 1")  # SQLite reads LIMIT -1 as "all"
        tails = None if self._tails is None else self._tails.mailbox
        return await self._tail_or_read(
            tails, (account, device_id), lambda: self._read(_pending, account, device_id, after_seq, limit, now, max_bytes),
            after=after_seq, limit=limit, max_bytes=max_bytes, now=now,
        )  # fmt: skip

    async def ack(self, account: str, device_id: int, ids: Sequence[bytes], *, now: int) -> int:
        if not ids:
            return 0
        # relaxed: a device's ack is undone only by a power loss, and then the envelopes are
        # delivered again and dropped by the device as duplicates
        return await self._transaction(_ack, account, device_id, list(ids), now, cost=len(ids), relaxed=True)

    async def purge_expired(self, *, now: int) -> int:
        dropped, more = await self._transaction(_purge_all, now)
        # Past its first chunk, the mail a chunk per transaction (sqlite_mailbox.py
        # ``PURGE_ROWS``, ``PURGE_BYTES``): other writes go between them, and each chunk takes
        # its counters with it. Relaxed: nobody is told it happened; rows a power loss brings
        # back, expired, go at the next purge.
        while more:
            deleted, more = await self._transaction(_purge_expired_mail, now, relaxed=True)
            dropped += deleted
        return dropped

    async def next_expiry(self, *, after: int) -> int | None:
        if self._outbox_log is None:
            return await self._read(_next_expiry, after)
        due = [await self._read(_next_expiry, after, False), self._outbox_log.next_expiry(after)]
        return min((d for d in due if d is not None), default=None)

    async def stats(self) -> dict[str, int]:
        return await self._snapshot(_stats)

    # Federation: outboxes, deliveries ------------------------------------------------------

    async def receive(
        self,
        items: Sequence[Inbound],
        *,
        now: int,
        quota: Quota,
        after: Queued | None = None,
        queued: Callable[[Queued], object] | None = None,
    ) -> list[str]:
        if not items:
            return []
        return await self._transaction(
            _receive, list(items), now, quota, self._disk_free, cost=len(items), after=after, queued=queued
        )

    async def outbox(self, dest: str, *, limit: int, max_bytes: int, now: int, after: int = 0) -> Page[QueuedItem]:
        if limit < 1:
            raise ValueError("limit must be at least 1")  # SQLite reads LIMIT -1 as "all"
        if self._outbox_log is None:
            return await self._read(_outbox, dest, limit, max_bytes, now, after)
        items, complete = self._outbox_log.read(dest, after=after, limit=limit, max_bytes=max_bytes, now=now)
        return await self._logged_page(items, complete)

    async def _logged_page(self, items: list[Logged], complete: bool) -> Page[QueuedItem]:
        """Items of the outbox log with their bytes: cached, or read from their batch rows."""
        uncached = [item for item in items if item.data is None]
        bodies = await self._read(OutboxLog.bodies, uncached) if uncached else {}
        return page_of(items, bodies, complete)

    async def expired_outbox(self, dest: str, *, limit: int, max_bytes: int, now: int) -> list[QueuedItem]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if self._outbox_log is None:
            return await self._call(_expired_outbox, dest, limit, max_bytes, now)
        return await self._logged_page(self._outbox_log.expired(dest, limit=limit, max_bytes=max_bytes, now=now), False)

    async def outbox_done(
        self,
        dest: str,
        seqs: Sequence[int],
        *,
        now: int,
        statuses: Sequence[StatusUpdate] = (),
        reports: Sequence[OutboundItem] = (),
        failed: Mapping[int, str] | None = None,
    ) -> None:
        if seqs or statuses or reports:
            # relaxed unless it queues reports (news for another node): undone only by a power
            # loss, a settle brings the items back, to be pushed again and dropped downstream as
            # duplicates
            await self._transaction(
                _outbox_done, dest, list(seqs), now, list(statuses), list(reports), dict(failed or {}),
                cost=len(seqs), relaxed=not reports,
            )

    async def outbox_counts(self) -> dict[str, int]:
        if self._outbox_log is not None:
            return self._outbox_log.counts()
        return await self._call(_outbox_counts)

    async def outbox_destinations(self) -> list[str]:
        return sorted(await self.outbox_counts())

    async def deliveries(self, sender_account: str, sender_device: int, ids: Sequence[bytes]) -> list[DeliveryRow]:
        if not ids:
            return []
        wanted = sorted(set(ids))
        if self._outbox_log is None:
            return await self._snapshot(_deliveries, sender_account, sender_device, wanted)
        # The queued items first, then the rows: an item settled in between is in both, and
        # its row says it (the reverse order could find it in neither).
        queued = [(i.id, i.dest, i.device, i.queued_at, i.expires) for i in self._outbox_log.tracked(sender_account, sender_device, wanted)]
        return await self._snapshot(_deliveries, sender_account, sender_device, wanted, queued)

    async def expire_outbox(self, *, now: int) -> None:
        await self._transaction(_expire_outbox, now)

    # Device-linking slots (sqlite_links.py, node/linking.py) ----------------------------

    async def open_link_slot(self, row: LinkSlotRow, *, now: int, max_slots: int, max_per_source: int) -> str:
        return await self._transaction(_open_link_slot, row, now, max_slots, max_per_source)

    async def link_slot(self, slot: bytes, *, now: int) -> LinkSlotRow | None:
        return await self._read(_link_slot, slot, now)

    async def approve_link_slot(self, slot: bytes, *, account: str, offer: bytes, now: int) -> str:
        return await self._transaction(_approve_link_slot, slot, account, offer, now)

    async def drop_link_slot(self, slot: bytes) -> bool:
        return await self._transaction(_drop_link_slot, slot)

    async def purge_link_slots(self, *, now: int) -> int:
        return await self._transaction(_purge_link_slots, now)


# The SQL, as plain functions of a connection. Each runs on the worker thread, inside the
# transaction opened by SqliteStore._transaction where it writes.


def _enqueue(
    conn: Connection,
    batch: list[NewEnvelope],
    now: int,
    quota: Quota,
    outbound: list[OutboundItem],
    sender: tuple[str, int] | None,
    disk_free: DiskFree,
) -> int:
    # Here, not in sqlite_mailbox.py: one transaction over both the mailboxes and the outboxes.
    if sender is not None and not _device_exists(conn, *sender):
        # Its removal committed first (the removed device's connection may not be closed yet):
        # nothing of a removed device is stored after its removal.
        raise SenderRemoved(f"device {sender[1]} of {sender[0]!r} was removed from its account")
    charges = Charges()
    stored = _store_envelopes(conn, batch, now, quota, sender, charges)
    # An item already expired could never be delivered: like an envelope, it is not queued.
    unexpired = [item for item in outbound if item.expires > now]
    usage = UsageChanges()
    _queue_outbound_batch(conn, unexpired, now, charges, usage)
    usage.apply(conn)
    # After the writes, in their transaction: OverBudget undoes them all (no check-then-write race).
    enforce(conn, quota, charges, disk_free)
    return stored


def _nothing(conn: Connection) -> None:
    """A write that writes nothing (its group's observers still begin and publish)."""


def _purge_all(conn: Connection, now: int) -> tuple[int, bool]:
    """All that expired, but only the first chunk of the mail (``_purge_expired_mail``: how many
    went, and whether more may be left for ``SqliteStore.purge_expired`` to take)."""
    from .sqlite_group_purge import _purge_groups  # (not sqlite_groups.py: see create_group)

    _purge_groups(conn, now)
    _drop_vanished_deliveries(conn, now)
    _purge_expired_records(conn, now)
    return _purge_expired_mail(conn, now)


def _stats(conn: Connection) -> dict[str, int]:
    (accounts,) = conn.execute("SELECT count(*) FROM accounts").fetchone()
    (devices,) = conn.execute("SELECT count(*) FROM devices").fetchone()
    envelopes, envelope_bytes = conn.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM mailbox"
    ).fetchone()
    (acked_ids,) = conn.execute("SELECT count(*) FROM acked_ids").fetchone()
    (invites_open,) = conn.execute(
        "SELECT count(*) FROM invites WHERE used_at IS NULL"
    ).fetchone()
    log = log_of(conn)
    (outbox,) = conn.execute("SELECT count(*) FROM outbox").fetchone() if log is None else (len(log),)
    return {
        "accounts": accounts,
        "devices": devices,
        "envelopes": envelopes,
        "envelope_bytes": envelope_bytes,
        "acked_ids": acked_ids,
        "invites_open": invites_open,
        "outbox": outbox,
    }


def _add_peer(conn: Connection, name: str, url: str, fingerprint: str, via: str | None, now: int) -> Peer:
    if conn.execute("SELECT 1 FROM peers WHERE name = ?", (name,)).fetchone():
        raise PeerExists(f"peer {name} is already configured (remove it first to change it)")
    if via is not None and not conn.execute("SELECT 1 FROM peers WHERE name = ?", (via,)).fetchone():
        raise PeerInvalid(f"--via {via} is not a configured peer (add the relay first)")
    conn.execute(
        "INSERT INTO peers (name, url, fingerprint, via, added_at) VALUES (?, ?, ?, ?, ?)",
        (name, url, fingerprint, via, now),
    )
    _bump_admin_version(conn)  # a running node reads its peer table again (node/admin_watch.py)
    return Peer(name=name, url=url, fingerprint=fingerprint, via=via, added_at=now)


def _remove_peer(conn: Connection, name: str) -> bool:
    users = [row[0] for row in conn.execute("SELECT name FROM peers WHERE via = ? ORDER BY name", (name,))]
    if users:
        raise PeerInvalid(f"peer {name} is the relay (--via) of {', '.join(users)}; remove those first")
    removed = conn.execute("DELETE FROM peers WHERE name = ?", (name,)).rowcount > 0
    if removed:
        _bump_admin_version(conn)  # a running node reads its peer table again (node/admin_watch.py)
    return removed


def _peers(conn: Connection) -> list[Peer]:
    rows = conn.execute("SELECT name, url, fingerprint, via, added_at, key FROM peers ORDER BY name")
    return [
        Peer(name=n, url=u, fingerprint=f, via=v, added_at=a, key=None if k is None else bytes(k))
        for n, u, f, v, a, k in rows
    ]
