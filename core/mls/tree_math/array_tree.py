"""Array-tree index arithmetic of RFC 9420 §4.1 and Appendix C.

Nodes of a tree with ``n`` leaves are numbered left to right, 0 .. 2n-2: leaves at the even
indices (leaf ``i`` is node ``2i``), parents at the odd ones. MLS trees are always full (§7.8:
the tree grows and shrinks by doubling and halving), so ``n`` must be a power of two; an index
outside the tree, or the parent of the root, is a caller's bug (``LocalProtocolError``), never
an answer. Functions that do not need the tree's size (``level``, ``left``, ``right``) take none.
"""

from __future__ import annotations

from ...errors import LocalProtocolError

__all__ = [
    "level",
    "node_width",
    "leaf_width",
    "root",
    "is_leaf",
    "leaf_to_node",
    "node_to_leaf",
    "left",
    "right",
    "parent",
    "sibling",
    "direct_path",
    "copath",
    "common_ancestor",
]


def _check_leaves(n: int) -> None:
    if n < 1 or n & (n - 1):
        raise LocalProtocolError(f"MLS tree math: {n} leaves is not a power of two")


def _check_node(x: int, n: int) -> None:
    _check_leaves(n)
    if not 0 <= x < 2 * n - 1:
        raise LocalProtocolError(f"MLS tree math: node {x} is outside a tree of {n} leaves")


def level(x: int) -> int:
    """Height of node ``x`` above the leaves: the number of trailing one bits (leaves are 0)."""
    if x < 0:
        raise LocalProtocolError(f"MLS tree math: negative node index {x}")
    return ((x + 1) & ~x).bit_length() - 1  # position of the lowest zero bit


def node_width(n: int) -> int:
    """Nodes of a tree with ``n`` leaves (0 for an empty tree)."""
    if n < 0:
        raise LocalProtocolError(f"MLS tree math: negative leaf count {n}")
    return 0 if n == 0 else 2 * (n - 1) + 1


def leaf_width(width: int) -> int:
    """Leaves of a tree of ``width`` nodes: the inverse of ``node_width``."""
    if width < 0 or (width and width % 2 == 0):
        raise LocalProtocolError(f"MLS tree math: {width} nodes is not a tree")
    return 0 if width == 0 else (width + 1) // 2


def root(n: int) -> int:
    """The root's node index in a tree of ``n`` leaves."""
    _check_leaves(n)
    return n - 1  # (1 << log2(node_width(n))) - 1 for a full tree


def is_leaf(x: int) -> bool:
    return x % 2 == 0


def leaf_to_node(leaf: int) -> int:
    if leaf < 0:
        raise LocalProtocolError(f"MLS tree math: negative leaf index {leaf}")
    return 2 * leaf


def node_to_leaf(x: int) -> int:
    if x < 0 or not is_leaf(x):
        raise LocalProtocolError(f"MLS tree math: node {x} is not a leaf")
    return x // 2


def left(x: int) -> int:
    """Left child of the parent node ``x``."""
    k = level(x)
    if k == 0:
        raise LocalProtocolError(f"MLS tree math: leaf node {x} has no children")
    return x ^ (0x01 << (k - 1))


def right(x: int) -> int:
    """Right child of the parent node ``x`` (a full tree: no descent into a blank right edge)."""
    k = level(x)
    if k == 0:
        raise LocalProtocolError(f"MLS tree math: leaf node {x} has no children")
    return x ^ (0x03 << (k - 1))


def parent(x: int, n: int) -> int:
    """Parent of node ``x`` in a tree of ``n`` leaves (the root has none)."""
    _check_node(x, n)
    if x == n - 1:
        raise LocalProtocolError(f"MLS tree math: the root {x} has no parent")
    k = level(x)
    b = (x >> (k + 1)) & 0x01
    return (x | (1 << k)) ^ (b << (k + 1))


def sibling(x: int, n: int) -> int:
    """The other child of ``x``'s parent."""
    p = parent(x, n)
    return right(p) if x < p else left(p)


def direct_path(x: int, n: int) -> list[int]:
    """Ancestors of ``x`` from its parent up to the root (empty for the root)."""
    _check_node(x, n)
    r = n - 1
    path: list[int] = []
    while x != r:
        x = parent(x, n)
        path.append(x)
    return path


def copath(x: int, n: int) -> list[int]:
    """Siblings of ``x`` and of each of its ancestors below the root (empty for the root)."""
    _check_node(x, n)
    r = n - 1
    nodes: list[int] = []
    while x != r:
        nodes.append(sibling(x, n))
        x = parent(x, n)
    return nodes


def common_ancestor(x: int, y: int) -> int:
    """The lowest node that is an ancestor of both ``x`` and ``y`` (or one of them)."""
    if x < 0 or y < 0:
        raise LocalProtocolError(f"MLS tree math: negative node index {min(x, y)}")
    lx, ly = level(x) + 1, level(y) + 1
    if lx <= ly and x >> ly == y >> ly:
        return y
    if ly <= lx and x >> lx == y >> lx:
        return x
    k = 0
    while x != y:
        x, y = x >> 1, y >> 1
        k += 1
    return (x << k) + (1 << (k - 1)) - 1
