"""A file, a poll and the other messages of issue 17 in a group count as unread and are receipted
like group texts (client/state_history.py READ_TYPES, client/groups/engine.py, client/groups/
store.py); a vote (a gesture on the poll) is neither. Real devices against an in-process node."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sonet.client.history import History
from sonet.client.sdk import Device, SentMessage
from sonet.core.cards import Location

from .conftest import BOB, CAROL, RunningNode

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]


def _unread(device: Device, group_id: str) -> int:
    [conversation] = [c for c in History(device.state).conversations() if c.key == group_id]
    return conversation.unread


async def _sent(device: Device) -> dict[bytes, SentMessage]:
    return {m.id: m for m in await device.sent() if m.group is not None}


async def test_a_poll_a_file_and_a_location_in_a_group_are_unread_and_receipted_a_vote_is_not(
    alpha: RunningNode, register: Register, tmp_path: Path
) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    view = await alice.group_create("hikers", [BOB, CAROL])
    await bob.receive()
    await carol.receive()

    path = tmp_path / "route.gpx"
    path.write_bytes(b"<gpx/>" * 1000)
    poll = await alice.send_poll("hikers", "Which trail?", ["north", "south"])
    file = await alice.group_send_file("hikers", path, "the route")
    place = await alice.send_location("hikers", Location(lat=525163000, lon=133777000, accuracy=0, label="start"))
    ids = (poll.id, file.id, place.id)

    await bob.receive()  # delivered only
    await carol.receive(read_receipts=True)  # delivered and read
    assert _unread(bob, view.id) == 3 and _unread(carol, view.id) == 0
    sent = await _sent(alice)
    assert [(sent[i].type, sent[i].devices, sent[i].delivered, sent[i].read) for i in ids] == [
        ("poll", 2, 2, 1), ("file", 2, 2, 1), ("location", 2, 2, 1),
    ]  # fmt: skip
    assert [sent[i].state for i in ids] == ["delivered"] * 3

    vote = await carol.vote(poll.id, "south")
    await bob.receive()
    assert _unread(bob, view.id) == 3  # a vote changes the poll: it is not a message to read
    assert [m.delivered for m in (await _sent(carol)).values() if m.id == vote.id] == [0]  # and nobody receipts it

    assert set(History(bob.state).unread(view.id)) == {alice.state.profile().address}
    assert sorted(History(bob.state).unread(view.id)[alice.state.profile().address]) == sorted(ids)
    History(bob.state).mark_read(view.id)
    assert _unread(bob, view.id) == 0
