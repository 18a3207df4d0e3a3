"""Groups on real devices against a real node in the test process (client/groups/, docs/groups.md):
alice creates a group with bob (two devices), everyone sends, and every device receives every
other device's messages exactly once, in one order shared by all."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sonet.client.groups.keys import new_key_package
from sonet.client.sdk import Device, ReceiveResult
from sonet.client.state import DeviceState, Profile
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey
from sonet.core.errors import LocalProtocolError

from .conftest import ALICE, BETA, BOB, CAROL, RunningNode, link_device
from .loopback import Loopback

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

BOB_B = f"bob@{BETA}"


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

    for device in (alice, bob, bob2):  # the group's state, name and messages are sealed at rest
        stored = b"".join(path.read_bytes() for path in device.state.home.iterdir() if path.name.startswith("state.db"))
        assert b"hikers" not in stored and b"hello from" not in stored

    info = await bob2.group_info("hikers")
    assert [(m.account, m.devices, m.admin) for m in info.members] == [(ALICE, (1,), True), (BOB, (1, 2), False)]
    assert info.suite == "0x004d" and info.epoch == 1


async def test_admins_add_and_remove_members_leave_and_refusals(alpha: RunningNode, register: Callable[..., Awaitable[Device]]) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    view = await alice.group_create("book club", [BOB])
    await bob.receive()

    # bob is no admin: the hub refuses his adding carol, and his device drops the change
    with pytest.raises(LocalProtocolError) as refused:
        await bob.group_add("book club", [CAROL])
    assert refused.value.code == "not_allowed" and f"only an admin adds devices of another account ({CAROL})" in str(refused.value)
    assert not (await bob.group_info(view.id)).waiting

    added = await alice.group_add(view.id, [CAROL])
    assert added.members == (ALICE, BOB, CAROL) and added.epoch == 2
    await carol.receive()
    assert (await carol.group_info(view.id)).name == "book club"  # alice named it again for the newcomers

    assert (await alice.group_admin("book club", BOB)).admins == (ALICE, BOB)
    await bob.receive()
    assert (await bob.group_remove("book club", CAROL)).members == (ALICE, BOB)
    await carol.receive()
    [gone] = await carol.groups()
    assert not gone.active
    with pytest.raises(LocalProtocolError) as not_member:
        await carol.group_send(view.id, "still here?")
    assert not_member.value.code == "not_member"

    await bob.group_leave("book club")  # a proposal: alice, the first member staying, commits it
    await alice.receive()
    assert (await alice.group_info(view.id)).waiting  # her commit is on its way
    await bob.receive()
    assert not (await bob.group_info(view.id)).active
    await alice.receive()  # her commit came back ordered
    info = await alice.group_info(view.id)
    assert [m.account for m in info.members] == [ALICE] and not info.waiting and info.epoch == 5

    await alice.group_send("book club", "just me now")
    assert group_texts(bob, await bob.receive()) == []

    # carol, removed before, is added again: her device joins by the new Welcome
    await alice.group_add(view.id, [CAROL])
    await alice.group_send(view.id, "welcome back")
    assert group_texts(carol, await carol.receive()) == [("book club", 12, ALICE, "welcome back")]
    back = await carol.group_info(view.id)
    assert back.active and [m.account for m in back.members] == [ALICE, CAROL]


async def test_user_mistakes_are_one_line_errors(alpha: RunningNode, register: Callable[..., Awaitable[Device]]) -> None:
    alice = await register(alpha, "alice")
    bob = await register(alpha, "bob")
    await bob.receive()
    with pytest.raises(LocalProtocolError, match="no group 'nope' on this device") as unknown:
        await alice.group_send("nope", "hi")
    assert unknown.value.code == "unknown_group"
    first = await alice.group_create("twins", [BOB])
    second = await alice.group_create("twins", [])
    with pytest.raises(LocalProtocolError, match="2 groups are named 'twins'"):
        await alice.group_info("twins")
    assert (await alice.group_info(second.id)).members[0].account == ALICE
    with pytest.raises(LocalProtocolError, match="empty message"):
        await alice.group_send(first.id, "")
    with pytest.raises(LocalProtocolError, match="use `group leave`"):
        await alice.group_remove(first.id, ALICE)
    with pytest.raises(LocalProtocolError) as same_hub:
        await alice.group_hub(first.id, alpha.config.name)
    assert same_hub.value.code == "nothing_to_do"
    with pytest.raises(LocalProtocolError, match="a group name is 1 to 128 bytes"):
        await alice.group_create("", [BOB])
    with pytest.raises(LocalProtocolError) as not_member:
        await alice.group_admin(first.id, "carol@" + alpha.config.name)
    assert not_member.value.code == "not_member"


async def test_a_group_across_two_nodes(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Callable[..., Awaitable[Device]]
) -> None:
    alpha, beta = alpha_beta
    alice, bob = await register(alpha, "alice"), await register(beta, "bob")
    await alice.receive()
    await bob.receive()
    view = await alice.group_create("far apart", [BOB_B])  # hub: alpha; the Welcome goes to beta
    assert view.members == (ALICE, BOB_B) and view.hub == "alpha.example"
    await loopback.flush()
    await bob.receive()
    [joined] = await bob.groups()
    assert joined.id == view.id and joined.name == "far apart"
    # the Welcome went without the ratchet tree: bob's device fetched it from the hub through beta
    assert ("beta.example", "FetchGroupTree", "alpha.example") in loopback.calls

    bob.group_settle_s = 0  # his message waits in beta's outbox for alpha, the hub
    sent = await bob.group_send(view.id, "hello from beta")
    assert sent.state == "queued" and (await bob.group_info(view.id)).waiting
    await loopback.flush()  # beta -> alpha: the hub orders it, and queues beta's copy
    await loopback.flush()  # alpha -> beta
    assert group_texts(alice, await alice.receive()) == [("far apart", 3, BOB_B, "hello from beta")]
    await bob.receive()
    assert not (await bob.group_info(view.id)).waiting  # his own came back ordered

    await alice.group_send(view.id, "hello from alpha")
    await loopback.flush()
    assert group_texts(bob, await bob.receive()) == [("far apart", 4, ALICE, "hello from alpha")]


async def test_members_check_every_joining_device_against_its_account(
    alpha: RunningNode, register: Callable[..., Awaitable[Device]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    view = await alice.group_create("checked", [BOB])
    result = await bob.receive()
    assert result.rejected == [] and bob.state.get("groups/unverified") is None  # alice's device checked out

    # alice's device (or a node handing her a forged KeyPackage unchecked) adds a "carol" device
    # whose key carol's account does not list: bob's device finds out and says so
    forged_state = DeviceState(tmp_path / "forged")
    mode = CryptoMode.CLASSICAL
    forged = Profile(
        address=CAROL, device_id=1, node_url="wss://x", node_fingerprint="f", mode=mode, identity=SigningKey.generate(mode, os.urandom),
        identity_dh=None, hpke=HpkePrivateKey.generate(mode, os.urandom), account_key=SigningKey.generate(mode, os.urandom),
    )  # fmt: skip
    forged_state.save_profile(forged)
    key_package = new_key_package(forged_state, forged, os.urandom, alpha.node.clock_ms())
    forged_state.close()

    async def fetch(*args: object, **kwargs: object) -> list[bytes]:
        return [key_package]

    monkeypatch.setattr("sonet.client.groups.api.fetch_key_packages", fetch)
    await alice.group_add(view.id, [CAROL])
    result = await bob.receive()
    [line] = [r for r in result.rejected if "device 1 of " + CAROL in r]
    assert "is not one its account lists" in line and "group checked" in line
    assert [a.text for a in bob.state.alerts(unshown=True)] == [line]


async def test_the_hub_moves_to_another_members_node(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Callable[..., Awaitable[Device]]
) -> None:
    alpha, beta = alpha_beta
    alice, bob = await register(alpha, "alice"), await register(beta, "bob")
    await alice.receive()
    await bob.receive()
    view = await alice.group_create("moving", [BOB_B])
    await loopback.flush()
    await bob.receive()
    moved = await alice.group_hub(view.id, BETA)
    assert moved.hub == BETA and moved.epoch == 2
    await loopback.flush()  # the commit to beta's members, the HANDOVER to beta
    await bob.receive()
    assert (await bob.group_info(view.id)).hub == BETA
    # both now submit to beta, which orders: bob's at once, alice's through alpha's outbox
    sent = await bob.group_send(view.id, "beta orders now")
    assert sent.state == "ordered"
    alice.group_settle_s = 0
    assert (await alice.group_send(view.id, "sent via alpha")).state == "queued"
    await loopback.flush()
    await loopback.flush()
    assert group_texts(alice, await alice.receive()) == [("moving", 4, BOB_B, "beta orders now")]
    assert group_texts(bob, await bob.receive()) == [("moving", 5, ALICE, "sent via alpha")]
    assert not (await alice.group_info(view.id)).waiting
