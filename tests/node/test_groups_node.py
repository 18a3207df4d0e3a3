"""Groups on one node that is their hub (node/client_groups.py, node/store/sqlite_groups.py):
CreateGroup, GroupSubmit ordered at once and delivered into the member devices' mailboxes as
Kind.GROUP envelopes, a removal delivered to the removed device and nothing after it, refusals
as VERDICTs to the submitting device, retries taken once, and what devices may not do. The
devices are real MLS members (tests/node/group_kit.py): what comes out of the mailboxes is
processed by their Group objects."""

from __future__ import annotations

import dataclasses
import os

import pytest

from sonet.core.client_api import CreateGroup, GroupCreated, SendBatch
from sonet.core.envelope import Kind
from sonet.core.federation_api import OK
from sonet.core import limits
from sonet.core.groups.items import MAX_GROUP_MESSAGE_BYTES, MAX_GROUP_WELCOME_BYTES, MAX_NODE_MEMBERS, GroupItem, GroupMember, ItemKind
from sonet.core.mls.group import StagedCommit
from sonet.core.mls.messages import Add, Remove
from sonet.core.wire import decode_struct
from sonet.federation.records import GroupReceived, Quota
from sonet.node.group_routing import mailbox_envelope

from .conftest import RunningNode
from .group_kit import create_group, group_items, mls_device, submit
from .kit import NodeError, opaque_envelope

HUB = "alpha.example"


async def items_of(node: RunningNode, account: str, device: int = 1) -> list[GroupItem]:
    return group_items(await node.pending(account, device))


async def group_of_two(running: RunningNode):  # noqa: ANN201 - a tuple of test objects
    """alice (admin, creator) and bob in a group hosted by ``running``; both devices joined."""
    alice_account, bob_account = await running.enroll("alice"), await running.enroll("bob")
    alice, bob = mls_device(alice_account.first), mls_device(bob_account.first)
    async with running.raw(alice_account.first) as conn:
        group = await create_group(conn, alice)
        staged, message, welcome = alice.g.commit(alice.rng.randbytes, proposals=[Add(bob.key_package)])
        ref = await submit(conn, group, message, hub=HUB, welcome=welcome)
    alice.g.merge(staged)
    (mine,) = await items_of(running, alice.account)
    (theirs,) = await items_of(running, bob.account)
    assert mine == theirs and mine.ref == ref and mine.kind == ItemKind.ORDERED and mine.seq == 1 and mine.hub == HUB
    assert mine.members == (GroupMember(account=alice.account, device=1), GroupMember(account=bob.account, device=1))
    bob.join(theirs.welcome)
    return group, (alice_account, alice), (bob_account, bob)


async def test_a_device_creates_a_group_and_its_submissions_are_ordered_into_every_members_mailbox(running: RunningNode) -> None:
    group, (alice_account, alice), (bob_account, bob) = await group_of_two(running)
    assert bob.g.epoch == alice.g.epoch == 1
    async with running.raw(bob_account.first) as conn:
        ref = await submit(conn, group, bob.g.encrypt(b"hello group", bob.rng.randbytes), hub=HUB)
    for device in (alice, bob):
        second = (await items_of(running, device.account))[-1]
        assert (second.ref, second.seq, second.members) == (ref, 2, ())
    assert alice.g.process(second.message).data == b"hello group"


async def test_a_retried_submission_is_ordered_once(running: RunningNode) -> None:
    group, (alice_account, alice), (_, bob) = await group_of_two(running)
    message = alice.g.encrypt(b"once", alice.rng.randbytes)
    async with running.raw(alice_account.first) as conn:
        ref = await submit(conn, group, message, hub=HUB)
        assert await submit(conn, group, message, hub=HUB, ref=ref) == ref  # the answer was lost
    for device in (alice, bob):
        assert [(i.ref, i.seq) for i in await items_of(running, device.account)][1:] == [(ref, 2)]


async def test_a_removed_device_sees_its_removal_and_nothing_after_it(running: RunningNode) -> None:
    group, (alice_account, alice), (_, bob) = await group_of_two(running)
    async with running.raw(alice_account.first) as conn:
        staged, message, _ = alice.g.commit(alice.rng.randbytes, proposals=[Remove(bob.g.leaf_index)])
        removal = await submit(conn, group, message, hub=HUB)
        alice.g.merge(staged)
        later = await submit(conn, group, alice.g.encrypt(b"after", alice.rng.randbytes), hub=HUB)
    seen_by_bob = await items_of(running, bob.account)
    assert [i.ref for i in seen_by_bob][1:] == [removal]
    assert seen_by_bob[-1].members == (GroupMember(account=alice.account, device=1),)
    result = bob.g.process(seen_by_bob[-1].message)
    assert isinstance(result, StagedCommit)
    bob.g.merge(result)
    assert not bob.g.active
    assert [i.ref for i in await items_of(running, alice.account)][1:] == [removal, later]


async def test_a_refused_submission_comes_back_to_its_device_as_a_verdict(running: RunningNode) -> None:
    group, (alice_account, alice), (bob_account, bob) = await group_of_two(running)
    carol = mls_device((await running.enroll("carol")).first)
    async with running.raw(bob_account.first) as conn:  # bob is no admin: he may not add carol
        _, message, welcome = bob.g.commit(bob.rng.randbytes, proposals=[Add(carol.key_package)])
        ref = await submit(conn, group, message, hub=HUB, welcome=welcome)
    verdict = (await items_of(running, bob.account))[-1]
    assert (verdict.kind, verdict.ref, verdict.outcome, verdict.epoch) == (ItemKind.VERDICT, ref, "not_allowed", 1)
    assert len(await items_of(running, alice.account)) == 1  # nobody else hears of it
    assert await items_of(running, carol.account) == []


async def test_a_submission_for_a_group_the_hub_does_not_host_is_refused_unknown_group(running: RunningNode) -> None:
    erin_account = await running.enroll("erin")
    erin = mls_device(erin_account.first)
    erin.create()  # never registered with the node
    async with running.raw(erin_account.first) as conn:
        ref = await submit(conn, erin.g.group_id, erin.g.encrypt(b"lost", erin.rng.randbytes), hub=HUB)
    (verdict,) = await items_of(running, erin.account)
    assert (verdict.kind, verdict.ref, verdict.outcome) == (ItemKind.VERDICT, ref, "unknown_group")


async def test_creating_a_group_checks_the_creator_leaf_and_the_group(running: RunningNode) -> None:
    alice_account, bob_account = await running.enroll("alice"), await running.enroll("bob")
    alice = mls_device(alice_account.first)
    info, tree = alice.create()
    async with running.raw(bob_account.first) as conn:  # bob registers alice's group as his
        with pytest.raises(NodeError) as refused:
            await conn.request(lambda n: CreateGroup(request=n, group=alice.g.group_id, group_info=info, ratchet_tree=tree))
        assert refused.value.code == "invalid"
    async with running.raw(alice_account.first) as conn:
        for bad_info, bad_tree in ((info[:-1], tree), (info, tree + b"\0"), (b"", b"")):
            with pytest.raises(NodeError) as refused:
                await conn.request(lambda n: CreateGroup(request=n, group=alice.g.group_id, group_info=bad_info, ratchet_tree=bad_tree))
            assert refused.value.code == "invalid", bad_info[:8]
        with pytest.raises(NodeError) as refused:
            await conn.request(lambda n: CreateGroup(request=n, group=b"short", group_info=info, ratchet_tree=tree))
        assert refused.value.code == "bad_input"
        group = await create_group(conn, alice)
        # a retry after a lost answer is answered again; the id stays alice's
        reply = await conn.request(lambda n: CreateGroup(request=n, group=group, group_info=info, ratchet_tree=tree))
        assert isinstance(reply, GroupCreated) and reply.group == group
    bob = mls_device(bob_account.first)
    bob_info, bob_tree = bob.create()  # a group of his own, under alice's group id
    async with running.raw(bob_account.first) as conn:
        with pytest.raises(NodeError) as refused:
            await conn.request(lambda n: CreateGroup(request=n, group=group, group_info=bob_info, ratchet_tree=bob_tree))
        assert refused.value.code == "group_exists"


async def test_malformed_submissions_are_refused_with_nothing_stored(running: RunningNode) -> None:
    group, (alice_account, alice), _ = await group_of_two(running)
    message = alice.g.encrypt(b"x", alice.rng.randbytes).to_bytes()
    async with running.raw(alice_account.first) as conn:
        for data, target, hub in (
            (b"\x00\x01garbage", group, HUB),  # not an MLS message
            (message[:-3], group, HUB),  # truncated
            (message, bytes(16), HUB),  # for another group than its header says
            (message, group, "not a node!"),
        ):
            with pytest.raises(NodeError) as refused:
                await submit(conn, target, data, hub=hub)
            assert refused.value.code == "bad_input"
    assert len(await items_of(running, alice.account)) == 1
    async with running.store() as store:
        assert await store.outbox_counts() == {}


async def test_devices_cannot_send_group_envelopes(running: RunningNode) -> None:
    alice_account, bob_account = await running.enroll("alice"), await running.enroll("bob")
    env = opaque_envelope(bob_account.first, kind=Kind.GROUP)
    async with running.raw(alice_account.first) as conn:
        with pytest.raises(NodeError) as refused:
            await conn.request(lambda n: SendBatch(request=n, envelopes=(env,)))
    assert refused.value.code == "bad_input"
    assert await running.pending(bob_account.address) == []


async def test_a_pushed_ordered_item_is_taken_once_and_only_from_its_hub(running: RunningNode) -> None:
    """A member node (here for a group hosted elsewhere): one copy per (group, seq), each
    delivered to every member device, the member list applied from commits."""
    alice_account, bob_account = await running.enroll("alice"), await running.enroll("bob")
    link_device = await running.link(alice_account)
    hub = "beta.example"
    creator = mls_device(alice_account.first)
    creator.create(hub=hub)
    staged, commit, _ = creator.g.commit(creator.rng.randbytes)  # an empty commit: key refresh
    members = tuple(GroupMember(account=a, device=d) for a, d in sorted([(alice_account.address, 1), (alice_account.address, link_device.device_id)]))
    ordered = GroupItem(
        kind=ItemKind.ORDERED, ref=os.urandom(16), group=creator.g.group_id, epoch=0, seq=1, message=commit.to_bytes(),
        welcome=b"", members=members, outcome="", hub=hub,
    )  # fmt: skip
    quota = Quota(max_envelopes=100, max_bytes=1 << 20)
    now = running.node.clock_ms()
    ttl = running.config.envelope_ttl_ms
    async with running.store() as store:
        first = GroupReceived(item=ordered, origin=hub, node=HUB, ttl_ms=ttl)
        again = GroupReceived(item=ordered, origin=hub, node=HUB, ttl_ms=ttl)
        forged = GroupReceived(item=ordered, origin="gamma.example", node=HUB, ttl_ms=ttl)
        assert await store.receive([first], now=now, quota=quota) == [OK]
        assert first.effects.mailboxes == {(alice_account.address, 1), (alice_account.address, link_device.device_id)}
        assert await store.receive([again, forged], now=now, quota=quota) == [OK, "invalid"]
        assert again.effects.mailboxes == set()
        # a node is told only its own member devices: a copy naming another node's is refused
        # and leaves nothing behind
        strangers = dataclasses.replace(ordered, seq=9, members=(GroupMember(account="zed@gamma.example", device=1),))
        assert await store.receive([GroupReceived(item=strangers, origin=hub, node=HUB, ttl_ms=ttl)], now=now, quota=quota) == ["invalid"]
    for device in (1, link_device.device_id):
        assert [i.seq for i in await items_of(running, alice_account.address, device)] == [1]
    assert await items_of(running, bob_account.address) == []
    # an application message goes to the member devices the commit named
    creator.g.merge(staged)
    app = GroupItem(
        kind=ItemKind.ORDERED, ref=os.urandom(16), group=creator.g.group_id, epoch=1, seq=2,
        message=creator.g.encrypt(b"hi", creator.rng.randbytes).to_bytes(),
        welcome=b"", members=(), outcome="", hub=hub,
    )  # fmt: skip
    async with running.store() as store:
        assert await store.receive([GroupReceived(item=app, origin=hub, node=HUB, ttl_ms=ttl)], now=now, quota=quota) == [OK]
    for device in (1, link_device.device_id):
        assert [i.seq for i in await items_of(running, alice_account.address, device)] == [1, 2]


async def test_a_device_at_its_group_allowance_does_not_hold_the_group_back_for_the_other_devices(running: RunningNode) -> None:
    """(What happens to the item it missed: tests/node/test_groups_robust.py.)"""
    alice_account = await running.enroll("alice")
    second = await running.link(alice_account)
    hub = "beta.example"
    creator = mls_device(alice_account.first)
    creator.create(hub=hub)
    _, commit, _ = creator.g.commit(creator.rng.randbytes)
    ordered = GroupItem(
        kind=ItemKind.ORDERED, ref=os.urandom(16), group=creator.g.group_id, epoch=0, seq=1, message=commit.to_bytes(),
        welcome=b"", members=tuple(GroupMember(account=alice_account.address, device=d) for d in (1, second.device_id)),
        outcome="", hub=hub,
    )  # fmt: skip
    quota = Quota(max_envelopes=1, max_bytes=1 << 20, group_envelopes=1)
    now = running.node.clock_ms()
    received = GroupReceived(item=ordered, origin=hub, node=HUB, ttl_ms=running.config.envelope_ttl_ms)
    async with running.store() as store:
        earlier = mailbox_envelope(dataclasses.replace(ordered, ref=os.urandom(16), seq=7), (alice_account.address, 1), now=now, ttl_ms=60_000)
        await store.enqueue([earlier], now=now, quota=quota)  # device 1 holds its one group item
        assert await store.receive([received], now=now, quota=quota) == ["group_full"]
    assert received.effects.mailboxes == {(alice_account.address, second.device_id)}
    assert [i.seq for i in await items_of(running, alice_account.address, 1)] == [7]
    assert [i.seq for i in await items_of(running, alice_account.address, second.device_id)] == [1]


def test_a_mailbox_copy_always_fits_an_envelope() -> None:
    """The largest ORDERED commit (message, Welcome and member list at their caps) fits one
    Kind.GROUP envelope whole: GroupItem.check bounds an item's encoded size by it."""
    members = tuple(GroupMember(account=f"member{n:05d}@{HUB}", device=1) for n in range(MAX_NODE_MEMBERS))
    item = GroupItem(
        kind=ItemKind.ORDERED, ref=os.urandom(16), group=os.urandom(16), epoch=3, seq=7, message=os.urandom(MAX_GROUP_MESSAGE_BYTES),
        welcome=os.urandom(MAX_GROUP_WELCOME_BYTES), members=members, outcome="", hub=HUB,
    )  # fmt: skip
    env = mailbox_envelope(item, (f"member00000@{HUB}", 1), now=1, ttl_ms=1000)
    assert len(env.body) <= limits.MAX_GROUP_ITEM_BYTES
    assert decode_struct(GroupItem, env.body) == item
    small = dataclasses.replace(item, message=b"m", welcome=b"")
    assert decode_struct(GroupItem, mailbox_envelope(small, (f"member00000@{HUB}", 1), now=1, ttl_ms=1000).body) == small
