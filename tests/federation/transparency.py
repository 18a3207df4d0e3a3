"""What the witnessing and gossip tests share: fast witness rounds, reading what a node
witnessed and cosigned, a node's key directory (to make it lie), rewritten trees signed with a
node's real key, and a spy on the requests a node's witness makes."""

from __future__ import annotations

from typing import Any

import pytest

from sonet.core.client_api import SignedHead
from sonet.core.keydir import MerkleTree, leaf_hash, sign_head, verify_head, witnesses
from sonet.core.wire import Frame
from sonet.federation.witness import Witness
from tests.node.conftest import NodeParams, RunningNode
from tests.node.kit import wall_ms

__all__ = ["ROUND_S", "every", "fast_rounds", "federation", "witness", "directory", "witnessed_size", "split_of", "latest", "cosigned_by", "rewritten", "lie", "Spy"]

#: witness rounds (or gossip) this often in the tests that need them without a trigger
ROUND_S = 0.05


def every(node_params: NodeParams, **intervals: float) -> None:
    """Nodes started from now on use these ``FederationSettings`` intervals."""
    node_params.federation.update(intervals)


@pytest.fixture
def fast_rounds(node_params: NodeParams) -> None:
    """Witness rounds that need no trigger (gossip keeps its production interval)."""
    every(node_params, witness_interval_s=ROUND_S)


def federation(n: RunningNode) -> Any:
    assert n.node.federation is not None
    return n.node.federation


def witness(n: RunningNode) -> Witness:
    return federation(n)._witness


def directory(n: RunningNode) -> Any:
    """The node's NodeDirectory (the one its federation serves heads and proofs from)."""
    return federation(n)._inbound._directory


async def witnessed_size(n: RunningNode, peer: str) -> int | None:
    async with n.store() as store:
        row = await store.witnessed(peer)
    return None if row is None else row.size


async def split_of(n: RunningNode, peer: str) -> Any:
    async with n.store() as store:
        return next((s for s in await store.splits() if s.node == peer), None)


async def latest(n: RunningNode) -> Any:
    async with n.store() as store:
        row = await store.latest_head()
    assert row is not None
    return row


async def cosigned_by(n: RunningNode, witness_node: RunningNode, size: int) -> bool:
    """Whether ``n``'s newest head, of ``size``, carries a valid cosignature by ``witness_node``."""
    row = await latest(n)
    head = verify_head(row.head, node_key=n.identity.public, node=n.config.name)
    keys = {witness_node.config.name: witness_node.identity.public}
    return row.size == size and witnesses(row.cosignatures, head=head, keys=keys) == [witness_node.config.name]


async def rewritten(n: RunningNode, *, keep: int, extra: int) -> tuple[MerkleTree, bytes]:
    """``n``'s log with everything after leaf ``keep`` replaced by ``extra`` other leaves, and a
    head of that tree signed with ``n``'s real key: what a node rewriting its history shows."""
    async with n.store() as store:
        hashes = await store.directory_hashes(0)
    tree = MerkleTree(hashes[:keep] + [leaf_hash(b"rewritten %d" % i) for i in range(extra)])
    head = sign_head(n.identity, node=n.config.name, size=tree.size, root=tree.root(), at=wall_ms())
    return tree, head


def lie(monkeypatch: pytest.MonkeyPatch, n: RunningNode, head: bytes, tree: MerkleTree) -> None:
    """From now on ``n`` serves ``head`` and proofs of ``tree`` to its peers."""

    async def fake_head() -> SignedHead:
        return SignedHead(head=head, cosignatures=())

    async def fake_consistency(first: int, second: int) -> tuple[bytes, ...]:
        return tuple(tree.consistency_proof(first, second))

    monkeypatch.setattr(directory(n), "head", fake_head)
    monkeypatch.setattr(directory(n), "consistency", fake_consistency)


class Spy:
    """Every request a node's witness makes, recorded (monkeypatched in)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, n: RunningNode) -> None:
        self.asked: list[tuple[str, Frame]] = []
        w = witness(n)
        real = w._ask

        async def ask(node_name: str, frame: Frame) -> Frame:
            self.asked.append((node_name, frame))
            return await real(node_name, frame)

        monkeypatch.setattr(w, "_ask", ask)

    def of(self, kind: type) -> list[Any]:
        return [frame for _, frame in self.asked if isinstance(frame, kind)]
