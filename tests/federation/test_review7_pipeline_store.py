"""A link's push writes in order on both backends (round 7 review of the pipelined receiver):
SQLite queues them in its group commit, PostgreSQL runs each once the one before committed
(group_commit.in_turn). The link dies while push 1's write is on the disk and push 2's waits
behind it: push 1 commits, push 2 is dropped, push 3 (queued behind 2) is not applied; the
pusher's retransmission of all three, on a new link, stores each exactly once."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from sonet.federation.ports import Queued
from sonet.node.store import SqliteStore, StoreError, sqlite
from sonet.node.store.group_commit import NotApplied
from tests.node.store.pg_cluster import PgCluster, running_cluster
from tests.node.store.test_contract import ALICE, NOW, ROOMY, env, mid, pending_ids, register

HANG_S = 60.0


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    with running_cluster("the PostgreSQL push-order test") as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    if request.param == "sqlite":
        opened = await SqliteStore.open(tmp_path / "node.db")
    else:
        from sonet.node.store.postgres import PostgresStore

        opened = await PostgresStore.open(request.getfixturevalue("pg_cluster").new_database())
    try:
        yield opened
    finally:
        await opened.close()


class Link:
    """A link's push writes, each queued after the one before (as ``InboundLink`` does)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.last: Queued | None = None
        self.outcomes: dict[int, object] = {}

    async def push(self, nursery: trio.Nursery, n: int, scope: trio.CancelScope) -> None:
        """Start push ``n``'s write (its caller in ``scope``); return once it has its place."""
        placed = trio.Event()

        def queued(turn: Queued) -> None:
            self.last = turn
            placed.set()

        async def write(after: Queued | None) -> None:
            with scope:
                try:
                    self.outcomes[n] = await self.store.receive([env(n)], now=NOW, quota=ROOMY, after=after, queued=queued)
                except StoreError as exc:
                    self.outcomes[n] = exc

        nursery.start_soon(write, self.last)
        await placed.wait()


async def test_a_link_dying_with_writes_queued_behind_one_on_the_disk_stores_each_push_once(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(store, ALICE)
    on_disk, release = threading.Event(), threading.Event()
    real = sqlite._receive

    def receive(conn: Any, items: list[Any], *args: Any) -> list[str]:
        if items[0].id == mid(1) and not release.is_set():  # push 1's write, held "on the disk"
            on_disk.set()
            release.wait(HANG_S)
        return real(conn, items, *args)

    monkeypatch.setattr(sqlite, "_receive", receive)
    link = Link(store)
    gone = trio.CancelScope()  # the link's tasks
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            await link.push(nursery, 1, trio.CancelScope())  # taken: it commits whatever happens
            while not on_disk.is_set():
                await trio.sleep(0.01)
            await link.push(nursery, 2, gone)
            await link.push(nursery, 3, trio.CancelScope())
            gone.cancel()  # push 2's caller goes before its write ran
            await trio.testing.wait_all_tasks_blocked()
            release.set()
    assert link.outcomes[1] == ["ok"]
    assert 2 not in link.outcomes  # cancelled: nobody to answer
    assert isinstance(link.outcomes[3], NotApplied), link.outcomes
    assert await pending_ids(store, ALICE) == [mid(1)]
    # the pusher sends all three again on a new link: each stored once
    again = Link(store)
    async with trio.open_nursery() as nursery:
        for n in (1, 2, 3):
            await again.push(nursery, n, trio.CancelScope())
    assert again.outcomes == {n: ["ok"] for n in (1, 2, 3)}
    assert await pending_ids(store, ALICE) == [mid(1), mid(2), mid(3)]
