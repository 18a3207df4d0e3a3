"""Validation of a whole ratchet tree (RFC 9420 §12.4.3.1), as a joiner does before trusting a
tree it received: the tree hash it was promised, every leaf (signature with its leaf index and
the group id, capabilities, unique keys), the unmerged_leaves lists, and the parent hashes.

The group-wide leaf rules (every member supports every credential type in use, keys unique)
are checked with sets, so a 1,500-member tree costs one pass, not one pass per member."""

from __future__ import annotations

from ..extensions.required_capabilities import RequiredCapabilities
from ..key_package.errors import ValidationError
from ..key_package.validation import check_leaf_node
from ..tree_math import direct_path
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
    encryption_keys: set[bytes] = set()
    for index in range(tree.width):
        node = tree.node(index)
        if node is not None:
            if node.encryption_key in encryption_keys:
                raise ValidationError(f"node {index}'s encryption key appears twice in the tree")
            encryption_keys.add(node.encryption_key)
    check_unmerged_leaves(tree)
    verify_parent_hashes(tree)


def check_unmerged_leaves(tree: RatchetTree) -> None:
    """Each unmerged leaf of a parent P is a member below P, listed by every non-blank node
    between it and P."""
    for p, parent in tree.parents():
        if len(set(parent.unmerged_leaves)) != len(parent.unmerged_leaves):
            raise ValidationError(f"parent node {p} lists an unmerged leaf twice")
        for leaf_index in parent.unmerged_leaves:
            if tree.leaf(leaf_index) is None:
                raise ValidationError(f"parent node {p} lists leaf {leaf_index}, which is not a member, as unmerged")
            path = direct_path(2 * leaf_index, tree.n_leaves)
            if p not in path:
                raise ValidationError(f"parent node {p} lists leaf {leaf_index}, which is not below it, as unmerged")
            for between in path[: path.index(p)]:
                node = tree.parent_node(between)
                if node is not None and leaf_index not in node.unmerged_leaves:
                    raise ValidationError(f"leaf {leaf_index} is unmerged at node {p} but not at node {between} below it")
