"""GroupInfo (RFC 9420 §12.4.3): the GroupContext of the new epoch, extensions (the ratchet tree,
the external public key), the confirmation tag, and the signer's signature over GroupInfoTBS."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Self

from ..codec import Encodable, Reader, Writer
from ..extensions.extension import Extension, read_extensions, write_extensions
from ..key_schedule.group_context import GroupContext

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["GroupInfo"]

GROUP_INFO_LABEL = b"GroupInfoTBS"


@dataclass(frozen=True, slots=True)
class GroupInfo(Encodable):
    group_context: GroupContext
    extensions: tuple[Extension, ...]
    confirmation_tag: bytes
    signer: int  # leaf index
    signature: bytes = b""

    def _write_content(self, w: Writer) -> None:
        self.group_context.write(w)
        write_extensions(w, self.extensions)
        w.opaque(self.confirmation_tag)
        w.u32(self.signer)

    def write(self, w: Writer) -> None:
        self._write_content(w)
        w.opaque(self.signature)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(GroupContext.read(r), read_extensions(r), r.opaque(), r.u32(), r.opaque())

    def tbs(self) -> bytes:
        w = Writer()
        self._write_content(w)
        return w.bytes()

    def verify_signature(self, cs: CipherSuite, signer_key: bytes) -> bool:
        return cs.verify_with_label(signer_key, GROUP_INFO_LABEL, self.tbs(), self.signature)

    def signed(self, cs: CipherSuite, signature_priv: bytes) -> GroupInfo:
        return replace(self, signature=cs.sign_with_label(signature_priv, GROUP_INFO_LABEL, self.tbs()))
