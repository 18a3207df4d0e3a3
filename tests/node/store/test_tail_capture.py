"""The SQLite store answers a woken reader from what its commits stored (queue_tails.py,
tail_capture.py for the mailboxes; outbox_log.py for the outboxes, known from memory): the
answers are always those of a read of the database, whatever the commits, deletions, failures,
other connections and reads under way; and after a commit a reader that was up to date gets the
new items without a read on the store's thread."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from sonet.node.store import OutboundItem, QueuedItem, SqliteStore, Tracking
from sonet.node.store.base import Page
from sonet.node.store.outbox_log import OutboxLog, queued_rows
from sonet.node.store.sqlite_mailbox import _pending

from .failing_commit import fail_next_commit
from .test_contract import ALICE, BOB, DAY, NOW, ROOMY, env, mid, register

BETA = "beta.example"
GAMMA = "gamma.example"
MAILBOXES = [(ALICE, 1), (BOB, 1)]
DESTS = [BETA, GAMMA]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "node.db")
    try:
        await register(opened, ALICE)
        await register(opened, BOB)
        yield opened
    finally:
        await opened.close()


def outbound(n: int, dest: str, *, expires: int = NOW + DAY) -> OutboundItem:
    tracking = Tracking(sender_account=ALICE, sender_device=1, id=mid(n), account=f"rita@{dest}", device=1)
    return OutboundItem(dest=dest, key=b"k%d" % n, expires=expires, data=b"transit %d" % n, tracking=tracking)


class Reads:
    """Counts the store's reads of the two queues that reached the database (of an outbox:
    its items' bytes read from their batch rows)."""

    def __init__(self, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = store._read

        async def counted(fn: Any, *args: Any) -> Any:
            if fn in (_pending, OutboxLog.bodies):
                self.count += 1
            return await real(fn, *args)

        monkeypatch.setattr(store, "_read", counted)


def _outbox_tables(conn: Any, dest: str, limit: int, max_bytes: int, now: int, after: int) -> list[QueuedItem]:
    """What the outbox tables hold (not the index in memory), read as the table was (sqlite_federation._read_queue)."""
    items: Page[QueuedItem] = Page()
    total = 0
    for seq, d, key, expires, data, queued_at, *_ in queued_rows(conn):
        if d != dest or seq <= after or expires <= now:
            continue
        if len(items) == limit:
            break
        total += len(data)
        if items and total > max_bytes:
            break
        items.append(QueuedItem(seq=seq, dest=d, key=key, expires=expires, data=data, queued_at=queued_at))
    return items


async def from_database(store: SqliteStore, key: Any, after: int, limit: int, max_bytes: int | None, now: int) -> list[Any]:
    if isinstance(key, tuple):
        return list(await SqliteStore._read(store, _pending, key[0], key[1], after, limit, now, max_bytes))
    return await SqliteStore._read(store, _outbox_tables, key, limit, max_bytes or 1 << 30, now, after)


async def answered(store: SqliteStore, key: Any, after: int, limit: int, max_bytes: int | None, now: int) -> tuple[list[Any], bool]:
    if isinstance(key, tuple):
        page = await store.pending(key[0], key[1], after_seq=after, limit=limit, now=now, max_bytes=max_bytes)
    else:
        page = await store.outbox(key, limit=limit, max_bytes=max_bytes or 1 << 30, now=now, after=after)
    return list(page), page.complete


async def test_a_reader_up_to_date_gets_a_commits_items_without_a_read(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = Reads(store, monkeypatch)
    assert await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW) == []
    assert await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW) == []
    assert reads.count == 1  # the first read makes the mailbox's entry (the outbox is known from memory)

    await store.enqueue([env(1), env(2)], now=NOW, quota=ROOMY, outbound=[outbound(3, BETA)], sender=(ALICE, 1))
    mail = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)
    queued = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    assert [i.id for i in mail] == [mid(1), mid(2)] and mail.complete
    assert [i.data for i in queued] == [b"transit 3"] and queued.complete
    assert reads.count == 1  # no read reached the database
    assert list(mail) == await from_database(store, (ALICE, 1), 0, 10, None, NOW)
    assert list(queued) == await from_database(store, BETA, 0, 10, None, NOW)

    # acked and settled rows leave the tails: the next commit's items come without them
    await store.ack(ALICE, 1, [mid(1)], now=NOW)
    await store.outbox_done(BETA, [queued[0].seq], now=NOW)
    await store.enqueue([env(4)], now=NOW, quota=ROOMY, outbound=[outbound(5, BETA)], sender=(ALICE, 1))
    assert [i.id for i in await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)] == [mid(2), mid(4)]
    assert [i.data for i in await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)] == [b"transit 5"]
    assert reads.count == 1
    # asked again with no commit since: whoever woke the reader, the database answers (a mailbox)
    assert [i.id for i in await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)] == [mid(2), mid(4)]
    assert reads.count == 2


async def test_answers_equal_database_reads_through_random_commits(store: SqliteStore, tmp_path: Path) -> None:
    rng = random.Random(1411)
    other = sqlite3.connect(tmp_path / "node.db", isolation_level=None)  # another process, say
    positions: dict[Any, int] = {key: 0 for key in [*MAILBOXES, *DESTS]}
    n = 0
    now = NOW
    try:
        for step in range(400):
            op = rng.random()
            if op < 0.35:
                envs, out = [], []
                for _ in range(rng.randint(1, 4)):
                    n += 1
                    if rng.random() < 0.5:
                        account, device = rng.choice(MAILBOXES)
                        short = rng.random() < 0.2
                        envs.append(env(n, to=account, device_id=device, body=b"b" * rng.randint(1, 300), expires=now + (50 if short else DAY)))
                    else:
                        out.append(outbound(n, rng.choice(DESTS), expires=now + (50 if rng.random() < 0.2 else DAY)))
                await store.enqueue(envs, now=now, quota=ROOMY, outbound=out, sender=(ALICE, 1))
            elif op < 0.5:
                account, device = rng.choice(MAILBOXES)
                held = await from_database(store, (account, device), 0, 1000, None, now)
                if held:
                    await store.ack(account, device, [i.id for i in rng.sample(held, rng.randint(1, len(held)))], now=now)
            elif op < 0.62:
                dest = rng.choice(DESTS)
                held = await from_database(store, dest, 0, 1000, None, now)
                if held:
                    await store.outbox_done(dest, [i.seq for i in rng.sample(held, rng.randint(1, len(held)))], now=now)
            elif op < 0.66:
                now += 30  # some short-lived ones expire
                await store.purge_expired(now=now)
            elif op < 0.69:
                # another connection deletes a row (an admin command's process)
                other.execute("DELETE FROM mailbox WHERE seq = (SELECT max(seq) FROM mailbox)")
                await store.enqueue([env(n + 10_000, to=BOB)], now=now, quota=ROOMY)  # this store's next commit
                n += 1
            elif op < 0.71:
                # a rolled back group: the write fails (no such device), nothing of it stored
                with pytest.raises(Exception):
                    await store.enqueue([env(n + 20_000, to=ALICE, device_id=9)], now=now, quota=ROOMY)
            # every reader, at its own position, sometimes going back, with caps
            for key in positions:
                if rng.random() < 0.1:
                    positions[key] = 0
                limit = rng.choice([1, 2, 3, 100])
                max_bytes = rng.choice([None, 200, 1 << 20]) if isinstance(key, tuple) else rng.choice([20, 1 << 20])
                got, complete = await answered(store, key, positions[key], limit, max_bytes, now)
                want = await from_database(store, key, positions[key], limit, max_bytes, now)
                assert got == want, (step, key)
                if got and rng.random() < 0.7:
                    positions[key] = got[-1].seq
    finally:
        other.close()


async def test_a_removed_device_takes_its_tail_with_it(store: SqliteStore) -> None:
    await register(store, "carol@alpha.example")
    await store.enqueue([env(1, to="carol@alpha.example")], now=NOW, quota=ROOMY)
    assert len(await store.pending("carol@alpha.example", 1, after_seq=0, limit=10, now=NOW)) == 1
    account = await store.account("carol@alpha.example")
    assert account is not None
    await store.remove_device(account="carol@alpha.example", device_id=1, device_list=b"v2", expected_version=account.device_list_version, now=NOW)
    assert await store.pending("carol@alpha.example", 1, after_seq=0, limit=10, now=NOW) == []


async def test_a_woken_reader_never_misses_an_item_while_commits_and_reads_interleave(store: SqliteStore) -> None:
    """Writers commit while a reader reads (on its thread) and installs what it read: every item
    reaches the reader once, in order, whatever the interleaving."""
    for seed in range(6):
        rng = random.Random(seed)
        base = seed * 1000
        wanted = [mid(base + i) for i in range(1, 121)]
        woken = trio.Event()
        done = False
        seen: list[bytes] = []

        async def writer(ids: list[bytes]) -> None:
            nonlocal woken
            for start in range(0, len(ids), 3):
                await store.enqueue(
                    [env(int.from_bytes(i, "big"), to=BOB) for i in ids[start : start + 3]], now=NOW, quota=ROOMY
                )
                woken.set()  # as the registry wakes a device's delivery task after a commit
                for _ in range(rng.randint(0, 3)):
                    await trio.sleep(0)

        async def reader() -> None:
            nonlocal woken
            after = 0
            while True:
                woken = trio.Event()  # cleared before the read: a wake during it is not lost
                page = await store.pending(BOB, 1, after_seq=after, limit=rng.choice([2, 5, 50]), now=NOW)
                for item in page:
                    if item.id in wanted:
                        seen.append(item.id)
                if page:
                    after = page[-1].seq
                if page.complete and not woken.is_set():
                    if done:
                        return
                    await woken.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            async with trio.open_nursery() as writers:
                writers.start_soon(writer, wanted[:60])
                writers.start_soon(writer, wanted[60:])
            done = True
            woken.set()
        assert sorted(seen) == sorted(wanted) and len(seen) == len(wanted), seed
        held = await from_database(store, (BOB, 1), 0, 10_000, None, NOW)
        await store.ack(BOB, 1, [i.id for i in held], now=NOW)


async def test_a_read_that_a_commit_overtook_is_returned_not_kept(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read's snapshot is taken before a commit that is published before the read returns:
    what it read is answered but cannot be the entry (it lacks that commit's items)."""
    real = store._read
    committed = trio.Event()
    read_done = trio.Event()

    async def slow(fn: Any, *args: Any) -> Any:
        result = await real(fn, *args)  # the snapshot: before the commit below
        read_done.set()
        await committed.wait()
        return result

    monkeypatch.setattr(store, "_read", slow)
    async with trio.open_nursery() as nursery:
        got: list[Any] = []

        async def read() -> None:
            got.append(await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW))

        nursery.start_soon(read)
        await read_done.wait()
        await store.enqueue([env(1, to=BOB)], now=NOW, quota=ROOMY)
        committed.set()
    assert got == [[]]
    monkeypatch.setattr(store, "_read", real)
    assert [i.id for i in await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)] == [mid(1)]


async def test_another_connections_write_is_seen_at_the_next_commit(store: SqliteStore, tmp_path: Path) -> None:
    await store.enqueue([env(1, to=BOB), env(2, to=BOB)], now=NOW, quota=ROOMY)
    assert len(await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)) == 2
    other = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    try:
        other.execute("DELETE FROM mailbox WHERE id = ?", (mid(2),))
    finally:
        other.close()
    await store.enqueue([env(3, to=BOB)], now=NOW, quota=ROOMY)  # this store's next commit, to the same mailbox
    assert [i.id for i in await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)] == [mid(1), mid(3)]


async def test_an_admin_change_forgets_the_tails(store: SqliteStore, tmp_path: Path) -> None:
    # `sonet-node accounts remove` writes from its own process and bumps admin_version, which
    # the running node polls (node/admin_watch.py) before its next commit may come
    await store.admin_version()
    assert await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW) == []
    await store.enqueue([env(1, to=BOB)], now=NOW, quota=ROOMY)  # not answered yet
    other = await SqliteStore.open(tmp_path / "node.db")
    try:
        assert await other.remove_account(BOB, now=NOW)
    finally:
        await other.close()
    await store.admin_version()
    assert await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW) == []


async def test_a_failed_commit_forgets_what_it_captured_and_its_seqs_come_again(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's rows are rolled back and their AUTOINCREMENT seqs given again to the next
    rows: nothing of it may be answered, and the next commit's rows must be seen though their
    seqs are not above what the failed capture saw."""
    from sonet.node.store import StoreError
    from sonet.node.store.group_commit import _run_group

    assert await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW) == []
    fail_next_commit(store, monkeypatch)
    with pytest.raises(StoreError):
        await store.enqueue([env(1, to=BOB), env(2, to=BOB)], now=NOW, quota=ROOMY)
    assert await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW) == []
    await store.enqueue([env(3, to=BOB)], now=NOW, quota=ROOMY)
    assert [i.id for i in await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)] == [mid(3)]


async def test_a_capture_that_fails_never_fails_the_write(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from sonet.node.store.tail_capture import SqliteTails

    assert await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW) == []
    real = SqliteTails._capture_added

    def broken(*args: Any) -> int:
        raise ValueError("a row that does not read back")

    monkeypatch.setattr(SqliteTails, "_capture_added", staticmethod(broken))
    await store.enqueue([env(1, to=BOB)], now=NOW, quota=ROOMY)  # stored all the same
    monkeypatch.setattr(SqliteTails, "_capture_added", staticmethod(real))
    assert [i.id for i in await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)] == [mid(1)]
    await store.enqueue([env(2, to=BOB)], now=NOW, quota=ROOMY)
    assert [i.id for i in await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)] == [mid(1), mid(2)]
