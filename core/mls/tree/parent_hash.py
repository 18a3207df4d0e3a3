"""Parent hashes (RFC 9420 §7.9): each node a commit sets is bound to the node above it on the
committer's filtered direct path, so a joiner can check who set which key.

``ParentHash(P, S) = Hash(encryption_key of P || parent_hash of P || original tree hash of S)``,
S the child of P off the path, its tree hash taken as it was before the leaves in P's
unmerged_leaves were added."""

from __future__ import annotations

from dataclasses import replace

from ..codec import Writer
from ..key_package.errors import ValidationError
from ..key_package.leaf_node import LeafNode, LeafNodeSource
from ..tree_math import left, level, right, sibling
from .nodes import ParentNode
from .ratchet_tree import RatchetTree

__all__ = ["parent_hash_of", "set_path_parent_hashes", "verify_parent_hashes"]


def parent_hash_of(tree: RatchetTree, parent: ParentNode, original_sibling_tree_hash: bytes) -> bytes:
    w = Writer()
    w.opaque(parent.encryption_key)
    w.opaque(parent.parent_hash)
    w.opaque(original_sibling_tree_hash)
    return tree.cs.hash(w.bytes())


def set_path_parent_hashes(tree: RatchetTree, leaf_index: int) -> bytes:
    """Fill in the parent_hash of every node on the leaf's filtered direct path, from the root
    down (the nodes were just set by a commit, so they have no unmerged leaves), and return the
    parent hash the leaf itself must carry."""
    value = b""
    for p, s in reversed(tree.filtered_direct_path(leaf_index)):
        node = tree.parent_node(p)
        if node is None:
            raise ValidationError(f"node {p} of the committer's filtered direct path is blank")
        node = replace(node, parent_hash=value)
        tree.set_node(p, node)
        value = parent_hash_of(tree, node, tree.tree_hash(s))
    return value


def _carried_parent_hash(node: object) -> bytes | None:
    if isinstance(node, ParentNode):
        return node.parent_hash
    if isinstance(node, LeafNode) and node.leaf_node_source == LeafNodeSource.COMMIT:
        return node.parent_hash
    return None


def _in_subtree(leaf_node_index: int, top: int, levels: int) -> bool:
    half = (1 << levels) - 1
    return top - half <= leaf_node_index <= top + half


def _first_non_blank_ancestors(tree: RatchetTree) -> list[tuple[int, int] | None]:
    """For each node x: (p, c), p its first non-blank ancestor and c the child of p above x,
    or None if every ancestor is blank. One pass from the root down, so a chain step costs
    O(1) instead of a walk through the blank nodes above (a sparse tree's leaves share them)."""
    above: list[tuple[int, int] | None] = [None] * tree.width
    stack = [tree.root]
    while stack:
        x = stack.pop()
        if x % 2 == 0:
            continue
        blank = tree.node(x) is None
        for child in (left(x), right(x)):
            above[child] = above[x] if blank else (x, child)
            stack.append(child)
    return above


def verify_parent_hashes(tree: RatchetTree) -> None:
    """§7.9.2: every non-blank parent node is parent-hash valid, reached by exactly one chain
    of parent-hash links that starts at a leaf. A chain runs from a node D up to the first
    non-blank ancestor P when D's parent hash is ParentHash(P, S) and the resolution of the
    child C of P above D is D and exactly P's unmerged leaves under C."""
    n = tree.n_leaves
    unverified = {p for p, _ in tree.parents()}
    if not unverified:
        return
    expected_of: dict[tuple[int, int], bytes] = {}  # (p, s) -> ParentHash(p, s): leaves below share it
    above = _first_non_blank_ancestors(tree)
    for leaf_index, leaf in tree.leaves():
        if _carried_parent_hash(leaf) is None:
            continue  # no chain starts at a leaf that carries no parent hash
        d = 2 * leaf_index
        while (found := above[d]) is not None:
            p, c = found  # the first non-blank ancestor p of d, and its child c towards d
            parent = tree.parent_node(p)
            assert parent is not None
            s = sibling(c, n)
            expected = expected_of.get((p, s))
            if expected is None:
                expected = parent_hash_of(tree, parent, tree.original_tree_hash(s, frozenset(parent.unmerged_leaves)))
                expected_of[p, s] = expected
            if _carried_parent_hash(tree.node(d)) != expected:
                break  # the chain ends at d
            unmerged_under_c = {2 * x for x in parent.unmerged_leaves if _in_subtree(2 * x, c, level(c))}
            resolution = set(tree.resolution(c))
            if d not in resolution or resolution - {d} != unmerged_under_c or p not in unverified:
                raise ValidationError(f"parent node {p} is reached by a parent-hash chain that is not valid")
            unverified.discard(p)
            d = p
    if unverified:
        raise ValidationError(f"parent node {min(unverified)} is not parent-hash valid")
