"""Polls, votes and closes, locations, contact cards, events and call signals (issue 17 item 6;
client/polls.py, client/rich_fields.py, client/cli_rich.py): sent 1:1 and in groups, shown by
recv and history, the poll's result the same on every device; refusals before anything is
sent, and forged votes or closes counted by nobody. Real devices against an in-process node."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client import cli
from sonet.client.history import History, HistoryItem
from sonet.client.rich_fields import call_of, rich_content, rich_fields
from sonet.client.sdk import Device
from sonet.core.address import parse_address
from sonet.core.call import CONNECTED, INCOMING, incoming_call, start_call, step
from sonet.core.cards import ContactCard, Event, Location
from sonet.core.content import Content, encode_content
from sonet.core.envelope import Kind
from sonet.core.errors import LocalProtocolError
from sonet.core.poll import Poll
from tests.node.conftest import RunningNode

from .conftest import ALICE, BETA, BOB, CAROL, Clock, link_device, shown
from .loopback import Loopback

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")


async def refused(code: str, call: Awaitable[object]) -> str:
    with pytest.raises(LocalProtocolError) as info:
        await call
    assert info.value.code == code, info.value
    return str(info.value)


async def _send_raw(device: Device, to: str, content: Content) -> None:
    """Send ``content`` as a modified client would, without the SDK's checks."""
    profile = device.state.profile()
    async with device._connect(profile) as conn:
        await device._deliver(conn, profile, parse_address(to), encode_content(content), None, content.id, Kind.SEALED)


def _poll_item(device: Device, conversation: str, poll_id: bytes) -> HistoryItem:
    [item] = [i for i in History(device.state).messages(conversation) if i.id == poll_id]
    return item


async def test_a_poll_with_three_options_two_votes_and_a_close_shows_the_same_result_on_every_device(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    alice2 = make_device("alice2")
    await link_device(alice2, alice, alpha.url)
    await alice.receive()
    asked = await alice.send_poll(BOB, "Lunch?", ["pizza", "sushi", "salad"])
    assert (asked.type, asked.conversation, asked.is_group, asked.state) == ("poll", BOB, False, "accepted")
    got = shown(bob, await bob.receive())
    assert [(s, k, f["poll"]["options"]) for s, k, f in got] == [(ALICE, "poll", ["pizza", "sushi", "salad"])]
    clock.advance(10)
    await alice.vote(asked.id, "1")
    await bob.vote(asked.id, "pizza")
    clock.advance(10)
    await bob.vote(asked.id, "3")  # bob changes his mind: a single-choice poll keeps the newest
    await alice2.receive()
    clock.advance(10)
    closed, poll, result = await alice.close_poll(asked.id)
    assert (closed.type, closed.refers_to, poll.question, result.closed) == ("poll_close", asked.id, "Lunch?", True)
    for device in (alice, bob, alice2):
        await device.receive()

    results = set()
    for device in (alice, bob, alice2):
        item = _poll_item(device, BOB if device is not bob else ALICE, asked.id)
        assert item.type == "poll" and item.data == {"question": "Lunch?", "options": ["pizza", "sushi", "salad"], "multiple": False}
        assert item.poll_result is not None
        results.add(item.poll_result)
        assert device.poll_result(asked.id)[1] == item.poll_result  # the SDK counts as the history does
    [result] = results
    assert result.voters == ((ALICE,), (), (BOB,)) and result.closed

    # after the close: refused here, and a modified client's vote is counted by nobody
    assert "closed" in await refused("poll_closed", bob.vote(asked.id, "2"))
    await refused("poll_closed", alice.close_poll(asked.id))
    clock.advance(10)
    await _send_raw(bob, ALICE, Content.make_vote(id=bob._rng(16), sent_at=clock(), refers_to=asked.id, option=1))
    await alice.receive()
    after = _poll_item(alice, BOB, asked.id).poll_result
    assert after is not None and (after.voters, after.closed_at, after.ignored) == (result.voters, result.closed_at, 1)


async def test_votes_and_closes_are_checked_before_sending_and_forged_ones_count_for_nothing(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    text = await alice.send_text(BOB, "not a poll")
    asked = await alice.send_poll(BOB, "Days?", ["mo", "tu", "we"], multiple=True)
    await bob.receive()
    await refused("not_a_poll", bob.vote(text.id, "1"))
    await refused("not_a_poll", alice.close_poll(text.id))
    assert "1. mo, 2. tu, 3. we" in await refused("bad_option", bob.vote(asked.id, "4"))
    await refused("bad_option", bob.vote(asked.id, "0"))
    await refused("bad_option", bob.vote(asked.id, "thursday"))
    await refused("unknown_message", bob.vote(bytes(16), "1"))
    assert "only its author" in await refused("not_author", bob.close_poll(asked.id))
    with pytest.raises(LocalProtocolError) as info:
        await bob.send_poll(ALICE, "Only one?", ["yes"])
    assert "2..10 options" in str(info.value)

    # a modified client: a close by bob, a vote for an option out of range, a vote on a text
    clock.advance(10)
    for forged in (
        Content.make_poll_close(id=bob._rng(16), sent_at=clock(), refers_to=asked.id),
        Content.make_vote(id=bob._rng(16), sent_at=clock(), refers_to=asked.id, option=7),
        Content.make_vote(id=bob._rng(16), sent_at=clock(), refers_to=text.id, option=0),
    ):
        await _send_raw(bob, ALICE, forged)
    clock.advance(10)
    await bob.vote(asked.id, "1")
    await bob.vote(asked.id, "we")  # several choices
    await alice.receive()
    result = _poll_item(alice, BOB, asked.id).poll_result
    assert result is not None and result.voters == ((BOB,), (), (BOB,)) and not result.closed and result.ignored == 2
    [plain] = [i for i in History(alice.state).messages(BOB) if i.id == text.id]
    assert plain.text == "not a poll" and plain.poll_result is None


async def test_a_group_poll_counts_alike_for_every_member(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    view = await alice.group_create("hikers", [BOB, CAROL])
    await bob.receive()
    await carol.receive()
    asked = await alice.send_poll("hikers", "Where?", ["lake", "peak", "forest"])
    assert asked.is_group and asked.conversation == view.id
    await bob.receive()
    await carol.receive()
    clock.advance(10)
    await bob.vote(asked.id, "2")
    await carol.vote(asked.id, "2")
    await alice.receive()
    clock.advance(10)
    await alice.close_poll(asked.id)
    for device in (alice, bob, carol):
        await device.receive()
    results = {_poll_item(d, view.id, asked.id).poll_result for d in (alice, bob, carol)}
    [result] = results
    assert result is not None and result.counts == (0, 2, 0) and result.voters[1] == (BOB, CAROL) and result.closed


async def test_location_contact_and_event_go_1to1_and_to_groups_and_show_in_history(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    where = Location(lat=525_163_000, lon=133_777_000, accuracy=20, label="Brandenburger Tor")
    card = ContactCard(name="Carol", addresses=(CAROL,))
    event = Event(title="Standup", start=clock() + 3_600_000, end=clock() + 4_500_000, place="Room 1")
    sent = [await alice.send_location(BOB, where), await alice.send_contact(BOB, card), await alice.send_event(BOB, event)]
    got = shown(bob, await bob.receive())
    assert [(k, f.get(k)) for _s, k, f in got] == [
        ("location", where.to_map()), ("contact", {"name": "Carol", "addresses": [CAROL]}), ("event", event.to_map()),
    ]  # fmt: skip
    await alice.receive()  # bob's device receipted them as messages one reads
    assert [alice.state.sent_message(s.id).state for s in sent] == ["delivered"] * 3  # type: ignore[union-attr]
    items = History(bob.state).messages(ALICE)
    assert [(i.id, i.type, i.data) for i in items] == [(s.id, s.type, f[s.type]) for s, (_x, _k, f) in zip(sent, got)]
    with pytest.raises(LocalProtocolError) as info:
        await alice.send_contact(BOB, ContactCard(name="", addresses=()))
    assert "1..8 addresses" in str(info.value)
    [conversation] = History(bob.state).conversations()
    assert conversation.last_text.startswith("shared an event: 'Standup'")


async def test_a_poll_and_votes_to_a_contact_whose_node_is_down_wait_and_go_in_order(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock
) -> None:
    alpha, beta = alpha_beta
    alice, bob = await register(alpha, "alice"), await register(beta, "bob")
    bob_b = f"bob@{BETA}"
    loopback.down[BETA] = ("unreachable", f"cannot reach {BETA}: connection refused")
    asked = await alice.send_poll(bob_b, "Where?", ["lake", "peak"])
    assert (asked.state, asked.code) == ("pending", "unreachable")
    clock.advance(10)
    vote = await alice.vote(asked.id, "peak")
    closed, _poll, result = await alice.close_poll(asked.id)
    assert (vote.state, closed.state, result.counts, result.closed) == ("pending", "pending", (0, 1), True)

    del loopback.down[BETA]
    await alice.receive()  # connecting sends what waited, in the order written
    assert [m.state for m in alice.state.sent_messages(3)] == ["sent"] * 3
    await loopback.flush()
    await bob.receive()
    got = _poll_item(bob, ALICE, asked.id).poll_result
    assert got is not None and (got.voters, got.closed) == (((), (ALICE,)), True)


async def test_a_deleted_poll_is_erased_whichever_comes_first(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    late_id = alice._rng(16)
    # the delete comes first (as when the sender's other device wrote it): kept; the poll erased on arrival
    await _send_raw(alice, BOB, Content.make_delete(id=alice._rng(16), sent_at=clock() + 5, refers_to=late_id))
    await _send_raw(alice, BOB, Content.make_poll(id=late_id, sent_at=clock(), poll=Poll(question="Secret?", options=("a", "b"))))
    asked = await alice.send_location(BOB, Location(lat=1, lon=2, label="secret place"))
    await bob.receive()
    await alice.delete(asked.id, everyone=True)
    await bob.receive()
    for msg_id in (late_id, asked.id):
        found = bob.state.find_message(msg_id, ALICE)
        assert found is not None and bob.state.message_text(found) == {}
    assert [(i.type, i.deleted, i.data) for i in History(bob.state).messages(ALICE)] == [("poll", True, None), ("location", True, None)]
    await refused("deleted", bob.vote(late_id, "a"))


def test_what_waits_on_the_device_comes_back_as_the_same_content() -> None:
    """A 1:1 poll, vote or close that could not go now is rebuilt from its kept fields
    (client/gestures.py waiting_content)."""
    poll_id, other = bytes(range(16)), bytes(range(1, 17))
    for content in (
        Content.make_poll(id=poll_id, sent_at=5, poll=Poll(question="Q?", options=("a", "b"), multiple=True)),
        Content.make_vote(id=other, sent_at=6, refers_to=poll_id, option=1, remove=True),
        Content.make_poll_close(id=other, sent_at=7, refers_to=poll_id),
        Content.make_location(id=other, sent_at=8, location=Location(lat=1, lon=-2, accuracy=3, label="x")),
        Content.make_event(id=other, sent_at=9, event=Event(title="t", start=10, end=0, place="")),
    ):
        from sonet.client.state_history import content_fields

        kept = json.loads(json.dumps(content_fields(content)))  # the kept form is plain data
        assert rich_content(content.type, content.id, content.sent_at, kept) == content
    assert rich_fields(Content.make_text(id=poll_id, sent_at=1, text="t")) == {}


async def test_call_signals_go_end_to_end_and_drive_the_state_machine(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    out = start_call(alice._rng(16), BOB, "v=0\r\ns=alice\r\n", now=clock())
    assert await alice.send_call_signal(BOB, out.send[0]) == 1
    [(sender, kind, fields)] = shown(bob, await bob.receive())
    assert (sender, kind) == (ALICE, "call")
    offer = call_of(fields)
    assert offer == out.send[0]
    came = incoming_call(offer, ALICE, now=clock())
    assert came.call.state == INCOMING
    answered = step(came.call, clock(), local="answer", data="v=0\r\ns=bob\r\n")
    await bob.send_call_signal(ALICE, answered.send[0])
    [(_s, _k, fields)] = shown(alice, await alice.receive())
    signal = call_of(fields)
    assert signal is not None
    assert step(out.call, clock(), remote=signal).call.state == CONNECTED
    assert History(bob.state).messages(ALICE) == []  # signalling is no message of the conversation
    with pytest.raises(LocalProtocolError):
        await alice.send_call_signal(ALICE, out.send[0])


async def _cli(capsys: pytest.CaptureFixture[str], device: Device, *argv: str) -> tuple[int, list[dict]]:
    rc = await trio.to_thread.run_sync(cli.main, ["--home", str(device.state.home), *argv, "--json"])
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return rc, [o for o in objects if o.get("type") != "receipt"]


async def test_the_commands_and_what_recv_and_history_print(
    alpha: RunningNode, register: Register, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    rc, [poll] = await _cli(capsys, alice, "poll", BOB, "Lunch?", "pizza", "sushi", "salad")
    assert rc == 0 and (poll["type"], poll["to"], poll["state"], poll["poll"]["options"]) == ("poll", BOB, "accepted", ["pizza", "sushi", "salad"])
    rc, [got] = await _cli(capsys, bob, "recv")
    assert (got["type"], got["id"], got["poll"]["question"]) == ("poll", poll["id"], "Lunch?")
    rc, [vote] = await _cli(capsys, bob, "vote", poll["id"], "sushi")
    assert rc == 0 and (vote["type"], vote["refers_to"], vote["option"], vote["remove"]) == ("vote", poll["id"], 2, False)
    rc, [error] = await _cli(capsys, bob, "vote", poll["id"], "9")
    assert rc == 1 and error["error"]["code"] == "bad_option"
    rc, [error] = await _cli(capsys, bob, "poll-close", poll["id"])
    assert rc == 1 and error["error"]["code"] == "not_author"
    rc, got = await _cli(capsys, alice, "recv")
    assert [(o["type"], o["refers_to"], o["option"]) for o in got] == [("vote", poll["id"], 2)]
    rc, [closed] = await _cli(capsys, alice, "poll-close", poll["id"])
    assert rc == 0 and closed["type"] == "poll_close" and closed["poll"]["closed"] is True
    assert [(o["option"], o["text"], o["votes"], o["voters"]) for o in closed["poll"]["options"]] == [
        (1, "pizza", 0, []), (2, "sushi", 1, [BOB]), (3, "salad", 0, []),
    ]  # fmt: skip
    await _cli(capsys, bob, "recv")
    for device, peer in ((alice, BOB), (bob, ALICE)):
        rc, [item] = await _cli(capsys, device, "history", peer)
        assert (item["type"], item["poll"]["closed"], [o["votes"] for o in item["poll"]["options"]]) == ("poll", True, [0, 1, 0])
    rc = await trio.to_thread.run_sync(cli.main, ["--home", str(bob.state.home), "history", ALICE])
    assert "poll: Lunch? [1. pizza (0); 2. sushi (1); 3. salad (0), closed]" in capsys.readouterr().out

    rc, [loc] = await _cli(capsys, alice, "location", BOB, "-33.8568", "151.2153", "--label", "Opera House", "--accuracy", "10")
    assert rc == 0 and loc["location"] == {"lat": -33.8568, "lon": 151.2153, "accuracy": 10, "label": "Opera House"}
    rc, [contact] = await _cli(capsys, alice, "contact", BOB, CAROL, "--name", "Carol")
    assert rc == 0 and contact["contact"] == {"name": "Carol", "addresses": [CAROL]}
    rc, [event] = await _cli(capsys, alice, "event", BOB, "Standup", "--at", "2027-01-04T09:00Z", "--place", "Room 1")
    assert rc == 0 and event["event"] == {"title": "Standup", "start_at": "2027-01-04T09:00:00.000Z", "end_at": None, "place": "Room 1"}
    rc, got = await _cli(capsys, bob, "recv")
    assert [(o["type"], o["id"]) for o in got] == [("location", loc["id"]), ("contact", contact["id"]), ("event", event["id"])]
    assert got[0]["location"] == loc["location"] and got[1]["contact"] == contact["contact"] and got[2]["event"] == event["event"]
    rc = await trio.to_thread.run_sync(cli.main, ["--home", str(bob.state.home), "recv"])
    rc, history = await _cli(capsys, bob, "history", ALICE)
    assert [o["type"] for o in history] == ["poll", "location", "contact", "event"] and history[1]["location"] == loc["location"]

    for argv, code in (
        (("location", BOB, "91", "0"), "usage"), (("location", BOB, "north", "0"), "usage"),
        (("event", BOB, "Late", "--at", "tomorrow"), "usage"), (("contact", BOB, "not-an-address"), "bad_address"),
        (("poll", BOB, "One?", "only"), "usage"), (("vote", "abc", "1"), "usage"), (("poll", BOB, "x" * 600, "a", "b"), "bad_input"),
    ):  # fmt: skip
        rc, [error] = await _cli(capsys, alice, *argv)
        assert (rc, error["error"]["code"]) == (2 if code == "usage" else 1, code), (argv, error)


def test_history_and_the_chat_app_draw_a_poll_with_its_result_and_the_other_types() -> None:
    from sonet.client.cli_rich import rich_history_text
    from sonet.core.poll import tally

    poll = Poll(question="Lunch?", options=("pizza", "sushi"))
    base = dict(id=bytes(16), conversation=BOB, sender=ALICE, mine=True, at=0, text="", state="read", note="")
    item = HistoryItem(type="poll", data=poll.to_map(), poll_result=tally(poll, ALICE, []), **base)  # type: ignore[arg-type]
    assert rich_history_text(item) == "poll: Lunch? [1. pizza (0); 2. sushi (0)]"
    where = HistoryItem(type="location", data=Location(lat=-338_568_000, lon=1_512_153_000, label="Opera").to_map(), **base)  # type: ignore[arg-type]
    assert rich_history_text(where) == "shared a location 'Opera': -33.8568, 151.2153"
    assert rich_history_text(HistoryItem(type="text", **base)) is None  # type: ignore[arg-type]
