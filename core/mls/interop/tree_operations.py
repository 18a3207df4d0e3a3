"""Kind ``tree-operations``: apply an Add, Update or Remove proposal (sent by
``proposal_sender``) to ``tree_before`` and match the encoding and tree hash of the result."""

from __future__ import annotations

from typing import Any

from ..codec import decode_all
from ..crypto import cipher_suite
from ..messages import Add, Remove, Update, read_proposal
from ..tree import RatchetTree
from .expect import VectorMismatch, expect_equal, hex_field

__all__ = ["check"]


def check(case: dict[str, Any]) -> None:
    cs = cipher_suite(case["cipher_suite"])
    tree = RatchetTree.from_bytes(cs, hex_field(case, "tree_before"))
    expect_equal("tree hash before", tree.root_tree_hash(), hex_field(case, "tree_hash_before"))
    proposal = decode_all(hex_field(case, "proposal"), read_proposal)
    if isinstance(proposal, Add):
        tree.add_leaf(proposal.key_package.leaf_node)
    elif isinstance(proposal, Update):
        tree.update_leaf(case["proposal_sender"], proposal.leaf_node)
    elif isinstance(proposal, Remove):
        tree.remove_leaf(proposal.removed)
    else:
        raise VectorMismatch(f"proposal of type {proposal.proposal_type}: the kind covers add, update and remove")
    expect_equal("tree after", tree.to_bytes(), hex_field(case, "tree_after"))
    expect_equal("tree hash after", tree.root_tree_hash(), hex_field(case, "tree_hash_after"))
