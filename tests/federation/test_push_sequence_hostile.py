"""A peer that plays with a link's push sequence (federation/push_sequence.py) gets nothing
stored out of order and nothing stored twice: numbers out of range close the link, a huge
number is a gap, a replayed number is refused, and a number after unsequenced pushes starts at 1."""

from __future__ import annotations

import msgpack
import pytest
import trio

from sonet.core.client_api import ErrorFrame, Ping, Pong
from sonet.core.federation_api import Push, PushResult
from sonet.core.wire import encode_frame
from sonet.federation.push_sequence import OUT_OF_ORDER
from tests.node.conftest import HANG_S, StartNode

from .net import BETA, ask, mailbox_ids, new_key, peer_link, pin, transit

PEER = "peer.example"


def refused_out_of_order(answer: object, request: int, why: str) -> bool:
    return isinstance(answer, ErrorFrame) and answer.code == OUT_OF_ORDER and answer.request == request and why in answer.message


@pytest.mark.parametrize("seq", [-1, 2**63, 2**64 - 1])
async def test_a_sequence_number_out_of_range_closes_the_link_and_stores_nothing(start_node: StartNode, seq: int) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, PEER, fingerprint=key.public.fingerprint)
    item = transit(bob.address, origin=PEER)
    wire = msgpack.unpackb(encode_frame(Push(request=1, items=(item,), seq=1)))
    assert wire[-1] == 1  # the seq is the frame's last field
    wire[-1] = seq
    async with peer_link(beta, key, PEER) as link:
        with trio.fail_after(HANG_S):
            await link.send_encoded(msgpack.packb(wire))  # bytes no encoder makes
            answer = await link.receive()
        assert isinstance(answer, ErrorFrame) and answer.request == 0, answer
        with pytest.raises(Exception):  # noqa: B017 - the link is closed
            await ask(link, Ping(request=2))
    assert await mailbox_ids(beta, bob.address) == []
    assert beta.alive


async def test_a_huge_number_a_replay_and_a_number_after_unsequenced_pushes_take_nothing_out_of_turn(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, PEER, fingerprint=key.public.fingerprint)
    first, second, third = (transit(bob.address, origin=PEER) for _ in range(3))
    async with peer_link(beta, key, PEER) as link:
        # the largest number there is: a gap, nothing taken, the link goes on
        assert refused_out_of_order(await ask(link, Push(request=1, items=(first,), seq=2**63 - 1)), 1, "a gap")
        # unsequenced pushes do not move the sequence: the first numbered one is still 1
        assert await ask(link, Push(request=2, items=(first,))) == PushResult(request=2, outcomes=("ok",))
        assert refused_out_of_order(await ask(link, Push(request=3, items=(second,), seq=2)), 3, "next one taken is 1")
        assert await ask(link, Push(request=4, items=(second,), seq=1)) == PushResult(request=4, outcomes=("ok",))
        # the same push again (its number replayed): refused, not stored again
        assert refused_out_of_order(await ask(link, Push(request=5, items=(second,), seq=1)), 5, "old or replayed")
        # its items again under the next number: answered ok, stored once (deduplicated)
        assert await ask(link, Push(request=6, items=(second, third), seq=2)) == PushResult(request=6, outcomes=("ok", "ok"))
        assert await ask(link, Ping(request=7)) == Pong(request=7)
    assert await mailbox_ids(beta, bob.address) == [e.envelope.id for e in (first, second, third)]  # type: ignore[union-attr]


async def test_each_link_has_its_own_sequence(start_node: StartNode) -> None:
    # a new link (after a reconnect) starts at 1 again; a number of the old link means nothing on it
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, PEER, fingerprint=key.public.fingerprint)
    first, second = (transit(bob.address, origin=PEER) for _ in range(2))
    async with peer_link(beta, key, PEER) as link:
        assert await ask(link, Push(request=1, items=(first,), seq=1)) == PushResult(request=1, outcomes=("ok",))
    async with peer_link(beta, key, PEER) as link:
        assert refused_out_of_order(await ask(link, Push(request=1, items=(second,), seq=2)), 1, "a gap")
        assert await ask(link, Push(request=2, items=(first, second), seq=1)) == PushResult(request=2, outcomes=("ok", "ok"))
    assert await mailbox_ids(beta, bob.address) == [first.envelope.id, second.envelope.id]  # type: ignore[union-attr]
