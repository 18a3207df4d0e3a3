"""What a member sees and keeps when a group changes or its nodes are down (docs/groups.md):
membership events shown by ``recv`` once each (client/groups/events.py), many messages on their
way at once, each made again in the order written after a ``stale_epoch`` (client/groups/engine.py),
and texts kept on the device while the home node cannot be reached (client/groups/waiting.py).
Real devices against in-process nodes (two federated over tests/client/loopback.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from sonet.client import cli
from sonet.client.cli_groups import group_event_line
from sonet.client.connection import ConnectError
from sonet.client.groups.events import GroupEvent
from sonet.client.sdk import Device, ReceiveResult
from sonet.core.errors import DecryptError, LocalProtocolError

from .conftest import ALICE, BETA, BOB, CAROL, HANG_S, link_device
from .loopback import Loopback
from tests.node.conftest import RunningNode

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]
ALPHA = "alpha.example"
BOB_B = f"bob@{BETA}"
SECRET = "a group text that waits 5c1e"


def events(device: Device, result: ReceiveResult) -> list[tuple[str, str | None, str | None]]:
    """(event, by, member) of the events in ``result``; marks them shown, as ``recv`` does."""
    device.state.mark_group_events_shown([(e.group, e.seq) for e in result.group_events])
    return [(e.event, e.by, e.member) for e in result.group_events]


def texts(device: Device, result: ReceiveResult) -> list[tuple[str, str]]:
    device.state.mark_group_messages_shown([(m.group, m.seq) for m in result.group_messages])
    return [(m.sender, m.text) for m in result.group_messages]


def state_files(device: Device) -> bytes:
    home: Path = device.state.home
    return b"".join(p.read_bytes() for p in sorted(home.iterdir()) if p.is_file())


@asynccontextmanager
async def home_down(*_args: object, **_kwargs: object) -> AsyncIterator[None]:
    raise ConnectError("cannot connect to wss://alpha: connection refused")
    yield  # pragma: no cover - never reached


# 1. Membership events ------------------------------------------------------------------------


async def test_members_are_told_who_joined_left_was_removed_and_what_changed_once_each(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    with trio.fail_after(HANG_S * 4):
        alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
        bob2 = make_device("bob2")
        await link_device(bob2, bob, alpha.url)
        for device in (alice, bob, bob2, carol):
            await device.receive()
        view = await alice.group_create("hikers", [BOB])
        got = await bob.receive()
        assert events(bob, got) == [("added", ALICE, BOB)]
        [added] = got.group_events
        assert added.group_name == "hikers" and added.group.hex() == view.id and added.received_at > 0
        assert events(bob, await bob.receive()) == []  # once

        await alice.group_add(view.id, [CAROL])
        assert events(carol, await carol.receive()) == [("added", ALICE, CAROL)]
        await alice.group_admin(view.id, CAROL)
        await carol.group_set(view.id, name="hill walkers", topic="sundays")
        await alice.group_remove(view.id, BOB)
        # alice's own changes are not news on her device; bob's laptop hears everything
        assert events(alice, await alice.receive()) == [("renamed", CAROL, None), ("topic", CAROL, None)]
        got = await bob2.receive()
        assert events(bob2, got) == [
            ("added", ALICE, BOB), ("added", ALICE, CAROL), ("admin", ALICE, CAROL), ("renamed", CAROL, None), ("topic", CAROL, None),
            ("removed", ALICE, BOB),
        ]  # fmt: skip
        renamed = got.group_events[3]
        assert (renamed.before, renamed.name, got.group_events[4].topic) == ("hikers", "hill walkers", "sundays")
        assert events(bob2, await bob2.receive()) == []
        assert not (await bob2.group_info(view.id)).active

        # carol leaves: alice's device commits it (nobody asked her to) and is told
        await carol.group_leave(view.id)
        assert events(alice, await alice.receive()) == []  # her device commits carol's leaving...
        assert events(alice, await alice.receive()) == [("left", CAROL, CAROL)]  # ...and the hub orders it
        # carol's own changes were not news to her; what her commands caught up with is, once
        assert events(carol, await carol.receive()) == [("admin", ALICE, CAROL), ("removed", ALICE, BOB), ("left", CAROL, CAROL)]
        assert not (await carol.group_info(view.id)).active

        for device in (alice, bob2, carol):  # what an event says is sealed at rest, like the group's name
            assert b"hill walkers" not in state_files(device) and b"sundays" not in state_files(device)


async def test_a_group_shown_by_its_id_before_its_name_came_is_named_when_it_comes(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ux11: `group create` names the group in a message after the Welcome; a member's recv
    between the two (or recv --follow, always) showed "you were added to ID" and nothing when the
    name came. Now a line then; when both came before a recv, the one line as before."""
    from sonet.client.groups.api import Groups

    async def recv(device: Device) -> list[str]:
        rc = await trio.to_thread.run_sync(cli.main, ["--home", str(device.state.home), "recv"])
        out, _err = capsys.readouterr()
        assert rc == 0
        return [line.split("] ", 1)[1] for line in out.splitlines()]

    with trio.fail_after(HANG_S * 4):
        alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
        for device in (alice, bob, carol):
            await device.receive()
        real = Groups._announce

        async def later(*args: object) -> None:  # the name's message is not there yet when bob looks
            pass

        monkeypatch.setattr(Groups, "_announce", later)
        view = await alice.group_create("hikers", [BOB])
        assert await recv(bob) == [f"you were added to {view.id} by {ALICE}"]
        monkeypatch.setattr(Groups, "_announce", real)
        await alice.group_set(view.id, topic="sundays")  # its group_state message carries the name
        assert await recv(bob) == [f"{ALICE} named {view.id} 'hikers'"]
        assert await recv(bob) == []

        await alice.group_add(view.id, [CAROL])  # the Welcome and the name before carol looks: one line
        assert await recv(carol) == [f'you were added to "hikers" ({view.id}) by {ALICE}']


async def test_recv_shows_a_removal_as_one_line_and_one_json_object(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S * 4):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        for device in (alice, bob):
            await device.receive()
        view = await alice.group_create("hikers", [BOB])
        await bob.receive()
        bob.state.mark_group_events_shown([(e.group, e.seq) for e in (await bob.receive()).group_events])
        await alice.group_remove(view.id, BOB)
        rc = await trio.to_thread.run_sync(cli.main, ["--home", str(bob.state.home), "recv", "--json"])
        out, _err = capsys.readouterr()
        lines = [json.loads(line) for line in out.splitlines()]
        assert rc == 0 and len(lines) == 1, out
        [removed] = lines
        assert {k: removed[k] for k in ("type", "event", "group", "by", "member")} == {
            "type": "group_event", "event": "removed", "group": {"id": view.id, "name": "hikers"}, "by": ALICE, "member": BOB,
        }
        assert removed["received_at"].endswith("Z")
        rc = await trio.to_thread.run_sync(cli.main, ["--home", str(bob.state.home), "recv"])
        out, err = capsys.readouterr()
        assert (rc, out, err) == (0, "", "no new messages\n")  # shown once


async def test_a_hub_move_is_told_to_the_members(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register
) -> None:
    with trio.fail_after(HANG_S * 4):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        await alice.receive()
        await bob.receive()
        view = await alice.group_create("moving", [BOB_B])
        await loopback.flush()
        assert events(bob, await bob.receive()) == [("added", ALICE, BOB_B)]
        await alice.group_hub(view.id, BETA)
        await loopback.flush()
        got = await bob.receive()
        assert [(e.event, e.by, e.hub) for e in got.group_events] == [("hub", ALICE, BETA)]


# 2. Many messages on their way ------------------------------------------------------------------


async def test_many_messages_wait_for_a_down_hub_and_arrive_once_in_the_order_written(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register
) -> None:
    with trio.fail_after(HANG_S * 4):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        await alice.receive()
        await bob.receive()
        view = await alice.group_create("far", [BOB_B])
        await loopback.flush()
        await bob.receive()

        loopback.down[ALPHA] = ("unreachable", f"cannot reach {ALPHA}: connection refused")
        bob.group_settle_s = 0  # no order can come from a hub that is down: each send returns "queued" without waiting for one
        sent = [await bob.group_send(view.id, f"bob {n}") for n in range(3)]
        assert [r.state for r in sent] == ["queued"] * 3  # the home node holds each: no group_busy
        assert [(m.id, m.state) for m in bob.state.all_sent_messages(3)] == [(r.id, "queued") for r in reversed(sent)]
        assert (await bob.group_info(view.id)).waiting

        # meanwhile the hub orders a commit: bob's three are of the epoch it ends
        await alice.group_admin(view.id, BOB_B)
        del loopback.down[ALPHA]
        await loopback.flush()  # beta -> alpha: refused stale_epoch; alpha -> beta: the commit, the verdicts
        await loopback.flush()
        await bob.receive()  # the commit, then the three made again, in order
        await loopback.flush()
        await loopback.flush()
        assert texts(alice, await alice.receive()) == [(BOB_B, "bob 0"), (BOB_B, "bob 1"), (BOB_B, "bob 2")]
        await bob.receive()
        assert not (await bob.group_info(view.id)).waiting
        assert {m.state for m in bob.state.all_sent_messages(3)} == {"ordered"}
        assert texts(alice, await alice.receive()) == []  # exactly once


async def test_a_message_written_after_an_own_commit_goes_after_it(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register
) -> None:
    with trio.fail_after(HANG_S * 4):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        carol = await register(alpha, "carol")
        for device in (alice, bob, carol):
            await device.receive()
        view = await alice.group_create("order", [BOB_B, CAROL])
        await alice.group_admin(view.id, BOB_B)
        await loopback.flush()
        await bob.receive()

        loopback.down[ALPHA] = ("unreachable", f"cannot reach {ALPHA}: connection refused")
        bob.group_settle_s = 0
        removed = await bob.group_remove(view.id, CAROL)  # on its way to alpha, which is down
        assert removed.waiting
        after = await bob.group_send(view.id, "after the add")
        assert (after.state, after.code) == ("pending", "group_busy")  # it waits for the commit, on the device
        assert [m.state for m in bob.state.all_sent_messages(1)] == ["pending"]
        del loopback.down[ALPHA]
        await loopback.flush()
        await loopback.flush()
        await bob.receive()  # the commit ordered: the text is made in its epoch and sent
        await loopback.flush()
        await loopback.flush()
        got = await alice.receive()
        assert texts(alice, got) == [(BOB_B, "after the add")]
        assert events(alice, got) == [("removed", BOB_B, CAROL)]
        assert got.group_events[0].seq < got.group_messages[0].seq


# 3. The home node unreachable -------------------------------------------------------------------


async def test_a_group_text_waits_sealed_while_the_home_node_is_down_and_goes_once(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S * 4):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        for device in (alice, bob):
            await device.receive()
        view = await alice.group_create("hikers", [BOB])
        await bob.receive()

        with monkeypatch.context() as patch:
            patch.setattr("sonet.client.sdk.connect", home_down)
            first = await alice.group_send("hikers", SECRET + " one")
            second = await alice.group_send(view.id, SECRET + " two")
        assert (first.state, first.code) == ("pending", "unreachable") and "connection refused" in first.message
        assert second.state == "pending"
        assert [(m.id, m.state) for m in alice.state.all_sent_messages(2)] == [(second.id, "pending"), (first.id, "pending")]
        assert SECRET.encode() not in state_files(alice)

        # meanwhile bob changes nothing, alice's node is back: any command that connects sends them
        await bob.group_send(view.id, "from bob meanwhile")
        await alice.receive()
        assert alice.notices[-2:] == [
            f'sent the message to the group hikers that waited on this device; id {first.id.hex()}',
            f'sent the message to the group hikers that waited on this device; id {second.id.hex()}',
        ]
        got = await bob.receive()
        assert texts(bob, got) == [(ALICE, SECRET + " one"), (ALICE, SECRET + " two")]
        assert texts(bob, await bob.receive()) == []
        await alice.receive()  # bob's receipts
        assert [(m.id, m.state) for m in alice.state.all_sent_messages(2)] == [(second.id, "delivered"), (first.id, "delivered")]


async def test_a_waiting_group_text_is_made_in_the_epoch_the_device_is_in_when_it_goes(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S * 4):
        alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
        for device in (alice, bob, carol):
            await device.receive()
        view = await alice.group_create("hikers", [BOB])
        await bob.receive()
        with monkeypatch.context() as patch:
            patch.setattr("sonet.client.sdk.connect", home_down)
            waiting = await bob.group_send(view.id, "written offline")
        assert waiting.state == "pending"
        await alice.group_add(view.id, [CAROL])  # a new epoch bob has not seen
        await carol.receive()
        result = await bob.group_send(view.id, "written online")  # connecting sends the waiting one first
        assert result.state == "ordered"
        await bob.receive()
        for device in (alice, carol):
            assert texts(device, await device.receive()) == [(BOB, "written offline"), (BOB, "written online")]


async def test_the_cli_says_a_group_text_waits_on_the_device(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S * 4):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        for device in (alice, bob):
            await device.receive()
        view = await alice.group_create("hikers", [BOB])
        monkeypatch.setattr("sonet.client.sdk.connect", home_down)
        rc = await trio.to_thread.run_sync(cli.main, ["--home", str(alice.state.home), "send", "hikers", "later"])
        out, err = capsys.readouterr()
        assert rc == 0 and err == ""
        assert out.startswith(
            "queued on this device: cannot connect to wss://alpha: connection refused; it is sent by itself the next time this device "
            "connects (`sonet sent` shows it as pending); id "
        ), out
        rc = await trio.to_thread.run_sync(cli.main, ["--home", str(alice.state.home), "send", view.id, "later too", "--json"])
        out, _err = capsys.readouterr()
        [sent] = [json.loads(line) for line in out.splitlines()]
        assert rc == 0 and (sent["state"], sent["code"], sent["group"]) == ("pending", "unreachable", {"id": view.id, "name": "hikers"})
        rc = await trio.to_thread.run_sync(cli.main, ["--home", str(alice.state.home), "sent", "--json"])
        out, _err = capsys.readouterr()
        listed = [json.loads(line) for line in out.splitlines()]
        assert [(m["state"], m["refreshed"]) for m in listed[:2]] == [("pending", False), ("pending", False)]


def test_a_group_event_line_names_the_group_and_who() -> None:
    group = bytes(range(16))
    event = GroupEvent(group=group, seq=3, event="removed", by=ALICE, member=BOB, received_at=0, group_name="hikers")
    assert group_event_line(event, BOB) == f'[1970-01-01T00:00:00.000Z] you were removed from "hikers" ({group.hex()}) by {ALICE}'
    assert group_event_line(event, CAROL) == f'[1970-01-01T00:00:00.000Z] {ALICE} removed {BOB} from "hikers" ({group.hex()})'


async def test_waiting_texts_are_capped_and_sealed_to_their_place(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S * 4):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        for device in (alice, bob):
            await device.receive()
        view = await alice.group_create("hikers", [BOB])
        await bob.receive()
        await alice.group_remove(view.id, BOB)
        await bob.receive()  # he was added, then removed: two events, not shown yet
        monkeypatch.setattr("sonet.client.sdk.connect", home_down)
        monkeypatch.setattr("sonet.client.groups.api.MAX_PENDING", 2)
        kept = [await alice.group_send(view.id, f"kept {n}") for n in range(2)]
        assert [k.state for k in kept] == ["pending", "pending"]
        with pytest.raises(LocalProtocolError) as full:
            await alice.group_send(view.id, "one too many")
        assert full.value.code == "pending_full" and len(alice.state.all_sent_messages(5)) == 2  # nothing kept of it

        # a sealed waiting text moved to another place in the queue does not open
        db = alice.state._db
        db.execute("UPDATE mls_sends SET pos = 5 WHERE pos = 0")
        with pytest.raises(DecryptError):
            alice.state.group_record(bytes.fromhex(view.id))
        db.execute("UPDATE mls_sends SET pos = 0 WHERE pos = 5")
        assert [s.op["op"] for s in alice.state.group_record(bytes.fromhex(view.id)).sends] == ["send", "send"]  # type: ignore[union-attr]
        # nor does a sealed event moved to another item (bob's)
        bob_db = bob.state._db
        assert bob_db.execute("SELECT count(*) FROM group_events WHERE shown = 0").fetchone()[0] == 2
        bob_db.execute("UPDATE group_events SET seq = seq + 100")
        with pytest.raises(DecryptError):
            bob.state.unshown_group_events()
        bob_db.execute("UPDATE group_events SET seq = seq - 100")
        assert [e.event for e in bob.state.unshown_group_events()] == ["added", "removed"]
