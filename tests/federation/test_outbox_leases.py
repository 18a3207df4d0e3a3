"""Outbox workers when several processes of one node share its store (federation/outbox.py
``share``; node/cluster.py holds the leases): only a held destination is pushed, wake-ups for
the others go to their holder, and a lease lost mid-push stops the worker with the items
still queued, so the next holder pushes them again from the oldest (the receiver's
deduplication, tests/e2e/test_multiprocess.py, makes that exactly once)."""

from __future__ import annotations

import trio
import trio.testing

from sonet.core.federation_api import OK, PushResult
from sonet.federation.outbox import Outboxes
from sonet.federation.settings import FederationSettings

from .test_outbox_worker import BETA, EnvelopeStore, Routes

GAMMA = "gamma.example"


class Leases:
    def __init__(self, held: set[str]) -> None:
        self.held = held
        self.told: list[set[str]] = []

    def holds(self, dest: str) -> bool:
        return dest in self.held

    def elsewhere(self, dests: set[str]) -> None:
        self.told.append(dests)


class StallingPool:
    """A hop that takes every push, once ``release`` is set; counts the items pushed."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.pushed: list[int] = []
        self.on_the_way = trio.Event()

    def backing_off(self, name: str) -> bool:
        return False

    def seen(self, name: str) -> None:
        pass

    async def request(self, hop, frame, *, sent=lambda: None):  # type: ignore[no-untyped-def]
        sent()
        self.on_the_way.set()
        await self.release.wait()
        self.pushed.append(len(frame.items))
        return PushResult(request=frame.request, outcomes=tuple(OK for _ in frame.items))


def outboxes(store: EnvelopeStore, pool: StallingPool, leases: Leases) -> Outboxes:
    async def routes() -> Routes:
        return Routes()

    boxes = Outboxes(
        name="alpha.example", store=store, pool=pool, routes=routes, clock_ms=lambda: 0,  # type: ignore[arg-type]
        settings=FederationSettings(expire_interval_s=3600),
    )  # fmt: skip
    boxes.share(leases)
    return boxes


async def test_only_held_destinations_are_pushed_and_the_others_holder_is_told() -> None:
    store, pool = EnvelopeStore(per_read=100), StallingPool()
    pool.release.set()
    leases = Leases(held=set())
    boxes = outboxes(store, pool, leases)
    async with trio.open_nursery() as nursery:
        await nursery.start(boxes.run)
        store.add_envelopes(3)
        boxes.wake([BETA, GAMMA])  # queued here, pushed by whoever holds them
        await trio.testing.wait_all_tasks_blocked()
        assert leases.told == [{BETA, GAMMA}] and pool.pushed == [] and len(store.items) == 3
        boxes.wake_held([BETA])  # another process's wake-up: not ours either, and not passed on
        await trio.testing.wait_all_tasks_blocked()
        assert leases.told == [{BETA, GAMMA}] and pool.pushed == []
        leases.held.add(BETA)  # the lease is taken
        boxes.wake_held([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.pushed == [3] and not store.items
        nursery.cancel_scope.cancel()


async def test_a_lease_lost_mid_push_leaves_the_items_for_the_next_holder() -> None:
    store, old_pool = EnvelopeStore(per_read=100), StallingPool()
    old = outboxes(store, old_pool, Leases(held={BETA}))
    async with trio.open_nursery() as nursery:
        await nursery.start(old.run)
        store.add_envelopes(5)
        old.wake([BETA])
        await old_pool.on_the_way.wait()  # a push on its way...
        old.revoke(BETA)  # ...when the lease goes (not renewed in time)
        old_pool.release.set()  # its answer, if it comes, is not settled here any more
        await trio.testing.wait_all_tasks_blocked()
        assert old_pool.pushed == [] and len(store.items) == 5  # nothing settled: all still queued

        new_pool = StallingPool()
        new_pool.release.set()
        new = outboxes(store, new_pool, Leases(held={BETA}))  # the process that took the lease over
        await nursery.start(new.run)
        new.wake_held([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert new_pool.pushed == [5] and not store.items  # all of them again, from the oldest
        nursery.cancel_scope.cancel()
