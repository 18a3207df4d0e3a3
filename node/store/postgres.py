"""The PostgreSQL backend of the Store contract (psycopg 3 with a connection pool).

The same methods and the same SQL as the SQLite backend: ``PostgresStore`` takes every method
of ``SqliteStore`` and replaces only the plumbing (how a function of a connection is run), and
the ``sqlite_*`` modules' functions run on a ``PgConnection`` (``postgres_connection.py``,
``dialect.py``). The schema is PostgreSQL DDL, numbered like SQLite's (``postgres_migrations.py``).

Each write runs in its own SERIALIZABLE transaction on a pooled connection and returns once
COMMIT returned (``synchronous_commit`` on: the WAL is flushed). SERIALIZABLE makes a check and
the write it guards (a quota, a budget, a dense log index) atomic against every other writer,
in this process or another one sharing the database: a transaction that would break that is
aborted by the server (40001/40P01) and run again here, from the start, with nothing of the
failed attempt kept. Reads run in a read-only REPEATABLE READ transaction (one snapshot). No
state the store relies on is kept in the process, so several processes may share the database.

psycopg's async API is asyncio's; under trio the blocking API runs on worker threads
(``trio.to_thread``, never abandoned: a transaction always ends before its caller moves on),
as many at once as the pool has connections.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Self, TypeVar

import psycopg
import trio
from psycopg import IsolationLevel
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from sonet.federation.ports import Queued

from .base import StoreError
from .database_url import redact_url
from .dialect import IntegrityError
from .group_commit import in_turn
from .postgres_connection import PgConnection, configure
from .postgres_migrations import migrate
from .sqlite import SqliteStore
from .sqlite_budgets import DiskFree

__all__ = ["PostgresStore"]

T = TypeVar("T")

#: connections per store (and so worker threads at once)
POOL_SIZE = 8
#: how long a call waits for a free connection, and the first connection for the server
CONNECT_TIMEOUT_S = 10.0
#: a transaction the server aborted to keep the writes serializable is run again this often
MAX_ATTEMPTS = 30
#: once the server was lost, how long a call's check that it is back may take (libpq's least)
RECONNECT_TIMEOUT_S = 2
#: after a failed check, calls fail with its reason for this long before one checks again
RECHECK_AFTER_S = 0.5

_RETRIED = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


def _no_disk_check() -> int:
    # The database's disk is the server's, maybe another machine's: the disk reserve is not
    # checked here (max_database_bytes still is, with pg_database_size).
    return sys.maxsize


class PostgresStore(SqliteStore):
    """Store backed by a PostgreSQL database. Create with ``await PostgresStore.open(url)``."""

    def __init__(self, pool: ConnectionPool, url: str, disk_free: DiskFree = _no_disk_check) -> None:  # noqa: D107
        self._disk_free = disk_free
        self._pool: ConnectionPool | None = pool
        self._url = url
        self._limiter = trio.CapacityLimiter(POOL_SIZE)
        # Set when a call found its connection broken (the server stopped or restarted): the
        # pool would wait for its own reconnection, which backs off up to minutes, so calls
        # fail at once while the server is away and the first to find it back opens a new pool.
        self._lost = False
        self._reconnecting = threading.Lock()
        self._last_check: tuple[float, str] = (-RECHECK_AFTER_S, "")  # (monotonic time, reason) of a failed one

    @classmethod
    async def open(cls, path: Any, *, disk_free: DiskFree | None = None) -> Self:
        """Connect to the database at the ``postgresql://`` URL ``path`` and migrate it.
        ``disk_free()``: the free space the disk reserve is checked against (default: none is
        checked, the database's disk being the server's)."""
        url = str(path)

        def connect() -> ConnectionPool:
            # One plain connection first: an unreachable or refusing server fails at once with
            # libpq's reason (the pool would retry in the background until its timeout).
            timeout: dict[str, Any] = {} if "connect_timeout" in conninfo_to_dict(url) else {"connect_timeout": int(CONNECT_TIMEOUT_S)}
            with psycopg.connect(url, autocommit=True, **timeout) as conn:
                migrate(conn)
            return _new_pool(url)

        try:
            pool = await trio.to_thread.run_sync(connect)
        except (psycopg.Error, PoolTimeout) as exc:
            # the caller names the database (redacted): libpq's reason never holds the password
            raise StoreError(f"cannot open database: {_message(exc)}") from None
        return cls(pool, url, disk_free or _no_disk_check)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await trio.to_thread.run_sync(pool.close)

    # Plumbing: every method of SqliteStore ends in one of these ---------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(fn, args, write=False)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(fn, args, write=False)

    async def _snapshot(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(fn, args, write=False)

    async def _transaction(
        self,
        fn: Callable[..., T],
        *args: Any,
        cost: int = 1,
        after: Queued | None = None,
        queued: Callable[[Queued], object] | None = None,
        relaxed: bool = False,  # (every commit here is flushed: synchronous_commit stays on)
    ) -> T:
        if after is None and queued is None:
            return await self._run(fn, args, write=True)
        # no group commit here: a write in order runs once the one before it has committed
        return await in_turn(lambda: self._run(fn, args, write=True), after=after, queued=queued)

    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...], *, write: bool) -> T:
        return await trio.to_thread.run_sync(self._run_sync, fn, args, write, limiter=self._limiter)

    def _usable_pool(self) -> ConnectionPool:
        """The pool, or a new one once the server is back after it was lost; StoreError
        "unavailable" (at once) while it is still away."""
        if not self._lost:
            pool = self._pool
            if pool is None:
                raise StoreError("store is closed")
            return pool
        with self._reconnecting:  # one check at a time; the others then see its outcome
            pool = self._pool
            if pool is None:
                raise StoreError("store is closed")
            if not self._lost:
                return pool
            checked_at, reason = self._last_check
            if time.monotonic() - checked_at < RECHECK_AFTER_S:
                raise StoreError(f"database unavailable: {reason}", code="unavailable")
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=RECONNECT_TIMEOUT_S):
                    pass
                fresh = _new_pool(self._url)
            except (psycopg.Error, PoolTimeout) as exc:
                self._last_check = (time.monotonic(), _message(exc))
                raise StoreError(f"database unavailable: {_message(exc)}", code="unavailable") from None
            self._pool, self._lost = fresh, False
        # calls still on the old pool finish there; its closing waits for them
        threading.Thread(target=pool.close, name="sonet-store-old-pool", daemon=True).start()
        return fresh

    def _run_sync(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            pool = self._usable_pool()
            raw = None
            try:
                with pool.connection() as raw:
                    raw.isolation_level = IsolationLevel.SERIALIZABLE if write else IsolationLevel.REPEATABLE_READ
                    raw.read_only = not write
                    with raw.transaction():
                        return fn(PgConnection(raw), *args)
            except _RETRIED:
                if attempt == MAX_ATTEMPTS:
                    raise StoreError("database busy: a write kept conflicting with others; try again") from None
                time.sleep(random.uniform(0, 0.002 * attempt))  # apart from the writes it met
            except IntegrityError as exc:
                raise StoreError(f"database error: {exc}") from exc
            except PoolTimeout as exc:
                raise StoreError(f"database unavailable ({redact_url(self._url)}): {_message(exc)}") from None
            except psycopg.Error as exc:
                if raw is not None and raw.broken:  # the server went away under this call
                    self._lost = True
                    raise StoreError(f"database unavailable: {_message(exc)}", code="unavailable") from None
                raise StoreError(f"database error: {_message(exc)}") from exc
        raise AssertionError("unreachable")


def _new_pool(url: str) -> ConnectionPool:
    """An open pool with its first connection made (PoolTimeout or psycopg.Error if it cannot)."""
    pool = ConnectionPool(
        url, min_size=1, max_size=POOL_SIZE, configure=configure, open=False, timeout=CONNECT_TIMEOUT_S,
        name="sonet-store",
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
    except BaseException:
        pool.close()
        raise
    return pool


def _message(exc: BaseException) -> str:
    """One line of a psycopg error (its first; never the connection string)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
