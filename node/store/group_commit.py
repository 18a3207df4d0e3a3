"""Group commit: the write transactions that queue up while one commit is on the disk share
the next one.

A durable COMMIT costs an fsync (milliseconds); the SQL of a typical write costs far less. So
instead of one fsync per write, ``GroupCommit.run`` queues the write and the first waiting
caller leads a *group*: everything queued so far runs on the worker thread in ONE ``BEGIN
IMMEDIATE`` transaction, each write all or nothing (a write that fails is undone alone and its
caller gets its exception; the others are unaffected: see "Savepoints only when a write fails"
below), then one COMMIT. Every
caller of the group gets its result only after that COMMIT returned: a result still means
"durably stored". If the COMMIT itself fails, the whole group is rolled back and every caller
gets the error, so nothing is ever reported stored that is not.

Under no load a group holds one write, exactly as before; under load the fsync is shared.

Cancellation: a write not yet taken into a group is simply dropped from the queue; once taken
it runs to its end and its caller waits for the COMMIT (shielded) and gets its outcome; the
cancellation comes at its next checkpoint. So a caller never gives up on a write that may still
commit, and one that committed is told so (and can, e.g., wake the recipients).

If SQLite itself undoes the whole transaction while a write runs (a full disk, an I/O error),
the group fails with that error.

Savepoints only when a write fails: a SAVEPOINT makes SQLite copy every page a write touches
into its statement journal first (in WAL mode nothing else needs that copy), which tripled the
CPU of a relay's outbox settle and doubled its enqueue (random envelope ids touch a fresh page
per row; docs/performance.md, "Store work per envelope"). So a group first runs its writes
plainly; only if one raises is everything rolled back and the group run again, a savepoint per
write, as described above. A write function must therefore depend on nothing but the
connection and its arguments and change nothing else (every store function is such a plain
function of a connection): run twice on the same state, it does the same.

Writes in order (``run(..., after=, queued=)``): ``queued(turn)`` is called as soon as the write
has its place in the queue (before ``run``'s first checkpoint), so a caller can queue the next
write while this one is still waiting or on the disk; a write queued ``after`` another runs
after it (the queue is first in, first out: in the same group or a later one) and not at all if
that one failed or was dropped (``NotApplied``, nothing of it written). An inbound link's
pushes use it (federation/inbound.py): the next push shares the commit of the one before it,
and none is applied after one that was not. ``in_turn`` gives a backend without group commit
(PostgreSQL) the same order, one write after the other.

Relaxed writes (``run(..., relaxed=True)``): a group made only of them commits with
``synchronous = NORMAL``, without waiting for the disk. For writes that tell nobody "stored":
a device's ack (mailbox rows deleted) and the settle of pushed items (outbox rows deleted,
delivery states). A process killed at any instant loses none of them (the OS still holds what
was written); a power loss or an OS crash can undo the last ones, which only brings back items
that are then delivered or pushed again and dropped as duplicates by id (delivery is
at-least-once, deduplicated). The next durable commit makes them durable too (the WAL is
written in order, and its fsync covers all of it). A group with any other write is durable.

Observers (``GroupCommit(call, observers=)``): ``observer.begin(conn)`` runs when a group's
transaction begins (again, when its plain run was rolled back), ``observer.mark()`` before each
write of a run with savepoints and ``observer.rollback_to(mark)`` when a write's savepoint
undid it (so an observer that keeps a journal of the writes undoes that write's part);
``observer.capture(conn)`` runs inside each group's transaction after its writes, before its
COMMIT; once that COMMIT returned, ``observer.publish(captured)`` runs on the trio thread before
any of the group's callers returns, in commit order (the next group starts after it).
``observer.failed()`` if the group failed, or if its publish raised (the group committed all
the same: its writes succeed). The SQLite store's queue tails (tail_capture.py) learn that way
what each commit stored, and its outbox log (outbox_log.py) keeps its index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import trio

from sonet.federation.ports import Queued

from .base import StoreError

__all__ = ["GroupCommit", "CommitObserver", "NotApplied", "Turn", "in_turn"]

T = TypeVar("T")

#: the most writes one group holds, and their summed cost (rows, roughly): bounds the
#: transaction's size and so how long its callers and other processes wait for the lock
MAX_GROUP = 64
MAX_GROUP_COST = 4096


class CommitObserver(Protocol):
    """Told what each group commit changed (see the module's "Observers")."""

    def begin(self, conn: sqlite3.Connection) -> None: ...

    def mark(self) -> Any: ...

    def rollback_to(self, mark: Any) -> None: ...

    def capture(self, conn: sqlite3.Connection) -> Any: ...

    def publish(self, captured: Any) -> None: ...

    def failed(self) -> None: ...


class NotApplied(StoreError):
    """A write queued after one that failed or was dropped: nothing of it was written (try
    again later: ``unavailable``)."""

    code = "unavailable"


class Turn:
    """A write's place in the order of writes: ``done`` once it committed or failed, ``error``
    set if it failed (or was dropped before it ran)."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def _turn(after: Queued | None) -> Turn | None:
    if after is None or isinstance(after, Turn):
        return after
    raise TypeError(f"not a write of this store: {after!r}")


def _not_applied(after: Turn) -> NotApplied:
    return NotApplied(f"not applied: the write queued before it failed ({after.error})")


class _Write(Turn, Generic[T]):
    __slots__ = ("fn", "args", "cost", "after", "taken", "result", "relaxed")

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...], cost: int, after: Turn | None, relaxed: bool = False) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.cost = cost
        self.after = after
        self.relaxed = relaxed
        self.taken = False
        self.result: T | None = None

    def skipped(self) -> bool:
        """On the worker thread: the write it is queued after failed (in an earlier group, or
        earlier in this one), so it must not run; its error says so."""
        after = self.after
        if after is None or after.error is None:
            return False
        self.error = _not_applied(after)
        return True

    def ran(self) -> None:
        """Its outcome is known (its ``error`` says which): the write it followed and its
        arguments are let go, else a link's writes, each held by the next, would keep every
        push the link ever took alive (the link holds its last write for the next one)."""
        self.after = None
        self.args = ()
        self.done.set()


#: what each observer's ``capture`` found, in order (empty: it did not run, nothing was committed)
_Captured = list[Any]
_Observers = tuple[CommitObserver, ...]


def _run_group(conn: sqlite3.Connection, group: list[_Write[Any]], observers: _Observers) -> _Captured:
    """On the worker thread: one transaction, one commit; the writes without savepoints
    unless one of them fails (then again with a savepoint each). What the observers captured
    before the COMMIT, if it ran."""
    captured: _Captured = []
    relaxed = all(write.relaxed for write in group)
    if relaxed:  # nobody is told "stored" by these: the commit need not wait for the disk
        conn.execute("PRAGMA synchronous = NORMAL")
    try:
        if not _run_plainly(conn, group, observers, captured):
            _run_with_savepoints(conn, group, observers, captured)
    finally:
        if relaxed:
            conn.execute("PRAGMA synchronous = FULL")
    return captured


def _begin(conn: sqlite3.Connection, observers: _Observers) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for observer in observers:
        observer.begin(conn)


def _before_commit(conn: sqlite3.Connection, observers: _Observers, captured: _Captured) -> None:
    captured.extend(observer.capture(conn) for observer in observers)


def _run_plainly(conn: sqlite3.Connection, group: list[_Write[Any]], observers: _Observers, captured: _Captured) -> bool:
    """Run and commit the group without savepoints; False (nothing written) if a write raised
    and the group has others, which must then run with savepoints."""
    try:
        _begin(conn, observers)
        for write in group:
            if write.skipped():
                continue
            try:
                write.result = write.fn(conn, *write.args)
            except Exception as exc:  # noqa: BLE001 - handed to that write's caller
                if not conn.in_transaction:  # SQLite undid the whole group (e.g. a full disk)
                    raise
                conn.execute("ROLLBACK")
                if len(group) > 1:
                    return False
                write.error = exc  # alone: rolled back, nothing else to keep
                return True
        _before_commit(conn, observers, captured)
        conn.execute("COMMIT")
        return True
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _run_with_savepoints(conn: sqlite3.Connection, group: list[_Write[Any]], observers: _Observers, captured: _Captured) -> None:
    """One transaction, a savepoint per write (a failing write is undone alone), one commit."""
    try:
        _begin(conn, observers)
        for write in group:
            write.error = None  # the plain run's verdicts do not hold for this one
            if write.skipped():
                continue
            marks = [o.mark() for o in observers]
            conn.execute("SAVEPOINT w")
            try:
                write.result = write.fn(conn, *write.args)
            except Exception as exc:  # noqa: BLE001 - handed to that write's caller
                if not conn.in_transaction:  # SQLite undid the whole group (e.g. a full disk)
                    raise
                conn.execute("ROLLBACK TO w")
                for o, mark in zip(observers, marks):
                    o.rollback_to(mark)
                write.error = exc
            conn.execute("RELEASE w")
        _before_commit(conn, observers, captured)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class GroupCommit:
    """Runs write functions ``fn(conn, *args)`` in shared durable transactions.

    ``call(fn, *args)`` runs ``fn(conn, *args)`` on the store's worker thread (and translates
    its errors); it is the store's one door to the connection."""

    def __init__(self, call: Callable[..., Awaitable[Any]], *, observers: Sequence[CommitObserver] = ()) -> None:
        self._call = call
        self._observers: _Observers = tuple(observers)
        self._queue: list[_Write[Any]] = []
        self._leading = False
        self._group_done = trio.Event()

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        cost: int = 1,
        after: Queued | None = None,
        queued: Callable[[Queued], object] | None = None,
        relaxed: bool = False,
    ) -> T:
        """``fn(conn, *args)`` committed; ``cost`` (e.g. rows written) bounds how much one
        group holds, so a group of big writes does not keep the write lock for long.
        ``after``: a write (a ``queued`` turn) this one must follow, NotApplied if it failed;
        ``queued(turn)`` is called once this write has its place (before the first checkpoint).
        ``relaxed``: a write whose commit acknowledges nothing to anyone (see "Relaxed writes")."""
        write: _Write[T] = _Write(fn, args, cost, _turn(after), relaxed)
        self._queue.append(write)
        if queued is not None:
            queued(write)
        try:
            while not write.done.is_set():
                if self._leading:
                    await self._group_done.wait()
                else:
                    await self._lead()
        except BaseException as exc:
            if not write.taken:
                self._queue.remove(write)
                write.error = StoreError("dropped before it ran")  # those queued after it do not run
                write.ran()
                raise
            # Taken: it commits or fails as part of its group. Wait for that; a cancellation
            # is then seen at the caller's next checkpoint, after it has learnt the outcome.
            with trio.CancelScope(shield=True):
                await write.done.wait()
            if not isinstance(exc, trio.Cancelled):
                raise
        if isinstance(write.error, sqlite3.Error):
            raise StoreError(f"database error: {write.error}") from write.error
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]

    async def _lead(self) -> None:
        self._leading = True
        size = cost = 0
        while size < len(self._queue) and size < MAX_GROUP and (size == 0 or cost + self._queue[size].cost <= MAX_GROUP_COST):
            cost += self._queue[size].cost
            size += 1
        group, self._queue = self._queue[:size], self._queue[size:]
        for write in group:
            write.taken = True
        try:
            with trio.CancelScope(shield=True):
                captured = await self._call(_run_group, group, self._observers)
            for observer, found in zip(self._observers, captured):
                try:
                    observer.publish(found)
                except Exception:  # noqa: BLE001 - the group committed: its writes did not fail
                    observer.failed()
        except BaseException as exc:  # BEGIN or COMMIT failed: nothing of the group is stored
            for observer in self._observers:
                observer.failed()
            for write in group:
                write.error = StoreError(str(exc) or type(exc).__name__)
                write.error.__cause__ = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for write in group:
                write.ran()
            self._leading = False
            done, self._group_done = self._group_done, trio.Event()
            done.set()


async def in_turn(
    write: Callable[[], Awaitable[T]], *, after: Queued | None = None, queued: Callable[[Queued], object] | None = None
) -> T:
    """``write()`` in order, for a backend whose writes commit on their own (no group commit):
    ``queued(turn)`` at once, then ``write()`` once the write ``after`` has committed (NotApplied,
    nothing written, if it failed), so writes queued one after the other commit in that order."""
    previous = _turn(after)
    turn = Turn()
    if queued is not None:
        queued(turn)
    try:
        if previous is not None:
            await previous.done.wait()
            if previous.error is not None:
                raise _not_applied(previous)
        return await write()
    except BaseException as exc:
        turn.error = exc if isinstance(exc, Exception) else StoreError("dropped before it ran")
        raise
    finally:
        turn.done.set()
