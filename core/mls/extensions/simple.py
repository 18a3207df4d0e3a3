"""The one-field extension payloads of RFC 9420: application_id (§5.3.3) and external_pub
(§12.4.3.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ..codec import Encodable, Reader, Writer

__all__ = ["ApplicationId", "ExternalPub"]


@dataclass(frozen=True, slots=True)
class ApplicationId(Encodable):
    application_id: bytes

    def write(self, w: Writer) -> None:
        w.opaque(self.application_id)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque())


@dataclass(frozen=True, slots=True)
class ExternalPub(Encodable):
    """The HPKE public key external joiners encrypt their init secret to."""

    external_pub: bytes

    def write(self, w: Writer) -> None:
        w.opaque(self.external_pub)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque())
