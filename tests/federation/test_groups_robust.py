"""Group items between real nodes are never lost and cannot be forged (node/group_budgets.py,
federation/outbox.py RETRY_LATER): alpha hosts the groups, beta holds member devices.

- A device of beta at its allowance of group items misses nothing: beta takes what it has no
  room for later (``group_full``), alpha's outbox keeps those items and pushes them again at
  each expiry tick, and meanwhile another group's items to beta go through at once.
- A peer that is not the group's hub cannot hand beta items of the group: refused (``invalid``,
  or ``hub_pending`` for a sequence number beyond what beta took), and the hub's own items are
  still taken in order.
"""

from __future__ import annotations

import os

import pytest

from sonet.core import limits
from sonet.core.federation_api import Push, PushResult, Transit
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core.mls.messages import Add
from sonet.node import group_budgets
from sonet.node.budget_settings import BudgetSettings
from tests.core.groups import devices
from tests.core.groups.devices import Device
from tests.node.conftest import NodeParams, RunningNode, StartNode
from tests.node.group_kit import create_group, group_items, mls_device, submit
from tests.node.kit import Account

from .net import ALPHA, BETA, ask, new_key, peer_link, pin, pin_node, until


@pytest.fixture(autouse=True)
def _one_hub_fills_the_whole_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests fill a device's whole allowance of group items from one hub: its share
    (node/group_budgets.py HUB_SHARE; tests/node/store/test_hub12_hub_share.py) is all of it here."""
    monkeypatch.setattr(group_budgets, "HUB_SHARE", 1)


async def seqs(node: RunningNode, account: str) -> list[int]:
    return [i.seq for i in group_items(await node.pending(account))]


async def drain(node: RunningNode, account: str) -> None:
    items = await node.pending(account)
    async with node.store() as store:
        await store.ack(account, 1, [i.id for i in items], now=node.node.clock_ms())


async def pair(start_node: StartNode, **beta_config: object) -> tuple[RunningNode, RunningNode]:
    alpha = await start_node(name=ALPHA, registration="open")
    beta = await start_node(name=BETA, registration="open", **beta_config)
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    return alpha, beta


async def group_at_alpha(alpha: RunningNode, creator: Account, member: Account) -> tuple[bytes, Device, Device]:
    """``creator`` (of alpha) creates a group and adds ``member``; the member has joined."""
    owner, joiner = mls_device(creator.first), mls_device(member.first)
    async with alpha.raw(creator.first) as conn:
        group = await create_group(conn, owner)
        staged, message, welcome = owner.g.commit(owner.rng.randbytes, proposals=[Add(joiner.key_package)])
        await submit(conn, group, message, hub=ALPHA, welcome=welcome)
    owner.g.merge(staged)
    return group, owner, joiner


async def say(alpha: RunningNode, account: Account, device: Device, group: bytes, text: bytes) -> None:
    async with alpha.raw(account.first) as conn:
        await submit(conn, group, device.g.encrypt(text, device.rng.randbytes), hub=ALPHA)


async def test_a_device_at_its_group_allowance_misses_nothing_and_holds_nothing_else_back(
    start_node: StartNode, node_params: NodeParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_params.federation = {"expire_interval_s": 0.2}  # alpha's outbox tries again this often
    alpha, beta = await pair(start_node, budgets=BudgetSettings(group_items_per_device=2))
    alice, erin = await alpha.enroll("alice"), await alpha.enroll("erin")
    bob, dave = await beta.enroll("bob"), await beta.enroll("dave")
    group, alice_mls, bob_mls = await group_at_alpha(alpha, alice, bob)
    await until(lambda: _has(beta, bob.address, 1), "bob's Welcome")
    for text in (b"one", b"two", b"three"):  # bob (offline) has room for one more group item
        await say(alpha, alice, alice_mls, group, text)
    await until(lambda: _has(beta, bob.address, 2), "bob's second item")
    # another group's items to beta go through while bob's wait in alpha's outbox
    monkeypatch.setattr(devices, "GROUP_ID", os.urandom(16))  # (the test devices' group id)
    other, erin_mls, _ = await group_at_alpha(alpha, erin, dave)
    await say(alpha, erin, erin_mls, other, b"meanwhile")
    await until(lambda: _has(beta, dave.address, 2), "dave's items")
    assert await seqs(beta, bob.address) == [1, 2]
    # bob drains his mailbox: the waiting items come with the next tries, in order, once each
    for item in group_items(await beta.pending(bob.address)):
        if item.welcome:
            bob_mls.join(item.welcome)
        else:
            bob_mls.g.process(item.message)
    await drain(beta, bob.address)
    await until(lambda: _has(beta, bob.address, 2), "bob's last two items")
    waited = group_items(await beta.pending(bob.address))
    assert [i.seq for i in waited] == [3, 4]
    assert [bob_mls.g.process(i.message).data for i in waited] == [b"two", b"three"]  # type: ignore[union-attr]


async def _has(node: RunningNode, account: str, count: int) -> bool:
    return len(await seqs(node, account)) >= count


async def test_a_forged_ordered_item_from_a_peer_that_is_not_the_hub_is_refused(start_node: StartNode) -> None:
    alpha, beta = await pair(start_node)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    group, alice_mls, bob_mls = await group_at_alpha(alpha, alice, bob)
    await until(lambda: _has(beta, bob.address, 1), "bob's Welcome")
    key = new_key()
    await pin(beta, "mallory.example", fingerprint=key.public.fingerprint)
    forged = [
        GroupItem(
            kind=ItemKind.ORDERED, ref=os.urandom(16), group=group, epoch=1, seq=seq, message=alice_mls.g.encrypt(b"forged", alice_mls.rng.randbytes).to_bytes(),
            welcome=b"", members=(), outcome="", hub=hub,
        )  # fmt: skip
        for seq, hub in ((1, "mallory.example"), (2, ALPHA), (2, "mallory.example"))
    ]
    items = tuple(Transit(origin="mallory.example", dest=BETA, hops=limits.MAX_HOPS, envelope=None, report=None, group=i) for i in forged)
    async with peer_link(beta, key, "mallory.example") as link:
        answer = await ask(link, Push(request=1, items=items))
    assert answer == PushResult(request=1, outcomes=("invalid", "hub_pending", "hub_pending"))
    assert await seqs(beta, bob.address) == [1]
    # the hub's item 2 is no duplicate of a forgery: it is taken and reads as alice wrote it
    await say(alpha, alice, alice_mls, group, b"real")
    await until(lambda: _has(beta, bob.address, 2), "the hub's item 2")
    first, second = group_items(await beta.pending(bob.address))
    bob_mls.join(first.welcome)
    assert (second.seq, bob_mls.g.process(second.message).data) == (2, b"real")  # type: ignore[union-attr]
