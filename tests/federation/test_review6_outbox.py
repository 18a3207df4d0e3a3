"""Review of the outbox worker after feb1f8b (settles beside the next pushes): what a worker
that ends, a settle that fails or is slow, an expiry tick and a cancelled worker do to the
items and to the order of the settles (fake store and pool, as test_outbox_worker.py)."""

from __future__ import annotations

import trio
import trio.testing

from sonet.core.federation_api import OK, PushResult
from sonet.federation.outbox import Outboxes
from sonet.federation.ports import StoreFailure
from sonet.federation.records import QueuedItem
from sonet.federation.settings import FederationSettings
from sonet.federation.transit import encode_transit

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

    async def outbox_done(self, dest, seqs, *, now, statuses=(), reports=()):
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
