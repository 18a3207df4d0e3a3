"""Group commit: the write transactions that queue up while one commit is on the disk share
the next one.

A durable COMMIT costs an fsync (milliseconds); the SQL of a typical write costs far less. So
instead of one fsync per write, ``GroupCommit.run`` queues the write and the first waiting
caller leads a *group*: everything queued so far runs on the worker thread in ONE ``BEGIN
IMMEDIATE`` transaction, each write inside its own SAVEPOINT (a write that fails rolls back
alone and its caller gets its exception; the others are unaffected), then one COMMIT. Every
caller of the group gets its result only after that COMMIT returned: a result still means
"durably stored". If the COMMIT itself fails, the whole group is rolled back and every caller
gets the error, so nothing is ever reported stored that is not.

Under no load a group holds one write, exactly as before; under load the fsync is shared.

Cancellation: a write not yet taken into a group is simply dropped from the queue; once taken
it runs to its end and its caller waits for the COMMIT (shielded) before seeing the
cancellation, so a caller never gives up on a write that may still commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import trio

from .base import StoreError

__all__ = ["GroupCommit"]

T = TypeVar("T")

#: the most writes one group holds (bounds the transaction's size and its callers' wait)
MAX_GROUP = 64


class _Write(Generic[T]):
    __slots__ = ("fn", "args", "taken", "done", "result", "error")

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.taken = False
        self.done = trio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


def _run_group(conn: sqlite3.Connection, group: list[_Write[Any]]) -> None:
    """On the worker thread: one transaction, a savepoint per write, one commit."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for write in group:
            conn.execute("SAVEPOINT w")
            try:
                write.result = write.fn(conn, *write.args)
            except Exception as exc:  # noqa: BLE001 - handed to that write's caller
                conn.execute("ROLLBACK TO w")
                write.error = exc
            conn.execute("RELEASE w")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class GroupCommit:
    """Runs write functions ``fn(conn, *args)`` in shared durable transactions.

    ``call(fn, *args)`` runs ``fn(conn, *args)`` on the store's worker thread (and translates
    its errors); it is the store's one door to the connection."""

    def __init__(self, call: Callable[..., Awaitable[Any]]) -> None:
        self._call = call
        self._queue: list[_Write[Any]] = []
        self._leading = False
        self._group_done = trio.Event()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        write: _Write[T] = _Write(fn, args)
        self._queue.append(write)
        try:
            while not write.done.is_set():
                if self._leading:
                    await self._group_done.wait()
                else:
                    await self._lead()
        except trio.Cancelled:
            if not write.taken:
                self._queue.remove(write)
                raise
            with trio.CancelScope(shield=True):
                await write.done.wait()
            raise
        if isinstance(write.error, sqlite3.Error):
            raise StoreError(f"database error: {write.error}") from write.error
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]

    async def _lead(self) -> None:
        self._leading = True
        group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
        for write in group:
            write.taken = True
        try:
            with trio.CancelScope(shield=True):
                await self._call(_run_group, group)
        except BaseException as exc:  # BEGIN or COMMIT failed: nothing of the group is stored
            for write in group:
                write.error = StoreError(str(exc) or type(exc).__name__)
                write.error.__cause__ = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for write in group:
                write.done.set()
            self._leading = False
            done, self._group_done = self._group_done, trio.Event()
            done.set()
