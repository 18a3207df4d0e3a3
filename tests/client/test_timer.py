"""Disappearing messages on devices (issue 17 item 4; client/timer.py, client/state_timer.py):
either side sets a conversation's timer and both (and the account's other devices) see it; the
messages written while it is on carry their expiry in their content and their envelopes; every
device erases them at their time (on open, on receive, in a live session); the latest timer
wins. Real devices against an in-process node on a shared fake clock."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client import cli
from sonet.client.history import History
from sonet.client.sdk import Device
from sonet.client.state_timer import ERASED_TABLES
from sonet.client.timer import erase_loop
from sonet.core.errors import LocalProtocolError
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, HANG_S, Clock, link_device

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]
FIVE_S = 5_000


def rows_with(device: Device, msg_id: bytes) -> list[str]:
    """The tables of the device's state that still hold a row of ``msg_id``."""
    db = sqlite3.connect(device.state.home / "state.db")
    try:
        return [t for t in ERASED_TABLES if db.execute(f"SELECT 1 FROM {t} WHERE id = ?", (msg_id,)).fetchone()]  # noqa: S608
    finally:
        db.close()


def history_ids(device: Device, peer: str) -> list[bytes]:
    return [i.id for i in History(device.state).messages(peer)]


async def test_a_timer_set_by_one_side_makes_both_sides_messages_disappear_everywhere(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        alice2 = make_device("alice2")
        await link_device(alice2, alice, alpha.url)
        await alice.receive()
        before = await alice.send_text(BOB, "before the timer")
        timer = await alice.set_timer(BOB, FIVE_S)
        assert (timer.conversation, timer.timer, timer.state) == (BOB, FIVE_S, "accepted")
        clock.advance(10)
        sent = await alice.send_text(BOB, "gone in five seconds")
        [item] = [i for i in await alpha.pending(BOB) if i.id == sent.id]
        assert item.expires == sent_at(alice, sent.id) + FIVE_S  # the envelope's expiry is the timer's, not the 30-day TTL
        received = await bob.receive()
        assert [(m.type, m.fields.get("timer")) for m in received.messages][-2:] == [("timer", FIVE_S), ("text", None)]
        assert received.messages[-1].fields["expires"] == sent_at(alice, sent.id) + FIVE_S
        await alice2.receive()
        for device, peer in ((alice, BOB), (bob, ALICE), (alice2, BOB)):
            assert device.state.conversation_timer(peer) == FIVE_S, device
            items = History(device.state).messages(peer)
            assert [(i.type, i.timer) for i in items] == [("text", None), ("timer", FIVE_S), ("text", None)], device
            assert items[-1].expires == sent_at(alice, sent.id) + FIVE_S
        # bob answers under the same timer, and reacts: those disappear too
        answer = await bob.send_text(ALICE, "ok")
        reaction = await bob.react(sent.id, "👍")
        await alice.receive()
        await alice2.receive()

        clock.advance(FIVE_S)  # every message written under the timer is due (bob's were written at the same fake time)
        for device in (alice, bob, alice2):
            await device.receive()  # a receive erases what is due first
        for device, peer in ((alice, BOB), (bob, ALICE), (alice2, BOB)):
            assert before.id in history_ids(device, peer), device  # written before the timer: kept
            for gone in (sent.id, answer.id, reaction.id):
                assert gone not in history_ids(device, peer), device
                assert rows_with(device, gone) == [], device
        assert {i.id for i in await alpha.pending(BOB)} & {sent.id} == set()  # the node no longer delivers it


def sent_at(device: Device, msg_id: bytes) -> int:
    message = device.state.sent_message(msg_id)
    assert message is not None
    return message.sent_at


async def test_the_latest_timer_wins_on_both_sides_and_off_ends_it(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "hi")
        await bob.receive()
        await alice.set_timer(BOB, 3_600_000)
        clock.advance(10)
        await bob.set_timer(ALICE, FIVE_S)  # bob's is later: it wins on both sides
        await alice.receive()
        await bob.receive()
        assert alice.state.conversation_timer(BOB) == bob.state.conversation_timer(ALICE) == FIVE_S
        clock.advance(10)
        await bob.set_timer(ALICE, 0)
        await alice.receive()
        assert alice.state.conversation_timer(BOB) == 0
        plain = await alice.send_text(BOB, "stays")
        [item] = [i for i in await alpha.pending(BOB) if i.id == plain.id]
        assert item.expires > clock() + 24 * 3600 * 1000  # the default TTL again
        received = await bob.receive()
        assert "expires" not in received.messages[-1].fields
        # an older setting arriving late changes nothing
        assert not alice.state.set_conversation_timer(BOB, 60_000, set_at=clock() - 60_000, set_id=bytes(16))
        assert alice.state.conversation_timer(BOB) == 0


async def test_a_bad_timer_is_refused_before_anything_is_sent(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        for timer in (5, -1, 31 * 24 * 3600 * 1000):
            with pytest.raises(LocalProtocolError) as info:
                await alice.set_timer(BOB, timer)
            assert info.value.code == "bad_timer"
        with pytest.raises(LocalProtocolError) as info:
            await alice.set_timer(ALICE, FIVE_S)
        assert info.value.code == "bad_timer"
        assert alice.state.all_sent_messages(10) == []


async def test_a_live_session_erases_each_message_at_its_time(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.set_timer(BOB, FIVE_S)
        sent = await alice.send_text(BOB, "soon gone")
        erased: list[list[bytes]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(erase_loop, alice.state, clock, erased.append)
            await trio.sleep(0.05)
            assert sent.id in history_ids(alice, BOB) and erased == []
            clock.advance(FIVE_S)
            while not erased:  # the loop looks again within a second (hang guard above)
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert erased == [[sent.id]] and sent.id not in history_ids(alice, BOB)


async def test_opening_the_device_erases_what_came_due_while_it_was_closed(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alice, _bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.set_timer(BOB, FIVE_S)
        sent = await alice.send_text(BOB, "soon gone")
        clock.advance(FIVE_S)
        assert rows_with(alice, sent.id) == ["sent"]
        Device(alice.state, clock=clock)  # what every command does first
        assert rows_with(alice, sent.id) == []


def test_cli_timer_refuses_a_bad_duration_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # noqa: ANN001
    code = cli.main(["--home", str(tmp_path / "nobody"), "timer", "bob@alpha.example", "5 minutes", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 2 and len(out) == 1  # a usage error (ux12: bad_timer, exit 1), before a home is opened
    assert json.loads(out[0])["error"]["code"] == "usage"
    assert not (tmp_path / "nobody").exists()
