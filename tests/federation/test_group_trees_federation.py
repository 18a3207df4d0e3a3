"""Ratchet trees by reference across nodes (docs/groups.md "Trees by reference"): alpha hosts a
group; a commit adding bob@beta and carol@gamma sends its Welcome without the tree; each joiner
asks its own home node with FetchGroupTree, which asks the hub alpha over the federation (gamma
only through the relay beta), and joins with the tree, which its Welcome verifies. A device of
the hub's own node is answered by the hub directly; an epoch the hub keeps no tree of, and a
tree that is not the Welcome's, are refused."""

from __future__ import annotations

import pytest

from sonet.core.client_api import FetchGroupTree, GroupTree
from sonet.core.errors import ProtocolError
from sonet.core.groups.trees import TreeDownload
from sonet.core.mls.framing import MLSMessage
from sonet.core.mls.group import Group
from sonet.core.mls.messages import Add
from tests.core.groups.devices import CS, Device
from tests.node.conftest import StartNode
from tests.node.group_kit import create_group, mls_device, submit
from tests.node.kit import NodeError, RawConnection

from .net import ALPHA, triangle
from .test_groups_federation import arrived


async def fetch(conn: RawConnection, *, group: bytes, hub: str, epoch: int) -> bytes:
    download = TreeDownload(group, epoch)
    while not download.done:
        offset = download.offset
        reply = await conn.request(lambda n: FetchGroupTree(request=n, group=group, hub=hub, epoch=epoch, offset=offset))
        assert isinstance(reply, GroupTree)
        download.add(reply)
    return download.tree()


async def test_joiners_on_other_nodes_fetch_the_tree_from_the_hub(start_node: StartNode) -> None:
    net = await triangle(start_node)
    alice, bob, carol = mls_device(net.alice.first), mls_device(net.bob.first), mls_device(net.carol.first)
    async with net.alpha.raw(net.alice.first) as conn:
        group = await create_group(conn, alice)
        staged, message, welcome = alice.g.commit(
            alice.rng.randbytes, proposals=[Add(bob.key_package), Add(carol.key_package)], ratchet_tree_in_welcome=False
        )
        await submit(conn, group, message, hub=ALPHA, welcome=welcome)
        alice.g.merge(staged)
        # the hub's own device is answered by the hub itself
        assert await fetch(conn, group=group, hub=ALPHA, epoch=1) == alice.g.ratchet_tree_bytes()
    for node, account, device in ((net.beta, net.bob, bob), (net.gamma, net.carol, carol)):
        (copy,) = await arrived(node, device, 1)
        with pytest.raises(ProtocolError, match="carries no ratchet tree"):
            device.join(copy.welcome)  # the Welcome goes without the tree
        async with node.raw(account.first) as conn:
            tree = await fetch(conn, group=group, hub=copy.hub, epoch=1)  # gamma's request goes through beta
            with pytest.raises(NodeError) as refused:
                await fetch(conn, group=group, hub=ALPHA, epoch=7)
            assert refused.value.code == "no_group_tree"
        join_with(device, copy.welcome, tree)
        assert device.g.epoch == 1 and device.g.ratchet_tree_bytes() == alice.g.ratchet_tree_bytes()
    hello = bob.g.encrypt(b"joined by reference", bob.rng.randbytes)
    assert carol.g.process(hello).data == b"joined by reference"  # type: ignore[union-attr]


async def test_a_tree_that_is_not_the_welcomes_is_refused(start_node: StartNode) -> None:
    net = await triangle(start_node)
    alice, bob = mls_device(net.alice.first), mls_device(net.bob.first)
    async with net.alpha.raw(net.alice.first) as conn:
        group = await create_group(conn, alice)
        before = alice.g.ratchet_tree_bytes()
        staged, message, welcome = alice.g.commit(alice.rng.randbytes, proposals=[Add(bob.key_package)], ratchet_tree_in_welcome=False)
        await submit(conn, group, message, hub=ALPHA, welcome=welcome)
        alice.g.merge(staged)
    (copy,) = await arrived(net.beta, bob, 1)
    with pytest.raises(ProtocolError):
        join_with(bob, copy.welcome, before)  # epoch 0's tree: not the one the GroupInfo names
    assert bob.group is None
    async with net.beta.raw(net.bob.first) as conn:
        with pytest.raises(NodeError) as refused:
            await conn.request(lambda n: FetchGroupTree(request=n, group=group, hub="not a node!", epoch=1, offset=0))
        assert refused.value.code == "bad_input"
        with pytest.raises(NodeError) as refused:
            await fetch(conn, group=bytes(16), hub=ALPHA, epoch=1)  # a group the hub does not host
        assert refused.value.code == "no_group_tree"


def join_with(device: Device, welcome: bytes, tree: bytes) -> None:
    device.group = Group.join(
        CS, MLSMessage.from_bytes(welcome), device.key_package, init_priv=device.init_priv, encryption_priv=device.encryption_priv,
        signature_priv=device.signature_priv, ratchet_tree=tree,
    )  # fmt: skip

