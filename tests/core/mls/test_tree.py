"""The ratchet tree (core/mls/tree/): the tree-validation and tree-operations interop vectors of
every suite, tampered copies of them refused (a leaf signature, a parent hash, a group id, an
unmerged leaf, a truncated encoding), and the tree's own behaviour: the tree hash cache
recomputes only the changed path, add/update/remove/truncate keep the tree full."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from sonet.core.errors import VerifyError
from sonet.core.limits import MLS_MAX_TREE_LEAVES
from sonet.core.mls.codec import DecodeError, Writer
from sonet.core.mls.crypto import CipherSuite, cipher_suite
from sonet.core.mls.extensions import Capabilities
from sonet.core.mls.interop import tree_operations, tree_validation
from sonet.core.mls.key_package import Credential, LeafNode, LeafNodeSource, ValidationError
from sonet.core.mls.tree import (
    ParentNode,
    RatchetTree,
    check_unmerged_leaves,
    decode_tree_nodes,
    encode_tree_nodes,
    validate_tree,
    verify_parent_hashes,
    write_node,
)
from sonet.core.mls.tree import ratchet_tree
from tests import vectors


def cases(kind: str) -> list[dict[str, Any]]:
    loaded = vectors.load_json(f"mls/{kind}.json")
    assert isinstance(loaded, list) and loaded
    return loaded


def retree(case: dict[str, Any], change: Any) -> dict[str, Any]:
    """A copy of a tree-validation case whose tree went through ``change(tree)``."""
    tampered = copy.deepcopy(case)
    tree = RatchetTree.from_bytes(cipher_suite(case["cipher_suite"]), bytes.fromhex(case["tree"]))
    change(tree)
    tampered["tree"] = tree.to_bytes().hex()
    return tampered


def find_case(predicate: Any) -> dict[str, Any]:
    for case in cases("tree-validation"):
        tree = RatchetTree.from_bytes(cipher_suite(case["cipher_suite"]), bytes.fromhex(case["tree"]))
        if predicate(tree):
            return case
    raise AssertionError("no such case in tree-validation.json")


def test_every_tree_validation_vector_passes_for_every_suite() -> None:
    found = cases("tree-validation")
    assert {c["cipher_suite"] for c in found} == set(range(1, 8))
    for case in found:
        tree_validation.check(case)


def test_every_tree_operations_vector_passes() -> None:
    for case in cases("tree-operations"):
        tree_operations.check(case)


def test_a_tampered_leaf_signature_is_refused() -> None:
    case = cases("tree-validation")[0]

    def tamper(tree: RatchetTree) -> None:
        leaf = tree.leaf(0)
        assert leaf is not None
        tree.set_node(0, replace(leaf, signature=bytes([leaf.signature[0] ^ 1]) + leaf.signature[1:]))

    tampered = retree(case, tamper)
    tampered["tree_hashes"] = [RatchetTree.from_bytes(cipher_suite(1), bytes.fromhex(tampered["tree"])).tree_hash(i).hex() for i in range(len(case["tree_hashes"]))]
    with pytest.raises(VerifyError, match="leaf node signature"):
        tree_validation.check(tampered)


def test_a_commit_leaf_is_bound_to_its_group_id() -> None:
    case = find_case(lambda t: any(leaf.leaf_node_source == LeafNodeSource.COMMIT for _, leaf in t.leaves()))
    tampered = dict(case, group_id=bytes([bytes.fromhex(case["group_id"])[0] ^ 1]).hex() + case["group_id"][2:])
    with pytest.raises(VerifyError):
        tree_validation.check(tampered)


def test_a_wrong_parent_hash_is_refused() -> None:
    case = find_case(lambda t: any(p.parent_hash for _, p in t.parents()))
    cs = cipher_suite(case["cipher_suite"])
    tree = RatchetTree.from_bytes(cs, bytes.fromhex(case["tree"]))
    index, parent = next((i, p) for i, p in tree.parents() if p.parent_hash)
    tree.set_node(index, replace(parent, parent_hash=bytes(len(parent.parent_hash))))
    with pytest.raises(ValidationError, match="parent"):
        verify_parent_hashes(tree)


def test_a_parent_node_no_chain_reaches_is_refused() -> None:
    case = find_case(lambda t: sum(1 for _ in t.parents()) >= 2)
    cs = cipher_suite(case["cipher_suite"])
    tree = RatchetTree.from_bytes(cs, bytes.fromhex(case["tree"]))
    index, parent = next(iter(tree.parents()))
    tree.set_node(index, replace(parent, encryption_key=cs.derive_key_pair(b"\x01" * 32)[1]))
    with pytest.raises(ValidationError, match="parent"):
        verify_parent_hashes(tree)


def test_a_mismatched_tree_hash_or_resolution_is_refused() -> None:
    case = cases("tree-validation")[3]
    bad_hash = copy.deepcopy(case)
    bad_hash["tree_hashes"][0] = "00" * 32
    with pytest.raises(AssertionError, match="tree hash of node 0"):
        tree_validation.check(bad_hash)
    bad_resolution = copy.deepcopy(case)
    bad_resolution["resolutions"][1] = [0]
    with pytest.raises(AssertionError, match="resolution of node 1"):
        tree_validation.check(bad_resolution)


def test_an_unmerged_leaf_that_is_not_a_member_below_is_refused() -> None:
    case = find_case(lambda t: t.n_leaves >= 4 and any(True for _ in t.parents()))
    cs = cipher_suite(case["cipher_suite"])
    tree = RatchetTree.from_bytes(cs, bytes.fromhex(case["tree"]))
    index, parent = next(iter(tree.parents()))
    outside = next(i for i, _ in tree.leaves() if index not in tree.direct_path(2 * i))
    tree.set_node(index, replace(parent, unmerged_leaves=(outside,)))
    with pytest.raises(ValidationError, match="not below it"):
        check_unmerged_leaves(tree)
    tree.set_node(index, replace(parent, unmerged_leaves=(99,)))
    with pytest.raises(ValidationError, match="leaf 99, which is not a member"):
        check_unmerged_leaves(tree)
    below = next(i for i, _ in tree.leaves() if index in tree.direct_path(2 * i))
    tree.set_node(index, replace(parent, unmerged_leaves=(below, below)))
    with pytest.raises(ValidationError, match="twice"):
        check_unmerged_leaves(tree)


def test_truncated_or_padded_tree_encodings_are_refused() -> None:
    case = cases("tree-validation")[0]
    data = bytes.fromhex(case["tree"])
    nodes = decode_tree_nodes(data)
    assert encode_tree_nodes(nodes) == data
    with pytest.raises(DecodeError, match="ends with a blank"):
        decode_tree_nodes(_encode_raw(nodes + [None, None]))
    with pytest.raises(DecodeError):
        decode_tree_nodes(data[:-1])
    with pytest.raises(DecodeError, match="no nodes"):
        decode_tree_nodes(b"\x00")
    parent = ParentNode(b"k")
    with pytest.raises(DecodeError, match="node 0 is a parent at a leaf position"):
        decode_tree_nodes(_encode_raw([parent]))
    # a tree that lost its last member does not pass as the original
    tree = RatchetTree.from_bytes(cipher_suite(case["cipher_suite"]), data)
    tree.remove_leaf(max(i for i, _ in tree.leaves()))
    with pytest.raises(AssertionError, match="number of resolutions|tree hash"):
        tree_validation.check(dict(case, tree=tree.to_bytes().hex()))


def _encode_raw(nodes: list[Any]) -> bytes:
    """The optional<Node> vector as it is, trailing blanks included."""
    w = Writer()
    w.vector(nodes, lambda w2, n: w2.optional(n, write_node))  # trailing blanks kept on purpose
    return w.bytes()


def test_a_tree_operation_result_that_differs_is_refused() -> None:
    case = copy.deepcopy(cases("tree-operations")[0])
    case["tree_hash_after"] = "00" * len(bytes.fromhex(case["tree_hash_after"]))
    with pytest.raises(AssertionError, match="tree hash after"):
        tree_operations.check(case)


# the tree's own behaviour, on synthetic leaves (hashing does not need valid keys)


class CountingSuite:
    """A cipher suite whose hash calls are counted."""

    def __init__(self, cs: CipherSuite) -> None:
        self.cs = cs
        self.hashes = 0

    def hash(self, data: bytes) -> bytes:
        self.hashes += 1
        return self.cs.hash(data)


def synthetic_leaf(i: int) -> LeafNode:
    return LeafNode(
        encryption_key=b"e%d" % i,
        signature_key=b"s%d" % i,
        credential=Credential.basic(b"member %d" % i),
        capabilities=Capabilities(cipher_suites=(1,), credentials=(1,)),
        leaf_node_source=LeafNodeSource.UPDATE,
        signature=b"sig",
    )


def build(n: int, cs: Any = None) -> RatchetTree:
    tree = RatchetTree.with_one_leaf(cs or cipher_suite(1), synthetic_leaf(0))
    for i in range(1, n):
        assert tree.add_leaf(synthetic_leaf(i)) == i
    return tree


def test_the_tree_hash_cache_recomputes_only_the_changed_path() -> None:
    counting = CountingSuite(cipher_suite(1))
    tree = build(1500, counting)
    assert tree.n_leaves == 2048
    first = tree.root_tree_hash()
    assert counting.hashes == tree.width
    counting.hashes = 0
    assert tree.root_tree_hash() == first and counting.hashes == 0
    tree.update_leaf(700, synthetic_leaf(7000))
    changed = tree.root_tree_hash()
    assert counting.hashes == 12  # the leaf and its 11 ancestors
    fresh = RatchetTree.from_bytes(cipher_suite(1), tree.to_bytes())
    assert fresh.root_tree_hash() == changed != first


def test_a_copy_is_independent_of_its_original() -> None:
    tree = build(5)
    before = tree.root_tree_hash()
    staged = tree.copy()
    staged.remove_leaf(4)
    assert staged.n_leaves == 4 and tree.n_leaves == 8
    assert tree.root_tree_hash() == before != staged.root_tree_hash()


def test_add_takes_the_leftmost_blank_leaf_and_marks_it_unmerged() -> None:
    tree = build(4)
    tree.set_node(1, ParentNode(b"p1"))
    tree.set_node(3, ParentNode(b"p3", unmerged_leaves=(2,)))
    tree.remove_leaf(1)  # blanks leaf 1 and nodes 1 and 3
    tree.set_node(3, ParentNode(b"p3", unmerged_leaves=(3,)))
    assert tree.add_leaf(synthetic_leaf(9)) == 1
    assert tree.parent_node(3) == ParentNode(b"p3", unmerged_leaves=(1, 3))  # kept ascending
    assert tree.add_leaf(synthetic_leaf(10)) == 4 and tree.n_leaves == 8  # full: doubled


def test_remove_truncates_the_blank_right_half_only() -> None:
    tree = build(5)
    tree.remove_leaf(2)
    assert tree.n_leaves == 8
    tree.remove_leaf(4)
    assert tree.n_leaves == 4 and tree.width == 7
    assert tree.to_bytes() == RatchetTree.from_bytes(cipher_suite(1), tree.to_bytes()).to_bytes()
    with pytest.raises(ValidationError, match="leaf 2 is not a member"):
        tree.remove_leaf(2)
    with pytest.raises(ValidationError, match="not a member"):
        tree.update_leaf(9, synthetic_leaf(1))


def test_update_blanks_the_path_above_the_leaf() -> None:
    tree = build(4)
    for p in (1, 3, 5):
        tree.set_node(p, ParentNode(b"p%d" % p))
    tree.update_leaf(0, synthetic_leaf(20))
    assert [tree.node(p) is None for p in (1, 3, 5)] == [True, True, False]


def test_resolution_and_filtered_direct_path() -> None:
    tree = build(4)
    tree.set_node(5, ParentNode(b"p5", unmerged_leaves=(3,)))
    tree.remove_leaf(1)
    assert tree.resolution(3) == [0, 5, 6]
    assert tree.resolution(1) == [0]
    assert tree.filtered_direct_path(0) == [(3, 5)]  # node 1's copath child (leaf 1) is blank
    assert tree.filtered_direct_path(3) == [(5, 4), (3, 1)]


def test_a_tree_over_the_leaf_cap_is_refused_while_it_is_read() -> None:
    blanks = [None] * (2 * MLS_MAX_TREE_LEAVES)
    with pytest.raises(DecodeError, match=f"more than {MLS_MAX_TREE_LEAVES} leaves"):
        decode_tree_nodes(_encode_raw([*blanks, synthetic_leaf(0)]))


def test_adding_past_the_leaf_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratchet_tree, "MLS_MAX_TREE_LEAVES", 4)
    tree = build(4)
    with pytest.raises(ValidationError, match="past 4 leaves"):
        tree.add_leaf(synthetic_leaf(4))
    assert tree.n_leaves == 4


def test_validate_tree_checks_the_promised_tree_hash_and_unique_keys() -> None:
    case = find_case(lambda t: sum(1 for _ in t.leaves()) >= 3)
    cs = cipher_suite(case["cipher_suite"])
    group_id = bytes.fromhex(case["group_id"])
    tree = RatchetTree.from_bytes(cs, bytes.fromhex(case["tree"]))
    validate_tree(tree, group_id, tree_hash=tree.root_tree_hash())
    with pytest.raises(ValidationError, match="tree hash does not match"):
        validate_tree(tree, group_id, tree_hash=bytes(cs.nh))
    # a parent node that reuses a leaf's encryption key
    index, parent = next(iter(tree.parents()))
    leaf = tree.leaf(0)
    assert leaf is not None
    tree.set_node(index, replace(parent, encryption_key=leaf.encryption_key))
    with pytest.raises(ValidationError, match="appears twice"):
        validate_tree(tree, group_id)
