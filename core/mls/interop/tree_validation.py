"""Kind ``tree-validation``: decode the ratchet tree, match the resolution and the tree hash of
every node, then validate the whole tree as a joiner does (every leaf's signature with its leaf
index and ``group_id``, unmerged leaves, parent hashes)."""

from __future__ import annotations

from typing import Any

from ..crypto import cipher_suite
from ..tree import RatchetTree, validate_tree
from .expect import expect_equal, hex_field

__all__ = ["check"]


def check(case: dict[str, Any]) -> None:
    cs = cipher_suite(case["cipher_suite"])
    data = hex_field(case, "tree")
    tree = RatchetTree.from_bytes(cs, data)
    expect_equal("re-encoded tree", tree.to_bytes(), data)
    expect_equal("number of resolutions", len(case["resolutions"]), tree.width)
    for index, expected in enumerate(case["resolutions"]):
        expect_equal(f"resolution of node {index}", tree.resolution(index), expected)
    expect_equal("number of tree hashes", len(case["tree_hashes"]), tree.width)
    for index, expected in enumerate(case["tree_hashes"]):
        expect_equal(f"tree hash of node {index}", tree.tree_hash(index).hex(), expected)
    validate_tree(tree, hex_field(case, "group_id"))
