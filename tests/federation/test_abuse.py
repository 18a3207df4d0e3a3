"""Hostile or broken peers: floods are rate limited per peer, a malformed frame or a peer that
ignores the limits loses its link, and other peers carry on unaffected (real node, raw links)."""

from __future__ import annotations

import functools
from contextlib import AsyncExitStack

import msgpack
import pytest
import trio

import node.app
from core.client_api import ErrorFrame, FetchBundles, FetchDevices, FetchNodeKey, NodeKey, Ping, Pong
from core.federation_api import Push, PushResult
from core.wire import encode_frame
from federation.ratelimit import Rate
from federation.settings import FederationSettings
from tests.node.conftest import HANG_S, RunningNode, StartNode

from .net import BETA, ask, mailbox_ids, new_key, peer_link, pin, transit, until

FLOOD_BURST = 10
MAX_REFUSALS = 5


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Buckets that hardly refill: a test exhausts them deterministically."""
    settings = functools.partial(
        FederationSettings,
        push_rate=Rate(per_second=0.001, burst=FLOOD_BURST),
        bundle_rate=Rate(per_second=0.001, burst=2),
        max_refusals=MAX_REFUSALS,
    )
    monkeypatch.setattr(node.app, "FederationSettings", settings)


async def two_peers(beta: RunningNode) -> tuple:
    keys = new_key(), new_key()
    await pin(beta, "one.example", fingerprint=keys[0].public.fingerprint)
    await pin(beta, "two.example", fingerprint=keys[1].public.fingerprint)
    return keys


async def test_a_flooding_peer_is_rate_limited_while_another_passes(start_node: StartNode, small_limits: None) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    one, two = await two_peers(beta)
    async with peer_link(beta, one, "one.example") as flood, peer_link(beta, two, "two.example") as calm:
        burst = tuple(transit(bob.address, origin="one.example") for _ in range(FLOOD_BURST))
        assert await ask(flood, Push(request=1, items=burst)) == PushResult(request=1, outcomes=("ok",) * FLOOD_BURST)
        extra = transit(bob.address, origin="one.example")
        refused = await ask(flood, Push(request=2, items=(extra,)))
        assert isinstance(refused, ErrorFrame) and refused.request == 2 and refused.code == "rate_limited"
        calm_item = transit(bob.address, origin="two.example")
        assert await ask(calm, Push(request=1, items=(calm_item,))) == PushResult(request=1, outcomes=("ok",))
        assert await ask(flood, Ping(request=3)) == Pong(request=3)  # lookups have their own bucket
        ids = await mailbox_ids(beta, bob.address)
        assert extra.envelope.id not in ids and calm_item.envelope.id in ids  # type: ignore[union-attr]
        assert len(ids) == FLOOD_BURST + 1
        # It keeps going: past MAX_REFUSALS refusals in a row (the Pong ended the last run) its
        # link is closed.
        for n in range(MAX_REFUSALS):
            answer = await ask(flood, Push(request=10 + n, items=(extra,)))
            assert isinstance(answer, ErrorFrame) and answer.code == "rate_limited" and answer.request == 10 + n
        last = await ask(flood, Push(request=99, items=(extra,)))
        assert isinstance(last, ErrorFrame) and last.request == 0 and last.code == "rate_limited"
        with pytest.raises(Exception):  # noqa: B017 - the node closed the link
            await ask(flood, Ping(request=100))
        assert await ask(calm, Ping(request=2)) == Pong(request=2)
    assert beta.alive


async def test_bundle_lookups_have_a_stricter_budget(start_node: StartNode, small_limits: None) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    await beta.link(bob)  # two devices: a lookup of all of them costs two
    one, _ = await two_peers(beta)
    async with peer_link(beta, one, "one.example") as link:
        first = await ask(link, FetchBundles(request=1, account=bob.address, devices=()))
        assert not isinstance(first, ErrorFrame), first
        again = await ask(link, FetchBundles(request=2, account=bob.address, devices=(1,)))
        assert isinstance(again, ErrorFrame) and again.code == "rate_limited"
        key = await ask(link, FetchNodeKey(request=3, node=BETA))
        assert key == NodeKey(request=3, node=BETA, key=beta.identity.public.to_bytes())


async def test_a_malformed_push_closes_that_link_only(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    one, two = await two_peers(beta)
    good = transit(bob.address, origin="one.example")
    wire = msgpack.unpackb(encode_frame(Push(request=1, items=(good,))))
    wire[2][0][2] = 99  # hops beyond the limit: the Push does not decode
    async with peer_link(beta, one, "one.example") as bad, peer_link(beta, two, "two.example") as other:
        with trio.fail_after(HANG_S):
            await bad.send_record(bad._channel.seal(msgpack.packb(wire)))  # noqa: SLF001 - bytes no encoder makes
            answer = await bad.receive()
        assert isinstance(answer, ErrorFrame) and answer.request == 0
        assert "hop" in answer.message
        with pytest.raises(Exception):  # noqa: B017 - closed
            await ask(bad, Ping(request=2))
        assert await ask(other, Ping(request=1)) == Pong(request=1)
        item = transit(bob.address, origin="two.example")
        assert await ask(other, Push(request=2, items=(item,))) == PushResult(request=2, outcomes=("ok",))
    assert await mailbox_ids(beta, bob.address) == [item.envelope.id]  # type: ignore[union-attr]
    assert beta.alive and beta.node.federation_status.links_open == 0


async def test_a_slow_request_does_not_hold_up_the_others_on_its_link(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    one, _ = await two_peers(beta)
    # A peer of beta that accepts TCP connections and never says a word: a lookup relayed to
    # it waits (until the dial gives up) while the link's other requests are answered.
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    await pin(beta, "silent.example", url=f"ws://127.0.0.1:{port}", fingerprint=new_key().public.fingerprint)
    try:
        async with peer_link(beta, one, "one.example") as link:
            with trio.fail_after(HANG_S):
                await link.send(FetchDevices(request=1, account="sam@silent.example"))
                await link.send(Ping(request=2))
                assert await link.receive() == Pong(request=2)
    finally:
        await listener.aclose()


async def test_a_peer_gets_only_a_few_links_at_once(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    one, two = await two_peers(beta)
    limit = FederationSettings().max_inbound_links
    async with AsyncExitStack() as stack:
        links = [await stack.enter_async_context(peer_link(beta, one, "one.example")) for _ in range(limit)]
        for i, link in enumerate(links):
            assert await ask(link, Ping(request=i + 1)) == Pong(request=i + 1)
        async with peer_link(beta, one, "one.example") as extra:
            with pytest.raises(Exception):  # noqa: B017 - closed with too_many_links
                await ask(extra, Ping(request=1))
        async with peer_link(beta, two, "two.example") as other:  # other peers are unaffected
            assert await ask(other, Ping(request=1)) == Pong(request=1)
        assert await ask(links[0], Ping(request=99)) == Pong(request=99)  # the first ones still work
    federation = beta.node.federation
    assert federation is not None
    await until(lambda: federation.snapshot()["links_open"] == 0, "beta saw the links close")
    async with peer_link(beta, one, "one.example") as again:  # closed links free their places
        assert await ask(again, Ping(request=1)) == Pong(request=1)
