"""The ratchet tree of RFC 9420 §7: nodes and the ratchet_tree extension's encoding,
``RatchetTree`` (resolution, filtered direct path, cached tree hashes, add/update/remove/
truncate), parent hashes, whole-tree validation and TreeKEM (UpdatePath create/apply)."""

from .nodes import Node, NodeType, ParentNode, decode_tree_nodes, encode_tree_nodes, read_node, read_tree_nodes, write_node
from .parent_hash import parent_hash_of, set_path_parent_hashes, verify_parent_hashes
from .ratchet_tree import RatchetTree
from .treekem import (
    CreatedPath,
    ReceivedPath,
    TreeKEMPrivate,
    check_path_ciphertext_counts,
    create_update_path,
    decrypt_update_path,
    merge_update_path,
)
from .validation import check_unmerged_leaves, validate_tree

__all__ = [
    "CreatedPath",
    "Node",
    "NodeType",
    "ParentNode",
    "RatchetTree",
    "ReceivedPath",
    "TreeKEMPrivate",
    "check_path_ciphertext_counts",
    "check_unmerged_leaves",
    "create_update_path",
    "decrypt_update_path",
    "decode_tree_nodes",
    "encode_tree_nodes",
    "merge_update_path",
    "parent_hash_of",
    "read_node",
    "read_tree_nodes",
    "set_path_parent_hashes",
    "validate_tree",
    "verify_parent_hashes",
    "write_node",
]
