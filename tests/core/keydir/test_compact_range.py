"""core.keydir.merkle: MerkleTree.frontier and CompactRange. A frontier of size ``a`` plus the
leaves ``a .. b - 1`` gives the root of the tree of size ``b`` (what a self-monitoring device
checks against a signed head); a tampered or mis-sized frontier is refused or leads elsewhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonet.core.keydir import EMPTY_ROOT, CompactRange, MerkleTree, leaf_hash

from ..pairs import flip_bit
from .test_merkle import leaves, mth
from .test_merkle_vectors import CLASSIC_LEAVES

#: RFC 6962's reference roots of the first 1..8 classic leaves (certificate-transparency data)
CLASSIC_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def extended(start: int, tree: MerkleTree, hashes: list[bytes], end: int) -> CompactRange:
    compact = CompactRange(start, tree.frontier(start))
    for h in hashes[start:end]:
        compact.append(h)
    return compact


def test_the_classic_roots_from_every_starting_point() -> None:
    hashes = [leaf_hash(leaf) for leaf in CLASSIC_LEAVES]
    tree = MerkleTree(hashes)
    for start in range(9):
        for end in range(start, 9):
            want = bytes.fromhex(CLASSIC_ROOTS[end - 1]) if end else EMPTY_ROOT
            assert extended(start, tree, hashes, end).root() == want


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 70), salt=st.binary(max_size=4))
def test_every_start_and_end_of_a_random_tree(size: int, salt: bytes) -> None:
    hashes = leaves(size, salt)
    tree = MerkleTree(hashes)
    for start in range(size + 1):
        frontier = tree.frontier(start)
        assert len(frontier) == start.bit_count()
        compact = CompactRange(start, frontier)
        assert compact.size == start and compact.hashes == tuple(frontier)
        assert compact.root() == tree.root(start) == mth(hashes[:start])
        for end in range(start + 1, size + 1):
            compact.append(hashes[end - 1])
            assert compact.size == end
            assert compact.root() == tree.root(end)
            # Appending leaves turns the range into the frontier of the larger tree.
            assert compact.hashes == tuple(tree.frontier(end))


def test_frontier_shapes() -> None:
    tree = MerkleTree(leaves(13))
    assert tree.frontier(0) == []
    assert tree.frontier(8) == [tree.root(8)]
    # 13 = 8 + 4 + 1: leaves [0, 8), [8, 12) and leaf 12
    assert tree.frontier(13) == [tree.root(8), mth(leaves(13)[8:12]), leaves(13)[12]]
    assert CompactRange(0, []).root() == EMPTY_ROOT


@pytest.mark.parametrize("size", [-1, 14, True, 3.0])
def test_frontier_of_an_impossible_size_is_refused(size: object) -> None:
    with pytest.raises(ValueError):
        MerkleTree(leaves(13)).frontier(size)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 64), data=st.data())
def test_a_tampered_frontier_leads_to_another_root(size: int, data: st.DataObject) -> None:
    hashes = leaves(size + 5)
    tree = MerkleTree(hashes)
    frontier = tree.frontier(size)
    i = data.draw(st.integers(0, len(frontier) - 1), label="hash")
    bit = data.draw(st.integers(0, 8 * 32 - 1), label="bit")
    tampered = frontier[:i] + [flip_bit(frontier[i], bit)] + frontier[i + 1 :]
    compact = CompactRange(size, tampered)
    assert compact.root() != tree.root(size)
    for h in hashes[size:]:
        compact.append(h)
    assert compact.root() != tree.root()


def test_a_frontier_of_the_wrong_length_or_shape_is_refused() -> None:
    tree = MerkleTree(leaves(13))
    frontier = tree.frontier(13)  # three hashes
    for bad in (frontier[:-1], frontier + [leaves(1)[0]], []):
        with pytest.raises(ValueError, match="has 3 hashes"):
            CompactRange(13, bad)
    # The frontier of another size with as many hashes is accepted but proves another root.
    assert CompactRange(13, tree.frontier(11)).root() != tree.root(13)
    for bad in ([*frontier[:2], frontier[2][:31]], [*frontier[:2], bytearray(frontier[2])], [*frontier[:2], "x" * 32]):
        with pytest.raises(ValueError, match="32 bytes"):
            CompactRange(13, bad)  # type: ignore[arg-type]
    for size in (-1, True, 2**63):
        with pytest.raises(ValueError, match="size"):
            CompactRange(size, [])


def test_appending_a_malformed_leaf_hash_is_refused_and_changes_nothing() -> None:
    tree = MerkleTree(leaves(5))
    compact = CompactRange(5, tree.frontier(5))
    for bad in (b"short", b"\0" * 33, "x" * 32):
        with pytest.raises(ValueError):
            compact.append(bad)  # type: ignore[arg-type]
    assert compact.size == 5 and compact.root() == tree.root()


def test_the_hashes_are_a_copy() -> None:
    tree = MerkleTree(leaves(3))
    frontier = tree.frontier(3)
    compact = CompactRange(3, frontier)
    frontier.append(b"\0" * 32)  # the caller's list is not the range's
    compact.append(leaves(4)[3])
    assert compact.root() == MerkleTree(leaves(4)).root()
    assert tree.frontier(3) == frontier[:2]
