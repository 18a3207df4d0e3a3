"""Welcome (RFC 9420 §12.4.3): per new member, the GroupSecrets encrypted to its KeyPackage's
init key (named by KeyPackageRef), and the GroupInfo encrypted under the welcome key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ..codec import Encodable, Reader, Writer
from ..psk.psk_id import PreSharedKeyID
from .update_path import HPKECiphertext

__all__ = ["PathSecret", "GroupSecrets", "EncryptedGroupSecrets", "Welcome"]


@dataclass(frozen=True, slots=True)
class PathSecret(Encodable):
    path_secret: bytes

    def write(self, w: Writer) -> None:
        w.opaque(self.path_secret)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque())


@dataclass(frozen=True, slots=True)
class GroupSecrets(Encodable):
    joiner_secret: bytes
    path_secret: PathSecret | None = None
    psks: tuple[PreSharedKeyID, ...] = ()

    def write(self, w: Writer) -> None:
        w.opaque(self.joiner_secret)
        w.optional(self.path_secret, lambda w2, p: p.write(w2))
        w.vector(self.psks, lambda w2, p: p.write(w2))

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque(), r.optional(PathSecret.read), tuple(r.vector(PreSharedKeyID.read)))


@dataclass(frozen=True, slots=True)
class EncryptedGroupSecrets(Encodable):
    new_member: bytes  # KeyPackageRef
    encrypted_group_secrets: HPKECiphertext

    def write(self, w: Writer) -> None:
        w.opaque(self.new_member)
        self.encrypted_group_secrets.write(w)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque(), HPKECiphertext.read(r))


@dataclass(frozen=True, slots=True)
class Welcome(Encodable):
    cipher_suite: int
    secrets: tuple[EncryptedGroupSecrets, ...]
    encrypted_group_info: bytes

    def write(self, w: Writer) -> None:
        w.u16(self.cipher_suite)
        w.vector(self.secrets, lambda w2, s: s.write(w2))
        w.opaque(self.encrypted_group_info)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.u16(), tuple(r.vector(EncryptedGroupSecrets.read)), r.opaque())

    def secrets_for(self, key_package_ref: bytes) -> EncryptedGroupSecrets | None:
        for entry in self.secrets:
            if entry.new_member == key_package_ref:
                return entry
        return None
