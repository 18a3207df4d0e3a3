"""KeyPackage (RFC 9420 §10): a client's offer to be added to a group: protocol version, cipher
suite, the HPKE init key a Welcome is encrypted to, its LeafNode, and a signature over
KeyPackageTBS by the leaf's signature key."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Self

from ..codec import DecodeError, Encodable, Reader, Writer
from ..extensions.extension import Extension, read_extensions, write_extensions
from .leaf_node import LeafNode

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["KeyPackage", "MLS10"]

KEY_PACKAGE_LABEL = b"KeyPackageTBS"
#: ProtocolVersion mls10, the only version RFC 9420 defines
MLS10 = 1


@dataclass(frozen=True, slots=True)
class KeyPackage(Encodable):
    cipher_suite: int
    init_key: bytes
    leaf_node: LeafNode
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""
    version: int = MLS10

    def _write_content(self, w: Writer) -> None:
        w.u16(self.version)
        w.u16(self.cipher_suite)
        w.opaque(self.init_key)
        self.leaf_node.write(w)
        write_extensions(w, self.extensions)

    def write(self, w: Writer) -> None:
        self._write_content(w)
        w.opaque(self.signature)

    @classmethod
    def read(cls, r: Reader) -> Self:
        version = r.u16()
        if version != MLS10:
            raise DecodeError(f"KeyPackage of protocol version {version} (only mls10 = 1 is defined)")
        cipher_suite = r.u16()
        init_key = r.opaque()
        leaf_node = LeafNode.read(r)
        extensions = read_extensions(r)
        return cls(cipher_suite, init_key, leaf_node, extensions, r.opaque(), version)

    def tbs(self) -> bytes:
        w = Writer()
        self._write_content(w)
        return w.bytes()

    def verify_signature(self, cs: CipherSuite) -> bool:
        return cs.verify_with_label(self.leaf_node.signature_key, KEY_PACKAGE_LABEL, self.tbs(), self.signature)

    def signed(self, cs: CipherSuite, signature_priv: bytes) -> KeyPackage:
        return replace(self, signature=cs.sign_with_label(signature_priv, KEY_PACKAGE_LABEL, self.tbs()))

    def ref(self, cs: CipherSuite) -> bytes:
        """KeyPackageRef: RefHash("MLS 1.0 KeyPackage Reference", the encoded KeyPackage)."""
        return cs.make_key_package_ref(self.to_bytes())
