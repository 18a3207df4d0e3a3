"""Welcome (RFC 9420 §12.4.3): per new member, the GroupSecrets encrypted to its KeyPackage's
init key (named by KeyPackageRef), and the GroupInfo encrypted under the welcome key.

The four functions at the end are the Welcome's two encryptions, both ways:
EncryptWithLabel(init_key, "Welcome", encrypted_group_info, GroupSecrets), and the AEAD of the
GroupInfo under (welcome_key, welcome_nonce) derived from the welcome_secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from ...errors import DecryptError
from ..codec import Encodable, Reader, Writer
from ..key_package.errors import ValidationError
from ..key_schedule.welcome import welcome_key_nonce
from ..psk.psk_id import PreSharedKeyID
from .group_info import GroupInfo
from .update_path import HPKECiphertext

if TYPE_CHECKING:
    from ...crypto.modes import Rng
    from ..crypto import CipherSuite

__all__ = [
    "PathSecret",
    "GroupSecrets",
    "EncryptedGroupSecrets",
    "Welcome",
    "encrypt_group_secrets",
    "decrypt_group_secrets",
    "encrypt_group_info",
    "decrypt_group_info",
]

WELCOME_LABEL = b"Welcome"


@dataclass(frozen=True, slots=True)
class PathSecret(Encodable):
    path_secret: bytes = field(repr=False)

    def write(self, w: Writer) -> None:
        w.opaque(self.path_secret)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque())


@dataclass(frozen=True, slots=True)
class GroupSecrets(Encodable):
    joiner_secret: bytes = field(repr=False)
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


def encrypt_group_secrets(
    cs: CipherSuite, init_key: bytes, encrypted_group_info: bytes, secrets: GroupSecrets, rng: Rng
) -> HPKECiphertext:
    kem_output, ciphertext = cs.encrypt_with_label(init_key, WELCOME_LABEL, encrypted_group_info, secrets.to_bytes(), rng)
    return HPKECiphertext(kem_output, ciphertext)


def decrypt_group_secrets(cs: CipherSuite, welcome: Welcome, key_package_ref: bytes, init_priv: bytes) -> GroupSecrets:
    """The GroupSecrets of the new member whose KeyPackage has ``key_package_ref``."""
    if welcome.cipher_suite != cs.id:
        raise ValidationError(f"Welcome of cipher suite {welcome.cipher_suite}, not {cs.id}")
    entry = welcome.secrets_for(key_package_ref)
    if entry is None:
        raise ValidationError("the Welcome holds no group secrets for this KeyPackage")
    sealed = entry.encrypted_group_secrets
    plaintext = cs.decrypt_with_label(init_priv, WELCOME_LABEL, welcome.encrypted_group_info, sealed.kem_output, sealed.ciphertext)
    return GroupSecrets.from_bytes(plaintext)


def encrypt_group_info(cs: CipherSuite, welcome_secret: bytes, group_info: GroupInfo) -> bytes:
    key, nonce = welcome_key_nonce(cs, welcome_secret)
    return cs.seal(key, nonce, b"", group_info.to_bytes())


def decrypt_group_info(cs: CipherSuite, welcome_secret: bytes, encrypted_group_info: bytes) -> GroupInfo:
    key, nonce = welcome_key_nonce(cs, welcome_secret)
    try:
        plaintext = cs.open(key, nonce, b"", encrypted_group_info)
    except DecryptError:
        raise DecryptError("the Welcome's GroupInfo does not decrypt") from None
    return GroupInfo.from_bytes(plaintext)
