"""Group items are never lost and the node is not the tool of a stranger, a user or a peer
(node/group_budgets.py, node/store/sqlite_groups.py, node/client_limits.py):

- a member node takes a group's ORDERED items only from the hub it follows (set by the first
  commit naming its devices, moved by a hand-over commit's copy); a forged item from another
  peer is refused (``invalid``, or ``hub_pending`` for now when it could follow a hand-over);
- group items have their own per-device allowance; past it a pushed item goes to the devices
  with room and waits (``group_full``) for the hub to push it again, and a device that drains
  its mailbox gets every item; at the hub, a submission a local member has no room for is not
  ordered (``group_full``) and is ordered when the device has drained;
- the hub's fan-out is not refused for a full outbox; a device's own SUBMIT for another node's
  hub counts towards its stored-bytes budget; GroupSubmit and CreateGroup are rate-limited per
  device and per account; a hub that is no peer is refused at once (``unknown_node``).
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from sonet.core.client_api import CreateGroup, GroupSubmit
from sonet.core.federation_api import OK, RETRY_LATER
from sonet.core.groups.items import GroupItem, GroupMember, ItemKind
from sonet.core.mls.messages import Add
from sonet.federation.ratelimit import Rate
from sonet.federation.records import STORED_ROW_OVERHEAD, GroupReceived, NewEnvelope, QueuedItem, Quota
from sonet.node.app import storage_quota
from sonet.node import group_budgets
from sonet.node.budget_settings import BudgetSettings
from sonet.node.client_limits import ClientLimits
from sonet.node.group_budgets import GROUP_FULL, group_allowance
from sonet.node.group_routing import submit_item
from sonet.node.store import OverBudget

from .conftest import NODE_NAME, NodeParams, RunningNode, StartNode
from .group_kit import create_group, group_items, mls_device, submit, welcome_bytes
from .kit import Member, NodeError, opaque_envelope
from .test_client_limits import NEVER, Clock, Conn, Ctx, refused


@pytest.fixture(autouse=True)
def _one_hub_fills_the_whole_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests fill a device's whole allowance of group items from one hub: its share
    (node/group_budgets.py HUB_SHARE; tests/node/store/test_hub12_hub_share.py) is all of it here."""
    monkeypatch.setattr(group_budgets, "HUB_SHARE", 1)

BETA, GAMMA = "beta.example", "gamma.example"
QUOTA = Quota(max_envelopes=100, max_bytes=1 << 20)


def ordered(group: bytes, seq: int, message: bytes, *, hub: str, members: tuple[GroupMember, ...] = ()) -> GroupItem:
    return GroupItem(
        kind=ItemKind.ORDERED, ref=os.urandom(16), group=group, epoch=0, seq=seq, message=message, welcome=b"",
        members=members, outcome="", hub=hub,
    )  # fmt: skip


async def push(node: RunningNode, item: GroupItem, *, origin: str, quota: Quota = QUOTA) -> str:
    """What ``node`` answers ``origin`` pushing ``item``."""
    async with node.store() as store:
        (outcome,) = await store.receive(
            [GroupReceived(item=item, origin=origin, node=NODE_NAME, ttl_ms=node.config.envelope_ttl_ms)], now=node.node.clock_ms(), quota=quota
        )
    return outcome


async def seqs(node: RunningNode, account: str, device: int = 1) -> list[int]:
    return [i.seq for i in group_items(await node.pending(account, device))]


async def drain(node: RunningNode, account: str, device: int = 1) -> None:
    """The device acknowledges everything in its mailbox."""
    items = await node.pending(account, device)
    async with node.store() as store:
        await store.ack(account, device, [i.id for i in items], now=node.node.clock_ms())


async def remote_group(node: RunningNode):  # noqa: ANN201 - test objects
    """alice@alpha (this node) in a group hosted by beta: (alice's account, her MLS device,
    an empty commit, an application message) -- the node checks who sends items, not MLS."""
    account = await node.enroll("alice")
    alice = mls_device(account.first)
    alice.create(hub=BETA)
    _, commit, _ = alice.g.commit(alice.rng.randbytes)
    app = alice.g.encrypt(b"hi", alice.rng.randbytes)
    return account, alice, commit.to_bytes(), app.to_bytes()


# ---- hub authority ---------------------------------------------------------------------------


async def test_a_member_node_takes_a_groups_items_only_from_the_hub_it_follows(running: RunningNode) -> None:
    account, alice, commit, app = await remote_group(running)
    group, me = alice.g.group_id, (GroupMember(account=account.address, device=1),)
    # before any hub: gamma cannot slip in an application message, it is nothing for this node
    assert await push(running, ordered(group, 1, app, hub=GAMMA), origin=GAMMA) == OK
    assert await seqs(running, account.address) == []
    # the first commit naming this node's devices sets the hub: beta
    assert await push(running, ordered(group, 1, commit, hub=BETA, members=me), origin=BETA) == OK
    # gamma forges the next item: refused for now (it might follow a hand-over to gamma) ...
    forged = ordered(group, 2, app, hub=GAMMA)
    assert await push(running, forged, origin=GAMMA) == "hub_pending" and "hub_pending" in RETRY_LATER
    # ... so beta's item 2 is not a duplicate of it: it is taken
    assert await push(running, ordered(group, 2, app, hub=BETA), origin=BETA) == OK
    # a forged item at or below what was taken is refused for good, also one naming beta
    assert await push(running, forged, origin=GAMMA) == "invalid"
    assert await push(running, ordered(group, 2, app, hub=BETA), origin=GAMMA) == "invalid"
    assert await seqs(running, account.address) == [1, 2]
    # beta's hand-over commit (item 3) names gamma: from then on gamma's items are taken, beta's not
    early = ordered(group, 4, app, hub=GAMMA)
    assert await push(running, early, origin=GAMMA) == "hub_pending"  # the hand-over has not come yet
    assert await push(running, ordered(group, 3, commit, hub=GAMMA, members=me), origin=BETA) == OK
    assert await push(running, ordered(group, 5, app, hub=BETA), origin=BETA) == "hub_pending"
    assert await push(running, early, origin=GAMMA) == OK  # pushed again: taken now
    assert await seqs(running, account.address) == [1, 2, 3, 4]


async def test_a_peer_cannot_hand_out_items_of_a_group_hosted_here(running: RunningNode) -> None:
    account = await running.enroll("alice")
    alice = mls_device(account.first)
    async with running.raw(account.first) as conn:
        group = await create_group(conn, alice)
    _, commit, _ = alice.g.commit(alice.rng.randbytes)
    forged = ordered(group, 1, commit.to_bytes(), hub=BETA, members=(GroupMember(account=account.address, device=1),))
    assert await push(running, forged, origin=BETA) == "invalid"
    assert await seqs(running, account.address) == []


async def test_a_node_whose_devices_all_left_follows_whichever_hub_adds_them_again(running: RunningNode) -> None:
    account, alice, commit, app = await remote_group(running)
    group, me = alice.g.group_id, (GroupMember(account=account.address, device=1),)
    assert await push(running, ordered(group, 1, commit, hub=BETA, members=me), origin=BETA) == OK
    assert await push(running, ordered(group, 2, commit, hub=BETA), origin=BETA) == OK  # removed
    # later, after a hand-over it did not see, gamma adds the device again
    assert await push(running, ordered(group, 9, commit, hub=GAMMA, members=me), origin=GAMMA) == OK
    assert await push(running, ordered(group, 10, app, hub=GAMMA), origin=GAMMA) == OK
    assert await seqs(running, account.address) == [1, 2, 9, 10]


# ---- never lost: the group allowance --------------------------------------------------------


async def test_a_device_at_its_group_allowance_gets_every_item_once_it_drains(running: RunningNode) -> None:
    account, alice, commit, app = await remote_group(running)
    second = await running.link(account)
    group = alice.g.group_id
    both = tuple(GroupMember(account=account.address, device=d) for d in (1, second.device_id))
    quota = dataclasses.replace(QUOTA, group_envelopes=2)
    items = [ordered(group, 1, commit, hub=BETA, members=both)] + [ordered(group, s, app, hub=BETA) for s in (2, 3, 4)]
    assert await push(running, items[0], origin=BETA, quota=quota) == OK
    assert await push(running, items[1], origin=BETA, quota=quota) == OK
    await drain(running, account.address, second.device_id)  # the second device keeps up
    # the first device is at its allowance: the second still gets items 3 and 4
    assert [await push(running, i, origin=BETA, quota=quota) for i in items[2:]] == [GROUP_FULL, GROUP_FULL]
    assert await seqs(running, account.address) == [1, 2]
    assert await seqs(running, account.address, second.device_id) == [3, 4]
    # pushed again while it is still full: nothing changes, nothing is doubled
    assert await push(running, items[2], origin=BETA, quota=quota) == GROUP_FULL
    # a forger cannot take the waiting item's place
    assert await push(running, dataclasses.replace(items[2], message=commit), origin=GAMMA) == "invalid"
    await drain(running, account.address)
    assert [await push(running, i, origin=BETA, quota=quota) for i in items[2:]] == [OK, OK]
    assert await seqs(running, account.address) == [3, 4]
    assert await seqs(running, account.address, second.device_id) == [3, 4]
    assert await push(running, items[3], origin=BETA, quota=quota) == OK  # a retry after that: nothing new
    assert await seqs(running, account.address, second.device_id) == [3, 4]


async def test_group_items_and_one_to_one_messages_do_not_take_each_others_room(running: RunningNode) -> None:
    account, alice, commit, app = await remote_group(running)
    me = (GroupMember(account=account.address, device=1),)
    quota = Quota(max_envelopes=1, max_bytes=1 << 20)  # one 1:1 message; two group items (twice it)
    assert group_allowance(quota) == (2, 2 << 20)
    env = opaque_envelope((account.address, 1))
    sealed = NewEnvelope(account=account.address, device_id=1, id=env.id, expires=env.expires, kind=env.kind, body=env.body)
    async with running.store() as store:
        await store.enqueue([sealed], now=running.node.clock_ms(), quota=quota)
    assert await push(running, ordered(alice.g.group_id, 1, commit, hub=BETA, members=me), origin=BETA, quota=quota) == OK
    assert await push(running, ordered(alice.g.group_id, 2, app, hub=BETA), origin=BETA, quota=quota) == OK
    assert await push(running, ordered(alice.g.group_id, 3, app, hub=BETA), origin=BETA, quota=quota) == GROUP_FULL
    assert len(await running.pending(account.address)) == 3


async def test_a_verdict_for_a_device_at_its_allowance_waits_too(running: RunningNode) -> None:
    account, alice, _, app = await remote_group(running)
    item = submit_item(GroupSubmit(request=1, ref=os.urandom(16), group=alice.g.group_id, hub=BETA, message=app, welcome=b""))
    quota = dataclasses.replace(QUOTA, group_envelopes=1)
    async with running.store() as store:
        await store.group_submit(item, account=account.address, device_id=1, hub=BETA, node=NODE_NAME, now=running.node.clock_ms(),
                                 ttl_ms=running.config.envelope_ttl_ms, quota=quota)  # fmt: skip
    verdict = dataclasses.replace(item, kind=ItemKind.VERDICT, message=b"", outcome="not_member")
    other = dataclasses.replace(verdict, ref=os.urandom(16))
    async with running.store() as store:
        await store.group_submit(dataclasses.replace(item, ref=other.ref), account=account.address, device_id=1, hub=BETA, node=NODE_NAME,
                                 now=running.node.clock_ms(), ttl_ms=running.config.envelope_ttl_ms, quota=quota)  # fmt: skip
    assert await push(running, verdict, origin=BETA, quota=quota) == OK
    assert await push(running, other, origin=BETA, quota=quota) == GROUP_FULL
    await drain(running, account.address)
    assert await push(running, other, origin=BETA, quota=quota) == OK
    assert [i.ref for i in group_items(await running.pending(account.address))] == [other.ref]


async def test_at_the_hub_a_submission_a_local_member_has_no_room_for_is_ordered_once_it_drained(start_node: StartNode) -> None:
    node = await start_node(budgets=BudgetSettings(group_items_per_device=2))
    alice_account, bob_account = await node.enroll("alice"), await node.enroll("bob")
    alice, bob = mls_device(alice_account.first), mls_device(bob_account.first)
    async with node.raw(alice_account.first) as conn:
        group = await create_group(conn, alice)
        staged, message, welcome = alice.g.commit(alice.rng.randbytes, proposals=[Add(bob.key_package)])
        await submit(conn, group, message, hub=NODE_NAME, welcome=welcome)
        alice.g.merge(staged)
        await submit(conn, group, alice.g.encrypt(b"one", alice.rng.randbytes), hub=NODE_NAME)
    await drain(node, alice_account.address)  # alice keeps up, bob (offline) is at his allowance
    ref = os.urandom(16)
    text = alice.g.encrypt(b"two", alice.rng.randbytes)
    async with node.raw(alice_account.first) as conn:
        with pytest.raises(NodeError) as refused_full:
            await submit(conn, group, text, hub=NODE_NAME, ref=ref)
    assert refused_full.value.code == GROUP_FULL
    assert await seqs(node, alice_account.address) == [] and await seqs(node, bob_account.address) == [1, 2]
    await drain(node, bob_account.address)
    async with node.raw(alice_account.first) as conn:
        await submit(conn, group, text, hub=NODE_NAME, ref=ref)  # sent again: ordered now, next in line
    assert await seqs(node, alice_account.address) == [3] and await seqs(node, bob_account.address) == [3]


# ---- budgets ---------------------------------------------------------------------------------


async def test_a_submission_for_another_nodes_hub_counts_towards_the_devices_own_budget(running: RunningNode) -> None:
    account, alice, _, app = await remote_group(running)
    now, ttl = running.node.clock_ms(), running.config.envelope_ttl_ms

    async def send(quota: Quota) -> None:
        item = submit_item(GroupSubmit(request=1, ref=os.urandom(16), group=alice.g.group_id, hub=BETA, message=app, welcome=b""))
        async with running.store() as store:
            await store.group_submit(item, account=account.address, device_id=1, hub=BETA, node=NODE_NAME, now=now, ttl_ms=ttl, quota=quota)

    async def queued() -> list[QueuedItem]:
        async with running.store() as store:
            return await store.outbox(BETA, limit=100, max_bytes=1 << 30, now=now)

    await send(QUOTA)
    (first,) = await queued()
    one = dataclasses.replace(QUOTA, sender_device_bytes=len(first.data) + STORED_ROW_OVERHEAD)  # room for one
    with pytest.raises(OverBudget) as over:
        await send(one)
    assert over.value.code == "sender_full" and await queued() == [first]
    async with running.store() as store:  # beta took it: the device's budget is free again
        await store.outbox_done(BETA, [first.seq], now=now)
    await send(one)
    assert len(await queued()) == 1


async def test_the_hubs_fan_out_is_not_refused_for_a_full_outbox_but_a_devices_own_submission_is(running: RunningNode) -> None:
    alice_account = await running.enroll("alice")
    alice = mls_device(alice_account.first)
    bob_member = Member.new(f"bob@{BETA}")
    bob_member.device_id = 1
    bob = mls_device(bob_member)
    async with running.raw(alice_account.first) as conn:
        group = await create_group(conn, alice)
    staged, message, welcome = alice.g.commit(alice.rng.randbytes, proposals=[Add(bob.key_package)])
    quota = dataclasses.replace(QUOTA, outbox_bytes=1)  # nothing more fits the outbox towards beta
    now, ttl = running.node.clock_ms(), running.config.envelope_ttl_ms
    add = submit_item(GroupSubmit(request=1, ref=os.urandom(16), group=group, hub=NODE_NAME, message=message.to_bytes(), welcome=welcome_bytes(welcome)))
    async with running.store() as store:
        effects = await store.group_submit(add, account=alice_account.address, device_id=1, hub=NODE_NAME, node=NODE_NAME, now=now, ttl_ms=ttl, quota=quota)
        assert effects.dests == {BETA}
        alice.g.merge(staged)
        app = alice.g.encrypt(b"to beta", alice.rng.randbytes).to_bytes()
        for _ in range(2):  # beyond the outbox budget: still ordered and queued for beta
            again = submit_item(GroupSubmit(request=1, ref=os.urandom(16), group=group, hub=NODE_NAME, message=app, welcome=b""))
            await store.group_submit(again, account=alice_account.address, device_id=1, hub=NODE_NAME, node=NODE_NAME, now=now, ttl_ms=ttl, quota=quota)
        assert len(await store.outbox(BETA, limit=100, max_bytes=1 << 30, now=now)) == 3  # the copies of items 1-3
    assert await seqs(running, alice_account.address) == [1, 2, 3]
    async with running.store() as store:
        # alice's own submission for a group hosted by beta is held to that outbox's budget
        elsewhere = submit_item(GroupSubmit(request=1, ref=os.urandom(16), group=group, hub=BETA, message=app, welcome=b""))
        with pytest.raises(OverBudget) as over:
            await store.group_submit(elsewhere, account=alice_account.address, device_id=1, hub=BETA, node=NODE_NAME, now=now, ttl_ms=ttl, quota=quota)
    assert over.value.code == "outbox_full"


# ---- requests: rate limits and unknown hubs -------------------------------------------------


async def test_group_submissions_and_new_groups_are_rate_limited_per_device_and_per_account() -> None:
    limits = ClientLimits(
        group_submits=Rate(per_second=NEVER, burst=3), group_submits_per_account=Rate(per_second=NEVER, burst=4),
        group_creates=Rate(per_second=NEVER, burst=1), group_creates_per_account=Rate(per_second=NEVER, burst=2),
    )  # fmt: skip
    ctx = Ctx(Clock())
    first, second, third = Conn(ctx, "dev-a"), Conn(ctx, "dev-b"), Conn(ctx, "dev-c")
    other_account = Conn(ctx, "dev-d", account="bob@alpha.example")
    submit_frame = GroupSubmit(request=1, ref=bytes(16), group=bytes(16), hub=NODE_NAME, message=b"m", welcome=b"")
    create_frame = CreateGroup(request=1, group=bytes(16), group_info=b"i", ratchet_tree=b"t")
    for _ in range(3):
        await limits.check(first, submit_frame)  # type: ignore[arg-type]
    assert await refused(limits, first, submit_frame) == "too many group messages from this device; try again in a moment"
    await limits.check(second, submit_frame)  # type: ignore[arg-type]  # the account's fourth
    assert await refused(limits, second, submit_frame) == "too many group messages from the devices of alice@alpha.example; try again in a moment"
    await limits.check(other_account, submit_frame)  # type: ignore[arg-type]  # bob has his own buckets
    await limits.check(first, create_frame)  # type: ignore[arg-type]
    assert await refused(limits, first, create_frame) == "too many new groups from this device; try again in a moment"
    await limits.check(third, create_frame)  # type: ignore[arg-type]
    assert "too many new groups from the devices of alice@alpha.example" in await refused(limits, Conn(ctx, "dev-e"), create_frame)


async def test_the_node_settings_set_the_group_limits_and_allowance(start_node: StartNode, node_params: NodeParams) -> None:
    budgets = BudgetSettings(group_submits_burst=1, group_creates_per_hour=1, group_items_per_device=7, group_bytes_per_device=1 << 21)
    node_params.client_limits = budgets.client_limits()
    node = await start_node(budgets=budgets)
    assert group_allowance(storage_quota(node.config)) == (7, 1 << 21)
    account = await node.enroll("alice")
    alice = mls_device(account.first)
    async with node.raw(account.first) as conn:
        group = await create_group(conn, alice)
        await submit(conn, group, alice.g.encrypt(b"one", alice.rng.randbytes), hub=NODE_NAME)
        with pytest.raises(NodeError) as limited:
            await submit(conn, group, alice.g.encrypt(b"two", alice.rng.randbytes), hub=NODE_NAME)
    assert limited.value.code == "rate_limited"


async def test_a_submission_for_a_hub_that_is_not_a_peer_is_refused_at_once(running: RunningNode) -> None:
    account, alice, _, app = await remote_group(running)
    async with running.raw(account.first) as conn:
        with pytest.raises(NodeError) as refused_hub:
            await submit(conn, alice.g.group_id, app, hub="nowhere.example")
    assert refused_hub.value.code == "unknown_node"
    async with running.store() as store:
        assert await store.outbox("nowhere.example", limit=10, max_bytes=1 << 20, now=running.node.clock_ms()) == []
