"""``sonet recv --wait N`` (``Device.receive(wait=)``, client/receiving.py): with something
queued that recv prints, it returns at once, whatever it is. Found by newbie10 (round 10): a
group invitation was printed ("you were added to ...") only after all N seconds, as was anything
queued but a text or a group message (a reaction, a receipt...).

The wait is far longer than the tests' hang guard: a receive that waited it out fails the test
instead of passing late. The command line runs in a worker thread (its own trio loop; the node
runs in the test's) that the guard abandons."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client import cli
from sonet.client.sdk import Device

from .conftest import ALICE, BOB, HANG_S, RunningNode, shown

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

#: longer than the hang guard: waited out, the test fails
WAIT_S = HANG_S * 100


async def _recv_wait(capsys: pytest.CaptureFixture[str], device: Device) -> list[dict]:
    argv = ["--home", str(device.state.home), "recv", "--wait", str(WAIT_S), "--json"]
    with trio.fail_after(HANG_S):
        rc = await trio.to_thread.run_sync(cli.main, argv, abandon_on_cancel=True)
    out = capsys.readouterr().out
    assert rc == 0, out
    return [json.loads(line) for line in out.splitlines()]


async def test_recv_wait_returns_at_once_with_a_queued_group_invitation(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await bob.receive()  # publishes bob's group keys
        view = await alice.group_create("hikers", [BOB])
    [added] = await _recv_wait(capsys, bob)
    assert (added["type"], added["event"], added["group"], added["member"]) == ("group_event", "added", {"id": view.id, "name": "hikers"}, BOB)


async def test_recv_wait_returns_at_once_with_a_queued_reaction_or_receipt(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        sent = await alice.send_text(BOB, "lunch?")
        assert [(s, k) for s, k, _f in shown(bob, await bob.receive())] == [(ALICE, "text")]
        await bob.react(sent.id, "👍")
    got = await _recv_wait(capsys, alice)  # the reaction, and bob's delivered receipt
    assert {o["type"] for o in got} == {"reaction", "receipt"} and all(o["from"] == BOB for o in got)
    with trio.fail_after(HANG_S):
        await alice.receive()
        await bob.receive()
        await alice.send_text(BOB, "noon")
        shown(bob, await bob.receive())  # sends alice a delivered receipt, and nothing else
    [receipt] = await _recv_wait(capsys, alice)
    assert (receipt["type"], receipt["receipt"], receipt["from"]) == ("receipt", "delivered", BOB)


async def test_sdk_receive_wait_still_waits_when_only_earlier_messages_are_unshown(alpha: RunningNode, register: Register) -> None:
    """What a receive before this one stored and nobody marked shown is no arrival: the wait
    goes on until the next one (here: a typing notice, pushed while bob waits)."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "first")
        assert [m.type for m in (await bob.receive()).messages] == ["text"]  # not marked shown
        results = []

        async def wait_for_it() -> None:
            results.append(await bob.receive(wait=WAIT_S))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_it)
            while alpha.node.registry.connected() < 1:
                await trio.sleep(0.01)
            await trio.sleep(0.2)  # the receive saw the node's Drained and waits
            await alice.send_typing(BOB)
        [result] = results
        assert [m.type for m in result.messages] == ["text", "typing"]


async def test_recv_wait_returns_at_once_with_what_another_command_stored_unshown(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    """rev10b: a group command first receives what is queued (client/groups/api.py ``_sync``),
    storing alice's text unshown without printing it; the next ``recv --wait N`` printed it only
    after all N seconds (the wait counted what its own receive stored)."""
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "lunch?")
        await bob.group_create("solo", [])  # takes alice's text from the node; nothing shows it
    [text] = await _recv_wait(capsys, bob)
    assert (text["type"], text["from"], text["text"]) == ("text", ALICE, "lunch?")


async def test_a_wait_that_ends_while_an_ack_is_on_its_way_leaves_the_connection_able_to_send(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait bounds the waits for the next frame, not the work on one. Found in a fresh-clone
    run (round 16): ``recv --wait 5`` ended "unreachable: the connection cannot send any more (a
    send was interrupted)" when its deadline came while an Ack's sealed record was being sent;
    the receipts after the batch could then not go either. Here bob's Ack takes four times the
    wait to send: the receive still ends normally, and alice gets bob's delivered receipt."""
    from sonet.client.connection import Connection
    from sonet.core.client_api import Ack
    from sonet.transport.websocket import WebSocket

    wait_s = 0.3
    acking: dict[str, object] = {}
    real_send, real_send_message = Connection.send, WebSocket.send_message

    async def send(self: Connection, frame: object) -> None:
        if isinstance(frame, Ack) and "done" not in acking:
            acking["task"] = trio.lowlevel.current_task()
            try:
                return await real_send(self, frame)  # type: ignore[arg-type]
            finally:
                acking["done"] = acking.pop("task")
        return await real_send(self, frame)  # type: ignore[arg-type]

    async def send_message(self: WebSocket, message: bytes | str) -> None:
        if acking.get("task") is trio.lowlevel.current_task():
            await trio.sleep(4 * wait_s)  # the record is sealed and on its way when the wait ends
        return await real_send_message(self, message)

    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        sent = await alice.send_text(BOB, "slow ack")
        monkeypatch.setattr(Connection, "send", send)
        monkeypatch.setattr(WebSocket, "send_message", send_message)
        result = await bob.receive(wait=wait_s)
        monkeypatch.undo()
        assert "done" in acking  # the slow Ack was sent (and outlived the wait)
        assert [(s, k) for s, k, _f in shown(bob, result)] == [(ALICE, "text")]
        receipts = [(s, f["receipt"], f["ids"]) for s, k, f in shown(alice, await alice.receive()) if k == "receipt"]
        assert receipts == [(BOB, "delivered", [sent.id.hex()])], receipts
        assert not (await bob.receive()).messages  # acked: not delivered again


async def test_a_node_that_stops_answering_does_not_keep_a_bounded_wait_for_ever(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the test above: the work on a frame outlives the wait, but not by more
    than STALLED_NODE_S. Bob's Ack never goes (a node that stopped reading): the receive ends
    with one clear error, and the text it stored is shown by the next receive, once."""
    from sonet.client import receiving
    from sonet.client.connection import ConnectError, Connection
    from sonet.core.client_api import Ack

    real_send = Connection.send

    async def send(self: Connection, frame: object) -> None:
        if isinstance(frame, Ack):
            await trio.sleep_forever()
        return await real_send(self, frame)  # type: ignore[arg-type]

    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "never acked")
        monkeypatch.setattr(receiving, "STALLED_NODE_S", 0.5)
        monkeypatch.setattr(Connection, "send", send)
        with pytest.raises(ConnectError, match="the node stopped answering") as raised:
            await bob.receive(wait=0.2)
        assert raised.value.code == "unreachable"
        monkeypatch.undo()
        assert [(s, k, f["text"]) for s, k, f in shown(bob, await bob.receive())] == [(ALICE, "text", "never acked")]
        assert not (await bob.receive()).messages
