"""How often the outbox worker asks the store (federation/outbox.py): after a read that held
everything there was (``Page.complete``) it does not read again until it is woken, and a wake
between two reads is never lost. Each read is a hand-off to the store's thread on the latency
path of every push."""

from __future__ import annotations

import trio
import trio.testing

from sonet.federation.ports import Page
from sonet.federation.records import QueuedItem

from .test_outbox_worker import BETA, EnvelopeStore, WindowPool, outboxes_for


class PagedStore(EnvelopeStore):
    """``EnvelopeStore`` whose reads say whether they held everything, as the real store's
    do; counts its reads."""

    def __init__(self, per_read: int) -> None:
        super().__init__(per_read)
        self.sizes: list[int] = []  # of each read
        self.last_seq = 0

    @property
    def reads(self) -> int:
        return len(self.sizes)

    def add_envelopes(self, count: int) -> list[int]:
        seqs = list(range(self.last_seq + 1, self.last_seq + 1 + count))  # never reused, as a store's
        for seq in seqs:
            self.items[seq] = self.envelope
        self.last_seq += count
        return seqs

    async def outbox(self, dest, *, limit, max_bytes, now, after=0):
        waiting = [s for s in self.items if s > after]
        page: Page[QueuedItem] = Page(await super().outbox(dest, limit=limit, max_bytes=max_bytes, now=now, after=after))
        page.complete = len(page) == len(waiting)
        self.sizes.append(len(page))
        return page


def answering_pool() -> WindowPool:
    pool = WindowPool()
    pool.pushed = 3  # past its refused round: every push is taken
    pool.release.set()
    return pool


async def test_a_short_read_is_the_only_read_of_its_push() -> None:
    store = PagedStore(per_read=10)
    seqs = store.add_envelopes(3)
    pool = answering_pool()
    outboxes = outboxes_for(store, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.taken == seqs and not store.items
        assert store.reads == 1  # (it read again after each push, until it found nothing)
        assert BETA not in outboxes._workers  # the worker ended: the next wake starts one
        more = store.add_envelopes(2)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.taken == [1, 2, 3, 4, 5] and store.reads == 2  # (the pool numbers what it takes)
        nursery.cancel_scope.cancel()


async def test_a_read_stopped_at_its_cap_is_followed_by_another() -> None:
    store = PagedStore(per_read=10)
    seqs = store.add_envelopes(25)
    pool = answering_pool()
    outboxes = outboxes_for(store, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.taken == seqs and not store.items
        # 10 and 10 (two small pushes at once); the last 5 read while those are on their way
        # wait for their answers and are read again (a third small push would not go beside
        # them); that read held everything and went: no read after it
        assert store.sizes == [10, 10, 5, 5]
        nursery.cancel_scope.cancel()


async def test_an_item_woken_for_while_a_push_is_on_its_way_is_read_and_pushed() -> None:
    store = PagedStore(per_read=10)
    pool = WindowPool()
    pool.pushed = 3
    first = store.add_envelopes(1)
    outboxes = outboxes_for(store, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.in_flight == 1 and store.reads == 1  # waiting for the answer, not reading
        second = store.add_envelopes(1)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert store.reads == 2 and pool.in_flight == 2  # read at once, pushed beside the first
        pool.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert pool.taken == first + second and not store.items
        nursery.cancel_scope.cancel()


async def test_a_wake_while_the_worker_reads_is_not_lost() -> None:
    # the item is committed (and its wake comes) while the read is on its way, after the
    # read's snapshot: the read is complete but the worker must read once more
    store = PagedStore(per_read=10)
    pool = answering_pool()
    outboxes = outboxes_for(store, pool)
    first = store.add_envelopes(1)
    later: list[int] = []
    read = store.outbox

    async def read_then_commit_one(dest, **kwargs):
        page = await read(dest, **kwargs)
        if not later:
            later.extend(store.add_envelopes(1))
            outboxes.wake([BETA])
        return page

    store.outbox = read_then_commit_one  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.taken == first + later and not store.items
        nursery.cancel_scope.cancel()
