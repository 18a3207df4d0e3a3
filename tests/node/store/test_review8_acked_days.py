"""Review 8 of acked ids without an index of their expiry (migration 22, 670874c): what was
attacked and held."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from sonet.node.store import SqliteStore, Store
from sonet.node.store.sqlite_expiry import _next_expiry
from sonet.node.store.sqlite_mailbox import ACKED_ID_GRANULARITY_MS, _purge_acked_ids

from .pg_cluster import PgCluster
from .test_acked_days import acked_days, acked_ids, stored_again
from .test_contract import ALICE, DAY, NOW, ROOMY, env, mid, register


@pytest.fixture
async def pg_store(pg_cluster: PgCluster) -> AsyncIterator[Store]:
    from sonet.node.store.postgres import PostgresStore

    store = await PostgresStore.open(pg_cluster.new_database())
    try:
        yield store
    finally:
        await store.close()


async def test_a_short_lived_id_expiring_on_a_day_boundary_goes_then(store: Store) -> None:
    """An expiry to the ms that is a whole day is taken for a day value: listed in acked_days,
    it still goes at its time (its day's pass) and the loop still wakes for it."""
    await register(store, ALICE)
    boundary = (NOW // ACKED_ID_GRANULARITY_MS + 2) * ACKED_ID_GRANULARITY_MS  # < 29 days: short-lived
    await store.enqueue([env(1, expires=boundary)], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(1)], now=NOW)
    assert await acked_ids(store) == [(mid(1), boundary)] and await acked_days(store) == [boundary]
    assert await store.next_expiry(after=NOW) == boundary
    await store.purge_expired(now=boundary - 1)
    assert not await stored_again(store, 1, expires=boundary + DAY, now=boundary - 1)
    await store.purge_expired(now=boundary)
    assert await acked_ids(store) == [] and await acked_days(store) == []


async def test_days_that_passed_together_go_in_one_purge(store: Store) -> None:
    """A node down for days purges every passed day in its first purge (one pass each)."""
    await register(store, ALICE)
    lifetimes = [30 * DAY, 31 * DAY - 1, 32 * DAY]
    await store.enqueue([env(i, expires=NOW + t) for i, t in enumerate(lifetimes)], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(i) for i in range(3)], now=NOW)
    assert len(await acked_days(store)) == 3
    last = max(at for _, at in await acked_ids(store))
    await store.purge_expired(now=last)
    assert await acked_ids(store) == [] and await acked_days(store) == []
    assert await store.next_expiry(after=NOW) is None


async def test_concurrent_first_acks_of_a_day_all_land_once(pg_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL, SERIALIZABLE: 40 acks at once (8 pooled connections), each the first ack of
    its transaction to name the day, all inserting it into acked_days ON CONFLICT DO NOTHING.
    Those that meet an uncommitted or unseen insert of the day fail serialization and are run
    again by the store: none is lost, none loops, the day is listed once."""
    from sonet.node.store import postgres

    retries = 0

    class Counting:
        def uniform(self, a: float, b: float) -> float:
            nonlocal retries
            retries += 1
            return random.uniform(a, b)

    monkeypatch.setattr(postgres, "random", Counting())
    store = pg_store
    await register(store, ALICE)
    n = 40
    expires = NOW + 30 * DAY
    await store.enqueue([env(i, expires=expires) for i in range(n)], now=NOW, quota=ROOMY)
    acked: list[int] = []

    async def ack(i: int) -> None:
        acked.append(await store.ack(ALICE, 1, [mid(i)], now=NOW))

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(ack, i)
    day = -(-expires // ACKED_ID_GRANULARITY_MS) * ACKED_ID_GRANULARITY_MS
    assert acked == [1] * n
    assert sorted(await acked_ids(store)) == [(mid(i), day) for i in range(n)]
    assert await acked_days(store) == [day]
    print(f"serialization retries: {retries} for {n} concurrent acks")


# PostgreSQL's plans of the new queries ---------------------------------------------------------


class _Explaining:
    """A connection that EXPLAINs each statement (sequential scans off: the tables are tiny) and
    records the plan, then runs it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.plans: list[tuple[str, str]] = []

    def _explain(self, sql: str, params: Any) -> None:
        if sql.lstrip().split()[0].upper() in ("SELECT", "DELETE", "UPDATE"):
            plan = " ".join(row[0] for row in self.conn.execute(f"EXPLAIN {sql}", params).fetchall())
            self.plans.append((sql, plan))

    def execute(self, sql: str, params: Any = ()) -> Any:
        self._explain(sql, params)
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, seq: Any) -> Any:
        rows = list(seq)
        if rows:
            self._explain(sql, rows[0])
        return self.conn.executemany(sql, rows)


async def _plans(store: Store, fn: Any, *args: Any) -> list[tuple[str, str]]:
    assert isinstance(store, SqliteStore)

    def run(conn: Any) -> list[tuple[str, str]]:
        conn.execute("SET LOCAL enable_seqscan = off")
        explaining = _Explaining(conn)
        fn(explaining, *args)
        return explaining.plans

    return await store._transaction(run)


async def test_postgres_finds_short_lived_acked_ids_by_their_partial_index(pg_store: Store) -> None:
    for sql, plan in await _plans(pg_store, _purge_acked_ids, NOW):
        if "acked_ids" in sql and "%" in sql:
            assert "acked_ids_vanishing" in plan, (sql, plan)
    [(sql, plan)] = [p for p in await _plans(pg_store, _next_expiry, NOW) if "FROM acked_ids" in p[0]]
    assert "acked_ids_vanishing" in plan, (sql, plan)
