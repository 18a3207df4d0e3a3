"""Review of the outbox worker after feb1f8b (settles beside the next pushes): what a worker
that ends, a settle that fails or is slow, an expiry tick and a cancelled worker do to the
items and to the order of the settles (fake store and pool, as test_outbox_worker.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import trio
import trio.testing

from sonet.core.federation_api import OK, PushResult
from sonet.federation.errors import FederationError
from sonet.federation.outbox import Outboxes
from sonet.federation.ports import StoreFailure
from sonet.federation.records import QueuedItem
from sonet.federation.settings import FederationSettings
from sonet.federation.transit import encode_transit, read_queued

from .net import transit

BETA = "beta.example"
ENVELOPE = encode_transit(transit(f"bob@{BETA}", origin="alpha.example"))


class Hop:
    name = BETA


class Routes:
    def next_hop(self, dest: str) -> Hop:
        return Hop()


class Store:
    """An outbox of envelope items; settles (outbox_done, also of expired items) recorded in
    the order they commit; ``hold`` (when set up) keeps each settle waiting; ``fail`` makes the
    next one a store error."""

    def __init__(self) -> None:
        self.items: dict[int, bytes] = {}
        self.next_seq = 1
        self.settles: list[tuple[str, list[int]]] = []
        self.hold: trio.Event | None = None
        self.fail = False
        self.expired: set[int] = set()
        self.reading = False  # what an expired_outbox call settles is "expired"
        self.reads = 0
        #: runs inside each read of the outbox, after the read (what happens meanwhile)
        self.after_read = None

    def add(self, count: int) -> list[int]:
        seqs = list(range(self.next_seq, self.next_seq + count))
        for seq in seqs:
            self.items[seq] = ENVELOPE
        self.next_seq += count
        return seqs

    async def outbox(self, dest, *, limit, max_bytes, now, after=0):
        self.reads += 1
        items = [
            QueuedItem(seq=s, dest=dest, key=b"k", expires=10**15, data=d, queued_at=0)
            for s, d in sorted(self.items.items())
            if s > after and s not in self.expired
        ][:10]
        if self.after_read is not None:
            self.after_read()
        return items

    async def outbox_done(self, dest, seqs, *, now, statuses=(), reports=(), failed=None):
        kind = "expired" if statuses and all(s.code == "expired" for s in statuses) else "pushed"
        if self.hold is not None:
            await self.hold.wait()
        if self.fail:
            self.fail = False
            raise StoreFailure("database is locked")
        self.settles.append((kind, list(seqs)))
        for seq in seqs:
            self.items.pop(seq, None)
            self.expired.discard(seq)

    async def expired_outbox(self, dest, *, limit, max_bytes, now):
        return [
            QueuedItem(seq=s, dest=dest, key=b"k", expires=0, data=self.items[s], queued_at=0) for s in sorted(self.expired)
        ]

    async def outbox_destinations(self):
        return [BETA] if self.items else []

    async def expire_outbox(self, now):
        pass


class Pool:
    """A hop that takes every push at once; records the seqs of the items pushed (the test's
    envelope items are alike: told apart by the order they were read)."""

    def __init__(self) -> None:
        self.pushes = 0
        self.items = 0
        self.hold: trio.Event | None = None

    def backing_off(self, name: str) -> bool:
        return False

    def seen(self, name: str) -> None:
        pass

    def setback(self, name: str, code: str, message: str) -> None:
        pass

    async def request(self, hop, frame, *, sent):
        sent()
        self.pushes += 1
        self.items += len(frame.items)
        if self.hold is not None:
            await self.hold.wait()
        return PushResult(request=frame.request, outcomes=(OK,) * len(frame.items))


def outboxes_for(store: Store, pool: Pool) -> Outboxes:
    async def routes() -> Routes:
        return Routes()

    return Outboxes(
        name="alpha.example", store=store, pool=pool, routes=routes, clock_ms=lambda: 1,
        settings=FederationSettings(expire_interval_s=3600),
    )  # fmt: skip


@asynccontextmanager
async def running(store: Store, pool: Pool) -> AsyncIterator[Outboxes]:
    """The outboxes of ``store`` pushing through ``pool``, running until the block ends."""
    outboxes = outboxes_for(store, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        yield outboxes
        nursery.cancel_scope.cancel()


def store_a_relayed_row_failing_its_checks(store: Store) -> None:
    """Seq 1: an item relayed for gamma whose envelope id fails its check() (damaged, or a check
    tightened since it was queued), as the outbox would read it back."""
    relayed = read_queued(encode_transit(transit(f"bob@{BETA}", origin="gamma.example")))
    bad = dataclasses.replace(relayed, envelope=dataclasses.replace(relayed.envelope, id=b"short"))  # type: ignore[type-var]
    store.items[1] = msgspec.msgpack.encode(bad)
    store.next_seq = 2


async def test_items_queued_while_a_worker_ends_are_pushed_without_waiting_for_an_expiry_tick() -> None:
    # A worker that finds nothing to push ends; new items committed in the last moments of its
    # ending wake it (worker.woken) but it no longer looks: they waited for the next expiry
    # tick (60 s by default). Each ``delay`` puts the commit at another moment of the ending.
    for delay in range(12):
        store, pool = Store(), Pool()
        outboxes = outboxes_for(store, pool)
        async with trio.open_nursery() as nursery:
            await nursery.start(outboxes.run)

            async def commit_later(delay: int = delay) -> None:
                for _ in range(delay):
                    await trio.lowlevel.checkpoint()
                store.add(1)
                outboxes.wake([BETA])  # as send_batch does once the items are committed

            def first_read_only() -> None:
                if store.reads == 1:
                    nursery.start_soon(commit_later)

            store.after_read = first_read_only
            outboxes.wake([BETA])
            await trio.testing.wait_all_tasks_blocked()
            assert not store.items, f"an item committed {delay} checkpoints after the read waits for the expiry tick"
            assert store.settles == [("pushed", [1])]
            nursery.cancel_scope.cancel()


async def test_an_expiry_tick_settles_after_the_settles_queued_before_it() -> None:
    # three pushes answered, their settles slow and queued; an expiry tick comes meanwhile:
    # the expired items' settle commits after them, never beside or before
    store, pool = Store(), Pool()
    store.hold = trio.Event()
    seqs = store.add(30)
    async with running(store, pool) as outboxes:
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.pushes == 3 and store.settles == []
        store.expired = set(store.add(5))
        await outboxes.expire()
        await trio.testing.wait_all_tasks_blocked()
        assert store.settles == []  # nothing settled before the held settles
        store.hold.set()
        await trio.testing.wait_all_tasks_blocked()
        assert store.settles == [("pushed", seqs[0:10]), ("pushed", seqs[10:20]), ("pushed", seqs[20:30]), ("expired", [31, 32, 33, 34, 35])]
        assert not store.items and pool.items == 30  # the expired ones were never pushed


def tasks_under(task: trio.lowlevel.Task) -> int:
    return sum(1 + tasks_under(child) for nursery in task.child_nurseries for child in nursery.child_tasks)


async def test_a_revoked_worker_leaves_no_task_and_its_queued_settles_never_run() -> None:
    store, pool = Store(), Pool()
    store.hold = trio.Event()
    seqs = store.add(30)
    async with running(store, pool) as outboxes:
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.pushes == 3  # one settle running (held), one queued, the worker waits
        outboxes.revoke(BETA)  # the lease went to another process (or the link's node stops)
        await trio.testing.wait_all_tasks_blocked()
        assert tasks_under(trio.lowlevel.current_task()) == 1  # Outboxes.run alone: the worker, its pushes and settles are gone
        store.hold.set()
        await trio.testing.wait_all_tasks_blocked()
        assert store.settles == [] and sorted(store.items) == seqs  # nothing deleted: all pushed again later
        outboxes.wake([BETA])  # (the lease comes back)
        await trio.testing.wait_all_tasks_blocked()
        assert store.settles == [("pushed", seqs[k : k + 10]) for k in range(0, 30, 10)] and not store.items
        assert pool.items == 60  # each pushed twice (the receiver's deduplication answers "ok"), settled once


class DroppingPool(Pool):
    """The link drops under the second push (no answer); a push that must follow it on that link
    goes nowhere (LinkPool.request's ``follows``); the next one goes on a new link."""

    def __init__(self) -> None:
        super().__init__()
        self.link = object()

    async def request(self, hop, frame, *, sent, follows=None):
        if follows is not None and follows is not self.link:
            raise FederationError("unreachable", f"the link to {BETA} the pushes before it went on is gone")
        link = self.link
        if self.pushes == 1:
            self.pushes += 1
            sent(link)
            self.link = object()
            raise FederationError("unreachable", f"{BETA}: the link was lost")
        return await super().request(hop, frame, sent=lambda: sent(link))


async def test_a_slow_settle_while_the_link_drops_settles_each_item_once_in_order() -> None:
    store, pool = Store(), DroppingPool()
    store.hold = trio.Event()
    seqs = store.add(30)
    async with running(store, pool) as outboxes:
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.pushes == 2 and store.settles == []  # push 1 taken (settle held), push 2 lost
        store.hold.set()
        await trio.testing.wait_all_tasks_blocked()
        assert store.settles == [("pushed", seqs[k : k + 10]) for k in range(0, 30, 10)] and not store.items
        assert pool.pushes == 4 and pool.items == 30  # push 1's items once; the lost push's again, after it


async def test_a_settle_that_fails_while_the_worker_has_nothing_left_ends_it_and_new_items_restart_it() -> None:
    store, pool = Store(), Pool()
    store.hold = trio.Event()
    store.fail = True
    seqs = store.add(5)
    async with running(store, pool) as outboxes:
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.items == 5 and BETA in outboxes._workers  # waits for its settle
        store.hold.set()
        await trio.testing.wait_all_tasks_blocked()
        assert BETA not in outboxes._workers and sorted(store.items) == seqs  # stopped, nothing lost
        more = store.add(2)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert store.settles == [("pushed", seqs + more)] and not store.items and pool.items == 5 + 7


# Two real nodes: a settle that fails after the destination took the items -----------------

from tests.node.conftest import StartNode  # noqa: E402

from .net import ALPHA, deliveries, mailbox_ids, pin_node, queue_at, tracked, until  # noqa: E402


async def test_items_pushed_again_after_a_failed_settle_are_stored_once_and_their_statuses_are_final(
    start_node: StartNode, monkeypatch
) -> None:
    alpha = await start_node(name=ALPHA, registration="open")
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    federation = alpha.node.federation
    assert federation is not None
    store = federation._outboxes._store
    settle, failed = store.outbox_done, []

    async def fails_once(dest, seqs, **kw):
        if not failed:
            failed.append(list(seqs))
            raise StoreFailure("database is locked")
        return await settle(dest, seqs, **kw)

    monkeypatch.setattr(store, "outbox_done", fails_once)
    nobody = tracked(alpha, alice, f"nobody@{BETA}")
    fine = [tracked(alpha, alice, bob.address) for _ in range(3)]
    await queue_at(alpha, nobody, *fine)
    await until(lambda: failed and BETA not in federation._outboxes._workers, "the first settle failed and stopped the worker")
    assert [(r.state, r.code) for r in await deliveries(alpha, alice, nobody, *fine)] == [("queued", "")] * 4
    assert len(await mailbox_ids(beta, bob.address)) == 3  # beta took them already

    later = tracked(alpha, alice, bob.address)
    await queue_at(alpha, later)  # new items start the worker again: it pushes everything again

    async def settled() -> bool:
        return all(r.state != "queued" for r in await deliveries(alpha, alice, nobody, *fine, later))

    await until(settled, "every delivery row settled")
    states = {r.id: (r.state, r.code) for r in await deliveries(alpha, alice, nobody, *fine, later)}
    assert states == {
        nobody.tracking.id: ("failed", "unknown_account"),  # type: ignore[union-attr]
        **{i.tracking.id: ("accepted", "") for i in (*fine, later)},  # type: ignore[union-attr]
    }
    assert sorted(await mailbox_ids(beta, bob.address)) == sorted(i.tracking.id for i in (*fine, later))  # type: ignore[union-attr]
    async with alpha.store() as fresh:
        assert await fresh.outbox_counts() == {}


async def test_an_expired_row_that_fails_its_checks_is_dropped_and_the_outboxes_go_on() -> None:
    # a relayed item's expiry is reported to its origin: a report made from a row that fails a
    # check() (damaged, or a check tightened since it was queued) cannot be encoded; the
    # LocalProtocolError escaped the worker and ended every outbox worker of the node
    store, pool = Store(), Pool()
    store_a_relayed_row_failing_its_checks(store)
    store.expired = {1}
    async with running(store, pool) as outboxes:
        await outboxes.expire()
        await trio.testing.wait_all_tasks_blocked()
        assert not store.items  # dropped (one log line)
        seqs = store.add(3)  # the outboxes still run
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert store.settles[-1] == ("pushed", seqs) and not store.items


class RefusingPool(Pool):
    """A hop (of an older version, with looser checks) that takes the push and refuses its items."""

    async def request(self, hop, frame, *, sent):
        sent()
        self.pushes += 1
        self.items += len(frame.items)
        return PushResult(request=frame.request, outcomes=("unknown_account",) * len(frame.items))


async def test_a_refused_relayed_row_that_fails_its_checks_is_settled_without_a_report_and_the_outboxes_go_on() -> None:
    store, pool = Store(), RefusingPool()
    store_a_relayed_row_failing_its_checks(store)
    async with running(store, pool) as outboxes:
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert store.settles == [("pushed", [1])] and not store.items  # settled (no report can be made of it)
        seqs = store.add(2)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert store.settles[-1] == ("pushed", seqs)


class ExpiryFailsOnce(Store):
    """The first ``expired_outbox`` waits for ``gate``, then fails (a store error)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.expiry_calls = 0

    async def expired_outbox(self, dest, *, limit, max_bytes, now):
        self.expiry_calls += 1
        if self.expiry_calls == 1:
            await self.gate.wait()
            raise StoreFailure("database is locked")
        return await super().expired_outbox(dest, limit=limit, max_bytes=max_bytes, now=now)


async def test_a_worker_started_again_after_its_expiry_failed_settles_the_expired_items_first() -> None:
    # An expiry tick asks the worker to settle its expired items before it pushes; its store
    # call fails while new items wake it, so it ends and starts again at once. The new worker
    # had forgotten the tick's request: it pushed first and left the expired item for the next
    # tick (60 s by default).
    store, pool = ExpiryFailsOnce(), Pool()
    expired, live = store.add(2)
    store.expired = {expired}
    async with running(store, pool) as outboxes:
        await outboxes.expire()  # the tick: the worker starts, due to expire first
        await trio.testing.wait_all_tasks_blocked()
        assert store.expiry_calls == 1 and pool.pushes == 0
        outboxes.wake([BETA])  # items committed while its expiry is in the store
        store.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert store.expiry_calls == 3  # the failed one, then one that found it, one that found none
        assert store.settles == [("expired", [expired]), ("pushed", [live])] and pool.items == 1
