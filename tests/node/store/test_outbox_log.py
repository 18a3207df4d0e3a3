"""The SQLite store's outboxes as batch rows and an index in memory (node/store/outbox_log.py):
a row holds only what is queued, the index answers as the table does after any commit, failure
or reopening, and a write by another connection is read again and told to the node."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from sonet.node.store import OutboundItem, OverBudget, Quota, SqliteStore, StatusUpdate, Tracking
from sonet.node.store.outbox_log import MAX_SLOTS, SLOT_BITS, queued_rows
from sonet.node.store.vanishing import SHORT_LIVED_MS

from .old_versions import sqlite_at
from .test_contract import ALICE, DAY, NOW, ROOMY, mid, register
from .test_tail_capture import store  # noqa: F401 - the fixture: a store with alice and bob

BETA = "beta.example"
GAMMA = "gamma.example"


def item(n: int, dest: str = BETA, *, expires: int = NOW + DAY, size: int = 10) -> OutboundItem:
    tracking = Tracking(sender_account=ALICE, sender_device=1, id=mid(n), account=f"rita@{dest}", device=1)
    return OutboundItem(dest=dest, key=b"k%d" % n, expires=expires, data=bytes([n % 256]) * size, tracking=tracking)


def raw_rows(path: Path) -> list[tuple[int, str, list[Any]]]:
    with closing(sqlite3.connect(path)) as conn:
        return [(b, d, msgpack.unpackb(raw, raw=False)) for b, d, raw in conn.execute("SELECT batch, dest, items FROM outbox_batches ORDER BY batch")]


async def answers(store: SqliteStore, now: int = NOW) -> dict[str, list[tuple[int, bytes, bytes]]]:
    """What the index answers for each destination."""
    out = {}
    for dest in sorted(await store.outbox_counts()):
        page = await store.outbox(dest, limit=100_000, max_bytes=1 << 40, now=now)
        out[dest] = [(i.seq, i.key, i.data) for i in page]
    return out


async def tables(store: SqliteStore, now: int = NOW) -> dict[str, list[tuple[int, bytes, bytes]]]:
    """What the table holds, read as the index should answer."""
    rows = await store._read(queued_rows)
    out: dict[str, list[tuple[int, bytes, bytes]]] = {}
    for seq, dest, key, expires, data, *_ in rows:
        if expires > now:
            out.setdefault(dest, []).append((seq, key, data))
    return out


async def test_a_batch_row_holds_only_what_is_still_queued(store: SqliteStore, tmp_path: Path) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(n) for n in range(1, 5)], sender=(ALICE, 1))
    [(batch, dest, records)] = raw_rows(tmp_path / "node.db")
    assert dest == BETA and [r[0] for r in records] == [b"k1", b"k2", b"k3", b"k4"]
    queued = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    assert [i.seq for i in queued] == [batch << SLOT_BITS | slot for slot in range(4)]
    # two settled: their slots are nil in the row (no bytes, key or id of theirs is kept)
    await store.outbox_done(BETA, [queued[0].seq, queued[2].seq], now=NOW)
    [(_, _, records)] = raw_rows(tmp_path / "node.db")
    assert records[0] is None and records[2] is None and [records[1][0], records[3][0]] == [b"k2", b"k4"]
    assert await answers(store) == await tables(store) == {BETA: [(queued[1].seq, b"k2", b"\x02" * 10), (queued[3].seq, b"k4", b"\x04" * 10)]}
    # the last ones: the row goes
    await store.outbox_done(BETA, [queued[1].seq, queued[3].seq], now=NOW)
    assert raw_rows(tmp_path / "node.db") == [] and await store.outbox_counts() == {}


async def test_a_write_of_more_than_a_batch_holds_is_several_rows_in_order(store: SqliteStore, tmp_path: Path) -> None:
    quota = Quota(max_envelopes=1000, max_bytes=1 << 30)
    await store.enqueue([], now=NOW, quota=quota, outbound=[item(n, size=1) for n in range(MAX_SLOTS + 3)], sender=(ALICE, 1))
    rows = raw_rows(tmp_path / "node.db")
    assert [len(records) for _, _, records in rows] == [MAX_SLOTS, 3]
    seqs = [i.seq for i in await store.outbox(BETA, limit=10_000, max_bytes=1 << 30, now=NOW)]
    assert len(seqs) == MAX_SLOTS + 3 and seqs == sorted(seqs)


async def test_the_index_is_rebuilt_from_the_rows_when_the_store_opens(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with await SqliteStore.open(path) as store:
        await register(store, ALICE)
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(n) for n in range(1, 4)] + [item(9, GAMMA)], sender=(ALICE, 1))
        first = (await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW))[0]
        await store.outbox_done(BETA, [first.seq], now=NOW, statuses=[StatusUpdate(id=mid(1), account=f"rita@{BETA}", device=1, state="accepted", code="", at=NOW)])
        before = await answers(store)
    async with await SqliteStore.open(path) as store:
        assert await answers(store) == before == await tables(store)
        assert await store.outbox_counts() == {BETA: 2, GAMMA: 1}
        # a new item comes after every one before it, and a settled key can be queued again
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)], sender=(ALICE, 1))
        seqs = [i.seq for i in await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)]
        assert len(seqs) == 3 and seqs == sorted(seqs) and seqs[-1] > max(s for s, _, _ in before[GAMMA])
        rows = {(r.id, r.state) for r in await store.deliveries(ALICE, 1, [mid(1), mid(2), mid(9)])}
        assert rows == {(mid(1), "accepted"), (mid(2), "queued"), (mid(9), "queued")}


async def test_a_failing_write_in_a_shared_group_leaves_nothing_of_itself_in_the_index(store: SqliteStore) -> None:
    """Three writes in one group, the middle one over its budget: the group runs again with a
    savepoint per write, and the index holds the two others' items, as the table does."""
    tight = Quota(max_envelopes=1000, max_bytes=1 << 20, outbox_bytes=50)
    outcomes: dict[str, Any] = {}

    async def write(name: str, items: list[OutboundItem], quota: Quota) -> None:
        try:
            await store.enqueue([], now=NOW, quota=quota, outbound=items, sender=(ALICE, 1))
            outcomes[name] = "ok"
        except OverBudget as exc:
            outcomes[name] = exc.code

    await store._limiter.acquire()  # the writer is busy: the three queue up and share a group
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, "first", [item(1)], ROOMY)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(write, "over", [item(2, GAMMA, size=100)], tight)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(write, "third", [item(3)], ROOMY)
        await trio.testing.wait_all_tasks_blocked()
        store._limiter.release()
    assert outcomes == {"first": "ok", "over": "outbox_full", "third": "ok"}
    assert await answers(store) == await tables(store)
    assert [k for _, k, _ in (await answers(store))[BETA]] == [b"k1", b"k3"] and await store.outbox_counts() == {BETA: 2}
    # the refused key is not taken for queued (its journal went with its savepoint)
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(2, GAMMA, size=100)], sender=(ALICE, 1))
    assert await store.outbox_counts() == {BETA: 2, GAMMA: 1}


async def test_a_write_by_another_connection_is_read_again_and_told(store: SqliteStore, tmp_path: Path) -> None:
    told: list[set[str]] = []
    store.on_outbox_changed(told.append)
    assert await store.outbox_counts() == {}
    async with await SqliteStore.open(tmp_path / "node.db") as other:  # e.g. a second process
        await other.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1), item(2, GAMMA)], sender=(ALICE, 1))
    assert await store.outbox_counts() == {}  # not seen yet: nothing of this store committed since
    await store.admin_version()  # the node's admin poll (node/admin_watch.py)
    assert told == [{BETA, GAMMA}]
    assert await answers(store) == await tables(store) and await store.outbox_counts() == {BETA: 1, GAMMA: 1}
    await store.admin_version()
    assert len(told) == 1  # nothing new: not told again


async def test_a_disappearing_messages_tracking_leaves_its_row_at_its_expiry(store: SqliteStore, tmp_path: Path) -> None:
    short = item(1, expires=NOW + DAY)  # less than SHORT_LIVED_MS to live: a disappearing message's
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[short, item(2, expires=NOW + SHORT_LIVED_MS + DAY)], sender=(ALICE, 1))
    assert {r.id for r in await store.deliveries(ALICE, 1, [mid(1), mid(2)])} == {mid(1), mid(2)}
    await store.purge_expired(now=short.expires)
    # its item stays for its worker to settle, with no id; the other keeps its tracking
    [(_, _, records)] = raw_rows(tmp_path / "node.db")
    assert records[0][6] is None and records[1][6] == mid(2)
    assert {r.id for r in await store.deliveries(ALICE, 1, [mid(1), mid(2)])} == {mid(2)}
    [expired] = await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=short.expires)
    await store.outbox_done(BETA, [expired.seq], now=short.expires, failed={expired.seq: "expired"})
    assert {r.id for r in await store.deliveries(ALICE, 1, [mid(1), mid(2)])} == {mid(2)}
    [(_, _, records)] = raw_rows(tmp_path / "node.db")
    assert records[0] is None


async def test_an_outbox_of_version_29_is_moved_into_batches_in_its_order(tmp_path: Path) -> None:
    from sonet.node.store.migrations import MIGRATIONS

    version = next(n for n, m in enumerate(MIGRATIONS, start=1) if any("outbox_batches" in s for s in m)) - 1
    rows = [(BETA, b"k%d" % n, NOW + DAY, b"transit %d" % n, NOW, 9, None, ALICE, 1, mid(n), f"rita@{BETA}", 1) for n in (3, 1, 2)]
    rows.append((GAMMA, b"r1", NOW + DAY, b"relayed", NOW, 7, "delta.example", None, None, None, None, None))
    insert = (
        "INSERT INTO outbox (dest, key, expires, data, queued_at, size, origin, sender_account, sender_device, id, account, device)"
        " VALUES ({marks})"
    )
    opener = sqlite_at(tmp_path / "node.db", version, [(insert, rows)])
    async with await opener() as store:
        assert [(k, d) for _, k, d in (await answers(store))[BETA]] == [(b"k3", b"transit 3"), (b"k1", b"transit 1"), (b"k2", b"transit 2")]
        assert (await answers(store))[GAMMA][0][1:] == (b"r1", b"relayed")
        assert {r.id: r.state for r in await store.deliveries(ALICE, 1, [mid(1), mid(2), mid(3)])} == {mid(n): "queued" for n in (1, 2, 3)}
    with closing(sqlite3.connect(tmp_path / "node.db")) as conn:
        names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "outbox_rows" not in names and "outbox" not in names


async def test_past_the_items_the_index_keeps_a_charged_write_is_refused_whole(store: SqliteStore) -> None:
    """Each queued item costs memory in the index (outbox_log.MAX_ITEMS): past the cap, or past
    one actor's share of it (the sending account, a relayed item's origin node), a write charged
    to a budget is refused outbox_full, nothing of it queued; a report is not."""
    assert store._outbox_log is not None
    store._outbox_log.max_items = 12  # a share of 3 each

    def relayed(n: int, origin: str) -> OutboundItem:
        return OutboundItem(dest=BETA, key=b"r%d" % n, expires=NOW + DAY, data=b"relayed", origin=origin)

    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1), item(2)], sender=(ALICE, 1))
    with pytest.raises(OverBudget) as refused:
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(3), item(4, GAMMA)], sender=(ALICE, 1))
    assert refused.value.code == "outbox_full" and f"for {ALICE}" in str(refused.value) and "(3)" in str(refused.value)
    assert await store.outbox_counts() == {BETA: 2} and await answers(store) == await tables(store)
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(3)], sender=(ALICE, 1))  # room for one more of alice's
    # other actors have their own share, up to the cap in all
    for k, origin in enumerate(["d1.example", "d2.example", "d3.example"]):
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[relayed(10 * k + n, origin) for n in range(3)])
    with pytest.raises(OverBudget) as refused:
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[relayed(99, "d4.example")])
    assert refused.value.code == "outbox_full" and "(12)" in str(refused.value)
    # a settle's report for another node is queued past the cap (reports are refused nowhere)
    first = (await store.outbox(BETA, limit=1, max_bytes=1 << 20, now=NOW))[0]
    report = OutboundItem(dest=GAMMA, key=b"report", expires=NOW + DAY, data=b"report")
    await store.outbox_done(BETA, [], now=NOW, reports=[report])
    assert await store.outbox_counts() == {BETA: 12, GAMMA: 1}
    with pytest.raises(OverBudget):  # the report counts in all: 13 held
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(5)], sender=(ALICE, 1))
    await store.outbox_done(BETA, [first.seq], now=NOW)  # alice's first goes, and the report
    await store.outbox_done(GAMMA, [(await store.outbox(GAMMA, limit=1, max_bytes=1 << 20, now=NOW))[0].seq], now=NOW)
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(5)], sender=(ALICE, 1))  # room for one of hers again
    assert await store.outbox_counts() == {BETA: 12} and await answers(store) == await tables(store)


async def test_a_damaged_batch_row_does_not_keep_the_store_from_opening(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "node.db"
    async with await SqliteStore.open(path) as store:
        await register(store, ALICE)
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)], sender=(ALICE, 1))
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(2, GAMMA)], sender=(ALICE, 1))
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE outbox_batches SET items = ? WHERE dest = ?", (b"\xc1\xff garbage", BETA))
    async with await SqliteStore.open(path) as store:
        assert await store.outbox_counts() == {GAMMA: 1}
    assert any("is unreadable" in r.getMessage() and BETA in r.getMessage() for r in caplog.records)
