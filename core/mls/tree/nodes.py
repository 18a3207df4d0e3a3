"""The nodes of a ratchet tree (RFC 9420 §7.1) and the ratchet_tree extension's encoding
(§12.4.3.3): ``optional<Node> ratchet_tree<V>``, the node array with its trailing blank nodes
left out. Decoding pads the array back to a full tree and refuses an encoding that ends with a
blank node (it is not the unique, truncated one)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from ...limits import MLS_MAX_TREE_LEAVES
from ..codec import DecodeError, Encodable, Reader, Writer, decode_all
from ..key_package.leaf_node import LeafNode

__all__ = ["NodeType", "ParentNode", "Node", "read_node", "write_node", "read_tree_nodes", "decode_tree_nodes", "encode_tree_nodes"]


class NodeType(IntEnum):
    LEAF = 1
    PARENT = 2


@dataclass(frozen=True, slots=True)
class ParentNode(Encodable):
    encryption_key: bytes
    parent_hash: bytes = b""
    #: leaves added below this node since its key was last set (leaf indices, ascending)
    unmerged_leaves: tuple[int, ...] = ()

    def write(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.opaque(self.parent_hash)
        w.vector(self.unmerged_leaves, Writer.u32)

    @classmethod
    def read(cls, r: Reader) -> Self:
        # a parent lists at most every leaf of the largest tree as unmerged
        return cls(r.opaque(), r.opaque(), r.uints(4, MLS_MAX_TREE_LEAVES, "unmerged_leaves"))


Node = LeafNode | ParentNode


def write_node(w: Writer, node: Node) -> None:
    if isinstance(node, LeafNode):
        w.u8(NodeType.LEAF)
    else:
        w.u8(NodeType.PARENT)
    node.write(w)


def read_node(r: Reader) -> Node:
    kind = r.u8()
    if kind == NodeType.LEAF:
        return LeafNode.read(r)
    if kind == NodeType.PARENT:
        return ParentNode.read(r)
    raise DecodeError(f"node type {kind} (must be 1 leaf or 2 parent)")


def _write_optional_node(w: Writer, node: Node | None) -> None:
    if node is None:
        w.u8(0)
    else:
        w.u8(1)
        write_node(w, node)


def _read_optional_node(r: Reader) -> Node | None:
    return r.optional(read_node)


def encode_tree_nodes(nodes: list[Node | None]) -> bytes:
    """The ratchet_tree extension's data: the array without its trailing blank nodes."""
    end = len(nodes)
    while end and nodes[end - 1] is None:
        end -= 1
    w = Writer()
    w.vector(nodes[:end], _write_optional_node)
    return w.bytes()


def read_tree_nodes(r: Reader) -> list[Node | None]:
    """The node array of a ratchet_tree encoding, padded with blanks to a full tree: leaves at
    even indices, parents at odd ones, no trailing blank node in the encoding, and at most
    MLS_MAX_TREE_LEAVES leaves (counted while reading, so a hostile one stops early)."""
    count = 0

    def read_counted(r: Reader) -> Node | None:
        nonlocal count
        count += 1
        if count > 2 * MLS_MAX_TREE_LEAVES - 1:
            raise DecodeError(f"ratchet tree of more than {MLS_MAX_TREE_LEAVES} leaves")
        return _read_optional_node(r)

    nodes = r.vector(read_counted)
    if not nodes:
        raise DecodeError("ratchet tree with no nodes")
    if nodes[-1] is None:
        raise DecodeError("ratchet tree encoding ends with a blank node")
    for i, node in enumerate(nodes):
        if node is not None and isinstance(node, LeafNode) != (i % 2 == 0):
            raise DecodeError(f"ratchet tree node {i} is a {'leaf' if i % 2 else 'parent'} at a {'parent' if i % 2 else 'leaf'} position")
    leaves = 1
    while 2 * leaves - 1 < len(nodes):
        leaves *= 2
    return nodes + [None] * (2 * leaves - 1 - len(nodes))


def decode_tree_nodes(data: bytes) -> list[Node | None]:
    return decode_all(data, read_tree_nodes)
