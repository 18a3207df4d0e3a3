"""Array-tree index arithmetic of RFC 9420 Appendix C (node indices, full trees).

Filtered direct paths and resolutions depend on the tree's contents: they belong to the ratchet
tree (core/mls/tree/), not here."""

from .array_tree import (
    common_ancestor,
    copath,
    direct_path,
    is_leaf,
    leaf_to_node,
    leaf_width,
    left,
    level,
    node_to_leaf,
    node_width,
    parent,
    right,
    root,
    sibling,
)

__all__ = [
    "common_ancestor",
    "copath",
    "direct_path",
    "is_leaf",
    "leaf_to_node",
    "leaf_width",
    "left",
    "level",
    "node_to_leaf",
    "node_width",
    "parent",
    "right",
    "root",
    "sibling",
]
