"""The external_senders extension (RFC 9420 §12.1.8.1): signers outside the group allowed to
send proposals, each a signature key and a credential."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ..codec import Encodable, Reader, Writer
from ..key_package.credential import Credential

__all__ = ["ExternalSender", "ExternalSenders"]


@dataclass(frozen=True, slots=True)
class ExternalSender(Encodable):
    signature_key: bytes
    credential: Credential

    def write(self, w: Writer) -> None:
        w.opaque(self.signature_key)
        self.credential.write(w)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque(), Credential.read(r))


@dataclass(frozen=True, slots=True)
class ExternalSenders(Encodable):
    senders: tuple[ExternalSender, ...]

    def write(self, w: Writer) -> None:
        w.vector(self.senders, lambda w2, s: s.write(w2))

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(tuple(r.vector(ExternalSender.read)))
