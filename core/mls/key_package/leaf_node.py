"""LeafNode (RFC 9420 §7.2): a member's HPKE and signature keys, credential, capabilities, where
the leaf came from (a KeyPackage, an Update, a Commit) and its signature over LeafNodeTBS, which
binds update and commit leaves to the group id and their leaf index."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import TYPE_CHECKING, Self

from ..codec import DecodeError, Encodable, Reader, Writer
from ..extensions.capabilities import Capabilities
from ..extensions.extension import Extension, read_extensions, write_extensions
from ..extensions.lifetime import Lifetime
from .credential import Credential

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["LeafNodeSource", "LeafNode"]

LEAF_NODE_LABEL = b"LeafNodeTBS"


class LeafNodeSource(IntEnum):
    KEY_PACKAGE = 1
    UPDATE = 2
    COMMIT = 3


@dataclass(frozen=True, slots=True)
class LeafNode(Encodable):
    encryption_key: bytes
    signature_key: bytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: LeafNodeSource
    #: set exactly when the source is KEY_PACKAGE
    lifetime: Lifetime | None = None
    #: meaningful only when the source is COMMIT
    parent_hash: bytes = b""
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""
    #: the encoded content (all but the signature), made the first time it is needed: a leaf is
    #: encoded again and again (tree hash, ratchet tree, Welcome, signature checks, KeyPackage)
    _content: bytes | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.leaf_node_source == LeafNodeSource.KEY_PACKAGE) != (self.lifetime is not None):
            raise ValueError("a LeafNode has a lifetime exactly when its source is key_package")

    def _write_content(self, w: Writer) -> None:
        content = self._content
        if content is None:
            inner = Writer()
            self._encode_content(inner)
            content = inner.bytes()
            object.__setattr__(self, "_content", content)  # frozen: a cache, not a change
        w.raw(content)

    def _encode_content(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.opaque(self.signature_key)
        self.credential.write(w)
        self.capabilities.write(w)
        w.u8(self.leaf_node_source)
        if self.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
            assert self.lifetime is not None
            self.lifetime.write(w)
        elif self.leaf_node_source == LeafNodeSource.COMMIT:
            w.opaque(self.parent_hash)
        write_extensions(w, self.extensions)

    def write(self, w: Writer) -> None:
        self._write_content(w)
        w.opaque(self.signature)

    @classmethod
    def read(cls, r: Reader) -> Self:
        encryption_key = r.opaque()
        signature_key = r.opaque()
        credential = Credential.read(r)
        capabilities = Capabilities.read(r)
        source_value = r.u8()
        try:
            source = LeafNodeSource(source_value)
        except ValueError:
            raise DecodeError(f"leaf node source {source_value} is not one RFC 9420 defines") from None
        lifetime = Lifetime.read(r) if source == LeafNodeSource.KEY_PACKAGE else None
        parent_hash = r.opaque() if source == LeafNodeSource.COMMIT else b""
        extensions = read_extensions(r)
        return cls(encryption_key, signature_key, credential, capabilities, source, lifetime, parent_hash, extensions, r.opaque())

    def tbs(self, group_id: bytes | None = None, leaf_index: int | None = None) -> bytes:
        """LeafNodeTBS: the content, and for update and commit leaves the group id and leaf index."""
        w = Writer()
        self._write_content(w)
        if self.leaf_node_source != LeafNodeSource.KEY_PACKAGE:
            if group_id is None or leaf_index is None:
                raise ValueError("an update or commit LeafNode is signed with its group id and leaf index")
            w.opaque(group_id)
            w.u32(leaf_index)
        return w.bytes()

    def verify_signature(self, cs: CipherSuite, group_id: bytes | None = None, leaf_index: int | None = None) -> bool:
        return cs.verify_with_label(self.signature_key, LEAF_NODE_LABEL, self.tbs(group_id, leaf_index), self.signature)

    def signed(
        self, cs: CipherSuite, signature_priv: bytes, group_id: bytes | None = None, leaf_index: int | None = None
    ) -> LeafNode:
        """This leaf with its signature made by ``signature_priv`` (the key of ``signature_key``)."""
        return replace(self, signature=cs.sign_with_label(signature_priv, LEAF_NODE_LABEL, self.tbs(group_id, leaf_index)))

    def with_changes(self, **changes: object) -> LeafNode:
        """A copy with some fields changed and no signature (sign it again with ``signed``)."""
        return replace(self, signature=b"", **changes)  # type: ignore[arg-type]

