"""Disappearing messages in groups (client/timer.py set_group_timer): any member sets the
group's timer, it takes effect in the group's order on every member's device, every message
written under it carries its expiry and is erased at its time on every device (sender too)."""

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
from sonet.core.errors import LocalProtocolError
from tests.node.conftest import RunningNode

from .conftest import BOB, CAROL, HANG_S, Clock

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]
FIVE_S = 5_000


def rows_with(device: Device, msg_id: bytes) -> list[str]:
    db = sqlite3.connect(device.state.home / "state.db")
    try:
        return [t for t in ERASED_TABLES if db.execute(f"SELECT 1 FROM {t} WHERE id = ?", (msg_id,)).fetchone()]  # noqa: S608
    finally:
        db.close()


async def _group_of_three(alpha: RunningNode, register: Register) -> tuple[Device, Device, Device, str]:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    view = await alice.group_create("hikers", [BOB, CAROL])
    for device in (bob, carol):
        await device.receive()
    return alice, bob, carol, view.id


async def test_a_members_group_timer_makes_every_message_disappear_from_every_device(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob, carol, group = await _group_of_three(alpha, register)
        everyone = (alice, bob, carol)
        before = await alice.group_send(group, "before the timer")
        timer = await bob.set_timer("hikers", FIVE_S)  # bob is no admin: any member may
        assert (timer.conversation, timer.timer, timer.state) == (group, FIVE_S, "ordered")
        for device in everyone:
            await device.receive()
        for device in everyone:
            assert device.state.conversation_timer(group) == FIVE_S, device
            items = History(device.state).messages(group)
            assert {(i.id, i.type, i.timer) for i in items} == {(before.id, "text", None), (timer.id, "timer", FIVE_S)}, device
        clock.advance(10)
        sent = await alice.group_send(group, "gone in five seconds")
        received = await carol.receive()
        [message] = [m for m in received.group_messages if m.id == sent.id]
        assert message.fields["expires"] == message.sent_at + FIVE_S  # in the end-to-end encrypted content
        reaction = await carol.react(sent.id, "⛰")
        for device in everyone:
            await device.receive()
        for device in everyone:
            [shown] = [i for i in History(device.state).messages(group) if i.id == sent.id]
            assert shown.expires == message.sent_at + FIVE_S and len(shown.reactions) == 1, device

        clock.advance(FIVE_S)  # both were written at the same fake time, under the timer
        for device in everyone:
            await device.receive()  # a receive erases what is due first
        for device in everyone:
            ids = {i.id for i in History(device.state).messages(group)}
            assert ids == {before.id, timer.id}, device  # written before the timer: kept
            for gone in (sent.id, reaction.id):
                assert rows_with(device, gone) == [], (device, gone)

        off = await carol.set_timer(group, 0)
        for device in everyone:
            await device.receive()
        assert all(device.state.conversation_timer(group) == 0 for device in everyone)
        kept = await bob.group_send(group, "here to stay")
        await alice.receive()
        [m] = [i for i in History(alice.state).messages(group) if i.id == kept.id]
        assert m.expires is None and off.state == "ordered"


async def test_a_timed_group_message_that_arrives_after_its_time_is_erased_as_it_is_stored(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob, _carol, group = await _group_of_three(alpha, register)
        await alice.set_timer(group, FIVE_S)
        await bob.receive()
        sent = await alice.group_send(group, "bob was away")
        clock.advance(FIVE_S + 1)
        received = await bob.receive()
        assert sent.id not in [i.id for i in History(bob.state).messages(group)]
        assert sent.id not in [m.id for m in received.group_messages] and rows_with(bob, sent.id) == []
        assert rows_with(alice, sent.id) == ["group_sent", "group_sent_devices"]  # due, erased by alice's next receive
        await alice.receive()
        assert rows_with(alice, sent.id) == []


async def test_a_bad_group_timer_is_refused_before_anything_is_sent(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice, _bob, _carol, group = await _group_of_three(alpha, register)
        with pytest.raises(LocalProtocolError) as err:
            await alice.set_timer(group, 10)
        assert err.value.code == "bad_timer"
        with pytest.raises(LocalProtocolError) as err:
            await alice.set_timer("no-such-group", FIVE_S)
        assert err.value.code == "unknown_group"
        assert [i.type for i in History(alice.state).messages(group)] == []


async def test_cli_sets_a_group_timer_and_recv_shows_it(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob, _carol, group = await _group_of_three(alpha, register)
        capsys.readouterr()
        rc = await trio.to_thread.run_sync(cli.main, ["--home", str(alice.state.home), "timer", "hikers", "5s", "--json"])
        [out] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        group_ref = {"id": group, "name": "hikers"}  # named as send, typing and recv name a group (cli10)
        assert rc == 0 and (out["type"], out["group"], out["timer"], out["duration"], out["state"]) == ("timer", group_ref, FIVE_S, "5s", "ordered")
        rc = await trio.to_thread.run_sync(cli.main, ["--home", str(bob.state.home), "recv", "--json"])
        shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        [timer] = [o for o in shown if o.get("type") == "timer"]
        assert rc == 0 and (timer["id"], timer["timer"], timer["duration"]) == (out["id"], FIVE_S, "5s")
        rc = await trio.to_thread.run_sync(cli.main, ["--home", str(bob.state.home), "timer", "hikers", "3x"])
        captured = capsys.readouterr()
        assert rc != 0 and captured.err.count("\n") == 1 and "not a duration" in captured.err
        # the line names the group as every other line does, by name and id (newbie10: the id alone)
        rc = await trio.to_thread.run_sync(cli.main, ["--home", str(alice.state.home), "timer", "hikers", "off"])
        line = capsys.readouterr().out
        assert rc == 0 and line.startswith(f'turned disappearing messages off in group "hikers" ({group}) (ordered); id '), line
