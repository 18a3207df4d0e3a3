"""Review of 74ec987 (issue 14 item 1): outbox rows are counted in ``storage_usage`` by the
writes that queue and settle them (sqlite_budgets.UsageChanges), no longer by triggers, and
migration 21 drops those triggers. So every path that adds or removes an outbox row must keep
the counters equal to a recount of what is stored, on BOTH backends: a device's own items,
relayed items, a group SUBMIT for another node's hub, reports queued by a settle, expiry (a
disappearing message's id dropped while queued, then the expired settle), a device and an
account removed with items still queued, a push refused over a budget, and a store migrated
from version 20 with rows its triggers counted. After each step the counters (rows not zero)
equal the recount; once everything is settled nothing is left, and nothing is negative."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sonet.core.groups.items import GroupItem, ItemKind
from sonet.node.store import OutboundItem, OverBudget, SqliteStore, StatusUpdate, Store, Tracking

from .outbox_rows import outbox_rows, with_outbox_table
from .old_versions import at_version, sqlite_at
from .pg_cluster import aborted_once
from .test_budgets import BETA, BODY, DELTA, GAMMA, budgets, relayed, remote_item, senders
from .test_contract import ALICE, BOB, CAROL, DAY, NOW, ROOMY, env, mid, register

#: where storage_usage's rows come from: (scope, key expression, filter) per table
_SOURCES = {
    "outbox": (
        ("outbox", "dest", "1 = 1"),
        ("origin", "origin", "origin IS NOT NULL"),
        ("device", "sender_account || '/' || sender_device", "sender_account IS NOT NULL"),
        ("account", "sender_account", "sender_account IS NOT NULL"),
    ),
    "mailbox": (
        ("device", "sender_account || '/' || sender_device", "sender_account IS NOT NULL"),
        ("account", "sender_account", "sender_account IS NOT NULL"),
    ),
}


def _usage_and_recount(conn: Any) -> tuple[dict[tuple[str, str], tuple[int, int]], dict[tuple[str, str], tuple[int, int]]]:
    """storage_usage's rows that are not zero, and the same sums counted from the tables."""
    with_outbox_table(conn)
    held = {
        (scope, key): (int(count), int(size))
        for scope, key, count, size in conn.execute("SELECT scope, key, count, bytes FROM storage_usage").fetchall()
        if (count, size) != (0, 0)
    }
    recount: dict[tuple[str, str], tuple[int, int]] = {}
    for table, sources in _SOURCES.items():
        for scope, key_sql, where in sources:
            for key, count, size in conn.execute(
                f"SELECT {key_sql}, count(*), sum(size) FROM {table} WHERE {where} GROUP BY {key_sql}"
            ).fetchall():
                before = recount.get((scope, key), (0, 0))
                recount[(scope, key)] = (before[0] + int(count), before[1] + int(size))
    return held, recount


async def consistent(store: Store) -> dict[tuple[str, str], tuple[int, int]]:
    """The counters, checked to equal the recount (and none negative)."""
    held, recount = await store._call(_usage_and_recount)  # type: ignore[attr-defined]
    assert held == recount
    assert all(count > 0 and size >= 0 for count, size in held.values())
    return held


async def settle_all(store: Store, *, now: int) -> None:
    """Every queued item of every destination settled (handed on), expired or not."""
    for dest in await store.outbox_destinations():
        items = await store.outbox(dest, limit=1000, max_bytes=1 << 30, now=now)
        items += await store.expired_outbox(dest, limit=1000, max_bytes=1 << 30, now=now)
        await store.outbox_done(dest, [i.seq for i in items], now=now)


def short_lived(n: int) -> OutboundItem:
    """A disappearing message's item (expires a minute after it is queued at NOW)."""
    tracking = Tracking(sender_account=ALICE, sender_device=1, id=mid(n), account=f"rita@{BETA}", device=1)
    return OutboundItem(dest=BETA, key=b"v%d" % n, expires=NOW + 60_000, data=b"v" * 300, tracking=tracking)


def submit(n: int) -> GroupItem:
    return GroupItem(
        kind=ItemKind.SUBMIT, ref=os.urandom(16), group=b"g" * 16, epoch=0, seq=0, message=b"m" * (200 + n), welcome=b"",
        members=(), outcome="", hub="",
    )  # fmt: skip


async def test_every_path_that_adds_or_removes_outbox_rows_keeps_the_counters(store: Store) -> None:
    await senders(store, ALICE, BOB, CAROL)
    await senders(store, "dave@alpha.example", devices=2)
    # a device's own items with a mailbox envelope beside them, duplicates counted once
    own = [remote_item(n) for n in range(4)] + [remote_item(4, dest=GAMMA)]
    await store.enqueue([env(1, to=BOB, body=BODY)], now=NOW, quota=ROOMY, outbound=[*own, own[0]], sender=(ALICE, 1))
    # relayed items, a report and an envelope in one push
    report = StatusUpdate(id=mid(0), account=f"rita@{BETA}", device=1, state="accepted", code="", at=NOW)
    await store.receive([relayed(1, origin=BETA), report, env(2, to=BOB), relayed(2, origin=GAMMA), relayed(1, origin=BETA)], now=NOW, quota=ROOMY)
    # disappearing messages' items, a group SUBMIT for another node's hub (counts to its device)
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[short_lived(10), short_lived(11)], sender=(ALICE, 1))
    await store.group_submit(submit(1), account=CAROL, device_id=1, hub=GAMMA, node="alpha.example", now=NOW, ttl_ms=DAY, quota=ROOMY)
    # items of a device and an account that are removed while their items are queued
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[remote_item(30, sender="dave@alpha.example", device=2)], sender=("dave@alpha.example", 2))
    await store.enqueue([env(31, to=ALICE, body=BODY)], now=NOW, quota=ROOMY, outbound=[remote_item(32, sender=BOB)], sender=(BOB, 1))
    held = await consistent(store)
    assert held[("device", f"{CAROL}/1")][0] == 1 and held[("origin", BETA)][0] == 1
    assert held[("device", f"{ALICE}/1")][0] == 5 + 2 + 1  # own items, disappearing ones, a mailbox row

    dave = await store.account("dave@alpha.example")
    assert dave is not None
    assert await store.remove_device(account=dave.account, device_id=2, device_list=b"v3", expected_version=dave.device_list_version, now=NOW + 1)
    assert await store.remove_account(BOB, now=NOW + 1) is not None
    await consistent(store)

    # a push refused over a budget adds nothing (its relayed items are undone with their counts)
    with pytest.raises(OverBudget):
        await store.receive([relayed(40, origin=DELTA, dest=BETA), relayed(41, origin=DELTA, dest=BETA)], now=NOW + 1, quota=budgets(relay_origin_bytes=len(BODY)))
    await consistent(store)

    # a settle that queues reports; then the disappearing messages' ids go while queued
    queued = await store.outbox(BETA, limit=3, max_bytes=1 << 20, now=NOW + 2)
    back = OutboundItem(dest=GAMMA, key=b"report", expires=NOW + DAY, data=b"r" * 50)
    await store.outbox_done(BETA, [q.seq for q in queued], now=NOW + 2, reports=[back, back])
    await consistent(store)
    await store.purge_expired(now=NOW + 120_000)
    await store.expire_outbox(now=NOW + 120_000)
    await consistent(store)

    # the expired ones settled by their worker, then all the rest: nothing left, nothing negative
    expired = await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + 120_000)
    assert {q.key for q in expired} == {b"v10", b"v11"}
    await store.outbox_done(BETA, [q.seq for q in expired], now=NOW + 120_000)
    await consistent(store)
    await settle_all(store, now=NOW + 120_001)
    await store.ack(ALICE, 1, [mid(31)], now=NOW + 120_001)
    assert await store.outbox_counts() == {}
    assert await consistent(store) == {}


async def test_a_settle_of_unknown_repeated_or_other_destinations_seqs_takes_nothing_twice(store: Store) -> None:
    await senders(store, ALICE)
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[remote_item(n) for n in range(3)] + [remote_item(9, dest=GAMMA)], sender=(ALICE, 1))
    seqs = [q.seq for q in await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)]
    [gamma] = [q.seq for q in await store.outbox(GAMMA, limit=10, max_bytes=1 << 20, now=NOW)]
    # seqs listed twice, one of another destination, one never queued, in no order
    await store.outbox_done(BETA, [seqs[1], seqs[0], seqs[1], gamma, 10_000], now=NOW + 1)
    held = await consistent(store)
    assert held[("outbox", BETA)] == (1, len(BODY)) and held[("outbox", GAMMA)] == (1, len(BODY))
    await store.outbox_done(BETA, seqs, now=NOW + 2)  # settled again: nothing more taken
    held = await consistent(store)
    assert ("outbox", BETA) not in held and held[("device", f"{ALICE}/1")] == (1, len(BODY))


# A store at version 20 (triggers counted its outbox) migrated to 21 ----------------------------------

_OUTBOX_V20 = [
    (BETA, b"k%d" % n, NOW + DAY, b"t" * (100 + n), NOW, 100 + n, None, ALICE, 1, mid(n), f"rita@{BETA}", 1) for n in (1, 2)
] + [(DELTA, b"r1", NOW + DAY, b"r" * 70, NOW, 70, GAMMA, None, None, None, None, None)]
_INSERT_OUTBOX = (
    "INSERT INTO outbox (dest, key, expires, data, queued_at, size, origin, sender_account, sender_device, id, account, device)"
    " VALUES ({marks})"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def open_v20(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """Opens (and so migrates) a database version 20 left with items in its outbox (counted by its triggers)."""
    return at_version(request, tmp_path, 20, [(_INSERT_OUTBOX, _OUTBOX_V20)], backend=request.param)


async def test_a_version_20_outbox_stays_counted_once_its_triggers_are_gone(open_v20: Callable[[], Any]) -> None:
    async with await open_v20() as store:
        await register(store, ALICE)
        held = await consistent(store)
        assert held[("outbox", BETA)] == (2, 203) and held[("origin", GAMMA)] == (1, 70) and held[("account", ALICE)] == (2, 203)
        # no trigger is left to count a row twice: a new item adds itself once
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[remote_item(3)], sender=(ALICE, 1))
        assert (await consistent(store))[("outbox", BETA)] == (3, 203 + len(BODY))
        await settle_all(store, now=NOW + 1)
        assert await consistent(store) == {}


# Migrations in one transaction (cf0545d, SQLite) ----------------------------------------------------

def _schema_and_rows(path: Path) -> tuple[int, list[Any], list[Any], list[Any]]:
    with closing(sqlite3.connect(path)) as conn:
        return (
            conn.execute("PRAGMA user_version").fetchone()[0],
            conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall(),
            outbox_rows(conn),
            conn.execute("SELECT * FROM storage_usage ORDER BY scope, key").fetchall(),
        )


async def test_a_failing_migration_leaves_the_store_at_its_version_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 21 and a later one that fails run in one transaction: neither is kept (the
    triggers 21 drops are still there, the counters as they were), the store says why."""
    from sonet.node.store import StoreError, migrations

    path = tmp_path / "node.db"
    sqlite_at(path, 20, [(_INSERT_OUTBOX, _OUTBOX_V20)])
    before = _schema_and_rows(path)
    broken = (*migrations.MIGRATIONS, ("CREATE TABLE later (x INTEGER)", "INSERT INTO no_such_table VALUES (1)"))
    monkeypatch.setattr(migrations, "MIGRATIONS", broken)
    monkeypatch.setattr(migrations, "LATEST_VERSION", len(broken))
    with pytest.raises(StoreError, match="no such table: no_such_table"):
        await SqliteStore.open(path)
    assert _schema_and_rows(path) == before
    assert before[0] == 20 and ("trigger", "outbox_charge") in [(t, n) for t, n, _ in before[1]]

    monkeypatch.undo()
    async with await SqliteStore.open(path) as store:  # the real migrations still apply
        await consistent(store)
    assert _schema_and_rows(path)[0] == migrations.LATEST_VERSION


def test_every_migration_statement_runs_inside_the_one_transaction(tmp_path: Path) -> None:
    """No statement commits on its own (VACUUM, journal_mode and the like would): all of them
    run inside one BEGIN IMMEDIATE, and a ROLLBACK leaves an empty file."""
    from sonet.node.store.migrations import MIGRATIONS

    path = tmp_path / "node.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        for number, migration in enumerate(MIGRATIONS, start=1):
            for statement in migration:
                conn.execute(statement)
                assert conn.in_transaction, (number, statement)
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_two_connections_racing_migrate_the_file_once(tmp_path: Path) -> None:
    """Two processes (here two connections on two threads) opening a new file at once: one
    migrates it all, the other waits on BEGIN IMMEDIATE and finds it done."""
    import threading

    from sonet.node.store.migrations import LATEST_VERSION, migrate
    from sonet.node.store.sqlite import _wal

    path = tmp_path / "node.db"
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def run() -> None:
        with closing(sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)) as conn:
            _wal(conn)  # as the store opens it: WAL once the other connection lets go
            start.wait()
            try:
                outcomes.append(migrate(conn))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [LATEST_VERSION, LATEST_VERSION]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'outbox_batches'").fetchone()[0] == 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION


# A PostgreSQL write run again after a serialization failure --------------------------------------

async def test_a_write_retried_after_a_serialization_failure_counts_once(pg_cluster: Any) -> None:
    """PostgreSQL runs a write again from the start when the server aborts it (40001): what
    the aborted attempt applied to storage_usage (queue and settle) is gone with it, and the
    retried one applies its own once (each attempt has its own UsageChanges)."""
    from sonet.node.store.postgres import PostgresStore
    from sonet.node.store.sqlite import _enqueue
    from sonet.node.store.sqlite_federation import _outbox_done

    attempts: list[str] = []

    async with await PostgresStore.open(pg_cluster.new_database()) as store:
        await senders(store, ALICE)
        items = [remote_item(n) for n in range(3)] + [relayed(1, origin=GAMMA, dest=BETA)]
        disk_free = store._disk_free  # type: ignore[attr-defined]
        await store._transaction(aborted_once(_enqueue, attempts), [], NOW, ROOMY, items, (ALICE, 1), disk_free)  # type: ignore[attr-defined]
        held = await consistent(store)
        assert held[("outbox", BETA)] == (4, 4 * len(BODY)) and held[("device", f"{ALICE}/1")] == (3, 3 * len(BODY))

        seqs = [q.seq for q in await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)]
        report = OutboundItem(dest=GAMMA, key=b"report", expires=NOW + DAY, data=b"r" * 10)
        await store._transaction(aborted_once(_outbox_done, attempts), BETA, seqs[:2], NOW + 1, [], [report])  # type: ignore[attr-defined]
        held = await consistent(store)
        assert held[("outbox", BETA)] == (2, 2 * len(BODY)) and held[("outbox", GAMMA)] == (1, 10)
        assert attempts == ["_enqueue", "_enqueue", "_outbox_done", "_outbox_done"]


# Concurrent writes on PostgreSQL take the counters' row locks in one order -----------------------

async def test_concurrent_queues_to_the_same_destinations_never_deadlock(pg_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two senders queue an envelope for beta and gamma at once, one naming beta first, the
    other gamma: each write updates the same two outbox counters. Taken in the order the
    items came, the two transactions wait for each other until PostgreSQL's deadlock check
    (deadlock_timeout, 1 s) aborts one; taken in one order (UsageChanges.apply sorts them),
    one merely waits for the other (at worst a serialization failure, retried at once).
    A deadlock here is made an error instead of a retry, so the test sees every one."""
    import psycopg
    import trio

    from sonet.node.store import postgres
    from sonet.node.store.postgres import PostgresStore

    monkeypatch.setattr(postgres, "_RETRIED", (psycopg.errors.SerializationFailure,))
    async with await PostgresStore.open(pg_cluster.new_database()) as store:
        await senders(store, ALICE, BOB)

        async def send(sender: str, dests: list[str], base: int) -> None:
            for n in range(base, base + 30):
                items = [remote_item(10 * n + k, dest=dest, sender=sender) for k, dest in enumerate(dests)]
                await store.enqueue([], now=NOW, quota=ROOMY, outbound=items, sender=(sender, 1))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, ALICE, [BETA, GAMMA], 0)
            nursery.start_soon(send, BOB, [GAMMA, BETA], 1000)
        held = await consistent(store)
        assert held[("outbox", BETA)][0] == held[("outbox", GAMMA)][0] == 60


def test_the_counters_are_written_in_one_order_whatever_order_the_rows_came_in() -> None:
    from sonet.node.store.sqlite_budgets import UsageChanges

    written: list[list[tuple[Any, ...]]] = []

    class Recorder:
        def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
            written.append(list(rows))

    for dests in ([BETA, GAMMA], [GAMMA, BETA]):
        usage = UsageChanges()
        for dest in dests:
            usage.outbox_row(1, dest, 10, DELTA, ALICE, 1)
        usage.apply(Recorder())  # type: ignore[arg-type]
    assert written[0] == written[1] == sorted(written[0])
