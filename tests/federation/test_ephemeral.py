"""Typing and presence across nodes (federation/ephemeral.py): an ephemeral envelope a device
sends to an account of another node reaches that account's connected devices, directly or
through a relay, and no node stores it anywhere; a peer gets its own envelope and byte budgets
for them; what is malformed or forged is refused (real nodes in-process, raw links)."""

from __future__ import annotations

import dataclasses
import os

import msgpack
import pytest
import trio

from sonet.core import limits
from sonet.core.client_api import Accepted, ErrorFrame, Ping, Pong, SendBatch
from sonet.core.envelope import Envelope, Kind
from sonet.core.federation_api import EphemeralPush, Noted
from sonet.core.wire import encode_frame
from sonet.federation.ratelimit import Rate
from tests.node.conftest import HANG_S, NodeParams, RunningNode, StartNode, collect_until_drained, next_deliver
from tests.node.kit import opaque_envelope

from .net import ALPHA, BETA, ask, mailbox_ids, new_key, peer_link, pin, pin_node, triangle, until


def typing_to(account: str, device: int = 1, *, body: bytes | None = None) -> Envelope:
    return opaque_envelope((account, device), kind=Kind.EPHEMERAL, body=body)


async def send(node: RunningNode, sender, *envelopes: Envelope) -> None:  # noqa: ANN001 - a Member
    async with node.raw(sender) as conn:
        reply = await conn.request(lambda n: SendBatch(request=n, envelopes=envelopes))
    assert isinstance(reply, Accepted) and reply.stored == 0


async def nothing_stored(*nodes: RunningNode) -> None:
    for node in nodes:
        async with node.store() as store:
            assert await store.outbox_counts() == {}


async def test_typing_crosses_to_a_connected_device_of_another_node_and_is_never_stored(start_node: StartNode) -> None:
    alpha, beta = await start_node(name=ALPHA, registration="open"), await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    typing = typing_to(bob.address)
    with trio.fail_after(HANG_S):
        async with beta.raw(bob.first) as waiting:
            assert await collect_until_drained(waiting) == []
            await send(alpha, alice.first, typing)
            pushed = await next_deliver(waiting)
    assert [(i.envelope.id, i.envelope.kind, i.envelope.body) for i in pushed.items] == [(typing.id, Kind.EPHEMERAL, typing.body)]
    assert await mailbox_ids(beta, bob.address) == []
    await nothing_stored(alpha, beta)
    async with alpha.store() as store:  # not tracked as a sent message either
        assert await store.deliveries(alice.address, 1, [typing.id]) == []


async def test_typing_for_a_device_that_is_not_connected_is_gone(start_node: StartNode) -> None:
    alpha, beta = await start_node(name=ALPHA, registration="open"), await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    assert alpha.node.federation is not None and beta.node.federation is not None
    await send(alpha, alice.first, typing_to(bob.address))
    await until(lambda: beta.node.federation._ephemerals.stats["delivered"] == 1, "beta took the typing notice")  # type: ignore[union-attr]
    await until(lambda: alpha.node.federation._ephemerals.stats["sent"] == 1, "beta answered alpha")  # type: ignore[union-attr]
    with trio.fail_after(HANG_S):
        async with beta.raw(bob.first) as later:
            assert await collect_until_drained(later) == []  # nothing kept for later
    await nothing_stored(alpha, beta)


async def test_typing_goes_through_a_relay_and_the_relay_keeps_nothing(start_node: StartNode) -> None:
    net = await triangle(start_node)
    typing = typing_to(net.carol.address)
    with trio.fail_after(HANG_S):
        async with net.gamma.raw(net.carol.first) as waiting:
            assert await collect_until_drained(waiting) == []
            await send(net.alpha, net.alice.first, typing)
            pushed = await next_deliver(waiting)
    assert [i.envelope.id for i in pushed.items] == [typing.id]
    assert net.beta.node.federation is not None
    ephemerals = net.beta.node.federation._ephemerals
    await until(lambda: ephemerals.stats["sent"] == 1, "gamma answered beta")  # passed on, not delivered at beta
    assert ephemerals.stats["delivered"] == 0
    await nothing_stored(net.alpha, net.beta, net.gamma)
    assert await mailbox_ids(net.gamma, net.carol.address) == []


# A peer's pushes -------------------------------------------------------------------------------

BURST = 4


@pytest.fixture
def small_ephemeral_limits(node_params: NodeParams) -> None:
    """Buckets that hardly refill: a test exhausts them deterministically."""
    node_params.federation.update(
        ephemeral_rate=Rate(per_second=0.001, burst=BURST),
        ephemeral_bytes_rate=Rate(per_second=0.001, burst=BURST * 1024),
        max_refusals=3,
    )


def push(dest_account: str, count: int = 1, *, origin: str = "one.example", hops: int = 2, body: bytes | None = None, request: int = 1) -> EphemeralPush:
    envs = tuple(typing_to(dest_account, body=body or os.urandom(100)) for _ in range(count))
    return EphemeralPush(request=request, origin=origin, dest=dest_account.rpartition("@")[2], hops=hops, envelopes=envs)


async def test_a_peer_gets_its_own_ephemeral_allowance_in_envelopes_and_bytes(start_node: StartNode, small_ephemeral_limits: None) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    one, two = new_key(), new_key()
    await pin(beta, "one.example", fingerprint=one.public.fingerprint)
    await pin(beta, "two.example", fingerprint=two.public.fingerprint)
    with trio.fail_after(HANG_S):
        async with beta.raw(bob.first) as waiting, peer_link(beta, one, "one.example") as flood, peer_link(beta, two, "two.example") as calm:
            assert await collect_until_drained(waiting) == []
            assert await ask(flood, push(bob.address, BURST)) == Noted(request=1)
            assert len((await next_deliver(waiting)).items) == BURST
            refused = await ask(flood, push(bob.address, request=2))
            assert isinstance(refused, ErrorFrame) and refused.request == 2 and refused.code == "rate_limited"
            assert await ask(flood, Ping(request=3)) == Pong(request=3)  # lookups have their own bucket
            # bytes: few envelopes, but more bytes than are left in the bucket
            assert await ask(calm, push(bob.address, body=os.urandom(3 * 1024), origin="two.example", request=4)) == Noted(request=4)
            assert len((await next_deliver(waiting)).items[0].envelope.body) == 3 * 1024
            big = await ask(calm, push(bob.address, body=os.urandom(2 * 1024), origin="two.example", request=5))
            assert isinstance(big, ErrorFrame) and big.code == "rate_limited"
            assert await ask(calm, push(bob.address, origin="two.example", request=6)) == Noted(request=6)
            after = await next_deliver(waiting)  # the refused one never came
            assert len(after.items) == 1 and len(after.items[0].envelope.body) == 100
            # past max_refusals refusals in a row the flooding peer loses its link
            for n in range(3):
                answer = await ask(flood, push(bob.address, request=10 + n))
                assert isinstance(answer, ErrorFrame) and answer.code == "rate_limited"
            last = await ask(flood, push(bob.address, request=20))
            assert isinstance(last, ErrorFrame) and last.request == 0
            with pytest.raises(Exception):  # noqa: B017 - the node closed the link
                await ask(flood, Ping(request=21))
    assert await mailbox_ids(beta, bob.address) == []


async def test_a_relay_passes_pushes_on_only_between_its_peers_while_hops_are_left(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    one = new_key()
    await pin(beta, "one.example", fingerprint=one.public.fingerprint)
    await pin(beta, "two.example", fingerprint=new_key().public.fingerprint)  # a peer nobody can reach (NOWHERE)
    with trio.fail_after(HANG_S):
        async with peer_link(beta, one, "one.example") as link:
            stranger = await ask(link, push("sam@zeta.example"))
            assert isinstance(stranger, ErrorFrame) and stranger.code == "not_relaying"
            back = await ask(link, push("ann@one.example", origin="two.example", request=2))
            assert isinstance(back, ErrorFrame) and back.code == "unroutable"  # never back where it came from
            spent = await ask(link, push("tom@two.example", hops=0, request=3))
            assert isinstance(spent, ErrorFrame) and spent.code == "hop_limit"
            assert await ask(link, push("tom@two.example", request=4)) == Noted(request=4)  # on its way, best effort
    federation = beta.node.federation
    assert federation is not None
    await until(lambda: federation._ephemerals.stats["dropped"] == 1, "the push for the unreachable peer was dropped")
    await nothing_stored(beta)


@pytest.mark.parametrize(
    "where, value, words",
    [
        ((5, 0, 5), Kind.SEALED, "ephemeral envelopes only"),  # a stored envelope smuggled in
        ((5, 0, 2), "bob@gamma.example", "destination node"),  # an envelope for another node
        ((5, 0, 6), b"x" * (limits.MAX_EPHEMERAL_BODY + 1), "ephemeral envelope body"),
        ((4,), limits.MAX_HOPS + 1, "hop"),
    ],
)
async def test_a_malformed_ephemeral_push_closes_that_link(start_node: StartNode, where: tuple[int, ...], value: object, words: str) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    one = new_key()
    await pin(beta, "one.example", fingerprint=one.public.fingerprint)
    wire = msgpack.unpackb(encode_frame(push(bob.address)))
    target = wire
    for index in where[:-1]:
        target = target[index]
    target[where[-1]] = value
    with trio.fail_after(HANG_S):
        async with beta.raw(bob.first) as waiting, peer_link(beta, one, "one.example") as bad:
            assert await collect_until_drained(waiting) == []
            await bad.send_encoded(msgpack.packb(wire))  # bytes no encoder makes
            answer = await bad.receive()
            assert isinstance(answer, ErrorFrame) and answer.request == 0 and words in answer.message, answer
            with pytest.raises(Exception):  # noqa: B017 - closed
                await ask(bad, Ping(request=2))
            # nothing reached bob: the next thing he sees is a local ephemeral sent after
            alice = await beta.enroll("alice")
            marker = typing_to(bob.address)
            await send(beta, alice.first, marker)
            assert [i.envelope.id for i in (await next_deliver(waiting)).items] == [marker.id]


def test_a_push_is_checked_when_built_too() -> None:
    good = push("bob@beta.example")
    with pytest.raises(Exception, match="1..64"):
        encode_frame(dataclasses.replace(good, envelopes=()))
    with pytest.raises(Exception, match="1..64"):
        encode_frame(dataclasses.replace(good, envelopes=good.envelopes * (limits.MAX_EPHEMERAL_PER_PUSH + 1)))
