"""Hostile or broken peers: floods are rate limited per peer, a malformed frame or a peer that
ignores the limits loses its link, and other peers carry on unaffected (real node, raw links)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import msgpack
import pytest
import trio

from sonet.core.client_api import ErrorFrame, FetchBundles, FetchDevices, FetchNodeKey, NodeKey, Ping, Pong
from sonet.core.federation_api import Push, PushResult
from sonet.core.wire import encode_frame
from sonet.federation.errors import FederationError
from sonet.federation.ratelimit import Rate
from sonet.federation.settings import FederationSettings
from tests.node.conftest import HANG_S, NodeParams, RunningNode, StartNode

from .net import BETA, ask, mailbox_ids, new_key, peer_link, pin, transit, until

FLOOD_BURST = 10
MAX_REFUSALS = 5


@pytest.fixture
def small_limits(node_params: NodeParams) -> None:
    """Buckets that hardly refill: a test exhausts them deterministically."""
    node_params.federation.update(
        push_rate=Rate(per_second=0.001, burst=FLOOD_BURST),
        bundle_rate=Rate(per_second=0.001, burst=2),
        max_refusals=MAX_REFUSALS,
    )


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
            await bad.send_encoded(msgpack.packb(wire))  # bytes no encoder makes
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


async def test_a_relayed_lookup_towards_a_silent_node_is_answered_before_the_asker_gives_up(start_node: StartNode) -> None:
    """The relay waits only part of the request deadline for the next hop, so the asking node
    gets an answer on a link that is alive instead of silence it would take for a dead link."""
    beta = await start_node(name=BETA, federation_request_timeout_s=1.0)
    one, _ = await two_peers(beta)
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")  # accepts, never speaks
    port = listener.socket.getsockname()[1]
    await pin(beta, "silent.example", url=f"ws://127.0.0.1:{port}", fingerprint=new_key().public.fingerprint)
    try:
        async with peer_link(beta, one, "one.example") as link:
            answer = await ask(link, FetchDevices(request=7, account="sam@silent.example"))
    finally:
        await listener.aclose()
    assert isinstance(answer, ErrorFrame) and answer.request == 7 and answer.code == "unreachable"
    assert answer.message == f"silent.example did not answer {BETA} in time"  # not the 10 s handshake guard


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


async def test_one_slow_lookup_does_not_take_down_a_link_that_answers_everything_else(start_node: StartNode) -> None:
    """alpha gives up on a lookup beta relays towards a silent node, but beta answered other
    requests meanwhile: the shared link stays up and alpha does not back off from beta."""
    alpha = await start_node(name="alpha.example", federation_request_timeout_s=1.0)
    beta = await start_node(name=BETA, federation_request_timeout_s=30.0)  # answers only later
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")  # accepts, never speaks
    port = listener.socket.getsockname()[1]
    silent_pin = new_key().public.fingerprint
    await pin(alpha, BETA, url=beta.url, fingerprint=beta.fingerprint)
    await pin(alpha, "silent.example", fingerprint=silent_pin, via=BETA)
    await pin(beta, "alpha.example", fingerprint=alpha.fingerprint)
    await pin(beta, "silent.example", url=f"ws://127.0.0.1:{port}", fingerprint=silent_pin)
    federation = alpha.node.federation
    assert federation is not None
    beta_peer = (await federation.routes()).peer(BETA)
    pool = federation._pool  # noqa: SLF001 - the link itself is what this test is about
    done = trio.Event()

    async def other_traffic() -> None:
        while not done.is_set():
            assert isinstance(await pool.request(beta_peer, Ping(request=0)), Pong)
            await trio.sleep(0.1)

    try:
        async with trio.open_nursery() as nursery:
            await pool.request(beta_peer, Ping(request=0))  # the link is up
            link = pool._states[BETA].link  # noqa: SLF001
            nursery.start_soon(other_traffic)
            with pytest.raises(FederationError) as info:
                await federation.remote_devices("sam@silent.example")
            done.set()
        assert info.value.code == "unreachable" and "did not answer" in str(info.value)
        assert pool._states[BETA].link is link and link.closed is None  # noqa: SLF001
        assert pool.describe(BETA)["link"] == "connected" and pool.describe(BETA)["last_error"] is None
    finally:
        await listener.aclose()
