"""The device SDK (client.sdk.Device) against a live in-process node on 127.0.0.1.

The node fixtures live in tests/node/conftest.py and are imported here.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import trio

import client.connection
import node.app
from client.connection import NodeError
from client.sdk import Device
from client.state import DeviceState, StateError
from core.client_api import Ack, Accepted, SendBatch
from core.errors import LocalProtocolError
from tests.node.conftest import (  # noqa: F401 - fixtures
    HANG_S,
    NODE_NAME,
    RunningNode,
    make_device,
    make_node_dir,
    register,
    running,
    sealed_envelope,
    start_node,
)

ALICE = f"alice@{NODE_NAME}"
BOB = f"bob@{NODE_NAME}"


def _shown(device: Device, result) -> list[tuple[str, str]]:  # noqa: ANN001
    """What ``sonet recv`` prints, and marks shown."""
    device.state.mark_shown([m.id for m in result.messages])
    return [(m.sender, m.text) for m in result.messages]


async def test_profile_survives_a_restart(running: RunningNode, register, tmp_path) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(running, "alice", home="alice")
        before = alice.state.profile()
        alice.state.close()
        state = DeviceState(tmp_path / "devices" / "alice")
        try:
            after = state.profile()
            assert (after.address, after.device_id, after.node_url, after.node_fingerprint) == (ALICE, 1, running.url, running.fingerprint)
            assert after.identity.public.fingerprint == before.identity.public.fingerprint
            assert after.hpke.public.to_bytes() == before.hpke.public.to_bytes()
        finally:
            state.close()


async def test_text_arrives_once_with_sender_and_text(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        sent = await alice.send_text(BOB, "hello bob")
        assert (sent.recipient, sent.devices, sent.new_devices) == (BOB, 1, ())
        result = await bob.receive()
        assert result.rejected == []
        [message] = result.messages
        assert (message.id, message.sender, message.type, message.text) == (sent.id, ALICE, "text", "hello bob")
        assert message.sent_at <= message.received_at
        assert _shown(bob, result) == [(ALICE, "hello bob")]
        again = await bob.receive()
        assert again.messages == [] and again.rejected == []
        await running.settle()
        assert await running.pending(BOB) == []
        # and replies work the other way round
        await bob.send_text(ALICE, "hi alice")
        assert _shown(alice, await alice.receive()) == [(BOB, "hi alice")]


async def test_many_messages_arrive_all_in_order(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        base = node.app.now_ms()
        envs = [sealed_envelope(alice, bob, f"message {i:03d}", sent_at=base + i) for i in range(300)]
        async with running.raw(alice.state.profile().identity) as conn:
            for env in envs:  # one request each, as 300 separate sends would arrive
                reply = await conn.request(lambda n, env=env: SendBatch(request=n, envelopes=(env,)))
                assert isinstance(reply, Accepted) and reply.stored == 1
        result = await bob.receive()
        assert result.rejected == []
        assert [m.text for m in result.messages] == [f"message {i:03d}" for i in range(300)]
        assert {m.sender for m in result.messages} == {ALICE}
        await running.settle()
        assert await running.pending(BOB) == []
        _shown(bob, result)
        assert (await bob.receive()).messages == []


async def test_waiting_receive_gets_a_live_push(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        results = []

        async def wait_for_mail() -> None:
            results.append(await bob.receive(wait=HANG_S))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_mail)
            while running.node.registry.connected() < 1:  # bob's delivery task is subscribed
                await trio.sleep(0.01)
            await alice.send_text(BOB, "are you there?")
        [result] = results
        assert [(m.sender, m.text) for m in result.messages] == [(ALICE, "are you there?")]


async def test_receive_wait_returns_empty_when_nothing_comes(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        bob = await register(running, "bob")
        result = await bob.receive(wait=0.2)
        assert result.messages == [] and result.rejected == []


async def test_unknown_account_and_remote_node(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(running, "alice")
        for to, code in ((f"nobody@{NODE_NAME}", "unknown_account"), ("bob@beta.example", "unknown_node")):
            with pytest.raises(NodeError) as err:
                await alice.send_text(to, "hello?")
            assert err.value.code == code
        with pytest.raises(LocalProtocolError):
            await alice.send_text(BOB, "")
        with pytest.raises(LocalProtocolError):
            await alice.send_text("not an address", "hello")


async def test_unregistered_device_cannot_send_or_receive(make_device) -> None:
    nobody = make_device("nobody")
    with pytest.raises(StateError):
        await nobody.send_text(BOB, "hi")
    with pytest.raises(StateError):
        await nobody.receive()


async def test_mailbox_full_is_reported_to_the_sender(start_node, register) -> None:
    with trio.fail_after(HANG_S):
        at = await start_node(mailbox_max_envelopes=2)
        alice, bob = await register(at, "alice"), await register(at, "bob")
        await alice.send_text(BOB, "one")
        await alice.send_text(BOB, "two")
        with pytest.raises(NodeError) as err:
            await alice.send_text(BOB, "three")
        assert err.value.code == "mailbox_full"
        assert len(await at.pending(BOB)) == 2
        assert [m.text for m in (await bob.receive()).messages] == ["one", "two"]
        await at.settle()
        await alice.send_text(BOB, "three")  # space again once bob acknowledged


async def test_redelivery_after_a_lost_ack_is_shown_once(running: RunningNode, register, monkeypatch) -> None:
    """At-least-once on the wire, exactly-once in the user's view."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        sent = await alice.send_text(BOB, "exactly once")

        real_send = client.connection.Connection.send
        lose_acks = True
        delivered: list[bytes] = []

        async def send(self, frame):  # noqa: ANN001, ANN202
            if isinstance(frame, Ack):
                delivered.extend(frame.ids)
                if lose_acks:
                    return  # the connection drops before the ack reaches the node
            await real_send(self, frame)

        monkeypatch.setattr(client.connection.Connection, "send", send)
        first = await bob.receive()
        assert [m.text for m in first.messages] == ["exactly once"]
        await running.settle()
        assert [i.id for i in await running.pending(BOB)] == [sent.id]  # the node still has it
        # not yet shown: a second receive lists it again, but only once
        second = await bob.receive()
        assert [m.id for m in second.messages] == [sent.id]
        _shown(bob, second)
        lose_acks = False
        third = await bob.receive()
        assert third.messages == [] and third.rejected == []
        assert delivered == [sent.id] * 3  # the node delivered it every time
        await running.settle()
        assert await running.pending(BOB) == []


async def test_forged_and_garbled_envelopes_are_rejected_and_acked(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob, mallory = [await register(running, u) for u in ("alice", "bob", "mallory")]
        genuine = sealed_envelope(alice, bob, "the real one")
        hostile = [
            sealed_envelope(mallory, bob, "I am alice, honest", claim=ALICE),  # key not one of alice's
            replace(sealed_envelope(alice, bob, "x"), body=os.urandom(300)),  # not a box for bob
            replace(genuine, id=os.urandom(16)),  # a replay of the genuine box under a fresh id
        ]
        async with running.raw(mallory.state.profile().identity) as conn:
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(genuine, *hostile)))
            assert isinstance(reply, Accepted) and reply.stored == 4
        result = await bob.receive()
        assert [(m.sender, m.text) for m in result.messages] == [(ALICE, "the real one")]
        assert len(result.rejected) == 3
        assert all(line.startswith("dropped envelope ") for line in result.rejected)
        assert any(ALICE in line for line in result.rejected)
        await running.settle()
        assert await running.pending(BOB) == []  # rejected ones are acknowledged too, not redelivered
        _shown(bob, result)
        again = await bob.receive()
        assert again.messages == [] and again.rejected == []
