"""``NodeDirectory`` (node/directory.py) on a real SQLite store, without a network: which head a
proof is made against, cosignatures handed over by witnesses (only valid ones of heads this node
signed are kept), concurrent publishing, the bounds of consistency requests, and the stretches
of the log (with their compact ranges) handed out for self-monitoring."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from sonet.core import limits
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.errors import RemoteProtocolError, VerifyError
from sonet.core.keydir import (
    CompactRange,
    MerkleTree,
    TreeHead,
    cosign,
    decode_entry,
    decode_head,
    leaf_hash,
    verify_consistency,
    verify_directory_proof,
    verify_head,
)
from sonet.node.directory import NodeDirectory
from sonet.node.store import SqliteStore, Store

NODE = "alpha.example"
BETA = "beta.example"
GAMMA = "gamma.example"
ALICE = f"alice@{NODE}"
BOB = f"bob@{NODE}"
NOW = 1_700_000_000_000


def key() -> SigningKey:
    return SigningKey.generate(CryptoMode.HYBRID, os.urandom)


NODE_KEY, BETA_KEY, GAMMA_KEY = key(), key(), key()


@dataclass
class Fixture:
    store: Store
    directory: NodeDirectory
    new_heads: list[int] = field(default_factory=list)

    async def register(self, account: str) -> None:
        await self.store.register_account(
            account=account,
            fingerprint=f"fp-{account}",
            record=b"record",
            account_identity=b"identity of " + account.encode(),
            device_list=b"list of " + account.encode(),
            invite_hash=None,
            now=NOW,
        )

    async def head(self, size: int | None = None) -> TreeHead:
        """The newest head (checking it is of ``size``), verified with the node key."""
        signed = await self.directory.head()
        head = verify_head(signed.head, node_key=NODE_KEY.public, node=NODE)
        assert size is None or head.size == size
        return head


@pytest.fixture
async def fx(tmp_path: Path) -> AsyncIterator[Fixture]:
    store = await SqliteStore.open(tmp_path / "node.db")
    clock = itertools.count(NOW)
    heads: list[int] = []
    directory = NodeDirectory(
        name=NODE, key=NODE_KEY, store=store, clock_ms=lambda: next(clock), on_new_head=lambda: heads.append(1)
    )
    fixture = Fixture(store=store, directory=directory, new_heads=heads)
    await directory.start()
    try:
        yield fixture
    finally:
        await store.close()


def cosignature(witness: str, witness_key: SigningKey, head: TreeHead) -> bytes:
    return cosign(witness_key, witness=witness, head=head, now=NOW + 99)


# Cosignatures -----------------------------------------------------------------------------------


async def test_a_witness_cosignature_is_kept_with_the_head_it_vouches_for(fx: Fixture) -> None:
    await fx.register(ALICE)
    await fx.directory.publish()
    head = await fx.head(1)
    by_beta = cosignature(BETA, BETA_KEY, head)

    await fx.directory.add_cosignature(BETA, BETA_KEY.public, by_beta)

    assert (await fx.directory.head()).cosignatures == (by_beta,)
    # one of an older head is kept with that head, not the newest one
    await fx.register(BOB)
    await fx.directory.publish()
    first = TreeHead(node=NODE, size=1, root=head.root, at=0, raw=b"")
    by_gamma = cosignature(GAMMA, GAMMA_KEY, first)
    await fx.directory.add_cosignature(GAMMA, GAMMA_KEY.public, by_gamma)
    assert (await fx.directory.head()).cosignatures == ()
    cosigned = await fx.store.cosigned_head(min_size=1)
    assert cosigned is not None and cosigned.size == 1 and sorted(cosigned.cosignatures) == sorted([by_beta, by_gamma])


async def test_invalid_cosignatures_are_refused_and_nothing_is_kept(fx: Fixture) -> None:
    await fx.register(ALICE)
    await fx.directory.publish()
    head = await fx.head(1)
    other_root = TreeHead(node=NODE, size=1, root=bytes(32), at=0, raw=b"")
    unsigned_size = TreeHead(node=NODE, size=7, root=head.root, at=0, raw=b"")
    other_node = TreeHead(node=GAMMA, size=1, root=head.root, at=0, raw=b"")

    cases = [
        # handed over by beta, but gamma's
        (BETA, BETA_KEY, cosignature(GAMMA, GAMMA_KEY, head), "cosignature_mismatch"),
        # names beta, signed by someone else
        (BETA, BETA_KEY, cosignature(BETA, GAMMA_KEY, head), "cosignature_forged"),
        (BETA, BETA_KEY, cosignature(BETA, BETA_KEY, other_root), "cosignature_mismatch"),
        (BETA, BETA_KEY, cosignature(BETA, BETA_KEY, unsigned_size), "cosignature_mismatch"),
        (BETA, BETA_KEY, cosignature(BETA, BETA_KEY, other_node), "cosignature_mismatch"),
    ]
    for witness, witness_key, raw, code in cases:
        with pytest.raises(VerifyError) as err:
            await fx.directory.add_cosignature(witness, witness_key.public, raw)
        assert err.value.code == code, (witness, code)
    flipped = bytearray(cosignature(BETA, BETA_KEY, head))
    flipped[-5] ^= 1
    for junk in (b"", b"\xa0", bytes(flipped)):
        with pytest.raises(RemoteProtocolError):
            await fx.directory.add_cosignature(BETA, BETA_KEY.public, junk)

    assert await fx.store.cosigned_head(min_size=0) is None


async def test_a_head_carries_at_most_the_cosignatures_a_frame_can(fx: Fixture) -> None:
    head = await fx.head(0)
    for n in range(limits.MAX_COSIGNATURES + 3):
        await fx.store.add_cosignature(size=head.size, witness=f"w{n:02d}.example", cosignature=b"c%d" % n)
    assert len((await fx.directory.head()).cosignatures) == limits.MAX_COSIGNATURES


# Proofs ------------------------------------------------------------------------------------------


async def test_a_proof_uses_the_largest_cosigned_head_covering_the_leaf_else_the_newest(fx: Fixture) -> None:
    await fx.register(ALICE)
    await fx.directory.publish()
    one = await fx.head(1)
    await fx.directory.add_cosignature(BETA, BETA_KEY.public, cosignature(BETA, BETA_KEY, one))
    await fx.register(BOB)
    await fx.directory.publish()

    def check(proof, account: str, size: int) -> None:  # noqa: ANN001
        assert proof is not None
        proven = verify_directory_proof(proof, node=NODE, node_key=NODE_KEY.public, account=account)
        assert proven.head.size == size

    check(await fx.directory.proof(ALICE), ALICE, 1)  # cosigned beats newer
    check(await fx.directory.proof(BOB), BOB, 2)  # nothing cosigned covers bob's leaf
    two = await fx.head(2)
    await fx.directory.add_cosignature(BETA, BETA_KEY.public, cosignature(BETA, BETA_KEY, two))
    check(await fx.directory.proof(ALICE), ALICE, 2)
    assert await fx.directory.proof(f"nobody@{NODE}") is None


# The log for self-monitoring ---------------------------------------------------------------------


async def test_leaves_come_with_the_compact_range_before_them(fx: Fixture) -> None:
    accounts = [ALICE, BOB, f"carol@{NODE}", f"dave@{NODE}"]
    for account in accounts[:3]:
        await fx.register(account)
    await fx.directory.publish()
    signed = await fx.head(3)
    await fx.register(accounts[3])  # written, not yet under a head

    _, every = await fx.directory.leaves(0, 3)
    assert [decode_entry(leaf).account for leaf in every] == accounts[:3]
    for start in range(3):
        for end in range(start + 1, 4):
            frontier, leaves = await fx.directory.leaves(start, end)
            assert leaves == every[start:end]
            # the range of size `start` plus these leaves is the tree of size `end`
            compact = CompactRange(start, frontier)
            for leaf in leaves:
                compact.append(leaf_hash(leaf))
            assert compact.root() == MerkleTree(leaf_hash(x) for x in every[:end]).root()
            if end == 3:
                assert compact.root() == signed.root

    # only leaves under the newest head, a non-empty range, from 0
    for start, end in ((0, 4), (3, 4), (0, 0), (2, 2), (2, 1), (-1, 1)):
        with pytest.raises(ValueError, match="leaf range"):
            await fx.directory.leaves(start, end)
    await fx.directory.publish()
    frontier, leaves = await fx.directory.leaves(3, 4)
    assert [decode_entry(leaf).account for leaf in leaves] == accounts[3:]
    compact = CompactRange(3, frontier)
    compact.append(leaf_hash(leaves[0]))
    assert compact.root() == (await fx.head(4)).root


async def test_a_leaf_not_yet_in_a_head_is_published_before_it_is_proven(fx: Fixture) -> None:
    await fx.register(ALICE)  # committed, no publish (as after a crash)
    proof = await fx.directory.proof(ALICE)
    assert proof is not None and decode_head(proof.head.head).size == 1
    assert len(fx.new_heads) == 2  # the start's empty head, then this one


async def test_concurrent_publishes_sign_one_head(fx: Fixture) -> None:
    await fx.register(ALICE)
    await fx.register(BOB)
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(fx.directory.publish)
    await fx.directory.publish()  # nothing new: nothing signed

    assert len(fx.new_heads) == 2  # start, then one for both leaves
    assert (await fx.head(2)).size == 2


async def test_consistency_is_served_only_between_signed_sizes(fx: Fixture) -> None:
    await fx.register(ALICE)
    await fx.directory.publish()
    one = await fx.head(1)
    await fx.register(BOB)
    await fx.register(f"carol@{NODE}")
    await fx.directory.publish()
    three = await fx.head(3)

    proof = await fx.directory.consistency(1, 3)
    verify_consistency(first=1, second=3, first_root=one.root, second_root=three.root, proof=proof)
    for first, second in ((0, 1), (2, 1), (1, 4), (-1, 2)):
        with pytest.raises(ValueError):
            await fx.directory.consistency(first, second)
