"""The outbox worker with several pushes in flight (federation/outbox.py), where a loss or a
duplicate could slip in: answers lost or given up on while later ones come, a receiver that
stored and died before answering, a settle still running when the next answer comes. A fake
hop applies what it takes once (deduplicating by envelope id, as a node's store does) and
answers in the order pushed; every item must end up stored once, in order, and "accepted"
exactly once at the sender."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from sonet.core import limits
from sonet.core.client_api import Ping, Pong
from sonet.core.federation_api import FEDERATION_FRAMES, OK, Push, PushResult
from sonet.core.wire import decode_frame, encode_frame
from sonet.federation.errors import FederationError
from sonet.federation.outbox import Outboxes
from sonet.federation.peers import Peer
from sonet.federation.routes import Routes as RealRoutes
from sonet.federation.records import QueuedItem
from sonet.federation.settings import FederationSettings
from sonet.federation.transit import encode_transit

from tests.node.conftest import HANG_S, StartNode
from tests.node.kit import wall_ms

from .net import ALPHA, BETA as BETA_NODE, pin_node, transit
from .test_pin_change_mid_dial import pool_of

BETA = "beta.example"
HALF = limits.MAX_TRANSIT_PER_PUSH // 2  # a backlog: half-full pushes go several at once


class Outbox:
    """The sender's outbox: seq -> item (each its own envelope); the statuses its settles wrote."""

    def __init__(self, count: int) -> None:
        self.items = {seq: transit(f"bob@{BETA}", origin="alpha.example", msg_id=seq.to_bytes(16, "big")) for seq in range(1, count + 1)}
        self.encoded = {seq: encode_transit(t) for seq, t in self.items.items()}
        self.accepted: list[int] = []
        self.settles: list[list[int]] = []
        self.settling = 0
        #: set to make the next settle wait (cleared by the test)
        self.hold = trio.Event()
        self.hold.set()

    async def outbox(self, dest, *, limit, max_bytes, now, after=0):
        seqs = sorted(s for s in self.encoded if s > after)[:HALF]
        return [QueuedItem(seq=s, dest=dest, key=b"k", expires=10**15, data=self.encoded[s], queued_at=0) for s in seqs]

    async def outbox_done(self, dest, seqs, *, now, statuses=(), reports=()):
        self.settling += 1
        assert self.settling == 1, "two settles at once"
        await self.hold.wait()
        self.settles.append(list(seqs))
        for seq in seqs:
            del self.encoded[seq]
        self.accepted += [int.from_bytes(s.id, "big") for s in statuses if s.state == "accepted"]
        assert all(s.state == "accepted" for s in statuses)
        self.settling -= 1

    async def expired_outbox(self, dest, *, limit, max_bytes, now):
        return []

    async def outbox_destinations(self):
        return [BETA] if self.encoded else []

    async def expire_outbox(self, now):
        pass


class Hop:
    """The next hop (the destination itself). ``script(n)`` says what happens to push n:
    "take" (stored, answered), "stored, no answer" (stored, then the answer is lost: the
    receiver died, or the requester gave up), "lost" (never arrived). Answers come in the order
    pushed, once ``release`` is set."""

    name = BETA

    def __init__(self, script: Callable[[int], str]) -> None:
        self.script = script
        self.release = trio.Event()
        self.pushes: list[list[int]] = []
        self.stored: list[int] = []
        self.in_flight = 0
        self.most = 0
        self._turn = 0
        self._answered = trio.Condition()

    def backing_off(self, name: str) -> bool:
        return False

    def seen(self, name: str) -> None:
        pass

    def setback(self, name: str, code: str, message: str) -> None:
        pass

    async def request(self, hop, frame, *, sent):
        sent()
        n = len(self.pushes)
        ids = [int.from_bytes(t.envelope.id, "big") for t in decode_frame(encode_frame(frame), FEDERATION_FRAMES).items]  # type: ignore[attr-defined]
        self.pushes.append(ids)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.release.wait()
        async with self._answered:
            while self._turn != n:  # in the order pushed
                await self._answered.wait()
            what = self.script(n + 1)
            if what != "lost":
                self.stored += [i for i in ids if i not in self.stored]  # once, however often pushed
            self._turn += 1
            self.in_flight -= 1
            self._answered.notify_all()
        if what == "take":
            return PushResult(request=frame.request, outcomes=(OK,) * len(ids))
        raise FederationError("unreachable", f"push {n + 1}: {what}")


def outboxes_for(store: Outbox, hop: Hop) -> Outboxes:
    async def routes() -> object:
        class R:
            def next_hop(self, dest: str) -> Hop:
                return hop

        return R()

    return Outboxes(
        name="alpha.example", store=store, pool=hop, routes=routes, clock_ms=lambda: 0,  # type: ignore[arg-type]
        settings=FederationSettings(expire_interval_s=3600),
    )  # fmt: skip


async def run_until_drained(store: Outbox, hop: Hop) -> None:
    outboxes = outboxes_for(store, hop)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        assert hop.in_flight == 3  # three on their way before any answer
        hop.release.set()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


def assert_each_once_in_order(store: Outbox, hop: Hop, count: int) -> None:
    everything = list(range(1, count + 1))
    assert hop.stored == everything  # stored once each, in order
    assert sorted(store.accepted) == everything and len(store.accepted) == count  # accepted once each
    assert not store.encoded


async def test_the_middle_answer_comes_while_the_first_was_given_up_and_the_third_lost() -> None:
    # push 1 was stored but its requester gave up (no answer in time); push 2's answer comes;
    # the link drops with push 3 on its way
    store, count = Outbox(3 * HALF), 3 * HALF
    hop = Hop(lambda n: {1: "stored, no answer", 2: "take", 3: "lost"}.get(n, "take"))
    await run_until_drained(store, hop)
    assert_each_once_in_order(store, hop, count)
    assert store.settles[0] == list(range(HALF + 1, 2 * HALF + 1))  # push 2 settled as it came
    # pushed again from push 1's first item; push 2's items (settled) never again
    again = [i for push in hop.pushes[3:] for i in push]
    assert again == [*range(1, HALF + 1), *range(2 * HALF + 1, count + 1)]


async def test_a_receiver_that_stored_two_pushes_and_died_before_answering() -> None:
    store, count = Outbox(3 * HALF), 3 * HALF
    hop = Hop(lambda n: {1: "stored, no answer", 2: "stored, no answer", 3: "lost"}.get(n, "take"))
    await run_until_drained(store, hop)
    assert_each_once_in_order(store, hop, count)
    assert hop.pushes[3][0] == 1  # everything again from the first unanswered push


async def test_an_answer_that_comes_while_the_settle_before_it_runs_waits_for_it() -> None:
    store, count = Outbox(3 * HALF), 3 * HALF
    hop = Hop(lambda n: "take")
    store.hold = trio.Event()  # push 1's settle is slow
    outboxes = outboxes_for(store, hop)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        hop.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert store.settling == 1 and not store.settles  # push 1's settle runs...
        assert len(hop.stored) == count  # ...while the answers of 2 and 3 came
        store.hold.set()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert store.settles == [list(range(1 + k * HALF, 1 + (k + 1) * HALF)) for k in range(3)]  # in order, one at a time
    assert_each_once_in_order(store, hop, count)


class Relinking(Hop):
    """A hop whose link breaks right after push 1 went out (push 1 never arrives); as the
    link pool does, the next request gets a new link, whose sequence starts at 1 again, so
    the receiver takes what comes first on it. A request that must follow a push on a link
    that is gone (``follows``) fails without being sent."""

    def __init__(self) -> None:
        super().__init__(lambda n: "take")
        self.link = 1
        self.first_failed = trio.Event()

    async def request(self, hop, frame, *, sent, follows=None):
        if follows is not None and follows != self.link:
            raise FederationError("unreachable", "the link the pushes before it went on is gone")
        sent(self.link)
        n = len(self.pushes)
        ids = [int.from_bytes(t.envelope.id, "big") for t in decode_frame(encode_frame(frame), FEDERATION_FRAMES).items]  # type: ignore[attr-defined]
        self.pushes.append(ids)
        if n == 0:
            self.link = 2  # it broke after push 1 was written; its requester hears of it later
            for _ in range(100):  # the worker goes on meanwhile (push 2 is read and sent)
                await trio.sleep(0)
            raise FederationError("unreachable", "the link broke")
        self.stored += [i for i in ids if i not in self.stored]
        return PushResult(request=frame.request, outcomes=(OK,) * len(ids))


async def test_a_push_never_goes_on_a_new_link_ahead_of_one_lost_with_the_old() -> None:
    store, count = Outbox(3 * HALF), 3 * HALF
    hop = Relinking()
    outboxes = outboxes_for(store, hop)
    async with trio.open_nursery() as nursery:
        await nursery.start(outboxes.run)
        outboxes.wake([BETA])
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert hop.stored == list(range(1, count + 1))  # push 1's items first, though it was lost
    assert sorted(store.accepted) == hop.stored and not store.encoded


async def test_the_pool_sends_a_following_push_only_on_the_link_before_it(start_node: StartNode) -> None:
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA_NODE)
    await pin_node(beta, alpha)
    pool = pool_of(alpha)
    peer = Peer(name=BETA_NODE, url=beta.url, fingerprint=beta.fingerprint, via=None, added_at=wall_ms())
    links: list[object] = []
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            pool.update(RealRoutes(ALPHA, [peer]))
            assert await pool.request(peer, Ping(request=0), sent=links.append) == Pong(request=1)
            assert await pool.request(peer, Ping(request=0), sent=links.append, follows=links[0]) == Pong(request=2)  # type: ignore[arg-type]
            assert links[1] is links[0]
            links[0].close("dropped")  # type: ignore[attr-defined]
            with pytest.raises(FederationError) as info:
                await pool.request(peer, Ping(request=0), sent=links.append, follows=links[0])  # type: ignore[arg-type]
            assert "is gone" in str(info.value) and len(links) == 2  # not sent, on no link
            assert not pool.backing_off(BETA_NODE)  # (the push it follows records the failure)
            assert await pool.request(peer, Ping(request=0), sent=links.append) == Pong(request=1)  # a new link
            assert links[2] is not links[0]
            nursery.cancel_scope.cancel()
