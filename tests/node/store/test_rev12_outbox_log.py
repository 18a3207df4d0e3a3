"""Review rev12 of the transit log (node/store/outbox_log.py): the SQLite store's outboxes as
batch rows plus an index in memory. Attacked with random groups of writes (some failing inside
the group, so that it runs again with savepoints), commits that fail at COMMIT, a second store
writing the same file, settles naming odd seqs, writes of more than 4,096 items, expiries, and
SIGKILL of a writing process. After each step every answer of the index must equal what the
tables hold (outbox_log.queued_rows), budgets must equal a recount, and a store run as groups
must end as the same writes run one by one."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio

from sonet.node.store import OutboundItem, OverBudget, SqliteStore, StatusUpdate, StoreError, Tracking
from sonet.node.store import outbox_log as outbox_log_module
from sonet.node.store.outbox_log import SLOT_BITS, OutboxLog, queued_rows
from sonet.node.store.sqlite import _nothing
from sonet.node.store.sqlite_federation import _deliveries, _outbox_done

from .failing_commit import fail_next_commit
from .one_group import Write, queued_as_one_group
from .outbox_rows import with_outbox_table
from .test_budgets import _usage_and_recount
from .test_contract import ALICE, BOB, DAY, NOW, ROOMY, mid, register

BETA = "beta.example"
GAMMA = "gamma.example"
DESTS = [BETA, GAMMA]
REPO = Path(__file__).resolve().parents[3]
#: any outbox item for its destination is over this budget (the write fails after it queued)
NO_ROOM = ROOMY.__class__(max_envelopes=1000, max_bytes=1 << 20, outbox_bytes=1)



def tracked(n: int, dest: str, *, expires: int, data: bytes | None = None, sender: str = ALICE) -> OutboundItem:
    tracking = Tracking(sender_account=sender, sender_device=1, id=mid(n), account=f"rita@{dest}", device=1 + n % 2)
    return OutboundItem(dest=dest, key=b"k%d" % n, expires=expires, data=data or b"transit %d " % n + b"x" * (n % 97), tracking=tracking)


def relayed(n: int, dest: str, *, expires: int) -> OutboundItem:
    return OutboundItem(dest=dest, key=b"r%d" % n, expires=expires, data=b"relayed %d" % n, origin="delta.example")


async def opened(path: Path) -> SqliteStore:
    store = await SqliteStore.open(path)
    if await store.account(ALICE) is None:
        await register(store, ALICE)
        await register(store, BOB)
    return store


# What the index answers, and what the tables hold ------------------------------------------


def _log(store: SqliteStore) -> OutboxLog:
    log = store._outbox_log
    assert log is not None
    return log


def _index_rows(store: SqliteStore, conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """The index's items as rows of QUEUED_ROW_COLUMNS (uncached bytes read from the batches)."""
    index = _log(store)._index
    items = [index.items[seq] for seq in sorted(index.items)]
    bodies = OutboxLog.bodies(conn, [i for i in items if i.data is None])
    rows = []
    for i in items:
        data = i.data if i.data is not None else bodies.get(i.seq)
        rows.append((i.seq, i.dest, i.key, i.expires, data, i.queued_at, i.size, i.origin, i.sender_account, i.sender_device, i.id, i.account, i.device))
    return rows


def _index_invariants(store: SqliteStore) -> None:
    log = _log(store)
    index = log._index
    # (a write that failed alone in its group leaves its journal until the next begin: harmless)
    live: dict[int, int] = {}
    for seq, item in index.items.items():
        assert item.seq == seq
        live[seq >> SLOT_BITS] = live.get(seq >> SLOT_BITS, 0) + 1
        assert index.by_dest[item.dest][seq] is item
        assert index.keys[(item.dest, item.key)] == seq
    assert live == index.live
    assert sum(len(q) for q in index.by_dest.values()) == len(index.items)
    for queue in index.by_dest.values():
        assert list(queue) == sorted(queue), "a destination's items out of seq order"
    assert len(index.keys) == len(index.items)
    for id_, seqs in index.by_id.items():
        assert seqs == sorted(seqs) and all(index.items[seq].id == id_ for seq in seqs)
    assert set(index.short) <= index.items.keys()
    assert index.cached == sum(i.size for i in index.items.values() if i.data is not None)


def _table_read(rows: list[tuple[Any, ...]], dest: str, *, after: int, limit: int, max_bytes: int, now: int, expired: bool) -> list[tuple[Any, ...]]:
    """A read as the outbox table answered it (sqlite_federation._read_queue)."""
    out: list[tuple[Any, ...]] = []
    total = 0
    for seq, d, key, expires, data, queued_at, *_ in rows:
        if d != dest or (not expired and (seq <= after or expires <= now)) or (expired and expires > now):
            continue
        if len(out) == limit:
            break
        total += len(data)
        if out and total > max_bytes:
            break
        out.append((seq, d, key, expires, data, queued_at))
    return out


async def check(store: SqliteStore, path: Path, now: int, rng: random.Random | None = None) -> list[tuple[Any, ...]]:
    """Every answer of the index equals the tables'; budgets equal a recount. The rows held."""
    rng = rng or random.Random(0)
    _index_invariants(store)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        rows = queued_rows(conn)
        assert _index_rows(store, conn) == rows
        with_outbox_table(conn)
        ids = sorted({bytes(r[10]) for r in conn.execute("SELECT * FROM outbox WHERE id IS NOT NULL")} | {mid(n) for n in range(5)})
        want_deliveries = _deliveries(conn, ALICE, 1, ids)
        held, recount = _usage_and_recount(conn)
    assert held == recount, "storage_usage differs from a recount"
    assert await store.outbox_counts() == {d: sum(1 for r in rows if r[1] == d) for d in {r[1] for r in rows}}
    for dest in DESTS:
        for _ in range(3):
            after = rng.choice([0, *[r[0] for r in rows if r[1] == dest]])
            limit, max_bytes = rng.choice([1, 2, 5, 10_000]), rng.choice([30, 200, 1 << 30])
            page = await store.outbox(dest, limit=limit, max_bytes=max_bytes, now=now, after=after)
            got = [(i.seq, i.dest, i.key, i.expires, i.data, i.queued_at) for i in page]
            want = _table_read(rows, dest, after=after, limit=limit, max_bytes=max_bytes, now=now, expired=False)
            assert got == want
            # the table's ``complete``: stopped neither by the count nor by the bytes
            rest = _table_read(rows, dest, after=after, limit=limit + 1, max_bytes=1 << 62, now=now, expired=False)
            assert page.complete == (len(want) < limit and len(rest) == len(want)), (page.complete, len(want), len(rest), limit)
            gone = await store.expired_outbox(dest, limit=limit, max_bytes=max_bytes, now=now)
            got = [(i.seq, i.dest, i.key, i.expires, i.data, i.queued_at) for i in gone]
            assert got == _table_read(rows, dest, after=0, limit=limit, max_bytes=max_bytes, now=now, expired=True)
    got_deliveries = await store.deliveries(ALICE, 1, ids)
    assert sorted(got_deliveries, key=repr) == sorted(want_deliveries, key=repr)
    for after in (0, now, *[r[3] for r in rows][:5]):
        later = [r[3] for r in rows if r[3] > after]
        assert _log(store).next_expiry(after) == (min(later) if later else None)
    return rows


# Running writes as one group -------------------------------------------------------------


def outcome(result: Any) -> Any:
    return type(result).__name__ if isinstance(result, BaseException) else None


async def as_one_group(store: SqliteStore, writes: list[Write]) -> tuple[list[Any], list[int]]:
    """``writes`` queued while the writer is busy (behind a lead write alone in its group):
    they run as one group. Their outcomes, and the groups' sizes."""
    results, groups = await queued_as_one_group(store, lambda s: s._transaction(_nothing), writes)
    return [outcome(r) if isinstance(r, BaseException) else None for r in results], groups


async def one_by_one(store: SqliteStore, writes: list[Write]) -> list[Any]:
    outcomes: list[Any] = []
    for write in writes:
        try:
            await write(store)
            outcomes.append(None)
        except Exception as exc:  # noqa: BLE001 - compared
            outcomes.append(outcome(exc))
    return outcomes


def _settle_then_fail(conn: Any, dest: str, seqs: list[int], now: int, extra: list[OutboundItem]) -> None:
    """A write that settles and queues (journaled in the log), then fails: nothing of it may stay."""
    _outbox_done(conn, dest, seqs, now, [], extra, {})
    raise ValueError("refused after its outbox work")


class Ops:
    """Random writes over one store's outboxes (the same from the same seed and rows)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 0

    def write(self, rows: list[tuple[Any, ...]], now: int) -> Write:
        rng = self.rng
        seqs = [r[0] for r in rows]
        op = rng.random()

        def some_seqs() -> list[int]:
            picked = rng.sample(seqs, rng.randint(0, min(len(seqs), 6))) if seqs else []
            if seqs and rng.random() < 0.3:
                picked.append(rng.choice(seqs))  # repeated
            if rng.random() < 0.2:
                picked.append(rng.choice([1, 12345, (max(seqs, default=0) >> SLOT_BITS) + 99 << SLOT_BITS]))  # none such
            return picked

        def items(k: int) -> list[OutboundItem]:
            out = []
            for _ in range(k):
                self.n += 1
                dest = rng.choice(DESTS)
                expires = now + rng.choice([40, 90, DAY])  # some disappearing ones, expiring soon
                if rng.random() < 0.7:
                    out.append(tracked(self.n, dest, expires=expires))
                else:
                    out.append(relayed(self.n, dest, expires=expires))
            if rows and rng.random() < 0.2:  # a duplicate of a queued key
                r = rng.choice(rows)
                out.append(OutboundItem(dest=r[1], key=r[2], expires=now + DAY, data=b"again"))
            return out

        if op < 0.3:
            batch = items(rng.randint(1, 5))
            return lambda s: s.enqueue([], now=now, quota=ROOMY, outbound=batch, sender=(ALICE, 1))
        if op < 0.38:
            batch = items(rng.randint(1, 3))  # over the outbox budget: fails after queueing
            return lambda s: s.enqueue([], now=now, quota=NO_ROOM, outbound=batch, sender=(ALICE, 1))
        if op < 0.6:
            dest, picked = rng.choice(DESTS), some_seqs()
            statuses = [StatusUpdate(id=mid(rng.randint(1, self.n + 1)), account=f"rita@{dest}", device=1, state="accepted", code="", at=now)]
            reports = items(1) if rng.random() < 0.3 else []
            failed = {s: "unknown_device" for s in picked if rng.random() < 0.3}
            return lambda s: s.outbox_done(dest, picked, now=now, statuses=statuses, reports=reports, failed=failed)
        if op < 0.7:
            dest, picked, extra = rng.choice(DESTS), some_seqs(), items(rng.randint(0, 2))
            return lambda s: s._transaction(_settle_then_fail, dest, picked, now, extra)
        if op < 0.78:
            return lambda s: s.purge_expired(now=now)
        if op < 0.86:
            status = StatusUpdate(
                id=mid(rng.randint(1, self.n + 1)), account=f"rita@{rng.choice(DESTS)}", device=rng.choice([1, 2]),
                state=rng.choice(["accepted", "failed"]), code="", at=now,
            )  # fmt: skip
            return lambda s: s.receive([status], now=now, quota=ROOMY)
        if op < 0.92:
            # a queued key again (deduplicated), and a fresh one, in one write
            batch = items(1)
            return lambda s: s.enqueue([], now=now, quota=ROOMY, outbound=batch + batch, sender=(ALICE, 1))
        return lambda s: s.expire_outbox(now=now)


@pytest.mark.parametrize("seed", range(2))
async def test_random_groups_with_failing_writes_match_the_tables_and_the_writes_one_by_one(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if seed % 2:  # a small cache: most items' bytes are read from their batch rows
        monkeypatch.setattr(OutboxLog.__init__, "__defaults__", (400, outbox_log_module.MAX_ITEMS))
    rng = random.Random(seed)
    g_path, s_path = tmp_path / "grouped.db", tmp_path / "alone.db"
    grouped, alone = await opened(g_path), await opened(s_path)
    ops = Ops(rng)
    now = NOW
    reruns = 0  # groups of several writes of which one failed: run again with savepoints
    try:
        rows = await check(grouped, g_path, now)
        for step in range(80):
            if rng.random() < 0.3:
                now += rng.choice([10, 50, 100])
            writes = [ops.write(rows, now) for _ in range(rng.randint(1, 6))]
            got, groups = await as_one_group(grouped, writes)
            assert groups == [1, len(writes)], groups
            want = await one_by_one(alone, writes)
            assert got == want, (step, got, want)
            reruns += len(writes) > 1 and any(o is not None for o in got) and any(o is None for o in got)
            rows = await check(grouped, g_path, now, rng)
            assert rows == await check(alone, s_path, now, rng), step
            if step % 20 == 19:  # reopened: the index read again from the tables is the same
                before = rows
                await grouped.close()
                grouped = await opened(g_path)
                assert await check(grouped, g_path, now, rng) == before
        assert reruns >= 10, reruns
    finally:
        await grouped.close()
        await alone.close()


async def test_a_commit_that_fails_leaves_the_index_as_the_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "node.db"
    store = await opened(path)
    try:
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(n, BETA, expires=NOW + DAY) for n in range(1, 6)], sender=(ALICE, 1))
        rows = await check(store, path, NOW)
        real = store._writes._call
        seqs = [r[0] for r in rows]
        writes: list[Write] = [
            lambda s: s.outbox_done(BETA, seqs[:2], now=NOW + 1),
            lambda s: s.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(9, BETA, expires=NOW + DAY)], sender=(ALICE, 1)),
            lambda s: s.enqueue([], now=NOW, quota=NO_ROOM, outbound=[tracked(10, GAMMA, expires=NOW + DAY)], sender=(ALICE, 1)),
        ]
        for write in writes:
            fail_next_commit(store, monkeypatch)
            with pytest.raises(StoreError):
                await write(store)
            assert await check(store, path, NOW) == rows
        # and a group (a write in it fails: run again with savepoints) whose COMMIT fails
        monkeypatch.setattr(store._writes, "_call", real)
        fail_next_commit(store, monkeypatch, skip=1)  # (the first: as_one_group's lead write)
        outcomes, _ = await as_one_group(store, writes)
        assert outcomes == ["StoreError"] * 3
        assert await check(store, path, NOW) == rows
        # the next commits are seen, though the failed one's batch numbers come again
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(11, BETA, expires=NOW + DAY)], sender=(ALICE, 1))
        rows = await check(store, path, NOW)
        assert [r[2] for r in rows][-1] == b"k11"
    finally:
        await store.close()


async def test_a_second_store_writing_the_file_is_seen_by_the_first(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    first = await opened(path)
    woken: list[set[str]] = []
    first.on_outbox_changed(woken.append)
    second = await SqliteStore.open(path)
    rng = random.Random(7)
    ops_first, ops_second = Ops(rng), Ops(rng)
    ops_second.n = 100_000
    now = NOW
    try:
        rows = await check(first, path, now)
        for step in range(40):
            if rng.random() < 0.3:
                now += 50
            writer, ops = (first, ops_first) if rng.random() < 0.5 else (second, ops_second)
            for write in [ops.write(rows, now) for _ in range(rng.randint(1, 3))]:
                try:
                    await write(writer)
                except Exception:  # noqa: BLE001, S110 - outcomes are compared through the tables
                    pass
            await first.admin_version()  # the node's poll
            await second.admin_version()
            rows = await check(first, path, now, rng)
            assert await check(second, path, now, rng) == rows, step
        assert woken  # the first store told its workers to read again
    finally:
        await first.close()
        await second.close()


async def test_a_stale_store_writing_after_another_does_not_lose_or_duplicate(tmp_path: Path) -> None:
    """No poll between: the first store's next write must see what the second did (its begin)."""
    path = tmp_path / "node.db"
    first = await opened(path)
    second = await SqliteStore.open(path)
    try:
        await first.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(n, BETA, expires=NOW + DAY) for n in range(1, 4)], sender=(ALICE, 1))
        page = await second.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
        assert page == []  # stale until its next begin or poll (by design)
        await second.admin_version()
        page = await second.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
        await second.outbox_done(BETA, [page[0].seq, page[1].seq], now=NOW)
        # first is stale: it still answers the settled items, and settles one of them again
        await first.outbox_done(BETA, [page[0].seq, page[2].seq], now=NOW)
        # and queues a key the second store settled meanwhile? (relayed: remembered in outbox_sent)
        rows = await check(first, path, NOW)
        assert [r[2] for r in rows] == []
        await second.admin_version()
        assert await check(second, path, NOW) == rows
    finally:
        await first.close()
        await second.close()


async def test_more_than_4096_items_in_one_write(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = await opened(path)
    try:
        items = [tracked(n, BETA, expires=NOW + DAY, data=b"d%d" % n) for n in range(1, 9000)]
        items += [tracked(n, GAMMA, expires=NOW + 40, data=b"g%d" % n) for n in range(9000, 9010)]
        await store.enqueue([], now=NOW, quota=ROOMY.__class__(max_envelopes=1, max_bytes=1), outbound=items, sender=(ALICE, 1))
        rows = await check(store, path, NOW)
        beta = [r for r in rows if r[1] == BETA]
        assert [r[2] for r in beta] == [b"k%d" % n for n in range(1, 9000)]
        assert len({r[0] >> SLOT_BITS for r in beta}) == 3
        page = await store.outbox(BETA, limit=10_000, max_bytes=1 << 30, now=NOW)
        assert [i.key for i in page] == [r[2] for r in beta] and page.complete
        # settle across batch ends, with other destinations' seqs, repeats and settled ones
        gamma_seqs = [r[0] for r in rows if r[1] == GAMMA]
        first = [r[0] for r in beta[4090:4100]]
        await store.outbox_done(BETA, first + first + gamma_seqs, now=NOW)
        await store.outbox_done(BETA, first + [beta[0][0]], now=NOW)
        rows = await check(store, path, NOW)
        assert len(rows) == 9009 - 11
        # every item of the first batch: it goes, with its gone records
        await store.outbox_done(BETA, [r[0] for r in beta[:4096]], now=NOW)
        rows = await check(store, path, NOW)
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("SELECT count(*) FROM outbox_batches WHERE batch = ?", (beta[0][0] >> SLOT_BITS,)).fetchone() == (0,)
        await store.close()
        store = await opened(path)
        assert await check(store, path, NOW) == rows
    finally:
        await store.close()


async def test_expired_outbox_while_items_expire(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = await opened(path)
    try:
        items = [tracked(n, BETA, expires=NOW + 10 * n) for n in range(1, 30)]
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=items, sender=(ALICE, 1))
        for now in range(NOW, NOW + 320, 7):
            rows = await check(store, path, now)
            gone = await store.expired_outbox(BETA, limit=3, max_bytes=1 << 20, now=now)
            assert all(i.expires <= now for i in gone)
            if gone:
                await store.outbox_done(BETA, [i.seq for i in gone], now=now)
            await store.purge_expired(now=now)
        assert await check(store, path, NOW + 400) == []
    finally:
        await store.close()


def _raw_tables(path: Path) -> bytes:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dump = b"".join(bytes(raw) for (raw,) in conn.execute("SELECT items FROM outbox_batches"))
    return dump


async def test_an_expired_items_bytes_and_id_are_kept_by_no_row_after_its_settle(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = await opened(path)
    try:
        secret = b"SECRET-expiring-message-bytes"
        items = [tracked(1, BETA, expires=NOW + 40, data=secret), tracked(2, BETA, expires=NOW + DAY)]
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=items, sender=(ALICE, 1))
        await store.purge_expired(now=NOW + 50)
        [gone] = await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + 50)
        await store.outbox_done(BETA, [gone.seq], now=NOW + 50)
        raw = _raw_tables(path)
        assert secret not in raw and mid(1) not in raw
        assert await check(store, path, NOW + 50)
    finally:
        await store.close()


async def test_a_delivered_disappearing_messages_bytes_are_kept_by_no_row_after_its_expiry(tmp_path: Path) -> None:
    """With the table, the item's row went when it was handed on. In a batch, its bytes (and
    id) stay in the row until the batch's LAST item goes: here a batch mate that the next node
    does not take (down, full) keeps a disappearing message on disk past its expiry, up to the
    mate's own expiry (30 days). docs/security.md's table says "kept until handed to the next hop"."""
    path = tmp_path / "node.db"
    store = await opened(path)
    try:
        secret = b"SECRET-disappearing-message-bytes"
        items = [tracked(1, BETA, expires=NOW + 40, data=secret), tracked(2, BETA, expires=NOW + DAY)]
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=items, sender=(ALICE, 1))
        first, _ = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
        await store.outbox_done(BETA, [first.seq], now=NOW + 1)  # handed on at once
        later = NOW + 10_000  # the message has long disappeared everywhere else
        await store.purge_expired(now=later)
        await store.expire_outbox(now=later)
        assert await check(store, path, later)
        raw = _raw_tables(path)
        assert secret not in raw, "a delivered disappearing message's bytes are still in its batch row after its expiry"
    finally:
        await store.close()


async def test_a_reader_never_gets_an_emptied_slot_as_an_item(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An uncached item read from the index, whose batch row is rewritten by an expiry settle
    (``_scrub``) before its bytes are read: the reader must not get the item with empty bytes."""
    monkeypatch.setattr(OutboxLog.__init__, "__defaults__", (0, outbox_log_module.MAX_ITEMS))  # nothing cached
    path = tmp_path / "node.db"
    store = await opened(path)
    try:
        items = [tracked(1, BETA, expires=NOW + DAY), tracked(2, BETA, expires=NOW + 40), tracked(3, BETA, expires=NOW + DAY)]
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=items, sender=(ALICE, 1))
        rows = await check(store, path, NOW)
        real = store._read
        read_started, settled = trio.Event(), trio.Event()

        async def slow(fn: Any, *args: Any) -> Any:
            if fn is OutboxLog.bodies:
                read_started.set()
                await settled.wait()
            return await real(fn, *args)

        monkeypatch.setattr(store, "_read", slow)
        pages: list[Any] = []

        async def read() -> None:
            pages.append(await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + 50))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await read_started.wait()
            # item 1 delivered and item 2 expired, settled together (item 3 stays: the row stays)
            await store.outbox_done(BETA, [rows[0][0], rows[1][0]], now=NOW + 50)
            settled.set()
        [page] = pages
        assert all(i.data for i in page), [(i.key, i.data) for i in page]
        # item 3 was queued all along: the table's read (one snapshot) answered it. Here the page
        # stops at item 1 (settled meanwhile): empty, and the outbox worker takes an empty page
        # for "nothing to push" (federation/outbox.py _push_loop: it returns, the worker ends).
        assert b"k3" in [i.key for i in page], (list(page), page.complete)
    finally:
        await store.close()


async def test_the_expiry_heap_does_not_keep_every_settled_item(tmp_path: Path) -> None:
    """Memory: an item settled leaves the index, but its (expires, seq) entry in the expiry heap
    is only dropped when it reaches the heap's top. One item that waits (a destination down)
    with an early expiry keeps every later entry: the heap grows with everything relayed."""
    path = tmp_path / "node.db"
    store = await opened(path)
    try:
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(1, GAMMA, expires=NOW + DAY)], sender=(ALICE, 1))
        for k in range(20):
            items = [relayed(1000 * k + n, BETA, expires=NOW + 2 * DAY) for n in range(100)]
            await store.enqueue([], now=NOW, quota=ROOMY, outbound=items, sender=(ALICE, 1))
            page = await store.outbox(BETA, limit=1000, max_bytes=1 << 30, now=NOW)
            await store.outbox_done(BETA, [i.seq for i in page], now=NOW)
            await store.next_expiry(after=NOW)  # as the expiry loop asks
            await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
        log = _log(store)
        assert len(log) == 1
        assert len(log._index.expiry) < 200, f"{len(log._index.expiry)} heap entries for 1 queued item"
    finally:
        await store.close()


KILLED_WRITER = """
import random, sys, trio
from sonet.node.store import OutboundItem, Quota, SqliteStore, Tracking

async def main(path, seed):
    rng = random.Random(int(seed))
    store = await SqliteStore.open(path)
    n = int(seed) * 1_000_000
    quota = Quota(max_envelopes=10, max_bytes=1000)
    while True:
        items = []
        for _ in range(rng.randint(1, 300)):
            n += 1
            dest = rng.choice(["beta.example", "gamma.example"])
            t = Tracking(sender_account="alice@alpha.example", sender_device=1, id=n.to_bytes(16, "big"), account="rita@" + dest, device=1)
            items.append(OutboundItem(dest=dest, key=b"k%d" % n, expires=2**62, data=b"x" * rng.randint(1, 2000), tracking=t if rng.random() < 0.5 else None, origin=None))
        async with trio.open_nursery() as nursery:  # several writes at once: they share groups
            async def enqueue(batch):
                await store.enqueue([], now=1, quota=quota, outbound=batch, sender=("alice@alpha.example", 1))
                print("Q", " ".join(i.key.decode() for i in batch), flush=True)
            async def settle(dest):
                page = await store.outbox(dest, limit=rng.randint(1, 500), max_bytes=1 << 30, now=1)
                seqs = [i.seq for i in page if rng.random() < 0.8]
                print("T", " ".join(i.key.decode() for i in page if i.seq in seqs), flush=True)
                await store.outbox_done(dest, seqs, now=1)
                print("S", " ".join(i.key.decode() for i in page if i.seq in seqs), flush=True)
            for k in range(0, len(items), 50):
                nursery.start_soon(enqueue, items[k:k + 50])
            nursery.start_soon(settle, "beta.example")
            nursery.start_soon(settle, "gamma.example")

trio.run(main, sys.argv[1], sys.argv[2])
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
async def test_sigkill_mid_write_loses_and_duplicates_nothing(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "node.db"
    store = await opened(path)
    await store.close()
    queued: set[bytes] = set()
    settled: set[bytes] = set()
    tried: set[bytes] = set()  # settles begun: maybe committed when the kill came
    for round_ in range(3):
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", KILLED_WRITER, str(path), str(seed * 10 + round_ + 1)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        output = b""
        assert proc.stdout is not None and proc.stderr is not None
        try:
            wanted = random.Random(seed * 10 + round_).randint(20_000, 400_000)
            while len(output) < wanted:
                chunk = await proc.stdout.receive_some()
                if not chunk:
                    errors = await proc.stderr.receive_some()
                    pytest.fail(f"writer exited: {errors!r}")
                output += chunk
            os.kill(proc.pid, signal.SIGKILL)
            while chunk := await proc.stdout.receive_some():
                output += chunk
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            await proc.stdout.aclose()
            await proc.stderr.aclose()
        assert proc.returncode == -signal.SIGKILL
        for line in output.split(b"\n")[:-1]:  # (the last may be cut)
            kind, *keys = line.split(b" ")
            {b"Q": queued, b"S": settled, b"T": tried}[kind].update(keys)
        store = await opened(path)
        try:
            rows = await check(store, path, 1)
        finally:
            await store.close()
        keys = [r[2] for r in rows]
        assert len(keys) == len(set(keys)), "an item queued twice"
        assert not settled & set(keys), "a settled item came back"
        assert queued - tried <= set(keys), "an acknowledged item was lost"
        assert set(keys) <= queued | tried | {k for k in set(keys)}  # (items whose Q line was cut are fine)


async def test_expired_reads_only_their_destinations_expired_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``expired_outbox`` runs on the trio thread: it must not pop, push back and sort every
    expired item of every destination at each call (20k expired for one node down: every other
    destination's expiry tick pays for all of them; measured: 0.6 s of blocked event loop per
    call with 200k expired, /tmp/rev12/perf.py)."""
    path = tmp_path / "node.db"
    store = await opened(path)
    try:
        items = [relayed(n, BETA, expires=NOW + 10 + n) for n in range(20_000)]
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=items, sender=(ALICE, 1))
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[relayed(99_999, GAMMA, expires=NOW + 5)], sender=(ALICE, 1))
        popped = 0
        real = outbox_log_module.heapq.heappop

        def counted(heap: list[Any]) -> Any:
            nonlocal popped
            popped += 1
            return real(heap)

        monkeypatch.setattr(outbox_log_module.heapq, "heappop", counted)
        [gone] = await store.expired_outbox(GAMMA, limit=256, max_bytes=1 << 30, now=NOW + 30_000)
        assert gone.key == b"r99999"
        assert popped < 1000, f"{popped} heap entries popped to answer one expired item of another destination"
    finally:
        await store.close()


async def test_a_wake_callback_that_raises_does_not_lose_the_groups_changes_from_the_index(tmp_path: Path) -> None:
    """``publish`` installs a reloaded index, then calls ``reloaded`` before applying the group's
    own changes: if it raises (a worker nursery closing, say), GroupCommit calls ``failed`` and
    the acknowledged write's items are missing from the index (until the next group's begin)."""
    path = tmp_path / "node.db"
    store = await opened(path)
    other = await SqliteStore.open(path)
    try:
        def wake(dests: set[str]) -> None:
            raise RuntimeError("Nursery is closed to new arrivals")

        store.on_outbox_changed(wake)
        await other.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(1, GAMMA, expires=NOW + DAY)], sender=(ALICE, 1))
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(2, BETA, expires=NOW + DAY)], sender=(ALICE, 1))
        page = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
        assert [i.key for i in page] == [b"k2"], "an acknowledged item is not answered"
    finally:
        await other.close()
        await store.close()


async def test_the_item_cap_counts_what_the_group_settled_and_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OutboxLog.__init__, "__defaults__", (outbox_log_module.CACHE_BYTES, 10))
    monkeypatch.setattr(outbox_log_module, "ACTOR_SHARE", 1)  # (alice alone may fill it: the total is what is tried)
    path = tmp_path / "node.db"
    store = await opened(path)
    try:
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(n, BETA, expires=NOW + DAY) for n in range(1, 9)], sender=(ALICE, 1))
        with pytest.raises(OverBudget):
            await store.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(n, BETA, expires=NOW + DAY) for n in range(20, 23)], sender=(ALICE, 1))
        rows = await check(store, path, NOW)
        seqs = [r[0] for r in rows]
        writes: list[Write] = [
            lambda s: s.outbox_done(BETA, seqs[:2], now=NOW),
            lambda s: s.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(n, BETA, expires=NOW + DAY) for n in range(30, 33)], sender=(ALICE, 1)),
            lambda s: s.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(40, GAMMA, expires=NOW + DAY)], sender=(ALICE, 1)),
            lambda s: s.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(41, GAMMA, expires=NOW + DAY)], sender=(ALICE, 1)),
        ]
        outcomes, _ = await as_one_group(store, writes)
        assert outcomes == [None, None, None, "OverBudget"]
        rows = await check(store, path, NOW)
        assert len(rows) == 10
    finally:
        await store.close()


async def test_a_vanished_tracked_item_loses_its_state_and_its_id_at_the_purge(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = await opened(path)
    try:
        items = [tracked(1, BETA, expires=NOW + 40), tracked(2, BETA, expires=NOW + DAY), tracked(3, BETA, expires=NOW + 60)]
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=items, sender=(ALICE, 1))
        assert {d.id for d in await store.deliveries(ALICE, 1, [mid(1), mid(2), mid(3)])} == {mid(1), mid(2), mid(3)}
        await store.purge_expired(now=NOW + 50)
        assert {d.id for d in await store.deliveries(ALICE, 1, [mid(1), mid(2), mid(3)])} == {mid(2), mid(3)}
        raw = _raw_tables(path)
        assert mid(1) not in raw and mid(2) in raw
        rows = await check(store, path, NOW + 50)
        assert [r[10] for r in rows] == [None, mid(2), mid(3)]
        # a report for the vanished one is not applied to it (no row, no state); settled: no row
        await store.receive([StatusUpdate(id=mid(1), account=f"rita@{BETA}", device=1, state="accepted", code="", at=NOW + 51)], now=NOW + 51, quota=ROOMY)
        await store.outbox_done(BETA, [rows[0][0]], now=NOW + 52)
        assert {d.id for d in await store.deliveries(ALICE, 1, [mid(1), mid(2), mid(3)])} == {mid(2), mid(3)}
        await store.close()
        store = await opened(path)
        assert await check(store, path, NOW + 52) == rows[1:]
        await store.purge_expired(now=NOW + 70)
        assert {d.id for d in await store.deliveries(ALICE, 1, [mid(1), mid(2), mid(3)])} == {mid(2)}
        assert mid(3) not in _raw_tables(path)
    finally:
        await store.close()


async def test_concurrent_readers_never_see_a_failed_writes_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers and readers at once (groups form by themselves): a write that fails queues
    keys b"bad..." that no reader may ever see, before or after; every acknowledged item is
    answered once its write returned, until it is settled."""
    monkeypatch.setattr(OutboxLog.__init__, "__defaults__", (2000, outbox_log_module.MAX_ITEMS))
    path = tmp_path / "node.db"
    store = await opened(path)
    rng = random.Random(5)
    acked: dict[bytes, str] = {}
    settled: set[bytes] = set()
    seen_bad: list[bytes] = []
    done = False
    try:
        async def writer(w: int) -> None:
            for k in range(20):  # (2 writers x 20: a few seconds, in make test)
                n = w * 10_000 + k
                if rng.random() < 0.3:
                    bad = OutboundItem(dest=rng.choice(DESTS), key=b"bad%d" % n, expires=NOW + DAY, data=b"never")
                    if rng.random() < 0.5:
                        with pytest.raises(OverBudget):
                            await store.enqueue([], now=NOW, quota=NO_ROOM, outbound=[bad], sender=(ALICE, 1))
                    else:
                        page = await store.outbox(bad.dest, limit=3, max_bytes=1 << 20, now=NOW)
                        with pytest.raises(ValueError):
                            await store._transaction(_settle_then_fail, bad.dest, [i.seq for i in page], NOW, [bad])
                else:
                    item = tracked(n, rng.choice(DESTS), expires=NOW + DAY)
                    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item], sender=(ALICE, 1))
                    acked[item.key] = item.dest
                    page = await store.outbox(item.dest, limit=100_000, max_bytes=1 << 40, now=NOW)
                    # (a page is cut, not complete, where an uncached item was settled during the read)
                    assert item.key in {i.key for i in page} or item.key in settled or not page.complete
                await trio.sleep(0)

        async def settler() -> None:
            while not done:
                dest = rng.choice(DESTS)
                page = await store.outbox(dest, limit=5, max_bytes=1 << 20, now=NOW)
                picked = [i for i in page if rng.random() < 0.5]
                if picked:
                    settled.update(i.key for i in picked)  # (before: the writer may look while it commits)
                    await store.outbox_done(dest, [i.seq for i in picked], now=NOW)
                await trio.sleep(0.001)  # (interleaved with every commit, without spinning the CPU away)

        async def reader() -> None:
            while not done:
                for dest in DESTS:
                    page = await store.outbox(dest, limit=rng.choice([1, 7, 1000]), max_bytes=rng.choice([50, 1 << 20]), now=NOW, after=rng.choice([0, 0, 1 << SLOT_BITS]))
                    seen_bad.extend(i.key for i in page if i.key.startswith(b"bad"))
                    assert all(i.data for i in page)
                await trio.sleep(0.001)

        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(reader)
            nursery.start_soon(settler)
            async with trio.open_nursery() as writers:
                for w in range(1, 3):
                    writers.start_soon(writer, w)
            done = True
        assert not seen_bad
        rows = await check(store, path, NOW)
        assert {r[2] for r in rows} == set(acked) - settled
    finally:
        await store.close()
