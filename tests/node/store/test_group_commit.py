"""Group commit (node/store/group_commit.py): writes queued together share one transaction and
one COMMIT, each stays all-or-nothing, and no caller hears "stored" before the COMMIT."""

from __future__ import annotations

import functools
import sqlite3

import pytest
import trio

from sonet.node.store.base import QuotaExceeded, StoreError
from sonet.node.store.group_commit import MAX_GROUP, MAX_GROUP_COST, GroupCommit, _run_group


class Db:
    """An SQLite file with a table ``t`` and a deferred foreign key (so a COMMIT can fail);
    records the size of every group it runs."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("CREATE TABLE p (k INTEGER PRIMARY KEY)")
        self.conn.execute(
            "CREATE TABLE t (v INTEGER PRIMARY KEY,"
            " p INTEGER REFERENCES p(k) DEFERRABLE INITIALLY DEFERRED)"
        )
        self.groups: list[int] = []
        self.gate: trio.Event | None = None  # when set, groups wait for it before running
        self.writes = GroupCommit(self.call)

    async def call(self, fn, *args):
        if fn is _run_group:
            self.groups.append(len(args[0]))
        if self.gate is not None:
            await self.gate.wait()
        try:
            return await trio.to_thread.run_sync(lambda: fn(self.conn, *args))
        except sqlite3.Error as exc:
            raise StoreError(f"database error: {exc}") from exc

    def values(self) -> list[int]:
        return [v for (v,) in self.conn.execute("SELECT v FROM t ORDER BY v")]


def insert(conn: sqlite3.Connection, v: int, parent: int | None = None) -> int:
    conn.execute("INSERT INTO t (v, p) VALUES (?, ?)", (v, parent))
    return v


def insert_then_refuse(conn: sqlite3.Connection, v: int) -> None:
    conn.execute("INSERT INTO t (v) VALUES (?)", (v,))
    raise QuotaExceeded("full")  # a store-level refusal after a write: the write must go


@pytest.fixture
def db(tmp_path):
    d = Db(str(tmp_path / "g.sqlite"))
    yield d
    d.conn.close()


async def test_concurrent_writes_share_a_commit_and_all_land(db):
    results = []

    async def one(v):
        results.append(await db.writes.run(insert, v))

    async with trio.open_nursery() as nursery:
        for v in range(10):
            nursery.start_soon(one, v)
    assert sorted(results) == list(range(10))
    assert db.values() == list(range(10))
    assert sum(db.groups) == 10
    assert max(db.groups) > 1  # the nine queued behind the first write shared a COMMIT
    assert len(db.groups) < 10


async def test_a_failing_write_rolls_back_alone_and_its_caller_gets_its_error(db):
    outcomes: dict[int, object] = {}

    async def one(v):
        try:
            if v == 3:
                await db.writes.run(insert_then_refuse, v)
            elif v == 5:
                await db.writes.run(insert, 100)  # a duplicate key: an sqlite3 error
            else:
                await db.writes.run(insert, v)
            outcomes[v] = "ok"
        except (QuotaExceeded, StoreError) as exc:
            outcomes[v] = exc

    await db.writes.run(insert, 100)
    db.gate = trio.Event()  # hold the next group so that the rest queue up together
    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, 0)
        await trio.testing.wait_all_tasks_blocked()
        for v in range(1, 8):
            nursery.start_soon(one, v)
        await trio.testing.wait_all_tasks_blocked()
        db.gate.set()
    assert isinstance(outcomes[3], QuotaExceeded)
    assert isinstance(outcomes[5], StoreError) and "UNIQUE" in str(outcomes[5])
    assert db.values() == [0, 1, 2, 4, 6, 7, 100]
    assert max(db.groups) > 1


async def test_a_failed_commit_fails_every_write_of_the_group(db):
    outcomes: dict[int, object] = {}

    async def one(v, parent=None):
        try:
            outcomes[v] = await db.writes.run(insert, v, parent)
        except StoreError as exc:
            outcomes[v] = exc

    await db.writes.run(insert, 100)  # a first, lone group
    db.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, 0)  # leads a group held at the gate
        await trio.testing.wait_all_tasks_blocked()
        for v in (1, 2):
            nursery.start_soon(one, v)
        nursery.start_soon(one, 3, 999)  # no parent 999: the deferred key fails the COMMIT
        await trio.testing.wait_all_tasks_blocked()
        db.gate.set()
    assert outcomes[0] == 0
    for v in (1, 2, 3):
        assert isinstance(outcomes[v], StoreError), outcomes[v]
        assert "FOREIGN KEY" in str(outcomes[v])
    assert db.values() == [0, 100]  # nothing of the failed group is stored
    assert not db.conn.in_transaction


async def test_cancelled_before_taken_never_runs_taken_gets_its_outcome_first(db):
    db.gate = trio.Event()
    finished = []

    async def one(v, scope):
        with scope:
            try:
                finished.append((v, await db.writes.run(insert, v), db.values()))
                await trio.sleep(0)  # the next checkpoint: here the cancellation comes
                finished.append((v, "went on"))
            except trio.Cancelled:
                finished.append((v, "cancelled"))
                raise

    scopes = {v: trio.CancelScope() for v in range(4)}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, 0, scopes[0])  # leads group 1, held at the gate
        await trio.testing.wait_all_tasks_blocked()
        for v in (1, 2, 3):  # queued behind it
            nursery.start_soon(one, v, scopes[v])
        await trio.testing.wait_all_tasks_blocked()
        scopes[1].cancel()  # write 1 is still queued: dropped at once, never runs
        await trio.testing.wait_all_tasks_blocked()
        assert finished == [(1, "cancelled")]
        db.gate.set()  # group 1 commits; one of writes 2 and 3 leads group 2 = {2, 3} ...
        db.gate = trio.Event()  # ... held at the new gate
        while len(db.groups) < 2:
            await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()
        scopes[2].cancel()  # both taken (one leads, the other waits): each caller must still
        scopes[3].cancel()  # learn that its write committed, and see the cancellation after
        await trio.testing.wait_all_tasks_blocked()
        assert db.values() == [0]
        assert not any(entry[0] in (2, 3) for entry in finished)
        db.gate.set()
    for v in (2, 3):
        assert (v, v, [0, 2, 3]) in finished  # its result, after the COMMIT
        assert (v, "cancelled") in finished  # then the cancellation, at its next checkpoint
        assert (v, "went on") not in finished
    assert (0, 0, [0]) in finished and (0, "went on") in finished
    assert db.values() == [0, 2, 3]
    assert db.groups == [1, 2]


async def _group_of(db, *writes):
    """Run ``writes`` ((value, fn) pairs) as one group after a lone first write; outcomes."""
    outcomes: dict[int, object] = {}

    async def one(v, fn):
        try:
            outcomes[v] = await db.writes.run(fn, v)
        except StoreError as exc:
            outcomes[v] = exc

    db.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, 0, insert)
        await trio.testing.wait_all_tasks_blocked()
        for v, fn in writes:
            nursery.start_soon(one, v, fn)
        await trio.testing.wait_all_tasks_blocked()
        db.gate.set()
    return outcomes


def fill_the_disk(conn, v):
    conn.execute("INSERT INTO t (v) VALUES (?)", (v,))
    conn.execute("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
    conn.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 4000,)] * 50)


async def test_a_full_disk_fails_the_write_and_never_reports_a_write_stored_that_is_not(db):
    await db.writes.run(insert, 100)
    page_count = db.conn.execute("PRAGMA page_count").fetchone()[0]
    db.conn.execute(f"PRAGMA max_page_count = {page_count + 2}")
    outcomes = await _group_of(db, (1, insert), (2, fill_the_disk), (3, insert))
    assert isinstance(outcomes[2], StoreError) and "full" in str(outcomes[2])
    stored = set(db.values())
    for v in (0, 1, 3):  # each either committed (and said so) or failed (and is not there)
        assert (outcomes[v] == v) == (v in stored), (v, outcomes[v], stored)
    assert 2 not in stored and not db.conn.in_transaction
    db.conn.execute("PRAGMA max_page_count = 1073741823")
    assert await db.writes.run(insert, 5) == 5  # and the store goes on


def undo_everything(conn, v):
    # What SQLite does on some I/O errors and full disks: the whole transaction is gone.
    conn.execute("INSERT INTO t (v) VALUES (?)", (v,))
    conn.execute("ROLLBACK")
    raise sqlite3.OperationalError("database or disk is full")


async def test_sqlite_undoing_the_whole_transaction_fails_the_group_with_its_error(db):
    outcomes = await _group_of(db, (1, insert), (2, undo_everything), (3, insert))
    assert outcomes[0] == 0
    for v in (1, 2, 3):  # the real error, not "no such savepoint"
        assert isinstance(outcomes[v], StoreError) and "disk is full" in str(outcomes[v]), outcomes[v]
    assert db.values() == [0]
    assert not db.conn.in_transaction


async def test_a_group_is_bounded_by_the_cost_of_its_writes(db):
    db.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.writes.run, insert, -1)
        await trio.testing.wait_all_tasks_blocked()
        for v in range(5):
            nursery.start_soon(functools.partial(db.writes.run, insert, v, cost=MAX_GROUP_COST // 2))
            await trio.testing.wait_all_tasks_blocked()
        db.gate.set()
    assert db.groups == [1, 2, 2, 1]
    assert len(db.values()) == 6


async def test_a_group_holds_at_most_max_group_writes(db):
    db.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.writes.run, insert, -1)
        await trio.testing.wait_all_tasks_blocked()
        for v in range(MAX_GROUP + 5):
            nursery.start_soon(db.writes.run, insert, v)
        await trio.testing.wait_all_tasks_blocked()
        db.gate.set()
    assert db.groups == [1, MAX_GROUP, 5]
    assert len(db.values()) == MAX_GROUP + 6


async def test_a_group_whose_writes_all_succeed_takes_no_savepoint(db):
    # A savepoint makes SQLite copy every page a write touches: only a failure pays for one.
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    outcomes = await _group_of(db, (1, insert), (2, insert), (3, insert))
    db.conn.set_trace_callback(None)
    assert outcomes == {0: 0, 1: 1, 2: 2, 3: 3}
    assert db.values() == [0, 1, 2, 3]
    assert not [s for s in statements if "SAVEPOINT" in s.upper()]


async def test_a_lone_failing_write_is_undone_without_a_second_run(db):
    runs: list[int] = []

    def counted_refusal(conn, v):
        runs.append(v)
        insert_then_refuse(conn, v)

    with pytest.raises(QuotaExceeded):
        await db.writes.run(counted_refusal, 7)
    assert runs == [7]
    assert db.values() == [] and not db.conn.in_transaction


async def test_after_a_failure_the_group_runs_again_with_savepoints_and_the_rest_commits(db):
    runs: list[int] = []

    def counted(fn):
        def run(conn, v):
            runs.append(v)
            return fn(conn, v)

        return run

    outcomes = await _group_of(db, (1, counted(insert)), (2, counted(insert_then_refuse)), (3, counted(insert)))
    assert isinstance(outcomes[2], QuotaExceeded)
    assert (outcomes[1], outcomes[3]) == (1, 3)
    assert db.values() == [0, 1, 3]
    # the plain pass up to the failing write, then the whole group again, in the same order
    again = runs[-3:]
    assert sorted(again) == [1, 2, 3]
    assert runs[:-3] == again[: again.index(2) + 1]
