"""UpdatePath (RFC 9420 §7.6): the committer's new leaf and, for each node of its filtered
direct path, the node's new public key and the path secret encrypted to each node of the
copath child's resolution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ..codec import Encodable, Reader, Writer
from ..key_package.leaf_node import LeafNode

__all__ = ["HPKECiphertext", "UpdatePathNode", "UpdatePath"]


@dataclass(frozen=True, slots=True)
class HPKECiphertext(Encodable):
    kem_output: bytes
    ciphertext: bytes

    def write(self, w: Writer) -> None:
        w.opaque(self.kem_output)
        w.opaque(self.ciphertext)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque(), r.opaque())


@dataclass(frozen=True, slots=True)
class UpdatePathNode(Encodable):
    encryption_key: bytes
    encrypted_path_secret: tuple[HPKECiphertext, ...]

    def write(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.vector(self.encrypted_path_secret, lambda w2, c: c.write(w2))

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque(), tuple(r.vector(HPKECiphertext.read)))


@dataclass(frozen=True, slots=True)
class UpdatePath(Encodable):
    leaf_node: LeafNode
    nodes: tuple[UpdatePathNode, ...]

    def write(self, w: Writer) -> None:
        self.leaf_node.write(w)
        w.vector(self.nodes, lambda w2, n: n.write(w2))

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(LeafNode.read(r), tuple(r.vector(UpdatePathNode.read)))
