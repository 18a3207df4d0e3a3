"""Pushes refused ``out_of_order`` count towards a link's refusals (federation/inbound.py): a
peer that keeps sending wrong-sequence pushes loses its link past ``max_refusals`` of them
without a push in its turn between, pings or not; an honest pusher, whose in-flight pushes
behind a refused one come back ``out_of_order`` round after round, keeps its link."""

from __future__ import annotations

import logging

import pytest
import trio

from sonet.core.client_api import ErrorFrame, Ping, Pong
from sonet.core.federation_api import Push, PushResult
from sonet.federation.push_sequence import OUT_OF_ORDER
from sonet.federation.ratelimit import Rate
from tests.node.conftest import HANG_S, NodeParams, StartNode

from .net import BETA, ask, mailbox_ids, new_key, peer_link, pin, transit

PEER = "peer.example"
MAX_REFUSALS = 4
#: pushed items the peer may send before it is rate limited (the bucket hardly refills)
BURST = 2


@pytest.fixture
def small_limits(node_params: NodeParams) -> None:
    node_params.federation.update(push_rate=Rate(per_second=0.001, burst=BURST), max_refusals=MAX_REFUSALS)


def out_of_order(answer: object, request: int) -> bool:
    return isinstance(answer, ErrorFrame) and answer.code == OUT_OF_ORDER and answer.request == request


async def test_a_peer_that_keeps_pushing_out_of_turn_loses_its_link(
    start_node: StartNode, small_limits: None, caplog: pytest.LogCaptureFixture
) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, PEER, fingerprint=key.public.fingerprint)
    item = transit(bob.address, origin=PEER)
    caplog.set_level(logging.INFO, logger="sonet.federation")
    async with peer_link(beta, key, PEER) as link:
        # a gap, then a ping (which would end a run of rate-limit refusals), then replays of
        # an old number: all of one run, the ping does not reset it
        assert out_of_order(await ask(link, Push(request=1, items=(item,), seq=5)), 1)
        assert out_of_order(await ask(link, Push(request=2, items=(item,), seq=9)), 2)
        assert await ask(link, Ping(request=3)) == Pong(request=3)
        for n in range(MAX_REFUSALS - 2):
            assert out_of_order(await ask(link, Push(request=10 + n, items=(item,), seq=7)), 10 + n)
        last = await ask(link, Push(request=99, items=(item,), seq=7))
        assert isinstance(last, ErrorFrame) and last.request == 0 and last.code == OUT_OF_ORDER, last
        assert "out of turn" in last.message
        with pytest.raises(Exception):  # noqa: B017 - the node closed the link
            await ask(link, Ping(request=100))
    assert await mailbox_ids(beta, bob.address) == []
    assert any(PEER in r.getMessage() and "out of turn" in r.getMessage() for r in caplog.records)
    # the peer may come back on a new link, whose sequence starts at 1
    async with peer_link(beta, key, PEER) as link:
        assert await ask(link, Push(request=1, items=(item,), seq=1)) == PushResult(request=1, outcomes=("ok",))
    assert beta.alive


async def test_an_honest_pusher_whose_in_flight_pushes_come_back_out_of_order_keeps_its_link(
    start_node: StartNode, small_limits: None
) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, PEER, fingerprint=key.public.fingerprint)
    first = tuple(transit(bob.address, origin=PEER) for _ in range(BURST))
    async with peer_link(beta, key, PEER) as link:
        assert await ask(link, Push(request=1, items=first, seq=1)) == PushResult(request=1, outcomes=("ok",) * BURST)
        # The bucket is empty now. Round after round the pusher sends 3 pushes at once from 2:
        # push 2 is refused rate_limited, the 2 behind it out_of_order. Rounds in a row give
        # more out_of_order refusals than MAX_REFUSALS, but each round starts with push 2 in
        # its turn; the rate-limit refusals (3) stay within MAX_REFUSALS too.
        request = 2
        for _round in range(3):
            pushes = [Push(request=request + i, items=(transit(bob.address, origin=PEER),), seq=2 + i) for i in range(3)]
            with trio.fail_after(HANG_S):
                for push in pushes:
                    await link.send(push)
                answers = [await link.receive() for _ in pushes]
            refused, *behind = answers
            assert isinstance(refused, ErrorFrame) and refused.code == "rate_limited" and refused.request == request, refused
            assert [out_of_order(a, request + 1 + i) for i, a in enumerate(behind)] == [True, True], behind
            request += 3
        assert await ask(link, Ping(request=request)) == Pong(request=request)  # the link is still open
    assert await mailbox_ids(beta, bob.address) == [t.envelope.id for t in first]  # type: ignore[union-attr]
