"""Writes in order (node/store/group_commit.py ``run(after=, queued=)``, ``in_turn``): a write
queued after another runs after it, in the same group when both were queued while a commit was
on the disk, and not at all (NotApplied, nothing of it written) when the one before it failed,
its group's COMMIT failed, or it was dropped before it ran. An inbound link's pushes rely on it
(federation/inbound.py)."""

from __future__ import annotations

import sqlite3

import pytest
import trio
import trio.testing

from sonet.federation.ports import Queued
from sonet.node.store.base import QuotaExceeded, StoreError
from sonet.node.store.group_commit import NotApplied, in_turn

from .test_group_commit import Db, insert, insert_then_refuse


@pytest.fixture
def db(tmp_path):
    d = Db(str(tmp_path / "g.sqlite"))
    yield d
    d.conn.close()


class Chain:
    """Writes queued one after the other, each ``after`` the previous one's turn (as a link's
    pushes are); ``outcomes`` by value."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.last: Queued | None = None
        self.outcomes: dict[int, object] = {}

    async def queue(self, nursery: trio.Nursery, v: int, fn=insert, *args, scope: trio.CancelScope | None = None) -> None:
        """Start the write of ``v`` (its caller in ``scope``) and return once it has its place
        in the queue."""
        placed = trio.Event()

        def queued(turn: Queued) -> None:
            self.last = turn
            placed.set()

        async def write() -> None:
            with scope or trio.CancelScope():
                try:
                    self.outcomes[v] = await self.db.writes.run(fn, v, *args, after=self.last, queued=queued)
                except StoreError as exc:
                    self.outcomes[v] = exc

        nursery.start_soon(write)
        await placed.wait()


async def test_writes_queued_after_each_other_while_a_commit_is_on_the_disk_share_the_next_group(db):
    db.gate = trio.Event()
    chain = Chain(db)
    async with trio.open_nursery() as nursery:
        await chain.queue(nursery, 1)  # leads a group, held at the gate (its commit "on the disk")
        await trio.testing.wait_all_tasks_blocked()
        await chain.queue(nursery, 2)
        await chain.queue(nursery, 3)
        db.gate.set()
    assert chain.outcomes == {1: 1, 2: 2, 3: 3}
    assert db.groups == [1, 2]  # 2 and 3: one transaction, one COMMIT
    assert db.values() == [1, 2, 3]


def recorder(order: list[int]):
    def write(conn: sqlite3.Connection, v: int) -> int:
        order.append(v)  # on the worker thread, as the group runs it
        return insert(conn, v)

    return write


async def test_a_write_runs_after_the_one_it_is_queued_after(db):
    db.gate = trio.Event()
    order: list[int] = []
    chain = Chain(db)
    async with trio.open_nursery() as nursery:
        await chain.queue(nursery, 1, recorder(order))
        await trio.testing.wait_all_tasks_blocked()
        for v in (2, 3, 4):
            await chain.queue(nursery, v, recorder(order))
        db.gate.set()
    assert order == [1, 2, 3, 4]
    assert db.values() == [1, 2, 3, 4]


async def test_a_failure_in_the_same_group_leaves_the_writes_after_it_unapplied_and_others_committed(db):
    db.gate = trio.Event()
    chain = Chain(db)
    beside: dict[str, object] = {}

    async def unrelated() -> None:  # another link's write, in the same group
        beside["outcome"] = await db.writes.run(insert, 50)

    async with trio.open_nursery() as nursery:
        await chain.queue(nursery, 1)
        await trio.testing.wait_all_tasks_blocked()
        await chain.queue(nursery, 2, insert_then_refuse)  # writes, then refuses: undone
        await chain.queue(nursery, 3)  # queued behind it: must not be applied
        nursery.start_soon(unrelated)
        await trio.testing.wait_all_tasks_blocked()
        await chain.queue(nursery, 4)  # behind 3, which is behind 2
        db.gate.set()
    assert chain.outcomes[1] == 1
    assert isinstance(chain.outcomes[2], QuotaExceeded)
    for v in (3, 4):
        outcome = chain.outcomes[v]
        assert isinstance(outcome, NotApplied) and outcome.code == "unavailable" and "full" in str(outcome), outcome
    assert beside["outcome"] == 50
    assert db.values() == [1, 50]  # nothing of 2, 3 or 4
    assert db.groups == [1, 4]


async def test_a_failed_commit_leaves_the_writes_queued_after_its_group_unapplied(db):
    db.gate = trio.Event()
    chain = Chain(db)
    async with trio.open_nursery() as nursery:
        await chain.queue(nursery, 1, insert, 999)  # no parent 999: its group's COMMIT fails
        await trio.testing.wait_all_tasks_blocked()
        await chain.queue(nursery, 2)  # the next group
        db.gate.set()
    assert isinstance(chain.outcomes[1], StoreError) and "FOREIGN KEY" in str(chain.outcomes[1])
    assert isinstance(chain.outcomes[2], NotApplied)
    assert db.values() == []
    assert db.groups == [1, 1]  # the second group ran, and wrote nothing of 2


async def test_a_write_dropped_before_it_ran_leaves_the_ones_after_it_unapplied(db):
    db.gate = trio.Event()
    chain = Chain(db)
    async with trio.open_nursery() as nursery:
        await chain.queue(nursery, 1)
        await trio.testing.wait_all_tasks_blocked()
        dropped = trio.CancelScope()
        await chain.queue(nursery, 2, scope=dropped)
        await chain.queue(nursery, 3)
        dropped.cancel()  # write 2's caller is gone before it was taken: it never runs
        await trio.testing.wait_all_tasks_blocked()
        db.gate.set()
    assert 2 not in chain.outcomes  # cancelled: no outcome
    assert isinstance(chain.outcomes[3], NotApplied)
    assert db.values() == [1]


async def test_a_fresh_chain_after_a_failure_is_applied(db):
    chain = Chain(db)
    async with trio.open_nursery() as nursery:
        await chain.queue(nursery, 1, insert_then_refuse)
    chain.last = None  # a new round starts with no write before it
    async with trio.open_nursery() as nursery:
        await chain.queue(nursery, 1)
    assert chain.outcomes[1] == 1 and db.values() == [1]


async def test_in_turn_runs_each_write_after_the_one_before_and_none_after_a_failure():
    """The same order for a backend without group commit (PostgreSQL): one write after the other."""
    order: list[str] = []
    release = trio.Event()
    outcomes: dict[str, object] = {}
    last: list[Queued | None] = [None]

    async def write(name: str, fail: bool = False) -> str:
        if name == "a":
            await release.wait()  # the first is slow: the others wait for it, not overtake
        order.append(name)
        if fail:
            raise StoreError(f"{name} failed")
        return name

    async def queue(nursery: trio.Nursery, name: str, fail: bool = False) -> None:
        placed = trio.Event()

        def queued(turn: Queued) -> None:
            last[0] = turn
            placed.set()

        async def run() -> None:
            try:
                outcomes[name] = await in_turn(lambda: write(name, fail), after=last[0], queued=queued)
            except StoreError as exc:
                outcomes[name] = exc

        nursery.start_soon(run)
        await placed.wait()

    async with trio.open_nursery() as nursery:
        await queue(nursery, "a")
        await queue(nursery, "b", fail=True)
        await queue(nursery, "c")
        await trio.testing.wait_all_tasks_blocked()
        assert order == []
        release.set()
    assert order == ["a", "b"]  # c never ran
    assert outcomes["a"] == "a" and isinstance(outcomes["b"], StoreError) and isinstance(outcomes["c"], NotApplied)


async def test_a_store_receives_pushes_in_order_and_none_after_one_refused(store) -> None:
    """Both backends (SQLite's group commit, PostgreSQL's one-after-the-other): a push's write
    queued after one refused as a whole (a relay budget) stores nothing, though alone it would."""
    from .test_budgets import ROW, budgets, relayed
    from .test_contract import ALICE, NOW, env, mid, pending_ids, register

    await register(store, ALICE)
    quota = budgets(relay_origin_bytes=ROW)
    outcomes: dict[str, object] = {}
    last: list[Queued | None] = [None]

    async def push(nursery: trio.Nursery, name: str, items: list) -> None:
        placed = trio.Event()

        def queued(turn: Queued) -> None:
            last[0] = turn
            placed.set()

        async def run(after: Queued | None) -> None:
            try:
                outcomes[name] = await store.receive(items, now=NOW, quota=quota, after=after, queued=queued)
            except StoreError as exc:
                outcomes[name] = exc

        nursery.start_soon(run, last[0])
        await placed.wait()

    async with trio.open_nursery() as nursery:
        await push(nursery, "first", [env(1)])
        await push(nursery, "refused", [relayed(2, origin="beta.example"), relayed(3, origin="beta.example")])
        await push(nursery, "behind", [env(4), relayed(5, origin="gamma.example")])
    assert outcomes["first"] == ["ok"]
    assert isinstance(outcomes["refused"], StoreError) and outcomes["refused"].code == "relay_full"
    assert isinstance(outcomes["behind"], NotApplied), outcomes["behind"]
    assert await pending_ids(store, ALICE) == [mid(1)]
    assert await store.outbox_counts() == {}
    # a new round (after nothing) is taken
    assert await store.receive([env(4)], now=NOW, quota=quota) == ["ok"]
    assert await pending_ids(store, ALICE) == [mid(1), mid(4)]
