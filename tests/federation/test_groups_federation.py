"""Groups across nodes (docs/groups.md): alpha hosts a group of alice@alpha, bob@beta and
carol@gamma (gamma reaches alpha only through beta, which relays group items like envelopes).
Each member node gets one ORDERED copy per message and delivers it to its member devices;
submissions from other nodes reach the hub through the outboxes; a refusal comes back to the
submitting device; a pushed item taken twice changes nothing; after a hand-over the old hub
forwards a late submission to the new one. The devices are real MLS members."""

from __future__ import annotations

from sonet.core.client_api import GroupSubmit
from sonet.core.federation_api import OK
from sonet.core.groups.items import GroupItem, GroupMember, ItemKind
from sonet.core.groups.state import GroupExtension, group_context_extensions
from sonet.core.mls.group import StagedCommit
from sonet.core.mls.messages import Add, GroupContextExtensions, Remove
from sonet.federation.records import GroupReceived
from sonet.node.app import storage_quota
from sonet.node.group_routing import submit_item
from tests.core.groups.devices import Device
from tests.node.conftest import RunningNode, StartNode
from tests.node.group_kit import create_group, group_items, mls_device, submit

from .net import ALPHA, BETA, triangle, until


async def items_at(node: RunningNode, account: str) -> list[GroupItem]:
    return group_items(await node.pending(account))


async def arrived(node: RunningNode, device: Device, count: int) -> list[GroupItem]:
    """The group items in ``device``'s mailbox once there are ``count`` of them."""
    found: list[GroupItem] = []

    async def enough() -> bool:
        nonlocal found
        found = await items_at(node, device.account)
        return len(found) >= count

    await until(enough, f"{count} group items for {device.account}")
    return found


def apply_commit(device: Device, item: GroupItem, staged: StagedCommit | None = None) -> None:
    if staged is None:
        result = device.g.process(item.message)
        assert isinstance(result, StagedCommit)
        staged = result
    device.g.merge(staged)


async def test_a_group_across_three_nodes(start_node: StartNode) -> None:
    net = await triangle(start_node)
    alice, bob, carol = mls_device(net.alice.first), mls_device(net.bob.first), mls_device(net.carol.first)

    # alice creates the group at alpha and adds bob and carol: one copy for each node
    async with net.alpha.raw(net.alice.first) as conn:
        group = await create_group(conn, alice)
        staged, message, welcome = alice.g.commit(alice.rng.randbytes, proposals=[Add(bob.key_package), Add(carol.key_package)])
        added = await submit(conn, group, message, hub=ALPHA, welcome=welcome)
    apply_commit(alice, (await items_at(net.alpha, alice.account))[0], staged)
    for node, device in ((net.beta, bob), (net.gamma, carol)):
        (copy,) = await arrived(node, device, 1)
        assert (copy.kind, copy.ref, copy.seq, copy.hub) == (ItemKind.ORDERED, added, 1, ALPHA)
        assert copy.members == (GroupMember(account=device.account, device=1),)  # its own devices only
        device.join(copy.welcome)

    # bob's message goes from beta to the hub and comes back ordered to every node
    async with net.beta.raw(net.bob.first) as conn:
        hello = bob.g.encrypt(b"hello from beta", bob.rng.randbytes)
        said = await submit(conn, group, hello, hub=ALPHA)
    for node, device in ((net.alpha, alice), (net.beta, bob), (net.gamma, carol)):
        latest = (await arrived(node, device, 2))[-1]
        assert (latest.ref, latest.seq) == (said, 2)
    assert carol.g.process(latest.message).data == b"hello from beta"  # type: ignore[union-attr]

    # the same SUBMIT pushed again (an answer lost on the way) is not ordered twice
    again = submit_item(GroupSubmit(request=1, ref=said, group=group, hub=ALPHA, message=hello.to_bytes(), welcome=b""))
    now = net.alpha.node.clock_ms()
    async with net.alpha.store() as store:
        outcome = await store.receive(
            [GroupReceived(item=again, origin=BETA, node=ALPHA, ttl_ms=net.alpha.config.envelope_ttl_ms)],
            now=now, quota=storage_quota(net.alpha.config),
        )  # fmt: skip
    assert outcome == [OK]
    assert [i.seq for i in await items_at(net.alpha, alice.account)] == [1, 2]

    # bob may not remove carol (he is no admin): the refusal comes back to bob's device only
    async with net.beta.raw(net.bob.first) as conn:
        _, removal, _ = bob.g.commit(bob.rng.randbytes, proposals=[Remove(carol.g.leaf_index)])
        refused = await submit(conn, group, removal, hub=ALPHA)
    verdict = (await arrived(net.beta, bob, 3))[-1]
    assert (verdict.kind, verdict.ref, verdict.outcome) == (ItemKind.VERDICT, refused, "not_allowed")

    # alice hands the group over to beta; carol, not having seen it yet, still sends to alpha
    async with net.alpha.raw(net.alice.first) as conn:
        moving = GroupContextExtensions(group_context_extensions(GroupExtension(BETA, (alice.account,))))
        staged, message, _ = alice.g.commit(alice.rng.randbytes, proposals=[moving])
        moved = await submit(conn, group, message, hub=ALPHA)
    alice.g.merge(staged)
    for node, device, count in ((net.beta, bob, 4), (net.gamma, carol, 3)):
        copy = (await arrived(node, device, count))[-1]
        assert (copy.ref, copy.seq, copy.hub) == (moved, 3, BETA)  # the hub of the next item
        apply_commit(device, copy)
    async with net.gamma.raw(net.carol.first) as conn:
        late = await submit(conn, group, carol.g.encrypt(b"late", carol.rng.randbytes), hub=ALPHA)
    for node, device, count in ((net.alpha, alice, 4), (net.beta, bob, 5), (net.gamma, carol, 4)):
        latest = (await arrived(node, device, count))[-1]
        assert (latest.ref, latest.seq, latest.hub) == (late, 4, BETA)  # ordered by the new hub
    assert alice.g.process(latest.message).data == b"late"  # type: ignore[union-attr]
