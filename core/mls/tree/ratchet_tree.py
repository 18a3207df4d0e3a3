"""The public ratchet tree of RFC 9420 §7: an array of nodes over node indices (leaves even,
parents odd; always a full tree of 2^k leaves), blank nodes as None.

Tree hashes (§7.8) are cached per node. Changing a node forgets the cached hash of that node and
of its ancestors only, so after a commit the root hash costs O(log n) hashes plus the changed
nodes, never the whole tree. ``copy`` is cheap (two list copies; nodes are immutable), which is
how a change is staged: copy, change the copy, keep it or drop it.

The tree also counts the nodes holding each HPKE public key, and keeps a ``LeafSummary`` of its
leaves (signature and encryption keys, credential types and the ones supported), both built with
the tree and kept up to date by every change and copy, so a commit's keys and leaves are checked
against the whole group (§7.3, §12.4.2) without a scan of it.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import repeat
from operator import is_not
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from ...errors import LocalProtocolError
from ...limits import MLS_MAX_TREE_LEAVES
from ..codec import Writer
from ..key_package.errors import ValidationError
from ..key_package.leaf_node import LeafNode
from ..key_package.validation import LeafSummary
from ..tree_math import direct_path, leaf_to_node, left, level, right, root, sibling
from .nodes import Node, NodeType, ParentNode, decode_tree_nodes, encode_tree_nodes

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["RatchetTree"]


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check_position(index: int, node: Node | None) -> None:
    if node is not None and isinstance(node, LeafNode) != (index % 2 == 0):
        kind = "leaf" if index % 2 == 0 else "parent"
        raise LocalProtocolError(f"MLS: a {kind} position takes a {kind} node")


class RatchetTree:
    __slots__ = ("cs", "_nodes", "_hashes", "_key_counts", "_leaf_summary", "_no_blank_below")

    def __init__(self, cs: CipherSuite, nodes: list[Node | None]) -> None:
        if not _is_power_of_two((len(nodes) + 1) // 2) or len(nodes) % 2 == 0:
            raise LocalProtocolError(f"MLS: a ratchet tree of {len(nodes)} nodes is not a full tree")
        self.cs = cs
        self._nodes: list[Node | None] = list(nodes)
        self._hashes: list[bytes | None] = [None] * len(nodes)
        #: encryption key -> number of nodes holding it
        self._key_counts: dict[bytes, int] = {}
        self._leaf_summary = LeafSummary()
        for index, node in enumerate(self._nodes):
            _check_position(index, node)
            self._count_node(index, node, 1)
        #: every leaf below this leaf index is a member: where the search for a blank leaf starts
        self._no_blank_below = 0

    # construction and encoding

    @classmethod
    def from_bytes(cls, cs: CipherSuite, data: bytes) -> RatchetTree:
        """A tree from the ratchet_tree extension's data (structure only: see ``validate``)."""
        return cls(cs, decode_tree_nodes(data))

    @classmethod
    def with_one_leaf(cls, cs: CipherSuite, leaf: LeafNode) -> RatchetTree:
        return cls(cs, [leaf])

    def to_bytes(self) -> bytes:
        return encode_tree_nodes(self._nodes)

    def copy(self) -> RatchetTree:
        other = RatchetTree.__new__(RatchetTree)
        other.cs = self.cs
        other._nodes = list(self._nodes)
        other._hashes = list(self._hashes)
        other._key_counts = self._key_counts.copy()
        other._leaf_summary = self._leaf_summary.copy()
        other._no_blank_below = self._no_blank_below
        return other

    # shape and access

    @property
    def n_leaves(self) -> int:
        return (len(self._nodes) + 1) // 2

    @property
    def width(self) -> int:
        return len(self._nodes)

    @property
    def root(self) -> int:
        return root(self.n_leaves)

    def node(self, index: int) -> Node | None:
        return self._nodes[index]

    def leaf(self, leaf_index: int) -> LeafNode | None:
        if not 0 <= leaf_index < self.n_leaves:
            return None
        node = self._nodes[2 * leaf_index]
        assert node is None or isinstance(node, LeafNode)
        return node

    def parent_node(self, index: int) -> ParentNode | None:
        node = self._nodes[index]
        assert node is None or isinstance(node, ParentNode)
        return node

    def leaves(self) -> Iterator[tuple[int, LeafNode]]:
        """(leaf index, leaf) of every non-blank leaf."""
        for i in range(0, len(self._nodes), 2):
            node = self._nodes[i]
            if node is not None:
                assert isinstance(node, LeafNode)
                yield i // 2, node

    def parents(self) -> Iterator[tuple[int, ParentNode]]:
        """(node index, node) of every non-blank parent node."""
        for i in range(1, len(self._nodes), 2):
            node = self._nodes[i]
            if node is not None:
                assert isinstance(node, ParentNode)
                yield i, node

    def direct_path(self, index: int) -> list[int]:
        return direct_path(index, self.n_leaves)

    def sibling(self, index: int) -> int:
        return sibling(index, self.n_leaves)

    def set_node(self, index: int, node: Node | None) -> None:
        """Put ``node`` at ``index`` and forget the cached hashes it changes."""
        _check_position(index, node)
        self._count_node(index, self._nodes[index], -1)
        self._count_node(index, node, 1)
        self._nodes[index] = node
        if node is None and index % 2 == 0 and index // 2 < self._no_blank_below:
            self._no_blank_below = index // 2
        self._forget_hashes(index)

    def key_count(self, encryption_key: bytes) -> int:
        """How many nodes of the tree hold ``encryption_key`` (a valid tree: 0 or 1)."""
        return self._key_counts.get(encryption_key, 0)

    def leaf_summary(self) -> LeafSummary:
        """The summary of the members' leaves the group-wide leaf rules read (§7.3). The tree's
        own, kept up to date by its changes: copy it before changing it."""
        return self._leaf_summary

    def _count_node(self, index: int, node: Node | None, delta: int) -> None:
        if node is None:
            return
        if index % 2 == 0:
            assert isinstance(node, LeafNode)
            self._leaf_summary.add(node) if delta > 0 else self._leaf_summary.remove(node)
        counts = self._key_counts
        n = counts.get(node.encryption_key, 0) + delta
        if n:
            counts[node.encryption_key] = n
        else:
            del counts[node.encryption_key]

    def _forget_hashes(self, index: int) -> None:
        self._hashes[index] = None
        for ancestor in direct_path(index, self.n_leaves):
            if self._hashes[ancestor] is None:
                break  # its ancestors are forgotten already: a cached hash implies cached descendants' ancestors
            self._hashes[ancestor] = None
        # (a node's hash is cached only after its children's are, so once an ancestor has no
        # cached hash, none of the ones above it has one either)

    # resolution and paths (§4.1.1, §7.4)

    def resolution(self, index: int) -> list[int]:
        """The non-blank nodes that cover the subtree under ``index``: the node itself and its
        unmerged leaves if it is not blank, else the resolutions of its children."""
        # a loop over a stack, left subtree first: in a tree of blank parents this visits ~2n
        # nodes, and recursion would cost a call and a list concatenation at each
        nodes = self._nodes
        out: list[int] = []
        stack = [index]
        while stack:
            x = stack.pop()
            node = nodes[x]
            if node is not None:
                out.append(x)
                if isinstance(node, ParentNode):
                    out.extend(2 * leaf for leaf in node.unmerged_leaves)
            elif x % 2 == 1:
                k = level(x)
                # skip an all-blank subtree in one C-level check; small ones are quicker walked
                if k < 6 or not self._resolution_empty(x):
                    half = 1 << (k - 1)
                    stack.append(x + half)
                    stack.append(x - half)
        return out

    def _resolution_empty(self, index: int) -> bool:
        """Whether every node under ``index`` (itself included) is blank."""
        # one C-level scan of the subtree's slice: the blank right end of a 1,500-member tree
        # (leaves 1,500 to 2,047) would otherwise cost a Python call per node
        if self._nodes[index] is not None:
            return False
        half = (1 << level(index)) - 1
        # ``is not`` in C, stopping at the first node (list.count would call each node's __eq__)
        return not any(map(is_not, self._nodes[index - half : index + half + 1], repeat(None)))

    def filtered_direct_path(self, leaf_index: int) -> list[tuple[int, int]]:
        """(node, copath child) for each node of the leaf's direct path whose child off the
        path has a non-empty resolution, from the leaf's parent up to the root."""
        n = self.n_leaves
        out: list[tuple[int, int]] = []
        x = leaf_to_node(leaf_index)
        for p in direct_path(x, n):
            s = sibling(x, n)
            if not self._resolution_empty(s):
                out.append((p, s))
            x = p
        return out

    # tree hash (§7.8)

    def tree_hash(self, index: int | None = None) -> bytes:
        """The tree hash of the subtree under ``index`` (the root by default)."""
        if index is None:
            index = self.root
        cached = self._hashes[index]
        if cached is not None:
            return cached
        if index % 2 == 0:
            value = self._leaf_hash(index, self._nodes[index])
        else:
            value = self._parent_hash_input(self.parent_node(index), self.tree_hash(left(index)), self.tree_hash(right(index)))
        self._hashes[index] = value
        return value

    def root_tree_hash(self) -> bytes:
        return self.tree_hash(self.root)

    def _leaf_hash(self, index: int, node: Node | None) -> bytes:
        w = Writer()
        w.u8(NodeType.LEAF)
        w.u32(index // 2)
        w.optional(node, lambda w2, leaf: leaf.write(w2))
        return self.cs.hash(w.bytes())

    def _parent_hash_input(self, node: ParentNode | None, left_hash: bytes, right_hash: bytes) -> bytes:
        w = Writer()
        w.u8(NodeType.PARENT)
        w.optional(node, lambda w2, p: p.write(w2))
        w.opaque(left_hash)
        w.opaque(right_hash)
        return self.cs.hash(w.bytes())

    def original_tree_hash(self, index: int, removed_leaves: AbstractSet[int]) -> bytes:
        """The tree hash of the subtree under ``index`` as it was before ``removed_leaves`` were
        added (§7.9.2): those leaves blank, and gone from every unmerged_leaves list."""
        if not removed_leaves:
            return self.tree_hash(index)
        return self._original_tree_hash(index, sorted(removed_leaves), removed_leaves)

    def _original_tree_hash(self, index: int, ordered: list[int], removed: AbstractSet[int]) -> bytes:
        # whether a removed leaf is under ``index`` is one bisection of the sorted list, so a
        # node costs O(log u), not a pass over the u removed leaves (u can be half the tree)
        half = (1 << level(index)) - 1
        first = bisect_left(ordered, (index - half) // 2)
        if first == len(ordered) or 2 * ordered[first] > index + half:
            return self.tree_hash(index)
        node = self._nodes[index]
        if index % 2 == 0:
            return self._leaf_hash(index, None)
        assert node is None or isinstance(node, ParentNode)
        if node is not None:
            node = ParentNode(node.encryption_key, node.parent_hash, tuple(x for x in node.unmerged_leaves if x not in removed))
        return self._parent_hash_input(
            node, self._original_tree_hash(left(index), ordered, removed), self._original_tree_hash(right(index), ordered, removed)
        )

    # changes (§7.7 adding, §12.1 proposals)

    def add_leaf(self, leaf: LeafNode) -> int:
        """Put ``leaf`` at the leftmost blank leaf (doubling the tree if there is none) and
        list it as unmerged in every non-blank parent above it; its leaf index."""
        return self.add_leaves([leaf])[0]

    def add_leaves(self, leaves: Iterable[LeafNode]) -> list[int]:
        """``add_leaf`` for each of ``leaves`` in order (a commit's Adds), each non-blank parent
        rewritten once with all the leaves it gains: k Adds under a parent listing u leaves cost
        O(u + k), not O(u * k); their leaf indices."""
        added: list[int] = []
        nodes = self._nodes
        for leaf in leaves:
            leaf_index = self._no_blank_below  # the search resumes where the last one ended
            n = self.n_leaves
            while leaf_index < n and nodes[2 * leaf_index] is not None:
                leaf_index += 1
            if leaf_index == n:
                if 2 * n > MLS_MAX_TREE_LEAVES:
                    raise ValidationError(f"adding a member would grow the tree past {MLS_MAX_TREE_LEAVES} leaves")
                self._extend()
            self.set_node(leaf_to_node(leaf_index), leaf)
            self._no_blank_below = leaf_index + 1
            added.append(leaf_index)
        gained: dict[int, list[int]] = {}
        for leaf_index in added:
            for p in direct_path(leaf_to_node(leaf_index), self.n_leaves):
                gained.setdefault(p, []).append(leaf_index)
        for p, new in gained.items():
            parent = self.parent_node(p)
            if parent is not None:
                unmerged = tuple(sorted(parent.unmerged_leaves + tuple(new)))
                self.set_node(p, ParentNode(parent.encryption_key, parent.parent_hash, unmerged))
        return added

    def _extend(self) -> None:
        """Double the tree: the old tree becomes the left subtree of a new root; cached hashes
        of the old nodes stay valid (a subtree's hash does not depend on the tree's size)."""
        width = len(self._nodes)
        self._nodes.extend([None] * (width + 1))
        self._hashes.extend([None] * (width + 1))

    def update_leaf(self, leaf_index: int, leaf: LeafNode) -> None:
        """Replace a member's leaf (an Update) and blank the nodes above it."""
        self._require_member(leaf_index)
        x = leaf_to_node(leaf_index)
        self.set_node(x, leaf)
        self._blank_path(x)

    def remove_leaf(self, leaf_index: int) -> None:
        """Blank a member's leaf and the nodes above it (a Remove), then truncate."""
        self._require_member(leaf_index)
        x = leaf_to_node(leaf_index)
        self.set_node(x, None)
        self._blank_path(x)
        self.truncate()

    def _blank_path(self, x: int) -> None:
        for p in direct_path(x, self.n_leaves):
            if self._nodes[p] is not None:
                self.set_node(p, None)

    def _require_member(self, leaf_index: int) -> None:
        if self.leaf(leaf_index) is None:
            raise ValidationError(f"leaf {leaf_index} is not a member of the tree")

    def truncate(self) -> None:
        """Halve the tree while the right half holds no member (§12.1.3); the left half's
        nodes and cached hashes are kept as they are."""
        while self.n_leaves > 1 and all(self._nodes[i] is None for i in range(self.n_leaves, len(self._nodes), 2)):
            half = self.n_leaves // 2
            for index in range(2 * half - 1, len(self._nodes)):
                self._count_node(index, self._nodes[index], -1)
            del self._nodes[2 * half - 1 :]
            del self._hashes[2 * half - 1 :]
        self._no_blank_below = min(self._no_blank_below, self.n_leaves)

    def blank_leaves(self) -> list[int]:
        return [i // 2 for i in range(0, len(self._nodes), 2) if self._nodes[i] is None]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RatchetTree) and self._nodes == other._nodes

    def __repr__(self) -> str:
        return f"RatchetTree({self.n_leaves} leaves, {sum(1 for _ in self.leaves())} members)"
