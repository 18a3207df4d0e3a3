"""Review of the store's queue tails (queue_tails.py, tail_capture.py, group_commit.py): a clock
that goes back, a commit whose publish fails, what the tails hold in memory (a group item
delivered to many mailboxes at once, many small items), deletions in many queues at once, and
delivery tasks while writes, acks, purges and failing writes interleave."""

from __future__ import annotations

import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from sonet.node.store import NewEnvelope, OutboundItem, Quota, SqliteStore, StoreError
from sonet.node.store.queue_tails import QueueTails
from sonet.node.store.sqlite_budgets import Charges
from sonet.node.store.sqlite_group_bodies import _shared_body, _store_group_row
from sonet.node.store.sqlite_mailbox import _pending
from sonet.node.store.tail_capture import Captured, SqliteTails

from .test_contract import ALICE, BOB, DAY, NOW, ROOMY, env, mid, register
from .test_tail_capture import answered, from_database, store  # noqa: F401 - the fixture: a store with alice and bob

BETA = "beta.example"


def tails_of(store: SqliteStore) -> SqliteTails:
    assert store._tails is not None
    return store._tails


async def test_a_clock_gone_back_is_answered_by_the_database(store: SqliteStore) -> None:
    """An entry leaves out what had expired when it was read; asked with an earlier ``now`` (the
    wall clock stepped back), the database returns those rows (not yet purged): the entry cannot
    say, or the reader is told complete without them."""
    await store.enqueue([env(1, to=BOB, expires=NOW + 100)], now=NOW, quota=ROOMY)
    item = OutboundItem(dest=BETA, key=b"k1", expires=NOW + 100, data=b"transit 1")
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item], sender=(ALICE, 1))
    later = NOW + 200  # both expired: the complete reads that make the entries leave them out
    assert await store.pending(BOB, 1, after_seq=0, limit=10, now=later) == []
    assert await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=later) == []
    item = OutboundItem(dest=BETA, key=b"k2", expires=NOW + DAY, data=b"transit 2")
    await store.enqueue([env(2, to=BOB)], now=NOW, quota=ROOMY, outbound=[item], sender=(ALICE, 1))
    for key in [(BOB, 1), BETA]:
        got = await answered(store, key, 0, 10, None, NOW)
        assert got == (await from_database(store, key, 0, 10, None, NOW), True), key
        assert len(got[0]) == 2, key


async def test_a_publish_that_fails_does_not_fail_the_committed_writes(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group committed before the tails are told: a publish that raises must not hand its
    writes an error (their callers would take stored messages for lost and send them again);
    the tails forget instead and the readers read the database."""
    assert await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW) == []
    tails = tails_of(store)
    real = tails.publish

    def broken(captured: Captured) -> None:
        raise RuntimeError("a bug in the tails")

    monkeypatch.setattr(tails, "publish", broken)
    await store.enqueue([env(1, to=BOB)], now=NOW, quota=ROOMY)  # committed: no error
    monkeypatch.setattr(tails, "publish", real)
    assert [i.id for i in await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)] == [mid(1)]
    await store.enqueue([env(2, to=BOB)], now=NOW, quota=ROOMY)
    assert [i.id for i in await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)] == [mid(1), mid(2)]
    assert [i.id for i in await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)] == [mid(1), mid(2)]


def _deliver_group_item(conn: Any, envs: list[NewEnvelope], body: bytes) -> None:
    """One group item, its body stored once (group_bodies), into each mailbox of ``envs``
    (as an ordered group item reaches every member device of this node in one commit)."""
    charges = Charges()
    ref = _shared_body(conn, body, charges)
    for e in envs:
        _store_group_row(conn, e, ref, NOW, charges)


class Captures:
    """The mailbox items each capture copied (on the writer thread, before the caps apply)."""

    def __init__(self, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes: list[int] = []
        tails = tails_of(store)
        real = tails.capture

        def capture(conn: Any) -> Captured:
            captured = real(conn)
            self.bytes.append(sum(len(i.body) for _, items in captured.mailbox.added.values() for i in items))
            return captured

        monkeypatch.setattr(tails, "capture", capture)


async def _up_to_date_mailboxes(store: SqliteStore, n: int) -> list[str]:
    accounts = [f"member{i}@alpha.example" for i in range(n)]
    for account in accounts:
        await register(store, account)
        assert await store.pending(account, 1, after_seq=0, limit=128, now=NOW) == []
    return accounts


async def test_a_group_item_to_many_mailboxes_is_not_copied_past_the_caps(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The item's body is stored once; the capture made one copy of it per mailbox with an
    entry before any cap was looked at (measured: one 1.5 MB item to 300 up-to-date devices,
    450 MB at the commit's peak). What a capture copies stays within what the tails may hold,
    in all (total) and per entry; the answers stay those of the database."""
    tails = tails_of(store).mailbox
    monkeypatch.setattr(tails, "_total_bytes", 1 << 20)
    accounts = await _up_to_date_mailboxes(store, 20)
    captures = Captures(store, monkeypatch)
    body = b"g" * 300_000
    envs = [NewEnvelope(account=a, device_id=1, id=mid(i), expires=NOW + DAY, kind=4, body=body) for i, a in enumerate(accounts)]
    await store._transaction(_deliver_group_item, envs, body)
    assert captures.bytes[-1] <= 1 << 20, captures.bytes  # 20 copies: 6 MB before
    for account in accounts:
        key = (account, 1)
        assert await answered(store, key, 0, 128, None, NOW) == (await from_database(store, key, 0, 128, None, NOW), True)

    # one bigger than an entry holds: no copy at all (every entry went anyway)
    monkeypatch.setattr(tails, "_total_bytes", 64 << 20)
    monkeypatch.setattr(tails, "_max_bytes", 200_000)
    for account in accounts:  # the entries again, past the first item (bigger than they hold now)
        [first] = await from_database(store, (account, 1), 0, 128, None, NOW)
        assert await store.pending(account, 1, after_seq=first.seq, limit=128, now=NOW) == []
    assert len(tails) == len(accounts)
    envs = [NewEnvelope(account=a, device_id=1, id=mid(100 + i), expires=NOW + DAY, kind=4, body=body) for i, a in enumerate(accounts)]
    await store._transaction(_deliver_group_item, envs, body)
    assert captures.bytes[-1] == 0, captures.bytes
    for account in accounts:
        key = (account, 1)
        assert await answered(store, key, 0, 128, None, NOW) == (await from_database(store, key, 0, 128, None, NOW), True)


def _held(tails: QueueTails[Any, Any]) -> int:
    """The bytes of the Python objects the tails' items hold (each item and its fields)."""
    total = 0
    for entry in tails._entries.values():
        for item in entry.items:
            total += sys.getsizeof(item) + 8 + sum(sys.getsizeof(getattr(item, name)) for name in item.__struct_fields__)
    return total


async def test_many_small_items_are_held_within_the_total_cap(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caps counted the bodies' bytes only: a 1-byte envelope counted 1 and held ~260 bytes
    (measured), so 16,384 entries of 512 items (the caps allow it) would hold ~2 GB under a
    64 MB total. What each item holds counts."""
    tails = tails_of(store).mailbox
    cap = 100_000
    monkeypatch.setattr(tails, "_total_bytes", cap)
    accounts = await _up_to_date_mailboxes(store, 8)
    quota = Quota(max_envelopes=10_000, max_bytes=1 << 20)
    n = 0
    for _ in range(4):
        batch = []
        for account in accounts:
            for _ in range(50):
                n += 1
                batch.append(env(n, to=account, body=b"x"))
        await store.enqueue(batch, now=NOW, quota=quota)
        assert _held(tails) <= cap
    for account in accounts:
        key = (account, 1)
        got = await answered(store, key, 0, 1000, None, NOW)
        assert got == (await from_database(store, key, 0, 1000, None, NOW), True)
        assert len(got[0]) == 200


async def test_deletions_in_many_queues_are_looked_at_in_one_pass(store: SqliteStore) -> None:
    """The capture read each queue's deleted seqs with a query of its own, each a scan of all
    the commit's deletions: a purge of 10,000 rows of 2,000 mailboxes with entries took 0.94 s
    of CPU in the write transaction (every write waits). Here acks of several mailboxes share
    one group, whose entries hold the acked rows: the answers stay the database's, and the
    deletions are read in a fixed number of statements, however many queues lost rows."""
    accounts = await _up_to_date_mailboxes(store, 12)
    await store.enqueue([env(i * 10 + j, to=a) for i, a in enumerate(accounts) for j in range(1, 4)], now=NOW, quota=ROOMY)
    for account in accounts:  # the entries hold the three rows
        assert len(await store.pending(account, 1, after_seq=0, limit=128, now=NOW)) == 3
    assert store._conn is not None
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        async def ack(i: int, account: str) -> None:
            await store.ack(account, 1, [mid(i * 10 + 1), mid(i * 10 + 3)], now=NOW)

        async with trio.open_nursery() as nursery:  # the acks queue behind each other: few groups
            for i, account in enumerate(accounts):
                nursery.start_soon(ack, i, account)
    finally:
        store._conn.set_trace_callback(None)
    groups = statements.count("BEGIN IMMEDIATE")
    assert groups < len(accounts)  # (the first ack leads alone, the others queue behind it)
    assert sum("tail_gone" in sql for sql in statements) <= 4 * groups, statements
    await store.enqueue([env(1000 + i, to=a) for i, a in enumerate(accounts)], now=NOW, quota=ROOMY)
    for i, account in enumerate(accounts):
        key = (account, 1)
        got = await answered(store, key, 0, 128, None, NOW)
        assert got == (await from_database(store, key, 0, 128, None, NOW), True)
        assert [item.id for item in got[0]] == [mid(i * 10 + 2), mid(1000 + i)]


@pytest.mark.parametrize("seed", range(4))
async def test_delivery_tasks_get_each_item_once_while_writes_acks_purges_and_failures_interleave(
    tmp_path: Path, seed: int
) -> None:
    """Four mailboxes, each read as a device's delivery task reads it (woken by the commits that
    store to it, acking much of what it got); three writers whose groups sometimes hold a write
    that fails (the group runs again with savepoints); purges of short-lived items; reads that
    yield before and after the database. Every answer from memory given while no group is in
    flight equals a read of the database then, and every long-lived item reaches its reader
    once."""
    rng = random.Random(seed)
    store = await SqliteStore.open(tmp_path / "node.db")
    check = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    try:
        accounts = [f"member{i}@alpha.example" for i in range(4)]
        for account in accounts:
            await register(store, account)
        tails = tails_of(store).mailbox
        real_answer, real_read = tails.answer, store._read
        now = NOW
        checked = 0

        def answer(key: Any, *, after: int, limit: int, max_bytes: int | None, now: int) -> Any:
            nonlocal checked
            page = real_answer(key, after=after, limit=limit, max_bytes=max_bytes, now=now)
            if page is not None and not store._writes._leading:
                want = _pending(check, key[0], key[1], after, limit, now, max_bytes)
                assert (list(page), page.complete) == (list(want), want.complete)
                checked += 1
            return page

        async def read(fn: Any, *args: Any) -> Any:
            for _ in range(rng.randint(0, 3)):
                await trio.sleep(0)
            result = await real_read(fn, *args)
            for _ in range(rng.randint(0, 3)):
                await trio.sleep(0)
            return result

        tails.answer = answer  # type: ignore[method-assign]
        store._read = read  # type: ignore[method-assign]
        wakes = {a: trio.Event() for a in accounts}
        wanted: dict[str, set[bytes]] = {a: set() for a in accounts}
        seen: dict[str, list[bytes]] = {a: [] for a in accounts}
        done = False
        n = 0
        quota = Quota(max_envelopes=100_000, max_bytes=1 << 30)

        async def writer() -> None:
            nonlocal n
            for _ in range(40):
                envs = []
                for _ in range(rng.randint(1, 4)):
                    n += 1
                    short = rng.random() < 0.2
                    expires = NOW + (rng.randint(1, 40) if short else DAY)
                    envs.append(env(n, to=rng.choice(accounts), body=b"b" * rng.randint(1, 400), expires=expires))
                fails = rng.random() < 0.1
                if fails:
                    envs.append(env(10**6 + n, to=accounts[0], device_id=9))  # no such device
                try:
                    await store.enqueue(envs, now=now, quota=quota)
                except StoreError:
                    assert fails
                    continue
                assert not fails
                for e in envs:
                    if e.expires == NOW + DAY:
                        wanted[e.account].add(e.id)
                for account in {e.account for e in envs}:
                    wakes[account].set()  # as the registry wakes a device's delivery task
                for _ in range(rng.randint(0, 2)):
                    await trio.sleep(0)

        async def purger() -> None:
            nonlocal now
            while not done:
                now += rng.randint(0, 10)
                await store.purge_expired(now=now)
                for _ in range(rng.randint(1, 6)):
                    await trio.sleep(0)

        async def reader(account: str) -> None:
            last = 0
            while True:
                wakes[account] = trio.Event()  # before the read: a wake during it is not lost
                limit, max_bytes = rng.choice([1, 2, 5, 128]), rng.choice([None, 300, 1 << 20])
                page = await store.pending(account, 1, after_seq=last, limit=limit, now=now, max_bytes=max_bytes)
                if page:
                    last = page[-1].seq
                    seen[account].extend(i.id for i in page)
                    acked = [i.id for i in page if rng.random() < 0.7]
                    if acked:
                        await store.ack(account, 1, acked, now=now)
                if not page.complete or wakes[account].is_set():
                    continue
                if done:
                    return
                await wakes[account].wait()

        async with trio.open_nursery() as nursery:
            for account in accounts:
                nursery.start_soon(reader, account)
            nursery.start_soon(purger)
            async with trio.open_nursery() as writers:
                for _ in range(3):
                    writers.start_soon(writer)
            done = True
            for account in accounts:
                wakes[account].set()
        for account in accounts:
            assert len(seen[account]) == len(set(seen[account])), account
            assert wanted[account] <= set(seen[account]), account
        assert checked > 0
    finally:
        check.close()
        await store.close()
