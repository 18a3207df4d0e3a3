"""Connection caps and deadlines of a real (in-process) node after the handshake
(node/client_session.py, node/unregistered.py, node/mailbox.py): a key without an account must
register or link in time (a link slot extends that), connections without an account are capped
per address, a device's connections per device; each closed connection is told why."""

from __future__ import annotations

import os
import tomllib

import pytest
import trio

from sonet.core.client_api import CLIENT_FRAMES, LinkBegin, LinkSlot, Ping, Pong, Welcome
from sonet.federation.records import NewEnvelope
from sonet.node.app import connection_limits
from sonet.node.config import ConfigError, NodeConfig
from sonet.transport import dial
from tests.node.conftest import HANG_S, StartNode
from tests.node.kit import Member, NodeError, opaque_envelope

from .echo import new_key


async def ended_with(conn) -> str:  # noqa: ANN001 - a RawConnection
    """The code the node closed ``conn`` with (waits for the close)."""
    await conn.closed.wait()
    error = conn.error
    assert isinstance(error, NodeError), error
    return error.code


async def test_a_key_without_an_account_is_closed_at_its_deadline_unless_it_waits_in_a_link_slot(start_node: StartNode) -> None:
    node = await start_node(unregistered_timeout_s=0.3)
    with trio.fail_after(HANG_S):
        async with node.raw(new_key()) as throwaway, node.raw(new_key()) as linking:
            slot = await linking.request(lambda n: LinkBegin(request=n, ephemeral=os.urandom(1200)))
            assert isinstance(slot, LinkSlot)
            assert await ended_with(throwaway) == "registration_timeout"
            # the linking device may wait as long as its slot lives (ten minutes)
            assert await linking.request(lambda n: Ping(request=n)) == Pong(request=2)
        # a registered device has no such deadline
        alice = await node.enroll("alice")
        async with node.raw(alice.first) as conn:
            await trio.sleep(0.5)
            assert await conn.request(lambda n: Ping(request=n)) == Pong(request=1)


async def test_keys_without_an_account_over_the_per_address_cap_push_out_the_oldest(start_node: StartNode) -> None:
    node = await start_node(max_unregistered_per_address=2)
    with trio.fail_after(HANG_S):
        alice = await node.enroll("alice")
        async with node.raw(alice.first) as registered, node.raw(new_key()) as first, node.raw(new_key()) as second:
            async with node.raw(new_key()) as third:
                assert await ended_with(first) == "too_many_connections"
                for conn in (second, third, registered):  # the others, and accounts, are untouched
                    assert await conn.request(lambda n: Ping(request=n)) == Pong(request=1)


async def test_a_device_over_its_connection_cap_loses_its_oldest_connection(start_node: StartNode) -> None:
    node = await start_node(max_connections_per_device=2)
    with trio.fail_after(HANG_S):
        alice = await node.enroll("alice")
        bob = await node.enroll("bob")
        async with node.raw(alice.first) as oldest, node.raw(alice.first) as middle, node.raw(bob.first) as other:
            async with node.raw(alice.first) as newest:
                assert await ended_with(oldest) == "too_many_connections"
                assert oldest.error is not None and "more than 2 connections" in str(oldest.error)
                for conn in (middle, newest, other):
                    assert await conn.request(lambda n: Ping(request=n)) == Pong(request=1)


async def test_the_per_device_cap_counts_only_live_connections(start_node: StartNode) -> None:
    node = await start_node(max_connections_per_device=1)
    with trio.fail_after(HANG_S):
        member = (await node.enroll("alice")).first
        for _ in range(3):  # one after the other: none pushes another out
            async with node.raw(member) as conn:
                assert await conn.request(lambda n: Ping(request=n)) == Pong(request=1)
            await node.settle()
        assert isinstance(member, Member)


async def test_a_device_that_stops_reading_is_cut_at_the_send_timeout_and_keeps_its_messages(start_node: StartNode) -> None:
    node = await start_node(send_timeout_s=0.5)
    ctx = node.node.context
    assert ctx is not None
    with trio.fail_after(HANG_S * 3):
        bob = (await node.enroll("bob")).first
        # more than the socket buffers of both sides hold (loopback tunes them up to ~10 MB)
        count, size = 100, 250 * 1024
        for start in range(0, count, 10):
            batch = [opaque_envelope(bob, body=os.urandom(size)) for _ in range(10)]
            news = [NewEnvelope(account=e.to, device_id=e.device, id=e.id, expires=e.expires, kind=e.kind, body=e.body) for e in batch]
            await ctx.store.enqueue(news, now=node.node.clock_ms(), quota=ctx.quota)
        # a connection that reads its Welcome and then nothing (its WebSocket queue fills, then
        # the socket buffers): the node's sends stop making progress
        with trio.CancelScope() as stalled:
            async with dial(node.url, "/client", identity=bob.identity, expected_peer=node.fingerprint, frames=CLIENT_FRAMES, greeting=Welcome):
                await node.settle()  # the node cut it by itself
                stalled.cancel()  # (this side's WebSocket, stuck on its full queue, is dropped)
        assert node.node.listening is not None and node.node.listening.summary.totals["send_timeout"] == 1
        assert len(await node.pending(bob.account, bob.device_id)) == count  # nothing lost


def test_node_toml_connections_are_range_checked_and_reach_the_server() -> None:
    base = {"name": "alpha.example", "listen": "127.0.0.1:0"}
    config = NodeConfig.from_dict({**base, "connections": {"max_per_device": 3, "send_timeout_s": 2, "max_pending": 100, "message_timeout_s": 300}})
    assert (config.max_connections_per_device, config.send_timeout_s, config.max_pending_connections) == (3, 2.0, 100)
    assert config.message_timeout_s == 300.0
    assert NodeConfig.from_dict(tomllib.loads(config.to_toml())) == config  # written back uncommented
    assert NodeConfig.from_dict(tomllib.loads(NodeConfig.from_dict(base).to_toml())) == NodeConfig.from_dict(base)
    caps = connection_limits(config)
    assert (caps.send_timeout_s, caps.max_pending, caps.max_connections, caps.message_timeout_s) == (2.0, 100, 4096, 300.0)
    bad = {
        "max_per_device": 0,
        "max_connections": 8,
        "max_unregistered_per_address": -1,
        "max_pending": "10",
        "handshake_timeout_s": 0,
        "send_timeout_s": 3601,
        "upgrade_timeout_s": True,
        "message_timeout_s": 0,
    }
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=rf"connections\.{key} = .* is not allowed"):
            NodeConfig.from_dict({**base, "connections": {key: value}})
    with pytest.raises(ConfigError, match="unknown setting in \\[connections\\]: 'max_per_adress' \\(did you mean 'max_per_address'"):
        NodeConfig.from_dict({**base, "connections": {"max_per_adress": 3}})
