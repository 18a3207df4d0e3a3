"""Replies, reactions, edits and deletes (issue 17 item 3; client/gestures.py, client/deletes.py,
client/history_fold.py): sent in 1:1 conversations and groups, copied to the account's other
devices, folded into the history the same way on every device; only the author edits or
deletes, a delete for everyone only within its window, and a deleted text is erased from every
device's state. Real devices against an in-process node."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from sonet.client import cli

from sonet.client.history import History, HistoryItem, Reaction
from sonet.client.sdk import Device
from sonet.core.content import DELETE_WINDOW_MS, Content
from sonet.core.errors import LocalProtocolError
from tests.node.conftest import RunningNode

from .conftest import ALICE, BETA, BOB, CAROL, HANG_S, Clock, link_device, run_cli
from .loopback import Loopback

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)
SECRET = "a deleted plaintext 7c3a91"


def by_id(items: list[HistoryItem]) -> dict[bytes, HistoryItem]:
    return {i.id: i for i in items}


async def refused(code: str, call: Awaitable[object]) -> str:
    with pytest.raises(LocalProtocolError) as info:
        await call
    assert info.value.code == code, info.value
    return str(info.value)


async def test_one_to_one_gestures_fold_alike_on_both_sides_and_the_other_device(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    alice2 = make_device("alice2")
    await link_device(alice2, alice, alpha.url)
    await alice.receive()
    first = await alice.send_text(BOB, "lunch at noon?\nor later")
    await bob.receive()
    clock.advance(10)
    reply = await bob.reply(first.id, "noon works")
    await alice.receive()
    clock.advance(10)
    thread = await alice.reply(reply.id, "great, see you")  # a reply to a reply: the same thread
    clock.advance(10)
    await bob.react(first.id, "👍")
    await alice.react(first.id, "👍")
    await alice.react(first.id, "🎉")
    await alice.react(first.id, "🎉", remove=True)
    clock.advance(10)
    edit = await alice.edit(first.id, "lunch at 12:30?")
    assert (edit.type, edit.refers_to, edit.conversation, edit.is_group, edit.state) == ("edit", first.id, BOB, False, "accepted")
    for device in (alice, bob, alice2):
        await device.receive()

    for device in (alice, bob, alice2):
        items = History(device.state).messages(BOB if device is not bob else ALICE)
        assert [i.type for i in items] == ["text", "reply", "reply"], device  # gestures are no messages of their own
        got = by_id(items)
        assert (got[first.id].text, got[first.id].edited, got[first.id].versions) == ("lunch at 12:30?", 1, ("lunch at noon?\nor later",))
        mine = device is not bob
        assert got[first.id].reactions == (Reaction(emoji="👍", count=2, mine=True),)
        assert (got[reply.id].refers_to, got[reply.id].quote, got[reply.id].thread) == (first.id, "lunch at 12:30?", first.id)
        assert (got[thread.id].refers_to, got[thread.id].quote, got[thread.id].thread) == (reply.id, "noon works", first.id)
        assert got[thread.id].mine == mine and got[thread.id].sender == ALICE

    # bob's recv showed each gesture as such, naming the message it refers to
    # (reply, reaction and edit objects: client/cli.py _message_json)
    assert History(bob.state).unread(ALICE) == {ALICE: [first.id, thread.id]}  # replies are read; gestures are not


async def test_only_the_author_edits_or_deletes_and_forged_ones_change_nothing(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    sent = await alice.send_text(BOB, "mine to change")
    await bob.receive()
    # refused on bob's device before anything is sent
    assert "only its author" in await refused("not_author", bob.edit(sent.id, "bob's words"))
    await refused("not_author", bob.delete(sent.id, everyone=True))
    await refused("unknown_message", bob.react(bytes(16), "👍"))
    await refused("bad_input", bob.react(sent.id, "👍 👍"))
    await refused("bad_input", bob.reply(sent.id, ""))

    # a modified client sends them anyway: alice's device keeps them but applies neither
    for forged in (
        Content.make_edit(id=bob._rng(16), sent_at=clock(), refers_to=sent.id, text="bob's words"),
        Content.make_delete(id=bob._rng(16), sent_at=clock(), refers_to=sent.id),
    ):
        await _send_raw(bob, ALICE, forged)
    await alice.receive()
    [item] = History(alice.state).messages(BOB)
    assert (item.text, item.edited, item.deleted) == ("mine to change", 0, False)


async def _send_raw(device: Device, to: str, content: Content) -> None:
    """Send ``content`` as a modified client would, without the SDK's checks."""
    from sonet.core.address import parse_address
    from sonet.core.content import encode_content
    from sonet.core.envelope import Kind

    profile = device.state.profile()
    async with device._connect(profile) as conn:
        await device._deliver(conn, profile, parse_address(to), encode_content(content), None, content.id, Kind.SEALED)


async def test_delete_for_everyone_erases_the_text_on_every_device_and_leaves_a_placeholder(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    alice2 = make_device("alice2")
    await link_device(alice2, alice, alpha.url)
    await alice.receive()
    sent = await alice.send_text(BOB, SECRET)
    for device in (bob, alice2):
        await device.receive()
    edit = await alice.edit(sent.id, SECRET + " (edited)")
    await bob.receive()
    await bob.react(sent.id, "😮")
    clock.advance(1000)
    deleted = await alice.delete(sent.id, everyone=True)
    assert (deleted.type, deleted.refers_to, deleted.state) == ("delete", sent.id, "accepted")
    for device in (alice, bob, alice2):
        await device.receive()
        [item] = History(device.state).messages(BOB if device is not bob else ALICE)
        assert (item.id, item.deleted, item.text, item.versions, item.reactions) == (sent.id, True, "", (), ())
        found = device.state.find_message(sent.id, ALICE)
        assert found is not None and device.state.message_text(found) == {}
    # the edit's text is gone too (the vault opens every row: nothing of it is left)
    [kept_edit] = [g for g in bob.state.conversation_gestures(peer=ALICE) if g.id == edit.id]
    assert kept_edit.fields == {"refers_to": sent.id.hex()}
    # a deleted message takes no more gestures
    await refused("deleted", alice.edit(sent.id, "again"))
    await refused("deleted", bob.reply(sent.id, "what was it?"))


async def test_recv_shows_a_text_deleted_before_it_was_fetched_as_deleted(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text and its delete for everyone arrive in one batch: the delete erases the text
    first, and `sonet recv` shows "(deleted)" (it raised KeyError: 'text' before)."""
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await alice.send_text(BOB, "hello")
    await bob.receive()
    for text_out in (True, False):
        sent = await alice.send_text(BOB, SECRET)
        await alice.delete(sent.id, everyone=True)
        rc, out = await run_cli(capsys, bob, "recv", json_out=text_out)
        assert rc == 0, out
        if text_out:
            [shown] = [o for o in out if o["id"] == sent.id.hex()]
            assert (shown["type"], shown["text"], shown["deleted"]) == ("text", "", True)
        else:
            assert any(line.endswith(f"{ALICE}: (deleted)") for line in out), out
        assert SECRET not in "\n".join(map(str, out))


async def test_delete_for_everyone_has_a_window_and_receivers_ignore_a_late_one(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    sent = await alice.send_text(BOB, "old news")
    await bob.receive()
    clock.advance(DELETE_WINDOW_MS + 1)
    assert "48 hours" in await refused("too_late", alice.delete(sent.id, everyone=True))
    await _send_raw(alice, BOB, Content.make_delete(id=alice._rng(16), sent_at=clock(), refers_to=sent.id))
    await bob.receive()
    [item] = History(bob.state).messages(ALICE)
    assert (item.text, item.deleted) == ("old news", False)


async def test_delete_for_me_hides_the_message_on_this_device_only(alpha: RunningNode, register: Register) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    keep = await alice.send_text(BOB, "keep this")
    gone = await alice.send_text(BOB, "hide this")
    await bob.receive()
    result = await bob.delete(gone.id)
    assert (result.state, result.conversation) == ("deleted_here", ALICE)
    assert [i.id for i in History(bob.state).messages(ALICE)] == [keep.id]
    assert [i.id for i in History(alice.state).messages(BOB)] == [keep.id, gone.id]
    await refused("unknown_message", bob.react(gone.id, "👍"))


async def test_a_gesture_before_its_message_is_kept_and_applies_when_it_comes(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    later_id = alice._rng(16)
    # the edit comes first (as when the sender's other device wrote it): kept, shows nothing
    await _send_raw(alice, BOB, Content.make_edit(id=alice._rng(16), sent_at=clock() + 5, refers_to=later_id, text="fixed"))
    await bob.receive()
    assert History(bob.state).messages(ALICE) == []
    await _send_raw(alice, BOB, Content.make_text(id=later_id, sent_at=clock(), text="fixd"))
    await bob.receive()
    [item] = History(bob.state).messages(ALICE)
    assert (item.id, item.text, item.versions) == (later_id, "fixed", ("fixd",))


async def test_group_gestures_fold_alike_for_every_member(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    view = await alice.group_create("hikers", [BOB, CAROL])
    await bob.receive()
    await carol.receive()
    first = await alice.group_send("hikers", "sunday 9:00?")
    await bob.receive()
    await carol.receive()
    clock.advance(10)
    reply = await bob.reply(first.id, "in")
    assert (reply.type, reply.is_group, reply.conversation) == ("reply", True, view.id)
    await carol.receive()
    await carol.react(first.id, "⛰")
    await bob.react(first.id, "⛰")
    clock.advance(10)
    await alice.edit(first.id, "sunday 10:00?")
    await refused("not_author", carol.edit(first.id, "saturday"))
    await refused("not_author", carol.delete(reply.id, everyone=True))
    clock.advance(10)
    await bob.delete(reply.id, everyone=True)
    for device in (alice, bob, carol):
        await device.receive()
    for device in (alice, bob, carol):
        items = by_id(History(device.state).messages(view.id))
        assert list(items) == [first.id, reply.id]
        assert (items[first.id].text, items[first.id].edited) == ("sunday 10:00?", 1)
        assert items[first.id].reactions == (Reaction(emoji="⛰", count=2, mine=device is not alice),)
        # a placeholder: the deleted reply's text and what it quoted are erased
        assert (items[reply.id].deleted, items[reply.id].text, items[reply.id].refers_to) == (True, "", None)


async def _cli(capsys: pytest.CaptureFixture[str], device: Device, *argv: str) -> tuple[int, list[dict]]:
    rc = await trio.to_thread.run_sync(cli.main, ["--home", str(device.state.home), *argv, "--json"])
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return rc, [o for o in objects if o.get("type") != "receipt"]  # delivered receipts come and go


async def test_the_commands_and_what_recv_and_history_print(
    alpha: RunningNode, register: Register, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    sent = await alice.send_text(BOB, "first draft\nsecond line")
    await bob.receive()
    msg = sent.id.hex()

    rc, [reply] = await _cli(capsys, bob, "reply", msg, "looks good")
    assert rc == 0 and (reply["type"], reply["refers_to"], reply["to"], reply["state"]) == ("reply", msg, ALICE, "accepted")
    rc, [reaction] = await _cli(capsys, bob, "react", msg, "👍")
    assert rc == 0 and (reaction["type"], reaction["emoji"], reaction["remove"]) == ("reaction", "👍", False)
    rc, [edit] = await _cli(capsys, alice, "edit", msg, "final draft")
    assert rc == 0 and edit["type"] == "edit"
    rc, [error] = await _cli(capsys, bob, "edit", msg, "bob's draft")
    assert rc == 1 and error["error"]["code"] == "not_author"
    rc, [error] = await _cli(capsys, bob, "react", "not-an-id", "👍")
    assert rc == 2 and error["error"]["code"] == "usage"  # an argument not of its form (ux12: bad_input, exit 1)

    rc, got = await _cli(capsys, alice, "recv")
    assert rc == 0
    assert [(o["type"], o.get("refers_to"), o["text"]) for o in got] == [("reply", msg, "looks good"), ("reaction", msg, "")]
    assert got[1]["emoji"] == "👍" and got[1]["remove"] is False
    rc, got = await _cli(capsys, bob, "recv")
    assert [(o["type"], o["refers_to"], o["text"]) for o in got if o["id"] != msg] == [("edit", msg, "final draft")]

    rc, history = await _cli(capsys, bob, "history", ALICE)
    assert [(o["id"], o["type"], o["text"], o["edited"], o["versions"], o["deleted"]) for o in history] == [
        (msg, "text", "final draft", 1, ["first draft\nsecond line"], False), (reply["id"], "reply", "looks good", 0, [], False),
    ]  # fmt: skip
    assert history[0]["reactions"] == [{"emoji": "👍", "count": 1, "mine": True}]
    assert (history[1]["refers_to"], history[1]["quote"], history[1]["thread"]) == (msg, "final draft", msg)
    rc = await trio.to_thread.run_sync(cli.main, ["--home", str(bob.state.home), "history", ALICE])
    out = capsys.readouterr().out.splitlines()
    assert "final draft  [edited 1; 👍 1]" in out[0] and '↪ "final draft" looks good' in out[1]

    rc, listed = await _cli(capsys, bob, "sent")
    assert [(o["id"], o.get("type")) for o in listed] == [(reaction["id"], "reaction"), (reply["id"], "reply")]
    rc, [deleted] = await _cli(capsys, alice, "delete", msg, "--everyone")
    assert rc == 0 and (deleted["type"], deleted["everyone"]) == ("delete", True)
    rc, got = await _cli(capsys, bob, "recv")
    assert [(o["type"], o["refers_to"]) for o in got] == [("delete", msg)]
    rc, history = await _cli(capsys, bob, "history", ALICE)
    assert (history[0]["deleted"], history[0]["text"], history[0]["reactions"]) == (True, "", [])
    assert history[1]["quote"] == ""  # the reply no longer quotes a deleted text
    rc, [here] = await _cli(capsys, bob, "delete", reply["id"])
    assert rc == 0 and here["state"] == "deleted_here"
    rc, history = await _cli(capsys, bob, "history", ALICE)
    assert [o["id"] for o in history] == [msg]


def test_the_chat_app_draws_a_quote_edits_reactions_and_a_placeholder() -> None:
    from rich.console import Console

    from sonet.client.chat.render import message_row

    def drawn(text: str = "noon works", **kwargs: Any) -> str:
        console = Console(width=60, record=True, file=io.StringIO())
        console.print(message_row(at=0, sender=BOB, me=ALICE, mine=False, text=text, state="received", note="", **kwargs))
        return console.export_text()

    shown = drawn(quote="lunch at noon?", edited=1, reactions=[("👍", 2, True), ("🎉", 1, False)])
    assert "↪ lunch at noon?" in shown and "noon works (edited)" in shown and "👍 2  🎉 1" in shown
    gone = drawn(deleted=True, text="")
    assert "message deleted" in gone and "noon works" not in gone


async def test_a_gesture_to_a_contact_whose_node_is_down_waits_behind_the_text_it_names(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock
) -> None:
    alpha, beta = alpha_beta
    alice, bob = await register(alpha, "alice"), await register(beta, "bob")
    bob_b = f"bob@{BETA}"
    loopback.down[BETA] = ("unreachable", f"cannot reach {BETA}: connection refused")
    text = await alice.send_text(bob_b, "see you at 9")
    assert text.state == "pending"
    clock.advance(10)
    edit = await alice.edit(text.id, "see you at 10")
    reaction = await alice.react(text.id, "⏰")
    assert (edit.state, edit.code, reaction.state) == ("pending", "unreachable", "pending")
    await refused("not_sent_yet", alice.delete(text.id, everyone=True))
    [item] = History(alice.state).messages(bob_b)  # folded on this device at once
    assert (item.text, item.state, item.reactions) == ("see you at 10", "pending", (Reaction(emoji="⏰", count=1, mine=True),))

    del loopback.down[BETA]
    await alice.receive()  # connecting sends what waited, in the order written
    assert [m.state for m in alice.state.sent_messages(3)] == ["sent"] * 3
    await loopback.flush()
    await bob.receive()
    [got] = History(bob.state).messages(ALICE)
    assert (got.id, got.text, got.versions, got.reactions) == (text.id, "see you at 10", ("see you at 9",), (Reaction(emoji="⏰", count=1, mine=False),))


async def test_an_id_reused_in_another_group_neither_misdirects_nor_blocks_a_delete(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    """mallory is in both groups and copies the id of alice's text in one into the other: the
    command refuses to guess, and alice's delete still erases her text where she wrote it."""
    alice, bob, mallory = [await register(alpha, name) for name in ("alice", "bob", "mallory")]
    for device in (alice, bob, mallory):
        await device.receive()
    real = await alice.group_create("real", [BOB, "mallory@alpha.example"])
    decoy = await mallory.group_create("decoy", [BOB])
    for device in (alice, bob, mallory):
        await device.receive()
    sent = await alice.group_send(real.id, "the real one")
    await mallory.receive()
    # mallory's modified client posts its own text under alice's id in the other group
    await mallory._groups().send_content(decoy.id, Content.make_text(id=sent.id, sent_at=clock(), text="decoy"))
    await bob.receive()
    assert "2 conversations" in await refused("ambiguous_message", bob.react(sent.id, "👍"))
    clock.advance(10)
    await alice.delete(sent.id, everyone=True)
    await bob.receive()
    [item] = History(bob.state).messages(real.id)
    assert (item.id, item.deleted, item.text) == (sent.id, True, "")
    [other] = History(bob.state).messages(decoy.id)
    assert (other.text, other.deleted) == ("decoy", False)


async def test_the_conversation_list_shows_the_last_text_as_edited_or_deleted(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    sent = await alice.send_text(BOB, "typo hre")
    clock.advance(10)
    await alice.edit(sent.id, "typo here")
    await bob.receive()
    for device in (alice, bob):
        assert [c.last_text for c in History(device.state).conversations()] == ["typo here"]
    clock.advance(10)
    await alice.delete(sent.id, everyone=True)
    await bob.receive()
    for device in (alice, bob):
        assert [c.last_text for c in History(device.state).conversations()] == [""]


def test_the_fold_is_the_same_whatever_order_different_accounts_gestures_were_kept_in() -> None:
    """Devices keep gestures in the order they arrive; only one account's own gestures need
    their order (it is the order sent), so two devices that got the same gestures from several
    accounts in different orders show the same thing."""
    from sonet.client.history_fold import Target, fold
    from sonet.client.state_history import StoredMessage

    target = bytes(16)

    def gesture(n: int, sender: str, kind: str, **fields: object) -> StoredMessage:
        return StoredMessage(id=bytes([n]) * 16, sender=sender, at=100, type=kind, fields={"refers_to": target.hex(), **fields},
                             own=False, unread=False, order=n)  # fmt: skip

    made = [
        gesture(1, BOB, "reaction", emoji="👍", remove=False), gesture(2, CAROL, "reaction", emoji="👍", remove=False),
        gesture(3, CAROL, "edit", text="not hers"), gesture(4, ALICE, "edit", text="hi!"), gesture(5, BOB, "delete"),
    ]  # fmt: skip
    targets = {target: Target(author=ALICE, at=50, text="hi")}
    results = set()
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        folded = fold(targets, [made[i] for i in order], ALICE)[target]
        results.add((folded.text, folded.deleted, folded.reactions(ALICE), folded.ignored))
    assert results == {("hi!", False, (Reaction(emoji="👍", count=2, mine=False),), 2)}


async def test_a_live_session_sends_gestures_and_keeps_them_while_the_node_is_away(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    from sonet.client.live import Notice, Offline, Online, Received

    from ..e2e.proxy import TcpProxy
    from .test_live import Events

    proxy = TcpProxy(int(alpha.url.rsplit(":", 1)[1]))
    try:
        with trio.fail_after(HANG_S):
            alice = make_device("alice")
            await alice.register(ALICE, proxy.url, await alpha.mint_invite())
            bob = await register(alpha, "bob")
            hello = await bob.send_text(ALICE, "hello")
            clock.advance(10)
            async with alice.live() as session:
                events = Events(session)
                await events.until(Received)
                reaction = await session.react(hello.id, "👋")
                assert (reaction.type, reaction.state) == ("reaction", "accepted")
                proxy.refuse(True)
                proxy.drop()
                await events.until(Offline)
                reply = await session.reply(hello.id, "written offline")
                assert (reply.state, reply.code) == ("pending", "offline")
                proxy.refuse(False)
                await events.until(Online)
                await events.until(Notice, lambda e: reply.id.hex() in e.text)  # sent once the node is back
            await bob.receive()
            [item, answer] = History(bob.state).messages(ALICE)
            assert (item.id, item.reactions) == (hello.id, (Reaction(emoji="👋", count=1, mine=False),))
            assert (answer.id, answer.type, answer.quote, answer.text) == (reply.id, "reply", "hello", "written offline")
    finally:
        proxy.close()


async def test_sonet_chat_replies_reacts_edits_and_deletes_from_the_compose_box(alpha: RunningNode, register: Register, clock: Clock) -> None:
    from textual.pilot import Pilot
    from textual.widgets import Input

    from sonet.client.chat.app import ChatApp

    from .test_chat_app import Others, online, opened, run_app, until

    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    asked = await bob.send_text(ALICE, "lunch?")
    clock.advance(1000)

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)

        async def typed(text: str) -> None:
            app.query_one("#compose", Input).value = text
            await pilot.press("enter")
            clock.advance(1000)

        def item(msg_id: bytes) -> HistoryItem | None:
            return by_id(app.history.messages(BOB)).get(msg_id)

        await typed("/react 👍")
        await until(pilot, lambda: (i := item(asked.id)) is not None and i.reactions == (Reaction(emoji="👍", count=1, mine=True),), "the reaction")
        await typed("/reply sure")
        await until(pilot, lambda: [i.text for i in app.history.messages(BOB)] == ["lunch?", "sure"], "the reply shown")
        reply = app.history.messages(BOB)[1]
        assert (reply.type, reply.quote) == ("reply", "lunch?")
        await typed("/edit sure, at noon")
        await until(pilot, lambda: (i := item(reply.id)) is not None and i.text == "sure, at noon" and i.edited == 1, "the edit")
        await typed("/delete")
        await until(pilot, lambda: (i := item(reply.id)) is not None and i.deleted, "the delete")
        await typed("/edit again")  # nothing of alice's left to edit: said, nothing sent
        await typed("/unknown stays a text")
        await until(pilot, lambda: "/unknown stays a text" in [i.text for i in app.history.messages(BOB)], "a text sent")

    await run_app(alice, clock, scenario)
    await bob.receive()
    items = History(bob.state).messages(ALICE)
    assert [(i.text, i.deleted) for i in items] == [("lunch?", False), ("", True), ("/unknown stays a text", False)]
    assert items[0].reactions == (Reaction(emoji="👍", count=1, mine=False),)
