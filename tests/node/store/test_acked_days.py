"""Acknowledged ids without an index of their expiry (migration 22, issue 14 item 1): an ordinary
id's expiry is its day's end, shared by all of that day's acks, so it is kept in ``acked_days``
and the day's ids go in one pass once it is over; a short-lived id (expiry to the ms) is still
indexed by it and goes at its time. Dedup and purge behave as before (tests/node/store/
test_contract.py, test_vanishing.py); these tests pin what the new layout adds, on both backends,
and the migration from version 21 on both."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sonet.node.store import SqliteStore, Store
from sonet.node.store.sqlite_mailbox import ACKED_ID_GRANULARITY_MS, SHORT_LIVED_ACKED

from .old_versions import at_version
from .test_contract import ALICE, DAY, NOW, ROOMY, env, mid, register

#: an ordinary envelope's id is remembered to the end of this day; a short-lived one to its ms
ORDINARY_EXPIRES = NOW + 30 * DAY
ORDINARY_DAY = -(-ORDINARY_EXPIRES // ACKED_ID_GRANULARITY_MS) * ACKED_ID_GRANULARITY_MS
SHORT_EXPIRES = NOW + 5_000


def _rows(sql: str) -> Callable[[Any], list[tuple[Any, ...]]]:
    return lambda conn: [tuple(row) for row in conn.execute(sql).fetchall()]


async def acked_days(store: Store) -> list[int]:
    assert isinstance(store, SqliteStore)  # PostgresStore is one too: same plumbing
    return [day for (day,) in await store._call(_rows("SELECT expires FROM acked_days ORDER BY expires"))]


async def acked_ids(store: Store) -> list[tuple[bytes, int]]:
    assert isinstance(store, SqliteStore)
    return [(bytes(id_), at) for id_, at in await store._call(_rows("SELECT id, expires FROM acked_ids ORDER BY id"))]


async def stored_again(store: Store, n: int, *, expires: int, now: int) -> bool:
    """Whether a retransmission of envelope ``n`` would be stored (its dedup record gone)."""
    return await store.enqueue([env(n, expires=expires)], now=now, quota=ROOMY) == 1


async def test_an_ordinary_id_is_kept_by_its_day_and_goes_when_the_day_is_over(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([env(1, expires=ORDINARY_EXPIRES), env(2, expires=ORDINARY_EXPIRES + 1)], now=NOW, quota=ROOMY)
    assert await store.ack(ALICE, 1, [mid(1), mid(2)], now=NOW) == 2
    assert await acked_days(store) == [ORDINARY_DAY]  # one day value for both
    assert await acked_ids(store) == [(mid(1), ORDINARY_DAY), (mid(2), ORDINARY_DAY)]
    assert await store.next_expiry(after=NOW) == ORDINARY_DAY  # the loop wakes for the day
    await store.purge_expired(now=ORDINARY_DAY - 1)
    assert not await stored_again(store, 1, expires=ORDINARY_DAY + DAY, now=ORDINARY_DAY - 1)
    assert await acked_days(store) == [ORDINARY_DAY]
    await store.purge_expired(now=ORDINARY_DAY)
    assert await acked_ids(store) == [] and await acked_days(store) == []
    assert await store.next_expiry(after=NOW) is None
    assert await stored_again(store, 1, expires=ORDINARY_DAY + DAY, now=ORDINARY_DAY)


async def test_a_short_lived_id_goes_at_its_time_and_leaves_the_days_alone(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([env(1, expires=SHORT_EXPIRES), env(2, expires=ORDINARY_EXPIRES)], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(1), mid(2)], now=NOW)
    assert await acked_days(store) == [ORDINARY_DAY]  # the short-lived id adds no day
    assert await store.next_expiry(after=NOW) == SHORT_EXPIRES
    await store.purge_expired(now=SHORT_EXPIRES - 1)
    assert [id_ for id_, _ in await acked_ids(store)] == [mid(1), mid(2)]
    await store.purge_expired(now=SHORT_EXPIRES)
    assert await acked_ids(store) == [(mid(2), ORDINARY_DAY)]
    assert await store.next_expiry(after=SHORT_EXPIRES) == ORDINARY_DAY


async def test_days_are_purged_in_turn_and_an_id_acked_again_moves_to_its_new_day(store: Store) -> None:
    await register(store, ALICE)
    later = ORDINARY_EXPIRES + 3 * DAY
    later_day = ORDINARY_DAY + 3 * DAY
    await store.enqueue([env(1, expires=ORDINARY_EXPIRES), env(2, expires=later)], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(1), mid(2)], now=NOW)
    assert await acked_days(store) == [ORDINARY_DAY, later_day]
    await store.purge_expired(now=ORDINARY_DAY)
    assert await acked_ids(store) == [(mid(2), later_day)] and await acked_days(store) == [later_day]
    # 1 arrives again after its record went, and is acked again: remembered to its new day
    await store.enqueue([env(1, expires=later)], now=ORDINARY_DAY, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(1)], now=ORDINARY_DAY)
    assert await acked_days(store) == [later_day]
    await store.purge_expired(now=later_day)
    assert await acked_ids(store) == [] and await acked_days(store) == []


async def test_a_removed_devices_ids_leave_a_day_that_is_dropped_when_it_is_over(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([env(1, expires=ORDINARY_EXPIRES)], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(1)], now=NOW)
    assert isinstance(store, SqliteStore)
    await store._transaction(lambda conn: conn.execute("DELETE FROM acked_ids"))  # as a device removal's cascade
    assert await acked_days(store) == [ORDINARY_DAY]
    await store.purge_expired(now=ORDINARY_DAY)
    assert await acked_days(store) == []


async def test_the_short_lived_ids_are_found_by_their_partial_index(tmp_path: Path) -> None:
    """SQLite uses a partial index only when the query names its predicate: the purge and the
    expiry loop's queries must (an ordinary id is in no index of its expiry)."""
    async with await SqliteStore.open(tmp_path / "node.db"):
        pass
    with closing(sqlite3.connect(tmp_path / "node.db")) as db:
        indexes = {name: sql for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'acked_ids' AND type = 'index'")}
        assert "acked_ids_expiry" not in indexes
        assert indexes["acked_ids_vanishing"].endswith(f"WHERE {SHORT_LIVED_ACKED}")
        for sql in (
            f"DELETE FROM acked_ids WHERE {SHORT_LIVED_ACKED} AND expires <= 1",
            f"SELECT min(expires) FROM acked_ids WHERE expires > 1 AND {SHORT_LIVED_ACKED}",
        ):
            plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "acked_ids_vanishing" in plan, (sql, plan)


# The migration from version 21 ----------------------------------------------------------------

_V21_ACKED = [
    (ALICE, 1, mid(1), ORDINARY_DAY),
    (ALICE, 1, mid(2), ORDINARY_DAY),
    (ALICE, 1, mid(3), ORDINARY_DAY + DAY),
    (ALICE, 1, mid(4), SHORT_EXPIRES),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_v21(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """Opens (and so migrates) a database version 21 holding acked ids (of no device row)."""
    insert = "INSERT INTO acked_ids (account, device_id, id, expires) VALUES ({marks})"
    return at_version(request, tmp_path, 21, [(insert, _V21_ACKED)], backend=request.param, unchecked=True)


async def test_migration_22_lists_the_days_of_the_ids_it_keeps(open_v21: Callable[[], Any]) -> None:
    async with await open_v21() as store:
        assert await acked_days(store) == [ORDINARY_DAY, ORDINARY_DAY + DAY]  # not the short-lived one's
        assert await store.next_expiry(after=NOW) == SHORT_EXPIRES
        await store.purge_expired(now=SHORT_EXPIRES)
        assert [id_ for id_, _ in await acked_ids(store)] == [mid(1), mid(2), mid(3)]
        await store.purge_expired(now=ORDINARY_DAY)
        assert await acked_ids(store) == [(mid(3), ORDINARY_DAY + DAY)]
        assert await acked_days(store) == [ORDINARY_DAY + DAY]
