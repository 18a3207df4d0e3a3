"""The device's history (client/history.py): conversations and their messages from what the
device keeps, sealed, in state.db (client/state_history.py): own texts with their states, the
account's texts from its other devices, received texts with read marks; 1:1 and groups;
``sonet history``. Real devices against in-process nodes (two federated over
tests/client/loopback.py where a node must be down)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from sonet.client import cli
from sonet.client.connection import ConnectError
from sonet.client.history import Conversation, History, HistoryItem
from sonet.client.pending import PENDING_TTL_MS, expire_pending
from sonet.client.sdk import Device
from sonet.client.state import DeviceState
from sonet.core.errors import DecryptError, LocalProtocolError
from tests.node.conftest import RunningNode

from .conftest import ALICE, BETA, BOB, CAROL, Clock, link_device, texts
from .loopback import Loopback

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)
BOB_B = f"bob@{BETA}"
UNREACHABLE = ("unreachable", f"cannot reach {BETA}: connection refused")
#: a distinctive text, looked for in the state files
SECRET = "a history plaintext 41d7e2"


def lines(items: list[HistoryItem]) -> list[tuple[str, bool, str, str]]:
    return [(i.sender, i.mine, i.text, i.state) for i in items]


def state_files(device: Device) -> bytes:
    home: Path = device.state.home
    return b"".join(p.read_bytes() for p in sorted(home.iterdir()) if p.is_file())


# 1:1 ------------------------------------------------------------------------------------------


async def test_a_conversation_shows_both_sides_in_order_with_states_and_read_marks(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    first = await alice.send_text(BOB, "hi bob")
    clock.advance(10)
    second = await alice.send_text(BOB, "are you there?")
    alice_history, bob_history = History(alice.state), History(bob.state)
    assert lines(alice_history.messages(BOB)) == [(ALICE, True, "hi bob", "accepted"), (ALICE, True, "are you there?", "accepted")]
    assert [(i.id, i.conversation, i.type, i.note) for i in alice_history.messages(BOB)] == [(first.id, BOB, "text", ""), (second.id, BOB, "text", "")]

    got = await bob.receive()  # stores them and sends delivered receipts
    clock.advance(10)
    reply = await bob.send_text(ALICE, "yes!")
    assert lines(bob_history.messages(ALICE)) == [
        (ALICE, False, "hi bob", "received"), (ALICE, False, "are you there?", "received"), (BOB, True, "yes!", "accepted"),
    ]  # fmt: skip
    assert [i.at for i in bob_history.messages(ALICE)] == [m.sent_at for m in got.messages] + [clock()]
    assert bob_history.unread(ALICE) == {ALICE: [first.id, second.id]}
    [conversation] = bob_history.conversations()
    assert conversation == Conversation(key=ALICE, title=ALICE, is_group=False, last_text="yes!", last_at=clock(), unread=2)

    bob_history.mark_read(ALICE)
    assert bob_history.unread(ALICE) == {} and bob_history.conversations()[0].unread == 0
    assert [i.state for i in bob_history.messages(ALICE)] == ["read", "read", "accepted"]

    await alice.receive()  # bob's receipts and his reply
    assert lines(alice_history.messages(BOB)) == [
        (ALICE, True, "hi bob", "delivered"), (ALICE, True, "are you there?", "delivered"), (BOB, False, "yes!", "received"),
    ]  # fmt: skip
    # the newest `limit`, oldest first
    assert [i.text for i in alice_history.messages(BOB, limit=2)] == ["are you there?", "yes!"]
    assert alice_history.messages(BOB, limit=1)[0].id == reply.id


async def test_conversations_are_listed_newest_activity_first(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    await alice.send_text(BOB, "to bob")
    clock.advance(10)
    await carol.send_text(ALICE, "from carol")
    clock.advance(10)
    await alice.receive()
    history = History(alice.state)
    assert [(c.key, c.last_text, c.unread) for c in history.conversations()] == [(CAROL, "from carol", 1), (BOB, "to bob", 0)]
    clock.advance(10)
    await alice.send_text(BOB, "to bob again")
    assert [c.key for c in history.conversations()] == [BOB, CAROL]
    # receipts and typing notices are not messages
    await bob.receive()
    await bob.send_typing(ALICE)
    await alice.receive()
    assert [i.text for i in history.messages(BOB)] == ["to bob", "to bob again"]


async def test_texts_are_sealed_at_rest_and_a_moved_sealed_text_does_not_open(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    one = await alice.send_text(BOB, SECRET + " one")
    two = await alice.send_text(BOB, SECRET + " two")
    await bob.receive()
    for device in (alice, bob):
        assert SECRET.encode() not in state_files(device)
    # an attacker with the disk swaps the two sealed texts: they no longer open
    db = sqlite3.connect(alice.state.home / "state.db", isolation_level=None)
    (body_one,), (body_two,) = [db.execute("SELECT body FROM sent WHERE id = ?", (i,)).fetchone() for i in (one.id, two.id)]
    db.execute("UPDATE sent SET body = ? WHERE id = ?", (body_two, one.id))
    db.execute("UPDATE sent SET body = ? WHERE id = ?", (body_one, two.id))
    db.close()
    with pytest.raises(DecryptError):
        History(alice.state).messages(BOB)
    rc = await trio.to_thread.run_sync(cli.main, ["--home", str(alice.state.home), "history", BOB, "--json"])
    assert rc == 1 and json.loads(capsys.readouterr().out)["error"]["code"] == "device_state"


async def test_a_waiting_text_is_in_the_history_with_why_and_keeps_its_text_sent_or_failed(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock
) -> None:
    alpha, beta = alpha_beta
    alice, bob = await register(alpha, "alice"), await register(beta, "bob")
    history = History(alice.state)
    loopback.down[BETA] = UNREACHABLE
    waiting = await alice.send_text(BOB_B, "goes later")
    assert [(i.id, i.text, i.state, i.note) for i in history.messages(BOB_B)] == [(waiting.id, "goes later", "pending", UNREACHABLE[1])]
    del loopback.down[BETA]
    await alice.receive()  # sent by the next connection: its text stays in the history
    assert [(i.text, i.state, i.note) for i in history.messages(BOB_B)] == [("goes later", "sent", "")]
    await loopback.flush()
    assert texts(bob, await bob.receive()) == [(ALICE, "goes later")]

    loopback.down[BETA] = UNREACHABLE
    clock.advance(10)
    given_up = await alice.send_text(BOB_B, "never goes")
    clock.advance(PENDING_TTL_MS + 1)
    expire_pending(alice.state, clock())
    assert alice.state.pending_count() == 0
    [_sent, failed] = history.messages(BOB_B)
    assert (failed.id, failed.text, failed.state) == (given_up.id, "never goes", "failed") and failed.note


async def test_texts_of_the_accounts_other_device_are_mine_with_their_receipts(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    alice2 = make_device("alice2")
    await link_device(alice2, alice, alpha.url)
    await alice.receive()
    sent = await alice.send_text(BOB, "from my laptop")
    await alice2.receive()
    history = History(alice2.state)
    assert [(i.id, i.sender, i.mine, i.state) for i in history.messages(BOB)] == [(sent.id, ALICE, True, "sent")]
    assert history.unread(BOB) == {} and history.conversations()[0].unread == 0
    await bob.receive(read_receipts=True)
    await alice2.receive()
    assert [i.state for i in history.messages(BOB)] == ["read"]


async def test_an_upgraded_device_keeps_its_past_as_read_and_old_sent_texts_without_text(alpha: RunningNode, register: Register) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    sent = await alice.send_text(BOB, "before the history")
    await alice.send_text(BOB, "unread before")
    await bob.receive()
    # the state.db of a version before the history: without the columns it added
    for device in (alice, bob):
        device.state.close()
        db = sqlite3.connect(device.state.home / "state.db", isolation_level=None)
        for (index,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall():
            db.execute(f"DROP INDEX {index}")
        for table, column in (("sent", "body"), ("sent", "type"), ("inbox", "unread"), ("group_inbox", "unread"), ("group_sent", "body"), ("group_sent", "type")):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.close()
    old_alice, old_bob = DeviceState(alice.state.home, create=False), DeviceState(bob.state.home, create=False)
    try:
        assert [(i.id, i.text, i.state) for i in History(old_alice).messages(BOB)][0] == (sent.id, "", "accepted")
        assert History(old_bob).unread(ALICE) == {}
        assert [i.text for i in History(old_bob).messages(ALICE)] == ["before the history", "unread before"]
    finally:
        old_alice.close()
        old_bob.close()


# Groups ---------------------------------------------------------------------------------------


async def test_a_group_conversation_has_own_and_received_texts_and_is_found_by_name_or_id(
    alpha: RunningNode, register: Register, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    view = await alice.group_create("hikers", [BOB, CAROL])
    await bob.receive()
    await carol.receive()
    clock.advance(10)
    mine = await alice.group_send("hikers", "who is in for sunday?")
    clock.advance(10)
    await bob.group_send(view.id, "me")
    clock.advance(10)
    await carol.group_send(view.id, "me too")
    await alice.receive()
    history = History(alice.state)
    assert history.resolve("hikers") == history.resolve(view.id) == view.id
    items = history.messages("hikers")
    assert [(i.sender, i.mine, i.text) for i in items] == [(ALICE, True, "who is in for sunday?"), (BOB, False, "me"), (CAROL, False, "me too")]
    assert items[0].id == mine.id and items[0].state in ("ordered", "delivered")
    assert [i.state for i in items[1:]] == ["received", "received"] and {i.conversation for i in items} == {view.id}
    assert history.unread(view.id) == {BOB: [items[1].id], CAROL: [items[2].id]}
    [group] = [c for c in history.conversations() if c.is_group]
    assert (group.key, group.title, group.last_text, group.unread) == (view.id, "hikers", "me too", 2)
    history.mark_read(view.id)
    assert history.unread(view.id) == {} and [i.state for i in history.messages(view.id)][1:] == ["read", "read"]
    assert SECRET.encode() not in state_files(alice)

    await bob.receive()
    await carol.receive()
    await alice.receive()  # both receipts: alice's text delivered to every member device
    assert history.messages(view.id)[0].state == "delivered"
    # bob's history has alice's and carol's texts as theirs, his own as his
    assert [(i.sender, i.mine) for i in History(bob.state).messages(view.id)] == [(ALICE, False), (BOB, True), (CAROL, False)]

    rc = await trio.to_thread.run_sync(cli.main, ["--home", str(bob.state.home), "history", "hikers", "--json"])
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and [(o["from"], o["text"], o["mine"], o["group"]) for o in objects] == [
        (ALICE, "who is in for sunday?", False, {"id": view.id, "name": "hikers"}),
        (BOB, "me", True, {"id": view.id, "name": "hikers"}),
        (CAROL, "me too", False, {"id": view.id, "name": "hikers"}),
    ]
    assert all("to" not in o for o in objects)
    rc = await trio.to_thread.run_sync(cli.main, ["--home", str(bob.state.home), "history", view.id, "--limit", "1"])
    [line] = capsys.readouterr().out.splitlines()
    assert rc == 0 and f'{CAROL} in "hikers" ({view.id}): me too  (received; id ' in line


@asynccontextmanager
async def home_down(*_args: object, **_kwargs: object) -> AsyncIterator[None]:
    raise ConnectError("cannot connect to wss://alpha: connection refused")
    yield  # pragma: no cover - never reached


async def test_a_group_text_waiting_on_the_device_and_one_of_another_own_device_are_mine(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    alice2 = make_device("alice2")
    await link_device(alice2, alice, alpha.url)
    for device in (alice, alice2, bob):
        await device.receive()
    view = await alice.group_create("hikers", [BOB])
    for device in (alice2, bob):
        await device.receive()
    history = History(alice.state)
    with monkeypatch.context() as patch:
        patch.setattr("sonet.client.sdk.connect", home_down)
        waiting = await alice.group_send(view.id, SECRET)
    assert waiting.state == "pending"
    [item] = history.messages(view.id)
    assert (item.id, item.sender, item.mine, item.text, item.state) == (waiting.id, ALICE, True, SECRET, "pending") and item.note
    assert SECRET.encode() not in state_files(alice)
    clock.advance(10)
    from_laptop = await alice2.group_send(view.id, "from the laptop")
    await alice.receive()  # sends the waiting one, and gets the laptop's
    items = history.messages(view.id)
    assert [(i.id, i.sender, i.mine, i.state) for i in items] == [
        (waiting.id, ALICE, True, items[0].state), (from_laptop.id, ALICE, True, "ordered"),
    ]  # fmt: skip
    assert items[0].state in ("queued", "ordered") and items[0].note == ""
    assert history.unread(view.id) == {} and history.conversations()[0].unread == 0
    await bob.receive()
    assert [(i.sender, i.mine, i.text) for i in History(bob.state).messages(view.id)] == [(ALICE, False, SECRET), (ALICE, False, "from the laptop")]


async def test_resolve_refuses_what_is_not_a_conversation(alpha: RunningNode, register: Register) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.receive()
    history = History(alice.state)
    assert history.resolve("Bob@Alpha.Example") == BOB
    with pytest.raises(LocalProtocolError, match="no conversation 'nope'") as caught:
        history.resolve("nope")
    assert caught.value.code == "unknown_group"
    with pytest.raises(LocalProtocolError, match="invalid"):
        history.resolve("a@b@c")
    first = await alice.group_create("twins", [BOB])
    second = await alice.group_create("twins", [BOB])
    with pytest.raises(LocalProtocolError) as ambiguous:
        history.resolve("twins")
    assert ambiguous.value.code == "ambiguous_group" and first.id in str(ambiguous.value) and second.id in str(ambiguous.value)
    # a group without messages is a conversation too
    assert {c.key for c in history.conversations()} == {first.id, second.id} and history.messages(first.id) == []
    with pytest.raises(LocalProtocolError, match="no conversation") as unknown:
        history.messages("0" * 32)  # no group of that id here
    assert unknown.value.code == "unknown_group"


# The command line ----------------------------------------------------------------------------


async def test_sonet_history_prints_the_conversation_oldest_first(
    alpha: RunningNode, register: Register, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    sent = await alice.send_text(BOB, "one")
    clock.advance(10)
    await bob.receive()
    await bob.send_text(ALICE, "two")
    await alice.receive()
    home = str(alice.state.home)

    def main(argv: list[str]) -> int:
        try:
            return cli.main(argv)
        except SystemExit as exc:  # a usage error
            return int(exc.code or 0)

    async def sonet(*argv: str) -> tuple[int, str, str]:
        rc = await trio.to_thread.run_sync(main, ["--home", home, *argv])
        out, err = capsys.readouterr()
        return rc, out, err

    rc, out, err = await sonet("history", BOB, "--json")
    assert rc == 0 and err == ""
    objects = [json.loads(line) for line in out.splitlines()]
    assert [(o["from"], o["to"], o["text"], o["state"], o["type"]) for o in objects] == [
        (ALICE, BOB, "one", "delivered", "text"), (BOB, ALICE, "two", "received", "text"),
    ]  # fmt: skip
    assert objects[0]["id"] == sent.id.hex() and objects[0]["sent_at"].endswith("Z")

    rc, out, err = await sonet("history", BOB, "--limit", "1")
    assert rc == 0 and out.count("\n") == 1 and f"{BOB}: two" in out and "received" in out

    rc, out, err = await sonet("history", "nope", "--json")
    assert rc == 1 and json.loads(out)["error"]["code"] == "unknown_group"
    rc, out, err = await sonet("history", "nope")
    assert rc == 1 and out == "" and err.startswith("sonet: error: no conversation 'nope'") and err.count("\n") == 1
    rc, out, err = await sonet("history", CAROL)
    assert rc == 0 and out == "" and "no messages" in err
    rc, out, err = await sonet("history", BOB, "--limit", "0")
    assert rc == 2 and "--limit" in err


async def test_recv_with_read_receipts_marks_the_texts_read_in_the_history(alpha: RunningNode, register: Register) -> None:
    """`recv --read` shows the texts and says they were read: the history agrees (1:1 here; group
    texts go through the same receipt list)."""
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await alice.send_text(BOB, "one")
    await alice.send_text(BOB, "two")
    await bob.receive(read_receipts=True)
    history = History(bob.state)
    assert history.unread(ALICE) == {} and history.conversations()[0].unread == 0
    assert [(i.text, i.state) for i in history.messages(ALICE)] == [("one", "read"), ("two", "read")]
    await alice.send_text(BOB, "three")
    await bob.receive()  # without read receipts: unread
    assert [(i.text, i.state) for i in history.messages(ALICE)] == [("one", "read"), ("two", "read"), ("three", "received")]
