"""`sonet chat` driven headless by textual's pilot through a real node in the test process.

The node and the other users' devices run in the test's trio run (tests/client/conftest.py);
the app runs as it does for a user, on an asyncio loop with the device's trio session as a
guest (client/chat/bridge.py), in a thread of its own: alice's device state is opened in that
thread, the one that uses it. What the other users do is handed to the test's trio run with
``trio.from_thread.run``. Waits poll the screen with a hang guard (never a time limit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from textual import events
from textual.pilot import Pilot
from textual.widgets import Input, Static

from sonet.client import cli
from sonet.client.chat.app import ChatApp
from sonet.client.chat.screens import AskScreen, ContactScreen, GroupScreen, HelpScreen, IdentityChangedScreen
from sonet.client.chat.session import ChatSession, LiveUpdate
from sonet.client.chat.widgets import ConversationList, MessageLog, MessageRow
from sonet.client.connection import NodeError
from sonet.client.directory import IdentityChanged
from sonet.client.live import Offline, Online
from sonet.client.sdk import Device
from sonet.client.state import DeviceState
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, HANG_S, Clock, texts

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)
Scenario = Callable[[ChatApp, Pilot, "Others"], Awaitable[None]]


class Others:
    """What the other users do, run in the test's trio run from the app's thread."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token

    async def run(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(trio.from_thread.run, partial(fn, *args, **kwargs), trio_token=self._token)


async def received_texts(device: Device) -> list[tuple[str, str]]:
    """``device`` receives; the (sender, text) of its texts (run in the test's trio run)."""
    return texts(device, await device.receive())


async def run_app(device: Device, clock: Clock, scenario: Scenario, *, size: tuple[int, int] = (80, 24), **app_kwargs: Any) -> ChatApp:
    """Run the app on ``device``'s home (opened again in the app's thread) in a terminal of
    ``size`` until ``scenario`` returns; the app, after it ended."""
    home = device.state.home
    device.state.close()
    others = Others(trio.lowlevel.current_trio_token())
    ended: list[ChatApp] = []

    def in_thread() -> None:
        async def main() -> None:
            state = DeviceState(home, create=False)
            try:
                app = ChatApp(Device(state, clock=clock), **app_kwargs)
                ended.append(app)
                async with app.run_test(size=size) as pilot:
                    await scenario(app, pilot, others)
                assert not app.guest.running  # the trio session ended with the app
            finally:
                state.close()

        asyncio.run(main())

    await trio.to_thread.run_sync(in_thread)
    return ended[0]


async def until(pilot: Pilot, check: Callable[[], object], what: str) -> None:
    """Let the app run until ``check()`` holds (hang guard: HANG_S)."""
    deadline = time.monotonic() + HANG_S
    while not check():
        if time.monotonic() > deadline:
            app: ChatApp = pilot.app  # type: ignore[assignment]
            pytest.fail(f"{what}: never happened; messages shown: {shown(app)}")
        await pilot.pause(0.02)


def shown(app: ChatApp) -> list[tuple[str, str]]:
    return app.query_one(MessageLog).texts()


def state_of(app: ChatApp, text: str) -> str | None:
    states = [state for t, state in shown(app) if t == text]
    return states[-1] if states else None


def static_text(app: ChatApp, selector: str) -> str:
    widget = app.screen.query_one(selector, Static)
    return str(widget.render())


async def type_text(pilot: Pilot, text: str) -> None:
    await pilot.press(*[{" ": "space"}.get(c, c) for c in text])


async def online(app: ChatApp, pilot: Pilot) -> None:
    await until(pilot, lambda: isinstance(app.connection, Online), "the app connected")


async def opened(app: ChatApp, pilot: Pilot, key: str) -> None:
    """Wait until ``key``'s conversation is open (the first to arrive opens by itself) and the
    compose box has the keyboard."""
    await until(pilot, lambda: app.current == key and isinstance(app.focused, Input) and app.focused.id == "compose", f"{key} open")


# Open, pick, send, a reply live, ticks ------------------------------------------------------


async def test_pick_a_conversation_send_and_see_the_reply_and_the_ticks_live(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
    await bob.send_text(ALICE, "from bob")
    clock.advance(1000)
    await carol.send_text(ALICE, "from carol")  # the newest: listed first, open at start
    clock.advance(1000)

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        conversations = app.query_one(ConversationList)
        await until(pilot, lambda: [o.id for o in conversations.options] == [CAROL, BOB], "both conversations listed, newest first")
        assert app.current in (CAROL, BOB)  # the first to arrive opened by itself

        # pick bob's with the keyboard: back to the list, the second entry, Enter
        await pilot.press("escape")
        assert app.focused is conversations
        await pilot.press("home", "down", "enter")
        assert app.current == BOB and [t for t, _ in shown(app)] == ["from bob"]
        assert isinstance(app.focused, Input) and app.focused.id == "compose"
        await until(pilot, lambda: app.history.unread(BOB) == {}, "bob's message marked read once open")

        clock.advance(1000)
        await type_text(pilot, "hello bob")
        await pilot.press("enter")
        await until(pilot, lambda: state_of(app, "hello bob") == "accepted", "the reply shown as accepted by the node (one tick)")
        assert app.query_one("#compose", Input).value == ""

        assert await others.run(received_texts, bob) == [(ALICE, "hello bob")]
        # bob's device sent a delivery receipt: the tick changes without a key press
        await until(pilot, lambda: state_of(app, "hello bob") == "delivered", "the reply's ticks changed to delivered")

        clock.advance(1000)
        await others.run(bob.send_text, ALICE, "a reply, live")
        await until(pilot, lambda: state_of(app, "a reply, live") is not None, "bob's reply appeared in the open conversation")
        await until(pilot, lambda: state_of(app, "a reply, live") == "read", "the open conversation's new message marked read")
        assert [t for t, _ in shown(app)] == ["from bob", "hello bob", "a reply, live"]

        # and since it was read with the conversation open, bob gets a read receipt
        async def bobs_receipts() -> list[tuple[str, dict]]:
            result = await bob.receive()
            bob.state.mark_shown([m.id for m in result.messages])
            return [(m.type, m.fields) for m in result.messages]

        receipts = await others.run(bobs_receipts)
        assert any(kind == "receipt" and fields["receipt"] == "read" for kind, fields in receipts), receipts
        await pilot.press("ctrl+q")

    app = await run_app(alice, clock, scenario)
    assert app.return_value == 0 and app.final_error is None


async def test_a_message_to_another_conversation_counts_as_unread_there(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
    await bob.send_text(ALICE, "bob's first")

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        clock.advance(1000)
        await others.run(carol.send_text, ALICE, "carol writes")
        conversations = app.query_one(ConversationList)
        await until(pilot, lambda: [o.id for o in conversations.options] == [CAROL, BOB], "carol's conversation listed first")
        assert app.current == BOB and "carol writes" not in [t for t, _ in shown(app)]
        unread = [c.unread for c in app.history.conversations() if c.key == CAROL]
        assert unread == [1]
        assert "1" in str(conversations.get_option(CAROL).prompt).split("\n")[0]

    await run_app(alice, clock, scenario)


async def test_the_open_conversation_is_read_only_while_the_terminal_has_the_focus(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.send_text(ALICE, "bob's first")

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        await until(pilot, lambda: app.history.unread(BOB) == {}, "the open conversation read")
        app.post_message(events.AppBlur())  # the terminal window went to the background
        await until(pilot, lambda: not app.app_focus, "the app blurred")
        clock.advance(1000)
        await others.run(bob.send_text, ALICE, "while you were away")
        await until(pilot, lambda: state_of(app, "while you were away") == "received", "the message shown, not read")
        assert len(app.history.unread(BOB).get(BOB, [])) == 1
        app.post_message(events.AppFocus())  # back: now it is read
        await until(pilot, lambda: state_of(app, "while you were away") == "read", "read once the terminal has the focus")

    await run_app(alice, clock, scenario)


async def test_control_characters_from_the_network_never_reach_the_terminal(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    # a clear-screen, a window-title escape, a bell and a right-to-left override
    await bob.send_text(ALICE, "hi\x1b[2J\x1b]0;owned\x07 \u202eevil")

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        assert [t for t, _ in shown(app)] == ["hi\x1b[2J\x1b]0;owned\x07 \u202eevil"]  # kept as sent
        drawn = app.query_one(MessageLog).query_one(MessageRow).content
        lines = app.console.render_lines(drawn, app.console.options.update_width(50))
        text = "".join(segment.text for line in lines for segment in line)
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert "hi�[2J�]0;owned� �evil" in text
        entry = str(app.query_one(ConversationList).get_option(BOB).prompt)
        assert "\x1b" not in entry and "\u202e" not in entry

    await run_app(alice, clock, scenario)


async def test_typing_shows_under_the_conversation_and_a_message_ends_it(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.send_text(ALICE, "hi")

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        await others.run(bob.send_typing, ALICE)
        await until(pilot, lambda: static_text(app, "#typing") == "bob is typing…", "the typing line")
        await others.run(bob.send_text, ALICE, "done typing")
        await until(pilot, lambda: static_text(app, "#typing") == "", "the typing line cleared by bob's message")

    await run_app(alice, clock, scenario)


async def test_a_new_conversation_by_address(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        assert app.current is None and app.query_one("#compose", Input).disabled
        await pilot.press("ctrl+n")
        assert isinstance(app.screen, AskScreen)
        await type_text(pilot, "nobody")  # no '@': a group's name, and there is none
        await pilot.press("enter")
        assert app.current is None  # refused with one line (a notification), nothing opened
        await pilot.press("ctrl+n")
        await type_text(pilot, BOB)
        await pilot.press("enter")
        assert app.current == BOB and [o.id for o in app.query_one(ConversationList).options] == [BOB]
        await type_text(pilot, "first words")
        await pilot.press("enter")
        await until(pilot, lambda: state_of(app, "first words") == "accepted", "the first message sent")

    await run_app(alice, clock, scenario)
    result = await bob.receive()
    assert texts(bob, result) == [(ALICE, "first words")]


async def test_a_refused_send_says_why_in_one_line_and_keeps_the_text(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice = await register(alpha, "alice")
    nobody = f"nobody@{alpha.config.name}"

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        said: list[tuple[str, str]] = []
        app.say = lambda text, severity="information", timeout=6: said.append((severity, text))  # type: ignore[method-assign]
        await online(app, pilot)
        await pilot.press("ctrl+n")
        app.screen.query_one(Input).value = nobody
        await pilot.press("enter")
        await opened(app, pilot, nobody)
        await type_text(pilot, "anyone")
        await pilot.press("enter")
        await until(pilot, lambda: said, "the refusal")
        [(severity, line)] = said
        assert severity == "error" and line.startswith("not sent: ") and "\n" not in line, line
        assert app.query_one("#compose", Input).value == "anyone"  # nothing typed is lost
        assert shown(app) == []

    await run_app(alice, clock, scenario)


# Identity change: sending is blocked until the user confirms ------------------------------


async def test_an_identity_change_holds_the_message_until_the_user_trusts_the_new_key(
    alpha: RunningNode, register: Register, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.send_text(ALICE, "hi")
    # the directory shows bob with a new key until alice trusts it (as Device.send_text refuses)
    trusted: list[str] = []
    real_send = ChatSession.send

    async def send(self: ChatSession, conversation: str, text: str, *, is_group: bool) -> object:
        if not trusted:
            raise IdentityChanged(conversation)
        return await real_send(self, conversation, text, is_group=is_group)

    monkeypatch.setattr(ChatSession, "send", send)
    monkeypatch.setattr(Device, "trust", lambda self, address: trusted.append(address) or True)

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        await type_text(pilot, "are you there")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, IdentityChangedScreen), "the identity-change warning")
        await pilot.press("escape")  # do not send
        assert not isinstance(app.screen, IdentityChangedScreen)
        assert app.query_one("#compose", Input).value == "are you there"  # kept, not lost
        assert "are you there" not in [t for t, _ in shown(app)] and trusted == []

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, IdentityChangedScreen), "the warning again")
        await pilot.press("t")  # trust the new key, then the message goes
        await until(pilot, lambda: state_of(app, "are you there") == "accepted", "the held message sent after trusting")
        assert trusted == [BOB]

    await run_app(alice, clock, scenario)
    result = await bob.receive()
    assert texts(bob, result) == [(ALICE, "are you there")]  # once


# Screens: help, contact, group members ------------------------------------------------------


async def test_help_and_the_contact_screen_with_safety_number_and_qr_code(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.send_text(ALICE, "hi")
    expected = (await bob.safety_number(ALICE)).number  # both sides see the same number

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await type_text(pilot, "why?")  # in the compose box ? is a character
        assert app.query_one("#compose", Input).value == "why?" and not isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "question_mark")  # elsewhere it is the help
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")

        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, ContactScreen), "the contact screen")
        screen = app.screen
        assert isinstance(screen, ContactScreen) and screen.info.safety is not None
        assert screen.info.safety.number == expected
        details = static_text(app, "#details")
        assert " ".join(details.split()).count(" ".join(expected.split()[:4])) == 1
        assert "Key directory" in details and "1 device" in details and "changed" not in details
        qr = static_text(app, "#qr").splitlines()
        assert len(qr) == 21 and all(len(line) == 41 for line in qr)
        await pilot.press("escape")
        assert not isinstance(app.screen, ContactScreen)

    await run_app(alice, clock, scenario)


async def test_a_60_column_terminal_has_a_narrower_list_the_text_under_its_sender_and_a_status_line_that_follows_resizes(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    """Found by newbie10 in a 60-column tmux: beside the 26-column list a message had ~7 columns
    for its text (a word a line), dialogs were wider than the terminal, and the status line kept
    the layout of the width before a resize (online at column 35 of 100, or cut off at 60)."""
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    text = "the quick brown fox jumps over the lazy dog, twice: the quick brown fox jumps over the lazy dog"
    await bob.send_text(ALICE, text)

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        await pilot.pause()
        assert app.query_one(ConversationList).outer_size.width == 18
        [row] = app.query_one(MessageLog).rows()
        assert row.size.height == 4, row.size  # time and sender, then the text at full width in 3 lines
        status = static_text(app, "#status")
        assert status.startswith("Sonet alice@alpha") and status.endswith("● online · alpha.example") and len(status) == 58, status
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, ContactScreen), "the contact screen")
        assert app.screen.query_one("#dialog").outer_size.width <= 60
        await pilot.press("escape")
        await pilot.resize_terminal(100, 24)
        await pilot.pause()
        await pilot.pause()
        status = static_text(app, "#status")
        assert status.endswith("● online · alpha.example") and len(status) == 98, status
        assert app.query_one(ConversationList).outer_size.width == 26 and row.size.height == 2, row.size  # beside them again

    await run_app(alice, clock, scenario, size=(60, 24))


async def test_a_group_lists_its_members_and_an_admin_adds_one(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
    await bob.receive()  # publishes their group keys
    await carol.receive()
    group = await alice.group_create("hikers", [BOB])
    await bob.receive()  # bob joins

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, group.id)
        assert app.current_is_group
        assert "# hikers" in static_text(app, "#title")
        await type_text(pilot, "who brings the map")
        await pilot.press("enter")
        await until(pilot, lambda: state_of(app, "who brings the map") in ("ordered", "queued"), "the group message sent")

        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, GroupScreen), "the members screen")
        screen = app.screen
        assert isinstance(screen, GroupScreen) and screen.is_admin
        assert [m.account for m in screen.info.members] == [ALICE, BOB]
        await pilot.press("a")
        assert isinstance(app.screen, AskScreen)
        await type_text(pilot, CAROL)
        await pilot.press("enter")
        await until(pilot, lambda: CAROL in [m.account for m in screen.info.members], "carol added")
        # and removed again: the highlighted member (the last one), d
        await pilot.press("end", "d")
        await until(pilot, lambda: [m.account for m in screen.info.members] == [ALICE, BOB], "carol removed")
        await pilot.press("escape")

    await run_app(alice, clock, scenario)
    result = await bob.receive()
    assert [m.text for m in result.group_messages] == ["who brings the map"]
    events_seen = [(e.event, e.member) for e in result.group_events]
    assert ("added", CAROL) in events_seen and ("removed", CAROL) in events_seen, events_seen
    assert [m.account for m in (await bob.group_info("hikers")).members] == [ALICE, BOB]


# Offline banner, the end of the session, the command ---------------------------------------


async def test_the_offline_banner_says_why_and_goes_when_online(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.send_text(ALICE, "hi")

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        banner = app.query_one("#banner", Static)
        assert not banner.has_class("shown")
        app.post_message(LiveUpdate(Offline(reason="cannot connect to ws://x: refused", retry_in_s=4.0)))
        await until(pilot, lambda: banner.has_class("shown"), "the offline banner")
        assert "cannot connect to ws://x: refused" in static_text(app, "#banner") and "offline" in static_text(app, "#status")
        app.post_message(LiveUpdate(Online(node=alpha.config.name)))
        await until(pilot, lambda: not banner.has_class("shown"), "the banner gone")
        assert "online" in static_text(app, "#status")

    await run_app(alice, clock, scenario)


async def test_a_final_error_of_the_session_ends_the_app_and_is_raised_after(
    alpha: RunningNode, register: Register, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await register(alpha, "alice")

    async def removed(self: ChatSession, guest: object) -> None:
        raise NodeError("device_removed", "this device was removed from its account")

    monkeypatch.setattr(ChatSession, "run", removed)

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await until(pilot, lambda: app.final_error is not None, "the app saw the session end")

    app = await run_app(alice, clock, scenario)
    assert isinstance(app.final_error, NodeError) and app.final_error.code == "device_removed"
    assert app.return_value == 1


def test_chat_needs_a_terminal_and_takes_no_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["--home", str(tmp_path), "chat"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "sonet: error: sonet chat needs a terminal (for scripts: `sonet recv --follow`)"
    assert cli.main(["--home", str(tmp_path), "chat", "--json"]) == 2  # a usage error exits 2, as argparse's (newbie10)
    out, err = capsys.readouterr()
    assert '"code": "usage"' in out and "interactive" in out and err == ""
