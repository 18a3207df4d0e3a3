"""Credential (RFC 9420 §5.3): who a member claims to be. ``basic`` carries an identity,
``x509`` a certificate chain (kept as DER bytes, leaf first; checking it is the application's
job). The registry is open: a credential of an unknown type is kept with its content read as
``opaque<V>`` (the shape every registered type has), so it round-trips unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from ..codec import Encodable, Reader, Writer

__all__ = ["CredentialType", "Credential"]


class CredentialType(IntEnum):
    BASIC = 1
    X509 = 2


@dataclass(frozen=True, slots=True)
class Credential(Encodable):
    credential_type: int
    #: the identity of a basic credential; the whole opaque content of an unknown type
    identity: bytes = b""
    #: the DER certificates of an x509 credential
    certificates: tuple[bytes, ...] = ()

    @classmethod
    def basic(cls, identity: bytes) -> Self:
        return cls(CredentialType.BASIC, identity=identity)

    @classmethod
    def x509(cls, chain: tuple[bytes, ...]) -> Self:
        return cls(CredentialType.X509, certificates=tuple(chain))

    def write(self, w: Writer) -> None:
        w.u16(self.credential_type)
        if self.credential_type == CredentialType.X509:
            w.vector(self.certificates, Writer.opaque)
        else:
            w.opaque(self.identity)

    @classmethod
    def read(cls, r: Reader) -> Self:
        kind = r.u16()
        if kind == CredentialType.X509:
            return cls(kind, certificates=tuple(r.vector(Reader.opaque)))
        return cls(kind, identity=r.opaque())
