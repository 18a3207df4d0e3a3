"""`sonet chat`'s message cursor and files (client/chat/actions.py, client/chat/pickers.py):
↑ picks an older message, r replies to it, + reacts, e edits one's own, d deletes (asking
first), s saves its file, v votes in its poll; ``/file PATH`` sends a file with a progress
line. Driven by textual's pilot in 80x24 against a real in-process node (as
tests/client/test_chat_app.py), and checked on the other side's device."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from sonet.client.chat.actions import FileCommand, action_refusal, deletes_for_everyone, parse_file_command
from sonet.client.chat.app import ChatApp
from sonet.client.chat.pickers import ConfirmScreen, ReactScreen, VoteScreen
from sonet.client.chat.render import transfer_line
from sonet.client.chat.screens import HELP, AskScreen, HelpScreen
from sonet.client.chat.widgets import MessageLog
from sonet.client.history import History, HistoryItem, Reaction
from sonet.client.sdk import Device
from sonet.core.content import DELETE_WINDOW_MS
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, Clock
from .test_chat_app import Others, online, opened, run_app, type_text, until

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)


def item_of(app: ChatApp, msg_id: bytes) -> HistoryItem | None:
    return next((i for i in app.history.messages(BOB) if i.id == msg_id), None)


def picked(app: ChatApp) -> bytes | None:
    return app.query_one(MessageLog).selected


def line(app: ChatApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def test_the_cursor_picks_an_older_message_to_reply_react_edit_and_delete(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    first = await bob.send_text(ALICE, "first")
    clock.advance(1000)
    second = await bob.send_text(ALICE, "second")
    clock.advance(1000)

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        log = app.query_one(MessageLog)
        await until(pilot, lambda: len(log.rows()) == 2, "both messages shown")

        # ↑ picks the newest, ↑ again the one before; ↓ past the newest is back in the compose box
        await pilot.press("up")
        assert picked(app) == second.id and app.focused is log
        await pilot.press("down")
        assert picked(app) is None and app.focused is app.query_one("#compose")
        await pilot.press("up", "up", "up")  # the oldest stays picked
        assert picked(app) == first.id

        # typing while a message is picked goes to the compose box (no key is taken for a command)
        await pilot.press("up", "o", "k")
        assert picked(app) is None and app.query_one("#compose", Input).value == "ok"
        app.query_one("#compose", Input).value = ""
        await pilot.press("up", "up", "up")

        # r: the compose box replies to the picked (older) message
        await pilot.press("r")
        compose = app.query_one("#compose", Input)
        assert app.focused is compose and app.compose_mode == ("reply", first.id)
        assert "reply to bob: first" in str(compose.border_title)
        await type_text(pilot, "to the first")
        await pilot.press("enter")
        clock.advance(1000)
        await until(pilot, lambda: any(i.text == "to the first" for i in app.history.messages(BOB)), "the reply")
        reply = next(i for i in app.history.messages(BOB) if i.text == "to the first")
        assert (reply.type, reply.refers_to, reply.quote) == ("reply", first.id, "first")
        assert app.compose_mode is None and compose.border_title is None

        # +: the picker; 2 is its second emoji; on the first message, three messages up
        await pilot.press("up", "up", "up", "plus")
        assert isinstance(app.screen, ReactScreen)
        await pilot.press("2")
        await until(pilot, lambda: (i := item_of(app, first.id)) is not None and i.reactions == (Reaction(emoji="👎", count=1, mine=True),), "the reaction")
        # done, the cursor lets go: what is typed next is text, not r, e, d... on that message
        assert picked(app) is None and app.focused is compose
        await type_text(pilot, "dyer")
        assert compose.value == "dyer" and app.screen is app.screen_stack[0] and app.compose_mode is None
        compose.value = ""
        # picking one's own reaction again takes it back
        await pilot.press("up", "up", "up", "plus", "2")
        await until(pilot, lambda: (i := item_of(app, first.id)) is not None and i.reactions == (), "the reaction taken back")
        clock.advance(1000)

        # e on their message: refused in one line, nothing changes; on the own reply: edited
        said: list[str] = []
        app.say = lambda text, severity="information", timeout=6: said.append(text)  # type: ignore[method-assign]
        await pilot.press("up", "up", "up", "e")
        assert app.compose_mode is None and picked(app) == first.id
        assert said == ["cannot edit: only its author can edit a message"]
        await pilot.press("down", "down", "e")  # second, then the reply
        assert app.compose_mode == ("edit", reply.id) and compose.value == "to the first"
        await type_text(pilot, "!")
        await pilot.press("enter")
        clock.advance(1000)
        await until(pilot, lambda: (i := item_of(app, reply.id)) is not None and i.text == "to the first!" and i.edited == 1, "the edit")

        # Esc cancels an edit: nothing sent, the compose box is empty again
        await pilot.press("up", "e", "escape")
        assert app.compose_mode is None and compose.border_title is None
        compose.value = ""

        # d on the own reply asks first; n keeps it, y deletes it for everyone
        await pilot.press("up", "d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen) and not item_of(app, reply.id).deleted  # type: ignore[union-attr]
        await pilot.press("d", "y")
        await until(pilot, lambda: (i := item_of(app, reply.id)) is not None and i.deleted, "deleted for everyone")
        clock.advance(1000)

        # d on their message deletes it on this device only
        await pilot.press("up", "up", "up", "d")
        assert picked(app) == first.id
        await pilot.press("y")
        await until(pilot, lambda: item_of(app, first.id) is None, "gone from this device")
        assert picked(app) is None  # the cursor let go of a message that is gone

    await run_app(alice, clock, scenario)
    await bob.receive()
    items = History(bob.state).messages(ALICE)
    assert [(i.text, i.deleted) for i in items] == [("first", False), ("second", False), ("", True)]
    assert items[0].reactions == ()  # added, then taken back


async def test_send_and_save_files_with_a_progress_line(alpha: RunningNode, register: Register, clock: Clock, tmp_path: Path) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    theirs = tmp_path / "report.pdf"
    theirs.write_bytes(os.urandom(200_000))
    got = await bob.send_file(ALICE, theirs, "the report")
    clock.advance(1000)
    mine = tmp_path / "my notes.txt"
    mine.write_bytes(os.urandom(150_000))
    folder = tmp_path / "saved"
    folder.mkdir()

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        await until(pilot, lambda: len(app.query_one(MessageLog).rows()) == 1, "the file message shown")
        said: list[str] = []
        app.say = lambda text, severity="information", timeout=6: said.append(text)  # type: ignore[method-assign]

        # s on the file: the folder is asked (prefilled), the file is saved, the path is said
        await pilot.press("up", "s")
        assert isinstance(app.screen, AskScreen)
        answer = app.screen.query_one("#answer", Input)
        assert answer.value  # the default folder
        answer.value = str(folder)
        await pilot.press("enter")
        await until(pilot, lambda: "saved" in line(app, "#transfer"), "saved")
        assert str(folder / "report.pdf") in line(app, "#transfer")
        assert (folder / "report.pdf").read_bytes() == theirs.read_bytes()
        assert picked(app) == got.id  # the cursor stays on it

        # v on a message that is not a poll: one line, nothing asked
        await pilot.press("v")
        assert not isinstance(app.screen, VoteScreen)
        assert said[-1] == "cannot vote: that message is not a poll"

        # /file with a quoted path and a caption; a missing file is refused in one line
        await pilot.press("escape")
        compose = app.query_one("#compose", Input)
        compose.value = f"/file {tmp_path / 'missing.bin'}"
        await pilot.press("enter")
        await until(pilot, lambda: said[-1].endswith("missing.bin is not a file"), "the refusal")
        compose.value = f"/file '{mine}' my notes"
        await pilot.press("enter")
        await until(pilot, lambda: "sent my notes.txt" in line(app, "#transfer"), "sent")
        await until(pilot, lambda: any(i.file is not None and i.mine for i in app.history.messages(BOB)), "the file message shown")
        clock.advance(1000)

    await run_app(alice, clock, scenario)
    result = await bob.receive()
    sent = next(m for m in result.messages if m.type == "file")
    assert (sent.fields["text"], sent.fields["file"]["name"]) == ("my notes", "my notes.txt")
    out = tmp_path / "bob"
    out.mkdir()
    saved = Path(await bob.download(sent.id, out))
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(mine.read_bytes()).digest()
    assert got.name == "report.pdf"


async def test_vote_in_a_poll_with_the_option_picker(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    asked = await bob.send_poll(ALICE, "Lunch?", ["pizza", "sushi", "salad"])
    clock.advance(1000)
    await alice.receive()
    clock.advance(1000)

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        await until(pilot, lambda: len(app.query_one(MessageLog).rows()) == 1, "the poll shown")
        await pilot.press("up", "v")
        assert isinstance(app.screen, VoteScreen)
        await pilot.press("2", "enter")  # sushi
        await until(pilot, lambda: (i := item_of(app, asked.id)) is not None and i.poll_result is not None and i.poll_result.counts == (0, 1, 0), "the vote")
        clock.advance(1000)
        # bob closes it; v then says it is closed and opens nothing
        await others.run(bob.receive)
        await others.run(bob.close_poll, asked.id)
        await until(pilot, lambda: (i := item_of(app, asked.id)) is not None and i.poll_result is not None and i.poll_result.closed, "closed")
        await pilot.press("up", "v")
        assert not isinstance(app.screen, VoteScreen)

    await run_app(alice, clock, scenario)
    _poll, result = bob.poll_result(asked.id)
    assert (result.counts, result.closed) == ((0, 1, 0), True)
    assert result.voters[1] == (ALICE,)


async def test_the_help_lists_the_cursor_keys_in_80x24(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice = await register(alpha, "alice")

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(f"{key} {what}" for key, what in HELP)
        for words in ("pick a message", "reply, react, edit yours, delete", "save its file, vote in its poll", "/file PATH"):
            assert words in text
        dialog = app.screen.query_one("#dialog")
        assert dialog.region.height <= 24 and dialog.region.width <= 80 and dialog.region.y >= 0  # the whole help is on screen
        await pilot.press("escape")

    await run_app(alice, clock, scenario)


# The pure parts ------------------------------------------------------------------------------


def _item(**kwargs: object) -> HistoryItem:
    base: dict[str, object] = dict(id=b"1" * 16, conversation=BOB, sender=BOB, mine=False, at=1_000, type="text", text="hi", state="read", note="")
    return HistoryItem(**{**base, **kwargs})  # type: ignore[arg-type]


def test_what_each_key_may_do_to_which_message() -> None:
    theirs, mine = _item(), _item(sender=ALICE, mine=True, state="delivered")
    assert action_refusal(theirs, "reply") is None and action_refusal(theirs, "react") is None
    assert action_refusal(theirs, "edit") == "only its author can edit a message"
    assert action_refusal(mine, "edit") is None
    assert action_refusal(_item(mine=True, type="file", file={}), "edit") == "a file cannot be edited"
    assert action_refusal(theirs, "save") == "that message has no file to save"
    assert action_refusal(theirs, "vote") == "that message is not a poll"
    assert action_refusal(_item(deleted=True, text=""), "reply") == "that message was deleted"
    assert action_refusal(_item(deleted=True, text=""), "delete") is None
    assert action_refusal(_item(timer=5000), "react") == "that is a timer change, not a message"
    # own messages go for everyone within the window, else (and theirs) on this device only
    assert deletes_for_everyone(mine, now_ms=1_000 + DELETE_WINDOW_MS)
    assert not deletes_for_everyone(mine, now_ms=1_001 + DELETE_WINDOW_MS)
    assert not deletes_for_everyone(theirs, now_ms=1_000)


def test_the_file_command() -> None:
    assert parse_file_command("hello") is None and parse_file_command("/filed x") is None
    assert parse_file_command("/file a.txt") == FileCommand(path=Path("a.txt"), caption="")
    assert parse_file_command("/file 'my photo.jpg' at the lake") == FileCommand(path=Path("my photo.jpg"), caption="at the lake")
    assert parse_file_command("/file") == "/file needs a path: /file PATH [CAPTION]"
    problem = parse_file_command("/file 'unclosed")
    assert isinstance(problem, str) and "quote a path with spaces" in problem


def test_the_progress_line_fits_and_neutralises_names() -> None:
    text = transfer_line("saving", "x" * 200 + "\x1b[2J", 512 * 1024, 1024 * 1024, width=56)
    assert text.cell_len <= 56 and "\x1b" not in text.plain
    assert " 50% 0.5/1.0 MiB" in text.plain
    evil = transfer_line("saving", "a\x1b[31mb", 1, 1, width=56).plain
    assert "\x1b" not in evil and "100%" in evil


async def test_in_a_group_the_cursor_reacts_and_a_file_goes_to_every_member(
    alpha: RunningNode, register: Register, clock: Clock, tmp_path: Path
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.receive()  # publishes their group keys
    group = await alice.group_create("hikers", [BOB])
    await bob.receive()  # bob joins
    asked = await bob.group_send("hikers", "who brings the map")
    clock.advance(1000)
    path = tmp_path / "route.gpx"
    path.write_bytes(os.urandom(70_000))

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, group.id)
        await until(pilot, lambda: len(app.query_one(MessageLog).rows()) == 1, "bob's message shown")
        await pilot.press("up", "plus", "7")
        await until(
            pilot, lambda: [i.reactions for i in app.history.messages(group.id)] == [(Reaction(emoji="🎉", count=1, mine=True),)], "the reaction"
        )
        clock.advance(1000)
        assert picked(app) is None and app.focused is app.query_one("#compose")  # the reaction let the cursor go
        app.query_one("#compose", Input).value = f"/file {path} the route"
        await pilot.press("enter")
        await until(pilot, lambda: "sent route.gpx" in line(app, "#transfer"), "sent")
        clock.advance(1000)

    await run_app(alice, clock, scenario)
    result = await bob.receive()
    [sent] = [m for m in result.group_messages if m.type == "file"]
    out = tmp_path / "bob"
    out.mkdir()
    assert Path(await bob.download(sent.id, out)).read_bytes() == path.read_bytes()
    [item] = [i for i in History(bob.state).messages(group.id) if i.id == asked.id]
    assert item.reactions == (Reaction(emoji="🎉", count=1, mine=False),)
