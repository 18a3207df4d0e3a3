"""Validation of a whole ratchet tree (RFC 9420 §12.4.3.1), as a joiner does before trusting a
tree it received: the tree hash it was promised, every leaf (signature with its leaf index and
the group id, capabilities, unique keys), the unmerged_leaves lists, and the parent hashes.

The group-wide leaf rules (every member supports every credential type in use, keys unique)
are checked with sets, so a 1,500-member tree costs one pass, not one pass per member."""

from __future__ import annotations

from collections import Counter

from ..extensions.required_capabilities import RequiredCapabilities
from ..key_package.errors import ValidationError
from ..key_package.validation import check_leaf_node
from ..tree_math import level
from ..tree_math import parent as parent_of
from .parent_hash import verify_parent_hashes
from .ratchet_tree import RatchetTree

__all__ = ["validate_tree", "check_unmerged_leaves"]


def validate_tree(
    tree: RatchetTree,
    group_id: bytes,
    *,
    tree_hash: bytes | None = None,
    required: RequiredCapabilities | None = None,
    now: int | None = None,
) -> None:
    """Raise ValidationError (VerifyError for a signature) unless ``tree`` is a valid tree of
    group ``group_id`` whose root tree hash is ``tree_hash`` (when given)."""
    if tree_hash is not None and tree.root_tree_hash() != tree_hash:
        raise ValidationError("ratchet tree hash does not match the group context's")
    leaves = list(tree.leaves())
    if not leaves:
        raise ValidationError("ratchet tree without members")
    in_use = {leaf.credential.credential_type for _, leaf in leaves}
    signature_keys: set[bytes] = set()
    for leaf_index, leaf in leaves:
        check_leaf_node(
            tree.cs, leaf, source=leaf.leaf_node_source, group_id=group_id, leaf_index=leaf_index, required=required, now=now
        )
        if not in_use <= set(leaf.capabilities.credentials):
            raise ValidationError(f"leaf {leaf_index} does not support every credential type in use")
        if leaf.signature_key in signature_keys:
            raise ValidationError(f"leaf {leaf_index}'s signature key is another member's")
        signature_keys.add(leaf.signature_key)
    for index in range(tree.width):
        node = tree.node(index)
        # the tree's key counts, built with the tree and kept up to date for the commits to come
        if node is not None and tree.key_count(node.encryption_key) > 1:
            raise ValidationError(f"node {index}'s encryption key appears twice in the tree")
    check_unmerged_leaves(tree)
    verify_parent_hashes(tree)


def check_unmerged_leaves(tree: RatchetTree) -> None:
    """Each unmerged leaf of a parent P is a member below P, listed by every non-blank node
    between it and P: along a leaf's direct path, the non-blank parents listing it come first.
    Each list becomes a set once and only listed leaves walk up, and no further than their
    highest listing: O(entries + log n) per listed leaf, not a scan of every list on the way
    up (a hostile tree can list every leaf at every parent)."""
    n = tree.n_leaves
    unmerged_at: dict[int, frozenset[int]] = {}
    listings: Counter[int] = Counter()
    for p, parent in tree.parents():
        listed = unmerged_at[p] = frozenset(parent.unmerged_leaves)
        if len(listed) != len(parent.unmerged_leaves):
            raise ValidationError(f"parent node {p} lists an unmerged leaf twice")
        if not listed:
            continue
        half = (1 << level(p)) - 1
        if None in map(tree.leaf, listed):
            blank = next(i for i in parent.unmerged_leaves if tree.leaf(i) is None)
            raise ValidationError(f"parent node {p} lists leaf {blank}, which is not a member, as unmerged")
        if not (p - half <= 2 * min(listed) and 2 * max(listed) <= p + half):
            outside = next(i for i in parent.unmerged_leaves if not p - half <= 2 * i <= p + half)
            raise ValidationError(f"parent node {p} lists leaf {outside}, which is not below it, as unmerged")
        listings.update(listed)
    for leaf_index, remaining in listings.items():
        x = 2 * leaf_index
        while remaining:
            x = parent_of(x, n)
            at_x = unmerged_at.get(x)
            if at_x is None:
                continue
            if leaf_index not in at_x:
                raise ValidationError(f"leaf {leaf_index} is unmerged at a node above node {x} but not at node {x}")
            remaining -= 1
