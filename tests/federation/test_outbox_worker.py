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


# A group's submissions keep their order when the destination takes one later ----------------

from sonet.core.federation_api import FEDERATION_FRAMES, OK, Push, PushResult, Transit  # noqa: E402
from sonet.core.groups.items import GroupItem, ItemKind  # noqa: E402
from sonet.core.wire import decode_frame, encode_frame  # noqa: E402
from sonet.federation.transit import encode_transit  # noqa: E402


def as_sent(frame: Push) -> Push:
    """A push as its receiver reads it (the outbox splices its stored items in as bytes)."""
    return decode_frame(encode_frame(frame), FEDERATION_FRAMES)  # type: ignore[return-value]


GROUP_G, GROUP_H = b"G" * 16, b"H" * 16


def submission(group: bytes, ref: bytes) -> bytes:
    item = GroupItem(
        kind=ItemKind.SUBMIT, ref=ref, group=group, epoch=1, seq=0, message=b"m", welcome=b"", members=(), outcome="", hub=""
    )  # fmt: skip
    return encode_transit(Transit(origin="alpha.example", dest=BETA, hops=2, envelope=None, report=None, group=item))


class QueueStore:
    """An outbox of group submissions; items go only when settled."""

    def __init__(self) -> None:
        self.items: dict[int, bytes] = {}

    def add(self, seq: int, group: bytes) -> None:
        self.items[seq] = submission(group, bytes([seq]) * 16)

    async def outbox(self, dest, *, limit, max_bytes, now, after=0):
        return [QueuedItem(seq=s, dest=dest, key=b"k", expires=10**15, data=d, queued_at=0) for s, d in sorted(self.items.items()) if s > after]

    async def outbox_done(self, dest, seqs, *, now, statuses=(), reports=()):
        for seq in seqs:
            self.items.pop(seq, None)

    async def expired_outbox(self, dest, *, limit, max_bytes, now):
        return []

    async def outbox_destinations(self):
        return [BETA] if self.items else []

    async def expire_outbox(self, now):
        pass


class HubPool:
    """The new hub: it takes submissions once it knows the hand-over (``ready``), until then
    ``hub_pending``; records the refs pushed, in order. ``during`` runs inside the first push
    (what happens while it is on its way)."""

    def __init__(self, during) -> None:
        self.ready = False
        self.during = during
        self.taken: list[int] = []
        self.pushes: list[list[int]] = []

    def backing_off(self, name: str) -> bool:
        return False

    def seen(self, name: str) -> None:
        pass

    async def request(self, hop, frame, *, sent=lambda: None):
        sent()
        refs = [t.group.ref[0] for t in as_sent(frame).items]  # type: ignore[union-attr]
        self.pushes.append(refs)
        outcomes = tuple(OK if self.ready else "hub_pending" for _ in refs)
        if self.ready:
            self.taken += refs
        if len(self.pushes) == 1:
            self.during()
        return PushResult(request=frame.request, outcomes=outcomes)


async def test_a_submission_taken_later_holds_back_its_groups_later_ones_only() -> None:
    store = QueueStore()
    outboxes: Outboxes

    def meanwhile() -> None:  # the hub learns of the hand-over; two more submissions come
        pool.ready = True
        store.add(2, GROUP_G)
        store.add(3, GROUP_H)
        outboxes.wake([BETA])

    pool = HubPool(meanwhile)

    async def routes() -> Routes:
        return Routes()

    outboxes = Outboxes(
        name="alpha.example", store=store, pool=pool, routes=routes, clock_ms=lambda: 0,
        settings=FederationSettings(expire_interval_s=3600),
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        store.add(1, GROUP_G)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.pushes[0] == [1] and 1 in store.items  # refused for now: kept
        assert pool.taken == [3]  # another group's goes on at once; G's 2 waits behind 1

        await outboxes.expire()  # the next expiry tick: G's submissions go, in their order
        await trio.testing.wait_all_tasks_blocked()
        assert pool.taken == [3, 1, 2] and not store.items
        nursery.cancel_scope.cancel()


# Several pushes in flight, and what happens behind one the hop did not take ----------------

from sonet.core import limits  # noqa: E402
from sonet.core.client_api import ErrorFrame  # noqa: E402
from sonet.federation.push_sequence import OUT_OF_ORDER  # noqa: E402

from .net import transit  # noqa: E402


class EnvelopeStore(QueueStore):
    """Envelope items; a read gives at most ``per_read``."""

    def __init__(self, per_read: int) -> None:
        super().__init__()
        self.per_read = per_read
        self.envelope = encode_transit(transit(f"bob@{BETA}", origin="alpha.example"))

    def add_envelopes(self, count: int) -> list[int]:
        """``count`` items (the same envelope: they are told apart by their seqs)."""
        first = len(self.items) + 1
        for seq in range(first, first + count):
            self.items[seq] = self.envelope
        return list(range(first, first + count))

    async def outbox(self, dest, *, limit, max_bytes, now, after=0):
        return (await super().outbox(dest, limit=limit, max_bytes=max_bytes, now=now, after=after))[: self.per_read]


class WindowPool:
    """A hop that answers once ``release`` is set, in the order pushed, as a receiver of the
    link sequence does: the first push refused (rate_limited), those already on their way
    behind it ``out_of_order``, every later one taken."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.in_flight = 0
        self.most = 0
        self.pushed = 0
        self.taken: list[int] = []
        #: names the items taken 1, 2, ...: pushed in order, the store's seqs
        self.numbers = iter(range(1, 10**6))
        self.setbacks: list[str] = []

    def backing_off(self, name: str) -> bool:
        return False

    def seen(self, name: str) -> None:
        pass

    def setback(self, name: str, code: str, message: str) -> None:
        self.setbacks.append(code)

    async def request(self, hop, frame, *, sent):
        sent()
        self.pushed += 1
        number, in_round = self.pushed, self.pushed <= 3
        if not in_round:  # applied in the order pushed, as the receiver's ordered lane does
            self.taken += [next(self.numbers) for _ in frame.items]
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        if number == 1:
            return ErrorFrame(request=frame.request, code="rate_limited", message="slow down")
        if in_round:
            return ErrorFrame(request=frame.request, code=OUT_OF_ORDER, message="behind push 1")
        return PushResult(request=frame.request, outcomes=(OK,) * len(frame.items))


def outboxes_for(store: QueueStore, pool: object) -> Outboxes:
    async def routes() -> Routes:
        return Routes()

    return Outboxes(
        name="alpha.example", store=store, pool=pool, routes=routes, clock_ms=lambda: 0,
        settings=FederationSettings(expire_interval_s=3600),
    )  # fmt: skip


async def test_three_pushes_go_at_once_and_after_a_refused_one_everything_is_pushed_again_in_order() -> None:
    half = limits.MAX_TRANSIT_PER_PUSH // 2  # a backlog: half-full pushes
    store = EnvelopeStore(per_read=half)
    seqs = store.add_envelopes(5 * half)
    pool = WindowPool()
    outboxes = outboxes_for(store, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.in_flight == 3  # the default window, no more
        pool.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert pool.taken == seqs and not store.items  # each once, in order
        assert pool.most == 3
        assert pool.setbacks == ["rate_limited"]  # the refusal backs the hop off; out_of_order does not
        assert outboxes.note(BETA) is None
        nursery.cancel_scope.cancel()


async def test_small_pushes_go_two_at_a_time() -> None:
    # under light load a second small push goes beside the one in flight (the hop takes it into
    # the same group commit); a third waits, gathering what comes meanwhile
    store = EnvelopeStore(per_read=10)
    seqs = store.add_envelopes(30)
    pool = WindowPool()
    pool.pushed = 3  # past the refused round: every push is taken
    outboxes = outboxes_for(store, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.in_flight == 2
        pool.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert pool.most == 2 and pool.taken == seqs and not store.items
        nursery.cancel_scope.cancel()


async def test_an_item_queued_while_a_push_is_on_its_way_goes_beside_it() -> None:
    # light load: the worker's read after its push found nothing more; an item committed
    # meanwhile wakes it and goes in a second push at once, not after the first's round trip
    store = EnvelopeStore(per_read=10)
    first = store.add_envelopes(1)
    pool = WindowPool()
    pool.pushed = 3  # past the refused round: every push is taken
    outboxes = outboxes_for(store, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.in_flight == 1
        second = store.add_envelopes(1)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.in_flight == 2  # the first is still unanswered
        third = store.add_envelopes(1)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.in_flight == 2  # a third small one waits (SMALL_IN_FLIGHT)
        pool.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert pool.taken == first + second + third and not store.items
        nursery.cancel_scope.cancel()


from sonet.federation.ports import StoreFailure  # noqa: E402


class SlowSettleStore(EnvelopeStore):
    """Settles (outbox_done) wait for ``hold``; ``fail`` makes the first one a store error."""

    def __init__(self, per_read: int) -> None:
        super().__init__(per_read)
        self.hold = trio.Event()
        self.fail = False
        self.settles: list[list[int]] = []

    async def outbox_done(self, dest, seqs, *, now, statuses=(), reports=()):
        await self.hold.wait()
        if self.fail:
            self.fail = False
            raise StoreFailure("database is locked")
        self.settles.append(list(seqs))
        await super().outbox_done(dest, seqs, now=now, statuses=statuses, reports=reports)


def taking_pool() -> WindowPool:
    pool = WindowPool()
    pool.pushed = 3  # past WindowPool's refused round: every push is taken
    pool.release.set()  # and answered at once
    return pool


async def test_the_next_push_does_not_wait_for_the_settle_of_the_one_before() -> None:
    # light load: small pushes, two at a time; a slow store transaction that deletes what a
    # push delivered must not hold back what came meanwhile (it did: each push waited for the
    # settle before it); two settles queued and the worker waits for them (it keeps pace)
    store = SlowSettleStore(per_read=10)
    seqs = store.add_envelopes(50)
    pool = taking_pool()
    outboxes = outboxes_for(store, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        # pushes 2 to 4 went (two small ones on their way at a time), then the worker waits for
        # the settles queued
        assert pool.pushed - 3 == 4 and pool.taken == seqs[:40]
        assert store.settles == [] and len(store.items) == 50  # nothing deleted before its settle
        store.hold.set()
        await trio.testing.wait_all_tasks_blocked()
        assert pool.taken == seqs and not store.items
        assert store.settles == [seqs[k : k + 10] for k in range(0, 50, 10)]  # in order, each once
        nursery.cancel_scope.cancel()


async def test_a_settle_that_fails_stops_the_ones_after_it_and_everything_is_pushed_again() -> None:
    store = SlowSettleStore(per_read=10)
    seqs = store.add_envelopes(30)
    store.fail = True
    pool = taking_pool()
    outboxes = outboxes_for(store, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        store.hold.set()  # the first settle fails: the one queued behind it does not run
        await trio.testing.wait_all_tasks_blocked()
        assert store.settles == [] and len(store.items) == 30
        assert pool.taken == seqs[:30] and BETA not in outboxes._workers  # the worker stopped
        outboxes.wake([BETA])  # (or the next expiry tick) starts it again, from the first item
        await trio.testing.wait_all_tasks_blocked()
        assert len(pool.taken) == 60 and not store.items  # each pushed twice, settled once
        assert store.settles == [seqs[k : k + 10] for k in range(0, 30, 10)]
        nursery.cancel_scope.cancel()
