"""A member's devices in its groups (client/groups/own_devices.py, leaving.py, api.py): a newly
linked device joins the account's groups by itself and a removed one is taken out of them; a
member's leaving is committed even when the member who should commit it does not; a device
checks its own change against the group's rules before it sends it; admins rename a group and
set its topic. Real devices against in-process nodes (tests/client/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from sonet.client.groups import api, leaving, own_devices
from sonet.client.groups.engine import GroupEngine
from sonet.client.sdk import Device
from sonet.core.errors import LocalProtocolError

from .conftest import ALICE, BETA, BOB, CAROL, Clock, RunningNode, link_device
from .loopback import Loopback
from .test_cli_groups import cli_json, cli_run
from .test_groups_sdk import group_texts

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]
BOB_B = f"bob@{BETA}"


def devices_of(info: api.GroupInfoView) -> dict[str, tuple[int, ...]]:
    return {m.account: m.devices for m in info.members}


async def test_a_linked_device_joins_its_accounts_groups_by_itself(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    for device in (alice, bob):
        await device.receive()
    view = await alice.group_create("hikers", [BOB])
    await bob.receive()

    alice2 = make_device("alice2")
    assert await link_device(alice2, alice, alpha.url) == 2  # it publishes its group keys as it completes
    result = await alice.receive()  # sees device 2 in the account's list: adds it to every group of alice
    assert result.rejected == [] and (await alice.group_info(view.id)).waiting
    await alice.receive()  # the add came back ordered; then (alice is an admin) the name for the newcomer
    await alice.receive()
    info = await alice.group_info(view.id)
    assert devices_of(info) == {ALICE: (1, 2), BOB: (1,)} and info.epoch == 2 and not info.waiting

    await alice2.receive()
    [joined] = await alice2.groups()
    assert (joined.id, joined.name, joined.epoch, joined.active) == (view.id, "hikers", 2, True)
    result = await bob.receive()
    assert result.rejected == [] and devices_of(await bob.group_info(view.id))[ALICE] == (1, 2)  # checked against alice's list

    await alice2.group_send(view.id, "hello from alice's second device")
    assert group_texts(bob, await bob.receive()) == [("hikers", 5, ALICE, "hello from alice's second device")]
    assert group_texts(alice, await alice.receive()) == [("hikers", 5, ALICE, "hello from alice's second device")]
    # done once: later receives change nothing
    await alice.receive()
    assert (await alice.group_info(view.id)).epoch == 2


async def test_two_devices_adding_the_same_new_device_end_in_one_commit(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    """bob is no admin: adding his own devices is allowed. Both his devices add his new one for
    the same epoch (the second before it has seen the first's commit): the hub takes one
    commit, and the other device, redoing its change on top, has nothing left to do."""
    alice, bob, bob2 = await register(alpha, "alice"), await register(alpha, "bob"), make_device("bob2")
    await link_device(bob2, bob, alpha.url)
    for device in (alice, bob, bob2):
        await device.receive()
    view = await alice.group_create("race", [BOB])
    for device in (bob, bob2):
        await device.receive()
    assert devices_of(await bob.group_info(view.id)) == {ALICE: (1,), BOB: (1, 2)}

    bob3 = make_device("bob3")
    assert await link_device(bob3, bob, alpha.url) == 3
    await bob.receive()  # the hub orders bob's Add of device 3 (epoch 1 -> 2)
    # bob2 adds device 3 too, before it took anything from its mailbox: for epoch 1
    profile = bob2.state.profile()
    async with bob2._connect(profile) as conn:
        await own_devices.follow_device_list(conn, bob2.state, profile, policy=bob2._policy, now=bob2._clock(), rng=bob2._rng)
        await GroupEngine(bob2.state, profile, rng=bob2._rng, clock=bob2._clock).flush(conn)
    assert (await bob2.group_info(view.id)).waiting
    result = await bob2.receive()  # bob's commit, then the hub's stale_epoch verdict: made again, nothing to do
    assert result.rejected == []
    for device in (bob, bob2, alice):
        await device.receive()
        info = await device.group_info(view.id)
        assert devices_of(info) == {ALICE: (1,), BOB: (1, 2, 3)} and info.epoch == 2 and not info.waiting, device
    await bob3.receive()
    [joined] = await bob3.groups()
    assert joined.active and joined.epoch == 2 and joined.name == ""  # bob is no admin: the name comes with the next change
    await alice.group_set(view.id, topic="who wins")
    await bob3.receive()
    assert [(g.name, g.topic) for g in await bob3.groups()] == [("race", "who wins")]


async def test_a_removed_device_is_taken_out_of_its_accounts_groups(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, bob2, bob3 = await register(alpha, "alice"), await register(alpha, "bob"), make_device("bob2"), make_device("bob3")
    await link_device(bob2, bob, alpha.url)
    await link_device(bob3, bob, alpha.url)
    for device in (alice, bob, bob2, bob3):
        await device.receive()
    view = await alice.group_create("trimmed", [BOB])
    for device in (bob, bob2, bob3):
        await device.receive()

    await bob.remove_device(2)  # `sonet devices remove 2`: its leaf goes from every group of bob
    assert bob.notices == [] and (await bob.group_info(view.id)).waiting
    await bob.receive()
    assert devices_of(await bob.group_info(view.id)) == {ALICE: (1,), BOB: (1, 3)}
    await alice.receive()
    assert devices_of(await alice.group_info(view.id)) == {ALICE: (1,), BOB: (1, 3)}
    await bob3.receive()

    # bob removes device 3 without touching the groups (as an older version would): bob's own
    # device list no longer names it, so bob's next receive takes its leaf out
    async def nothing(*args: object, **kwargs: object) -> list[str]:
        return []

    monkeypatch.setattr(api.Groups, "follow_devices", nothing)
    await bob.remove_device(3)
    assert devices_of(await bob.group_info(view.id))[BOB] == (1, 3)
    await bob.receive()
    await bob.receive()
    assert devices_of(await bob.group_info(view.id)) == {ALICE: (1,), BOB: (1,)}
    await alice.receive()
    assert devices_of(await alice.group_info(view.id)) == {ALICE: (1,), BOB: (1,)}


async def test_a_device_without_group_keys_is_added_once_it_has_them(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await register(alpha, "alice")
    await alice.receive()
    view = await alice.group_create("later", [])
    alice2 = make_device("alice2")
    with monkeypatch.context() as patched:  # linked without group keys; its first receive publishes them
        patched.setattr("sonet.client.groups.keys.maintain_key_packages", lambda *a, **k: _nothing())
        await link_device(alice2, alice, alpha.url)
    await alice.receive()  # device 2 has no KeyPackages yet: asked again after a pause
    assert not (await alice.group_info(view.id)).waiting
    await alice2.receive()  # publishes them
    await alice.receive()
    assert not (await alice.group_info(view.id)).waiting  # the pause is not over
    clock.advance(own_devices.RETRY_FIRST_MS)
    await alice.receive()
    await alice.receive()
    assert devices_of(await alice.group_info(view.id)) == {ALICE: (1, 2)}
    await alice2.receive()
    assert [g.name for g in await alice2.groups()] == ["later"]


async def _nothing() -> None:
    return None


async def test_a_leaving_is_committed_by_any_member_when_the_first_one_does_not(
    alpha: RunningNode, register: Register, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol, dave = [await register(alpha, name) for name in ("alice", "bob", "carol", "dave")]
    for device in (alice, bob, carol, dave):
        await device.receive()
    view = await alice.group_create("robust", [BOB, CAROL, DAVE := f"dave@{alpha.config.name}"])
    for device in (bob, carol, dave):
        await device.receive()

    # carol leaves; alice (leaf 0, the first staying) is offline: bob waits, then commits by time
    await carol.group_leave(view.id)
    await bob.receive()
    assert not (await bob.group_info(view.id)).waiting
    clock.advance(leaving.LEAVE_AFTER_MS)
    await bob.receive()
    assert (await bob.group_info(view.id)).waiting
    await bob.receive()
    assert [m.account for m in (await bob.group_info(view.id)).members] == [ALICE, BOB, DAVE]
    await carol.receive()
    assert not (await carol.group_info(view.id)).active
    # alice comes back: she would have committed it, but bob's commit came first: nothing left to do
    await alice.receive()
    await alice.receive()
    info = await alice.group_info(view.id)
    assert [m.account for m in info.members] == [ALICE, BOB, DAVE] and not info.waiting and info.epoch == 2

    # dave leaves; alice is offline again: after LEAVE_AFTER_ITEMS more items bob commits it
    monkeypatch.setattr(leaving, "LEAVE_AFTER_ITEMS", 2)
    await dave.group_leave(view.id)
    await bob.group_send(view.id, "one")
    await bob.receive()
    assert not (await bob.group_info(view.id)).waiting
    await bob.group_send(view.id, "two")
    await bob.receive()
    await bob.receive()
    assert [m.account for m in (await bob.group_info(view.id)).members] == [ALICE, BOB]
    await alice.receive()
    assert [m.account for m in (await alice.group_info(view.id)).members] == [ALICE, BOB]


async def test_a_leaving_account_does_not_add_its_devices_back(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    alice, bob, bob2 = await register(alpha, "alice"), await register(alpha, "bob"), make_device("bob2")
    await link_device(bob2, bob, alpha.url)
    for device in (alice, bob, bob2):
        await device.receive()
    view = await alice.group_create("exit", [BOB])
    for device in (bob, bob2):
        await device.receive()
    await bob.group_leave(view.id)  # a commit takes bob2 out, then bob proposes his own removal
    clock.advance(own_devices.RETRY_MAX_MS)  # bob's next receive compares the group with his device list
    await bob.receive()
    info = await bob.group_info(view.id)
    assert devices_of(info) == {ALICE: (1,), BOB: (1,)} and not info.waiting  # bob2 is not added back
    await alice.receive()
    await alice.receive()
    assert [m.account for m in (await alice.group_info(view.id)).members] == [ALICE]


async def test_the_last_admin_cannot_leave_while_others_stay(alpha: RunningNode, register: Register) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    for device in (alice, bob):
        await device.receive()
    view = await alice.group_create("kept", [BOB])
    await bob.receive()
    with pytest.raises(LocalProtocolError, match="the last admin cannot leave while other members stay") as refused:
        await alice.group_leave(view.id)
    assert refused.value.code == "not_allowed" and not (await alice.group_info(view.id)).waiting
    await alice.group_admin(view.id, BOB)
    await alice.group_leave(view.id)
    await bob.receive()
    await bob.receive()
    assert [m.account for m in (await bob.group_info(view.id)).members] == [BOB]


async def test_a_device_checks_its_own_change_against_the_rules_first(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, _beta = alpha_beta
    alice, bob, carol = await register(alpha, "alice"), await register(beta_node := _beta, "bob"), await register(alpha, "carol")
    for device in (alice, bob, carol):
        await device.receive()
    view = await alice.group_create("ruled", [BOB_B])
    await loopback.flush()
    await bob.receive()

    async def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a change the rules refuse was sent")

    monkeypatch.setattr(api, "submit_own", never)
    with pytest.raises(LocalProtocolError) as not_admin:
        await bob.group_add(view.id, [CAROL])
    assert not_admin.value.code == "not_allowed"
    assert str(not_admin.value) == f"not allowed: only an admin adds devices of another account ({CAROL})"
    with pytest.raises(LocalProtocolError) as nowhere:
        await alice.group_hub(view.id, "gamma.example")
    assert nowhere.value.code == "not_allowed"
    assert str(nowhere.value) == "not allowed: the new hub gamma.example is not the node of a member"
    with pytest.raises(LocalProtocolError) as bob_renames:
        await bob.group_set(view.id, name="mine")
    assert bob_renames.value.code == "not_allowed" and "only an admin renames the group" in str(bob_renames.value)
    for device in (alice, bob):
        assert not (await device.group_info(view.id)).waiting
    assert beta_node.config.name == BETA


async def test_admins_rename_and_set_the_topic(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    for device in (alice, bob):
        await device.receive()
    view = await alice.group_create("before", [BOB])
    await bob.receive()

    renamed = await alice.group_set(view.id, name="after")
    assert (renamed.name, renamed.topic) == ("after", "")
    topic = await alice.group_set("after", topic="maps and boots")
    assert (topic.name, topic.topic) == ("after", "maps and boots")
    await bob.receive()
    assert [(g.name, g.topic) for g in await bob.groups()] == [("after", "maps and boots")]
    with pytest.raises(LocalProtocolError) as same:
        await alice.group_set(view.id, topic="maps and boots")
    assert same.value.code == "nothing_to_do"
    with pytest.raises(LocalProtocolError, match="a group topic is at most 1024 bytes"):
        await alice.group_set(view.id, topic="x" * 1025)
    with pytest.raises(LocalProtocolError, match="a group name is 1 to 128 bytes"):
        await alice.group_set(view.id, name="")

    # the command line: `group rename GROUP NAME`, `group topic GROUP TEXT`
    [line] = await cli_json(capsys, alice, "group", "rename", "after", "renamed")
    assert (line["id"], line["name"], line["topic"]) == (view.id, "renamed", "maps and boots")
    rc, out, err = await cli_run(capsys, "--home", alice.state.home, "group", "topic", "renamed", "")
    assert (rc, err) == (0, "") and out == f'"renamed" ({view.id}): topic \'\'; epoch 1\n'
    rc, out, err = await cli_run(capsys, "--home", bob.state.home, "group", "topic", view.id, "mine now", "--json")
    assert rc == 1 and json.loads(out)["error"]["code"] == "not_allowed"
    rc, out, err = await cli_run(capsys, "--home", alice.state.home, "group", "rename", "renamed", "a@b")
    assert rc == 1 and err.startswith("sonet: error: a group name cannot contain '@'") and len(err.splitlines()) == 1
    await bob.receive()
    assert [(g.name, g.topic) for g in await bob.groups()] == [("renamed", "")]
