"""A mailbox's quota read in O(1) (round 9): ``mailbox_counts`` holds each mailbox's rows per kind,
kept by the writes that store and delete them (sqlite_mailbox.py ``MailboxCounts``), and the
quota check takes from it the rows that expired but are not purged yet. So on BOTH backends,
after every path that adds or removes mailbox rows -- a device's enqueue (duplicates, an
expired envelope, another kind, a refused batch), a peer's push (a duplicate, an unknown
device, a full mailbox, a push undone over a budget), group items, acknowledgements (of
expired rows too), the expiry purge (disappearing messages), a device and an account removed
-- the counters equal a recount of the rows, and the usage the quota checks equals a count of
the unexpired rows, at any time (expired rows not purged included). Also: a write PostgreSQL
runs again counts once, receives and acks of one mailbox at once stay exact, and a store
migrated from version 22 counts the rows it had."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sonet.core.federation_api import OK
from sonet.node.store import NewEnvelope, OverBudget, Quota, QuotaExceeded, SqliteStore, Store

from .old_versions import at_version
from .pg_cluster import aborted_once
from .test_budgets import BODY, DELTA, budgets, relayed, senders
from .test_contract import ALICE, BOB, CAROL, DAY, NOW, ROOMY, env, mid, pending_ids, register
from .test_group_bodies import ACCOUNTS, Group, joined, push

Counters = dict[tuple[str, int, int], tuple[int, int]]


def _counters_and_recount(conn: Any) -> tuple[Counters, Counters]:
    """mailbox_counts' rows that are not zero, and the same sums counted from the mailbox."""
    held = {
        (account, int(device), int(kind)): (int(count), int(size))
        for account, device, kind, count, size in conn.execute("SELECT account, device_id, kind, count, bytes FROM mailbox_counts").fetchall()
        if (count, size) != (0, 0)
    }
    recount = {
        (account, int(device), int(kind)): (int(count), int(size))
        for account, device, kind, count, size in conn.execute(
            "SELECT account, device_id, kind, count(*), sum(size) FROM mailbox GROUP BY account, device_id, kind"
        ).fetchall()
    }
    return held, recount


def _usage_and_count(conn: Any, now: int) -> list[tuple[Any, ...]]:
    """Per device and (non-group, group): the usage the quota checks, and a count of the unexpired rows."""
    from sonet.node.store.sqlite_mailbox import _mailbox_usage

    seen = []
    for account, device in conn.execute("SELECT account, device_id FROM devices ORDER BY account, device_id").fetchall():
        for group, kinds in ((False, "kind != 3"), (True, "kind = 3")):
            counted = conn.execute(
                f"SELECT count(*), coalesce(sum(size), 0) FROM mailbox WHERE account = ? AND device_id = ? AND expires > ? AND {kinds}",
                (account, device, now),
            ).fetchone()
            seen.append((account, device, group, _mailbox_usage(conn, account, device, now, group=group), tuple(int(v) for v in counted)))
    return seen


async def consistent(store: Store, *, at: tuple[int, ...] = (NOW,)) -> Counters:
    """The counters, checked to equal the recount (none negative), and the usage the quota
    checks at each time of ``at`` checked to equal a count of the unexpired rows."""
    held, recount = await store._call(_counters_and_recount)  # type: ignore[attr-defined]
    assert held == recount
    assert all(count > 0 and size >= 0 for count, size in held.values())
    for now in at:
        for account, device, group, usage, counted in await store._call(_usage_and_count, now):  # type: ignore[attr-defined]
            assert usage == counted, (account, device, group, now)
    return held


async def remove_device(store: Store, account: str, device_id: int, *, now: int) -> None:
    row = await store.account(account)
    assert row is not None
    assert await store.remove_device(account=account, device_id=device_id, device_list=b"v", expected_version=row.device_list_version, now=now)


SOON = NOW + 60_000  # a disappearing message's expiry


async def test_every_path_that_adds_or_removes_mailbox_rows_keeps_the_counters(store: Store) -> None:
    await senders(store, ALICE, CAROL)
    await senders(store, BOB, devices=2)
    # a device's enqueue: a duplicate in the batch, another kind, one already expired, a disappearing one
    batch = [env(1, to=BOB, body=BODY), env(1, to=BOB, body=BODY), env(2, to=BOB, kind=7), env(3, to=BOB, expires=NOW)]
    batch += [env(4, to=BOB, device_id=2, expires=SOON), env(5, to=CAROL, body=b"c" * 333)]
    assert await store.enqueue(batch, now=NOW, quota=ROOMY, sender=(ALICE, 1)) == 4
    held = await consistent(store, at=(NOW, SOON))
    assert held[(BOB, 1, 1)] == (1, len(BODY)) and held[(BOB, 1, 7)] == (1, len(b"ciphertext"))
    # sent again: duplicates, nothing stored; a batch over the quota: nothing stored
    assert await store.enqueue(batch, now=NOW + 1, quota=ROOMY, sender=(ALICE, 1)) == 0
    with pytest.raises(QuotaExceeded):
        await store.enqueue([env(6, to=CAROL), env(7, to=BOB)], now=NOW + 1, quota=Quota(max_envelopes=2, max_bytes=1 << 20))
    assert await consistent(store) == held

    # a peer's push: a duplicate, an unknown device, an expired one, one past a full mailbox
    pushed = [env(10, to=BOB), env(1, to=BOB), env(11, to=BOB, device_id=9), env(12, to=CAROL, expires=NOW), env(13, to=BOB), env(14, to=CAROL)]
    outcomes = await store.receive(pushed, now=NOW + 2, quota=Quota(max_envelopes=3, max_bytes=1 << 20))
    assert outcomes == [OK, OK, "unknown_device", "expired", "mailbox_full", OK]
    await consistent(store, at=(NOW, SOON))
    # a push undone over a budget (its relayed items over the origin's): its envelopes go too
    with pytest.raises(OverBudget):
        await store.receive([env(20, to=ALICE), relayed(40, origin=DELTA), relayed(41, origin=DELTA)], now=NOW + 2, quota=budgets(relay_origin_bytes=len(BODY)))
    assert await pending_ids(store, ALICE) == []
    held = await consistent(store)
    assert (ALICE, 1, 1) not in held

    # acknowledgements: an id twice, an unknown one, the disappearing one once it expired (not purged)
    await store.ack(BOB, 1, [mid(1), mid(1), mid(99)], now=NOW + 3)
    await store.ack(BOB, 2, [mid(4)], now=SOON + 1)
    await consistent(store, at=(NOW, SOON, SOON + 1))

    # the expiry purge: a disappearing message, then everything of a day
    assert await store.enqueue([env(30, to=ALICE, expires=SOON), env(31, to=ALICE)], now=NOW, quota=ROOMY, sender=(CAROL, 1)) == 2
    await consistent(store, at=(NOW, SOON, SOON + 1, NOW + DAY))
    await store.purge_expired(now=SOON + 1)
    held = await consistent(store, at=(SOON + 1, NOW + DAY))
    assert held[(ALICE, 1, 1)] == (1, len(b"ciphertext"))

    # a device and an account removed with rows in their mailboxes: their counters go with them
    assert await store.enqueue([env(32, to=BOB, device_id=2)], now=NOW, quota=ROOMY) == 1
    await remove_device(store, BOB, 2, now=NOW + 4)
    assert await store.remove_account(CAROL, now=NOW + 4) is not None
    held = await consistent(store)
    assert not [key for key in held if key[:2] in ((BOB, 2), (CAROL, 1))]
    rows = await store._call(lambda conn: conn.execute("SELECT count(*) FROM mailbox_counts WHERE account = ? OR device_id = 2", (CAROL,)).fetchone()[0])  # type: ignore[attr-defined]
    assert rows == 0

    await store.purge_expired(now=NOW + DAY + 1)
    assert await consistent(store, at=(NOW + DAY + 1,)) == {}


async def test_group_items_are_counted_apart_and_with_every_way_they_go(store: Store) -> None:
    group = Group()
    await joined(store, group)  # one group item for each of ACCOUNTS
    assert await push(store, group.item()) == OK
    await store.enqueue([env(1, to=ACCOUNTS[0]), env(2, to=ACCOUNTS[1])], now=NOW, quota=ROOMY)
    held = await consistent(store, at=(NOW, NOW + DAY))
    assert held[(ACCOUNTS[0], 1, 3)][0] == 2 and held[(ACCOUNTS[0], 1, 1)] == (1, len(b"ciphertext"))
    # a device at its group allowance takes no more; the allowance counts only group items
    quota = Quota(max_envelopes=1, max_bytes=1 << 20, group_envelopes=2)
    assert await push(store, group.item(), quota=quota) != OK
    await consistent(store)
    items = await store.pending(ACCOUNTS[0], 1, after_seq=0, limit=10, now=NOW)
    await store.ack(ACCOUNTS[0], 1, [i.id for i in items], now=NOW)
    await remove_device(store, ACCOUNTS[1], 1, now=NOW)
    held = await consistent(store)
    assert not [key for key in held if key[:2] in ((ACCOUNTS[0], 1), (ACCOUNTS[1], 1))]
    await store.purge_expired(now=NOW + 2 * DAY)
    assert await consistent(store, at=(NOW + 2 * DAY,)) == {}


# PostgreSQL: a write run again, and writes to one mailbox at once ------------------------------

async def test_a_write_retried_after_a_serialization_failure_counts_once(pg_cluster: Any) -> None:
    """What an aborted attempt wrote to mailbox_counts is gone with it; the retried one counts once."""
    from sonet.node.store.postgres import PostgresStore
    from sonet.node.store.sqlite_federation import _receive
    from sonet.node.store.sqlite_mailbox import _ack

    attempts: list[str] = []

    async with await PostgresStore.open(pg_cluster.new_database()) as store:
        await register(store, ALICE)
        disk_free = store._disk_free  # type: ignore[attr-defined]
        await store._transaction(aborted_once(_receive, attempts), [env(n) for n in range(3)], NOW, ROOMY, disk_free)  # type: ignore[attr-defined]
        assert (await consistent(store))[(ALICE, 1, 1)] == (3, 3 * len(b"ciphertext"))
        await store._transaction(aborted_once(_ack, attempts), ALICE, 1, [mid(0)], NOW)  # type: ignore[attr-defined]
        assert (await consistent(store))[(ALICE, 1, 1)] == (2, 2 * len(b"ciphertext"))
        assert attempts == ["_receive", "_receive", "_ack", "_ack"]


async def test_receives_and_acks_of_one_mailbox_at_once_stay_exact(pg_cluster: Any) -> None:
    """Pushes and the device's acks of one mailbox, at once on PostgreSQL (each write updates
    the mailbox's counter): the server aborts one of two at a time, which is run again; the
    counters end equal to the recount and the quota holds."""
    import trio

    from sonet.node.store.postgres import PostgresStore

    quota = Quota(max_envelopes=8, max_bytes=1 << 20)
    async with await PostgresStore.open(pg_cluster.new_database()) as store:
        await register(store, ALICE)
        taken: list[str] = []

        async def pushes(base: int) -> None:
            for n in range(base, base + 30):
                taken.extend(await store.receive([env(n)], now=NOW, quota=quota))

        async def acks() -> None:
            for _ in range(30):
                ids = await pending_ids(store, ALICE)
                await store.ack(ALICE, 1, ids[:3], now=NOW)
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pushes, 0)
            nursery.start_soon(pushes, 1000)
            nursery.start_soon(acks)
        held = await consistent(store)
        assert held.get((ALICE, 1, 1), (0, 0))[0] == len(await pending_ids(store, ALICE)) <= 8
        assert taken.count(OK) + taken.count("mailbox_full") == 60


# A store at version 22 migrated to 23 ----------------------------------------------------------

_INSERT_ACCOUNT = "INSERT INTO accounts (account, created_at) VALUES ({marks})"
_INSERT_DEVICE = "INSERT INTO devices (account, device_id, fingerprint, record, created_at) VALUES ({marks})"
_INSERT_MAILBOX = "INSERT INTO mailbox (account, device_id, id, expires, kind, body, size, stored_at) VALUES ({marks})"
_V22_ROWS = [
    (_INSERT_ACCOUNT, [(ALICE, 0), (BOB, 0)]),
    (_INSERT_DEVICE, [(ALICE, 1, "fp-a1", b"r", 0), (ALICE, 2, "fp-a2", b"r", 0), (BOB, 1, "fp-b1", b"r", 0)]),
    (
        _INSERT_MAILBOX,
        [
            (ALICE, 1, mid(1), NOW + DAY, 1, b"a" * 10, 10, NOW),
            (ALICE, 1, mid(2), NOW + DAY, 1, b"b" * 20, 20, NOW),
            (ALICE, 1, mid(3), SOON, 1, b"c" * 30, 30, NOW),  # expired at SOON, not purged
            (ALICE, 1, mid(4), NOW + DAY, 3, b"g" * 40, 40, NOW),  # a group item
            (ALICE, 2, mid(5), NOW + DAY, 7, b"k" * 50, 50, NOW),
            (BOB, 1, mid(6), NOW + DAY, 1, b"d" * 60, 60, NOW),
        ],
    ),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_v22(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """Opens (and so migrates) a database version 22 left with rows in its mailboxes."""
    return at_version(request, tmp_path, 22, _V22_ROWS, backend=request.param)


async def test_a_version_22_mailbox_is_counted_by_the_migration(open_v22: Callable[[], Any]) -> None:
    async with await open_v22() as store:
        held = await consistent(store, at=(NOW, SOON, NOW + DAY))
        assert held == {
            (ALICE, 1, 1): (3, 60), (ALICE, 1, 3): (1, 40), (ALICE, 2, 7): (1, 50), (BOB, 1, 1): (1, 60),
        }  # fmt: skip
        # the quota counts as before: 3 unexpired (the group item apart) at NOW, 2 once one expired
        quota = Quota(max_envelopes=4, max_bytes=1 << 20)
        assert await store.receive([env(7), env(8)], now=NOW, quota=quota) == [OK, "mailbox_full"]
        assert await store.receive([env(8)], now=SOON, quota=quota) == [OK]
        with pytest.raises(QuotaExceeded):
            await store.enqueue([env(9)], now=SOON, quota=quota)
        await consistent(store, at=(NOW, SOON))
        await store.purge_expired(now=NOW + DAY)
        assert await consistent(store, at=(NOW + DAY,)) == {}


async def test_the_migration_counts_what_sqlite_held_without_its_foreign_keys(tmp_path: Path) -> None:
    """An SQLite file written with foreign keys off may hold rows of a device that is gone: the
    migration counts only the rows of devices that exist (no counter may name a missing device)."""
    from .old_versions import sqlite_at

    rows = [*_V22_ROWS, (_INSERT_MAILBOX, [("ghost@alpha.example", 1, mid(9), NOW + DAY, 1, b"x", 1, NOW)])]
    async with await sqlite_at(tmp_path / "node.db", 22, rows)() as store:
        assert isinstance(store, SqliteStore)
        held, _ = await store._call(_counters_and_recount)
        assert set(held) == {(ALICE, 1, 1), (ALICE, 1, 3), (ALICE, 2, 7), (BOB, 1, 1)}


def test_the_usage_is_read_from_the_counters_and_one_range_per_kind() -> None:
    """SQLite's plan of the quota's read of a full mailbox (statistics gathered): the counters by
    their key, then per kind a range of mailbox_group_usage up to the time -- the expired rows
    only, never the mailbox's other rows."""
    import sqlite3

    from sonet.node.store import sqlite_mailbox
    from sonet.node.store.migrations import migrate

    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    conn.execute("INSERT INTO accounts (account, created_at) VALUES (?, 0)", (ALICE,))
    conn.execute("INSERT INTO devices (account, device_id, fingerprint, record, created_at) VALUES (?, 1, 'fp', x'00', 0)", (ALICE,))
    conn.executemany(
        "INSERT INTO mailbox (account, device_id, id, expires, kind, body, size, stored_at) VALUES (?, 1, ?, ?, 1, x'00', 1, 0)",
        [(ALICE, mid(n), NOW + n) for n in range(2000)],
    )
    conn.execute("INSERT INTO mailbox_counts VALUES (?, 1, 1, 2000, 2000)", (ALICE,))
    conn.execute("ANALYZE")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    assert sqlite_mailbox._mailbox_usage(conn, ALICE, 1, NOW + 500) == (1499, 1499)  # 501 expired
    conn.set_trace_callback(None)
    (sql,) = statements
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql.replace(str(NOW + 500), "?").replace(f"'{ALICE}'", "?"), (NOW, ALICE))]
    assert plan[0].startswith("SEARCH c USING PRIMARY KEY (account=? AND device_id=?"), plan
    assert plan[1].startswith("SEARCH m USING COVERING INDEX mailbox_group_usage (account=? AND device_id=? AND kind=? AND expires<?)"), plan
    conn.close()
