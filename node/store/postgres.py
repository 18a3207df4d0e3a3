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
import time
from collections.abc import Callable
from typing import Any, Self, TypeVar

import psycopg
import trio
from psycopg import IsolationLevel
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from .base import StoreError
from .database_url import redact_url
from .dialect import IntegrityError
from .postgres_connection import PgConnection, configure
from .postgres_migrations import migrate
from .sqlite import SqliteStore

__all__ = ["PostgresStore"]

T = TypeVar("T")

#: connections per store (and so worker threads at once)
POOL_SIZE = 8
#: how long a call waits for a free connection, and the first connection for the server
CONNECT_TIMEOUT_S = 10.0
#: a transaction the server aborted to keep the writes serializable is run again this often
MAX_ATTEMPTS = 30

_RETRIED = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


def _no_disk_check() -> int:
    # The database's disk is the server's, maybe another machine's: the disk reserve is not
    # checked here (max_database_bytes still is, with pg_database_size).
    return sys.maxsize


class PostgresStore(SqliteStore):
    """Store backed by a PostgreSQL database. Create with ``await PostgresStore.open(url)``."""

    def __init__(self, pool: ConnectionPool, url: str) -> None:  # noqa: D107 - see open()
        self._disk_free = _no_disk_check
        self._pool: ConnectionPool | None = pool
        self._url = url
        self._limiter = trio.CapacityLimiter(POOL_SIZE)

    @classmethod
    async def open(cls, path: Any, *, disk_free: Any = None) -> Self:
        """Connect to the database at the ``postgresql://`` URL ``path`` and migrate it."""
        url = str(path)

        def connect() -> ConnectionPool:
            # One plain connection first: an unreachable or refusing server fails at once with
            # libpq's reason (the pool would retry in the background until its timeout).
            timeout: dict[str, Any] = {} if "connect_timeout" in conninfo_to_dict(url) else {"connect_timeout": int(CONNECT_TIMEOUT_S)}
            with psycopg.connect(url, autocommit=True, **timeout) as conn:
                migrate(conn)
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

        try:
            pool = await trio.to_thread.run_sync(connect)
        except (psycopg.Error, PoolTimeout) as exc:
            # the caller names the database (redacted): libpq's reason never holds the password
            raise StoreError(f"cannot open database: {_message(exc)}") from None
        return cls(pool, url)

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

    async def _transaction(self, fn: Callable[..., T], *args: Any, cost: int = 1) -> T:
        return await self._run(fn, args, write=True)

    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...], *, write: bool) -> T:
        return await trio.to_thread.run_sync(self._run_sync, fn, args, write, limiter=self._limiter)

    def _run_sync(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        pool = self._pool
        if pool is None:
            raise StoreError("store is closed")
        for attempt in range(1, MAX_ATTEMPTS + 1):
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
                raise StoreError(f"database error: {_message(exc)}") from exc
        raise AssertionError("unreachable")


def _message(exc: BaseException) -> str:
    """One line of a psycopg error (its first; never the connection string)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
