"""/federation: pinned peers are admitted and answered; unknown and mis-keyed ones are refused.

An in-process node (tests/node/conftest.py) and a second node identity that dials it with
``federation.link.dial_peer`` exactly as a peer node would. The peer table is changed through a
second store connection, as ``sonet-node peer add/remove`` does while the node runs.
"""

from __future__ import annotations

import os

import pytest
import trio

from sonet.core.client_api import ErrorFrame, Ping
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.handshake import Hello1
from sonet.federation import DialError, dial_peer
from sonet.node.app import now_ms
from tests.node.conftest import HANG_S, RunningNode

from .net import until

PEER_NAME = "beta.example"
PEER_URL = "ws://127.0.0.1:1"


def new_key() -> SigningKey:
    return SigningKey.generate(CryptoMode.HYBRID, os.urandom)


async def add_peer(running: RunningNode, key: SigningKey, name: str = PEER_NAME) -> None:
    async with running.store() as store:
        await store.add_peer(name=name, url=PEER_URL, fingerprint=key.public.fingerprint, via=None, now=now_ms())


def dial(running: RunningNode, key: SigningKey, name: str = PEER_NAME):  # noqa: ANN201 - context manager
    return dial_peer(running.url, identity=key, fingerprint=running.fingerprint, name=name)


async def test_a_pinned_peer_is_admitted_and_answers_pings(running: RunningNode) -> None:
    key = new_key()
    await add_peer(running, key)
    with trio.fail_after(HANG_S):
        async with dial(running, key) as link:
            assert link.peer_key.fingerprint == running.fingerprint
            await link.ping()
            await link.ping()  # the link stays open between requests
            assert running.node.federation_status.links_open == 1
    status = running.node.federation_status.snapshot()
    assert status["admitted"] == 1 and status["refused"] == 0
    assert running.alive


async def test_an_unknown_identity_is_refused_with_unknown_peer(running: RunningNode) -> None:
    await add_peer(running, new_key())
    stranger = new_key()
    with trio.fail_after(HANG_S), pytest.raises(DialError) as info:
        async with dial(running, stranger, name="stranger.example"):
            pytest.fail("admitted an unknown peer")
    assert info.value.code == "unknown_peer"
    assert stranger.public.fingerprint not in str(info.value)
    [refusal] = running.node.federation_status.snapshot()["last_refusals"]
    assert refusal["reason"] == "unknown_peer" and refusal["peer"] is None
    assert running.alive


async def test_a_refusal_the_node_reports_is_logged_by_the_dialler_as_its_words(
    running: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    """ux11: the dialling node logged "federation with beta.example: cannot reach beta.example:
    secure channel with URL failed: peer refused the handshake: alpha.example is not a configured
    peer of this node", where "this node" read as its own: now who said it, and its words."""
    import logging

    from sonet.core.crypto import CryptoPolicy
    from sonet.federation.errors import FederationError
    from sonet.federation.peers import Peer
    from sonet.federation.pool import LinkPool
    from sonet.federation.settings import FederationSettings

    await add_peer(running, new_key())
    stranger = new_key()
    with trio.fail_after(HANG_S), pytest.raises(DialError) as info:
        async with dial(running, stranger, name="stranger.example"):
            pytest.fail("admitted an unknown peer")
    said = "stranger.example is not a configured peer of this node"
    assert (info.value.said, str(info.value)) == (said, f"the peer at {running.url} refused the handshake: {said}")

    async def remember_key(peer: Peer, key: object) -> None:
        pass

    pool = LinkPool(
        name="stranger.example", identity=stranger, policy=CryptoPolicy(), remember_key=remember_key, clock_ms=now_ms, rng=os.urandom,
        settings=FederationSettings(),
    )  # fmt: skip
    node = Peer(name=running.config.name, url=running.url, fingerprint=running.fingerprint, via=None, added_at=now_ms())
    caplog.set_level(logging.INFO, logger="sonet.federation")
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            with pytest.raises(FederationError) as failed:
                await pool.request(node, Ping(request=0))
            nursery.cancel_scope.cancel()
    assert str(failed.value) == f"{running.config.name} refused the link, saying: {said}"
    assert f"federation with {running.config.name}: {running.config.name} refused the link, saying: {said} (unknown_peer)" in caplog.messages


async def test_a_configured_name_with_another_key_is_refused_with_wrong_identity(running: RunningNode) -> None:
    pinned, impostor = new_key(), new_key()
    await add_peer(running, pinned)
    before = now_ms()
    with trio.fail_after(HANG_S), pytest.raises(DialError) as info:
        async with dial(running, impostor):
            pytest.fail("admitted a mis-keyed peer")
    assert info.value.code == "wrong_identity"
    for fp in (pinned.public.fingerprint, impostor.public.fingerprint):
        assert fp not in str(info.value)
    status = running.node.federation_status.snapshot()
    assert status["refused_by_reason"] == {"wrong_identity": 1} and status["admitted"] == 0
    [refusal] = status["last_refusals"]
    assert refusal["peer"] == PEER_NAME and refusal["reason"] == "wrong_identity" and refusal["at"] >= before


async def test_peer_add_and_remove_take_effect_without_a_restart(running: RunningNode) -> None:
    key = new_key()
    with trio.fail_after(HANG_S):
        with pytest.raises(DialError) as info:
            async with dial(running, key):
                pass
        assert info.value.code == "unknown_peer"
        await add_peer(running, key)
        async with dial(running, key) as link:
            await link.ping()
        async with running.store() as store:
            assert await store.remove_peer(PEER_NAME) is True
        with pytest.raises(DialError) as info:
            async with dial(running, key):
                pass
        assert info.value.code == "unknown_peer"
    assert running.node.federation_status.snapshot()["refused_by_reason"] == {"unknown_peer": 2}


async def test_the_dialer_pins_the_node_key(running: RunningNode) -> None:
    key = new_key()
    await add_peer(running, key)
    with trio.fail_after(HANG_S), pytest.raises(DialError):
        async with dial_peer(running.url, identity=key, fingerprint=new_key().public.fingerprint, name=PEER_NAME):
            pytest.fail("connected to a node with another key")


async def test_a_frame_that_is_no_request_gets_an_error_frame_and_the_link_closes(running: RunningNode) -> None:
    key = new_key()
    await add_peer(running, key)
    with trio.fail_after(HANG_S):
        async with dial(running, key) as link:
            await link.send(Hello1(**{f: getattr(_sample_hello1(), f) for f in Hello1.__dataclass_fields__}))
            answer = await link.receive()
            assert isinstance(answer, ErrorFrame) and answer.request == 0 and answer.code == "unexpected_frame"
            with pytest.raises(Exception):  # noqa: B017 - the node closed the link
                await link.send(Ping(request=9))
                await link.receive()
    await until(lambda: running.node.federation_status.links_open == 0, "the node let go of the link")


def _sample_hello1() -> Hello1:
    from sonet.core.crypto import CryptoPolicy
    from sonet.core.handshake import Handshake, Role
    from sonet.core.wire import decode_frame

    hs = Handshake(Role.INITIATOR, identity=new_key(), policy=CryptoPolicy(), rng=os.urandom, prologue=b"x")
    [data] = hs.data_to_send()
    frame = decode_frame(data)
    assert isinstance(frame, Hello1)
    return frame


# A pinned key must announce the name it is pinned under --------------------------------------


async def test_a_pinned_key_announcing_an_unconfigured_name_is_refused(running: RunningNode) -> None:
    key = new_key()
    await add_peer(running, key)
    with trio.fail_after(HANG_S), pytest.raises(DialError) as info:
        async with dial(running, key, name="delta.example"):
            pytest.fail("admitted a pinned peer under a name nobody configured")
    assert info.value.code == "unknown_peer" and "delta.example" in str(info.value)
    status = running.node.federation_status.snapshot()
    assert status["admitted"] == 0 and status["refused_by_reason"] == {"unknown_peer": 1}
    [refusal] = status["last_refusals"]
    assert refusal["peer"] == PEER_NAME  # the operator sees which pinned peer tried it
    async with dial(running, key) as link:  # under its own name it still gets in
        await link.ping()


async def test_a_pinned_key_announcing_another_configured_peer_is_refused(running: RunningNode) -> None:
    beta, gamma = new_key(), new_key()
    await add_peer(running, beta)
    await add_peer(running, gamma, name="gamma.example")
    with trio.fail_after(HANG_S):
        for key, name in ((beta, "gamma.example"), (gamma, PEER_NAME)):
            with pytest.raises(DialError) as info:
                async with dial(running, key, name=name):
                    pytest.fail(f"admitted a peer as {name}")
            # the dialer hears the gate's reason, not that the node presented another key
            assert info.value.code == "wrong_identity" and f"node {name} is pinned to a different identity key" in str(info.value)
    assert running.node.federation_status.snapshot()["admitted"] == 0


async def test_relays_and_the_peers_behind_them_are_told_apart(running: RunningNode) -> None:
    """gamma is configured behind the relay beta: neither key gets in under the other's name,
    and each under its own."""
    beta, gamma = new_key(), new_key()
    await add_peer(running, beta)
    async with running.store() as store:
        await store.add_peer(name="gamma.example", url=PEER_URL, fingerprint=gamma.public.fingerprint, via=PEER_NAME, now=now_ms())
    with trio.fail_after(HANG_S):
        for key, name in ((beta, "gamma.example"), (gamma, PEER_NAME)):
            with pytest.raises(DialError) as info:
                async with dial(running, key, name=name):
                    pytest.fail(f"admitted a peer as {name}")
            assert info.value.code == "wrong_identity"
        for key, name in ((beta, PEER_NAME), (gamma, "gamma.example")):
            async with dial(running, key, name=name) as link:
                await link.ping()
    assert running.node.federation_status.snapshot()["admitted"] == 2


async def test_a_pinned_key_that_announces_no_name_is_refused(running: RunningNode) -> None:
    from trio_websocket import open_websocket_url

    from sonet.core.crypto import CryptoPolicy
    from sonet.core.errors import RemoteProtocolError
    from sonet.core.handshake import Handshake, Role
    from sonet.transport import run_initiator

    key = new_key()
    await add_peer(running, key)
    with trio.fail_after(HANG_S):
        async with open_websocket_url(running.url + "/federation", disconnect_timeout=2) as ws:  # no Sonet-Node header
            hs = Handshake(Role.INITIATOR, identity=key, policy=CryptoPolicy(), rng=os.urandom, prologue=b"/federation", expected_peer=running.fingerprint)
            with pytest.raises(RemoteProtocolError) as info:
                await run_initiator(hs, send=ws.send_message, receive=ws.get_message, peer="node")
    assert info.value.code == "unknown_peer" and "announce" in str(info.value)
    assert running.node.federation_status.snapshot()["admitted"] == 0


async def test_a_key_pinned_under_two_names_is_admitted_under_neither(running: RunningNode) -> None:
    """A link is served as the peer its key is pinned for: one key, one name."""
    key = new_key()
    await add_peer(running, key)
    await add_peer(running, key, name="alias.example")
    with trio.fail_after(HANG_S):
        for name in (PEER_NAME, "alias.example"):
            with pytest.raises(DialError) as info:
                async with dial(running, key, name=name):
                    pytest.fail(f"admitted a key pinned for two peers as {name}")
            assert info.value.code == "wrong_identity" and "as well" in str(info.value)
        async with running.store() as store:
            await store.remove_peer("alias.example")
        async with dial(running, key) as link:
            await link.ping()
