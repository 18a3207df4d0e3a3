"""Groups on real devices against a real node in the test process (client/groups/, docs/groups.md):
alice creates a group with bob (two devices), everyone sends, and every device receives every
other device's messages exactly once, in one order shared by all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sonet.client.sdk import Device, ReceiveResult

from .conftest import ALICE, BOB, RunningNode, link_device


def group_texts(device: Device, result: ReceiveResult) -> list[tuple[str, int, str, str]]:
    """(group name, seq, sender, text) of the group messages in ``result``; marks them shown."""
    device.state.mark_group_messages_shown([(m.group, m.seq) for m in result.group_messages])
    return [(m.group_name, m.seq, m.sender, m.text) for m in result.group_messages]


async def test_a_group_of_three_devices_agrees_on_one_order(
    alpha: RunningNode, register: Callable[..., Awaitable[Device]], make_device: Callable[..., Device]
) -> None:
    alice = await register(alpha, "alice")
    bob = await register(alpha, "bob")
    bob2 = make_device("bob2")
    await link_device(bob2, bob, alpha.url)
    for device in (alice, bob, bob2):  # KeyPackages go up with the first receive
        await device.receive()

    view = await alice.group_create("hikers", [BOB])
    assert view.name == "hikers" and view.members == (ALICE, BOB) and view.admins == (ALICE,) and view.hub == alpha.config.name
    assert not view.waiting

    for device in (bob, bob2):
        await device.receive()
        [joined] = await device.groups()
        assert joined.id == view.id and joined.name == "hikers" and joined.epoch == 1

    sent = {"alice": await alice.group_send("hikers", "hello from alice")}
    sent["bob"] = await bob.group_send(view.id, "hello from bob's phone")
    sent["bob2"] = await bob2.group_send("hikers", "hello from bob's laptop")
    assert {r.state for r in sent.values()} == {"ordered"}

    seen = {}
    for name, device in (("alice", alice), ("bob", bob), ("bob2", bob2)):
        seen[name] = group_texts(device, await device.receive())
        assert group_texts(device, await device.receive()) == []  # exactly once
    everything = [("hikers", 3, ALICE, "hello from alice"), ("hikers", 4, BOB, "hello from bob's phone"),
                  ("hikers", 5, BOB, "hello from bob's laptop")]
    assert seen["alice"] == everything[1:]
    assert seen["bob"] == [everything[0], everything[2]]
    assert seen["bob2"] == everything[:2]

    info = await bob2.group_info("hikers")
    assert [(m.account, m.devices, m.admin) for m in info.members] == [(ALICE, (1,), True), (BOB, (1, 2), False)]
    assert info.suite == "0x004d" and info.epoch == 1
