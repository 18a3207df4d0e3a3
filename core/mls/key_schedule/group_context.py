"""GroupContext of RFC 9420 §8.1: the summary of a group's state in one epoch that every key of
the epoch is bound to (it is the context of the joiner and epoch expansions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ..codec import DecodeError, Encodable, Reader, Writer
from ..extensions import Extension, read_extensions, write_extensions

__all__ = ["GroupContext", "MLS10"]

#: ProtocolVersion mls10 (framing's ProtocolVersion enum; kept as its value here so the key
#: schedule does not import framing, which imports the GroupContext)
MLS10 = 1


@dataclass(frozen=True, slots=True)
class GroupContext(Encodable):
    cipher_suite: int
    group_id: bytes
    epoch: int
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    extensions: tuple[Extension, ...] = ()
    version: int = MLS10

    def write(self, w: Writer) -> None:
        w.u16(self.version)
        w.u16(self.cipher_suite)
        w.opaque(self.group_id)
        w.u64(self.epoch)
        w.opaque(self.tree_hash)
        w.opaque(self.confirmed_transcript_hash)
        write_extensions(w, self.extensions)

    @classmethod
    def read(cls, r: Reader) -> Self:
        version = r.u16()
        if version != MLS10:
            raise DecodeError(f"MLS protocol version {version} is not one RFC 9420 defines")
        return cls(
            cipher_suite=r.u16(),
            group_id=r.opaque(),
            epoch=r.u64(),
            tree_hash=r.opaque(),
            confirmed_transcript_hash=r.opaque(),
            extensions=read_extensions(r),
            version=version,
        )
