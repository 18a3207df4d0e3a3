"""The outbox worker (federation/outbox.py) against a fake store and pool: what wakes it and
what it reads. (End-to-end delivery is in test_push.py.)"""

from __future__ import annotations

import trio
import trio.testing

from sonet.federation.outbox import Outboxes
from sonet.federation.records import QueuedItem
from sonet.federation.settings import FederationSettings

BETA = "beta.example"


class Store:
    def __init__(self) -> None:
        self.reads = 0

    async def outbox(self, dest, *, limit, max_bytes, now, after=0):
        self.reads += 1
        return [QueuedItem(seq=1, dest=dest, key=b"k", expires=10**15, data=b"x", queued_at=0)]

    async def outbox_destinations(self):
        return []

    async def expire_outbox(self, now):
        pass


class BackingOffPool:
    def backing_off(self, name: str) -> bool:
        return True

    async def wait_ready(self, name: str) -> None:
        await trio.sleep_forever()


class Hop:
    name = BETA


class Routes:
    def next_hop(self, dest: str) -> Hop:
        return Hop()


async def test_new_items_for_a_peer_in_backoff_do_not_make_the_worker_read_again() -> None:
    # Every send to a peer wakes its worker; while the peer backs off, a wake must not end
    # that wait (each would read up to a full push from the store: a user could load the
    # store by sending to a peer that is down).
    store = Store()

    async def routes() -> Routes:
        return Routes()

    outboxes = Outboxes(
        name="alpha.example", store=store, pool=BackingOffPool(), routes=routes, clock_ms=lambda: 0,
        settings=FederationSettings(expire_interval_s=3600),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert store.reads == 1  # read once, then waits for the backoff
        for _ in range(100):
            outboxes.wake([BETA])
            await trio.testing.wait_all_tasks_blocked()
        assert store.reads == 1
        outboxes.nudge()  # a peer-table change does end the wait: the route may differ now
        await trio.testing.wait_all_tasks_blocked()
        assert store.reads == 2
        nursery.cancel_scope.cancel()
