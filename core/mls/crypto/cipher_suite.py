"""MLS cipher suites (RFC 9420 §5.1, §17.1) and the labeled operations of §5.

Suites 1-7 of the RFC and 0x004D MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519 as OpenMLS defines
it (traits/src/types.rs: HPKE KEM X-Wing 0x647A, KDF HKDF-SHA256, AEAD ChaCha20-Poly1305, hash
SHA-256, signature Ed25519). The primitives are core/crypto/'s (``rfc9180``, ``mls_sign``); the
TLS structs KDFLabel, SignContent, EncryptContext and RefHashInput are encoded with the codec.

Labels passed to ``expand_with_label``, ``derive_secret``, ``derive_tree_secret``,
``sign_with_label`` and ``encrypt_with_label`` are prefixed with "MLS 1.0 " here (callers pass
b"sender data"); ``ref_hash`` takes its label whole, as RFC 9420 §5.2 writes it
("MLS 1.0 KeyPackage Reference").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ...crypto.mls_sign import SignatureAlgorithm, SignatureScheme, signature_algorithm
from ...crypto.modes import Rng
from ...crypto.rfc9180 import AeadAlgorithm, HpkeSuite, Kdf, Kem, KemPrivateKey, KemPublicKey, hpke_suite
from ...errors import LocalProtocolError
from ..codec import DecodeError, Writer, encode_varint

__all__ = ["CipherSuite", "SUITE_IDS", "cipher_suite"]

_PREFIX = b"MLS 1.0 "
#: an EncryptWithLabel context this long is public data sealed to many recipients (a Welcome's)
_BIG_CONTEXT = 4096
#: signatures remembered as good (``verified``): a commit's proposals are checked again as the
#: committer picks which pending ones are valid together, and a KeyPackage's two signatures
#: would be verified each time
_VERIFIED_MEMORY = 4096


@dataclass(frozen=True, slots=True, eq=False)
class CipherSuite:
    id: int
    name: str
    hpke: HpkeSuite = field(repr=False)
    signature: SignatureAlgorithm = field(repr=False)
    #: (context, label, EncryptContext) of the last context of at least _BIG_CONTEXT bytes
    _last_big_context: list[bytes] = field(default_factory=list, repr=False)
    #: (public key, label, SHA-256 of the content, signature) of signatures that verified; a
    #: verification depends on nothing else, so a hit is the same answer (successes only)
    _verified: dict[tuple[bytes, bytes, bytes, bytes], None] = field(default_factory=dict, repr=False)

    # --- sizes ---------------------------------------------------------------------------

    @property
    def kem(self) -> Kem:
        return self.hpke.kem

    @property
    def kdf(self) -> Kdf:
        return self.hpke.kdf

    @property
    def aead(self) -> AeadAlgorithm:
        return self.hpke.aead

    @property
    def signature_scheme(self) -> SignatureScheme:
        return self.signature.scheme

    @property
    def nh(self) -> int:
        return self.hpke.kdf.nh

    @property
    def nk(self) -> int:
        return self.hpke.aead.nk

    @property
    def nn(self) -> int:
        return self.hpke.aead.nn

    @property
    def npk(self) -> int:
        return self.hpke.kem.npk

    # --- hash, MAC, KDF ------------------------------------------------------------------

    def hash(self, data: bytes) -> bytes:
        return self.hpke.kdf.hash(data)

    def mac(self, key: bytes, data: bytes) -> bytes:
        return self.hpke.kdf.mac(key, data)

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        return self.hpke.kdf.extract(salt, ikm)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        return self.hpke.kdf.expand(prk, info, length)

    def expand_with_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        """ExpandWithLabel: KDF.Expand(secret, KDFLabel{uint16 length, label<V>, context<V>})."""
        # The struct written out by hand: this is the hottest function of the secret tree.
        if not 0 <= length <= 0xFFFF:
            raise LocalProtocolError(f"MLS: ExpandWithLabel length {length} does not fit in uint16")
        full = _PREFIX + label
        info = b"".join((length.to_bytes(2, "big"), encode_varint(len(full)), full, encode_varint(len(context)), context))
        return self.hpke.kdf.expand(secret, info, length)

    def derive_secret(self, secret: bytes, label: bytes) -> bytes:
        return self.expand_with_label(secret, label, b"", self.nh)

    def derive_tree_secret(self, secret: bytes, label: bytes, generation: int, length: int) -> bytes:
        if not 0 <= generation <= 0xFFFFFFFF:
            raise LocalProtocolError(f"MLS: generation {generation} does not fit in uint32")
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    def ref_hash(self, label: bytes, value: bytes) -> bytes:
        """RefHash: Hash(RefHashInput{label<V>, value<V>}); the label is used as given."""
        w = Writer()
        w.opaque(label)
        w.opaque(value)
        return self.hash(w.bytes())

    def make_key_package_ref(self, key_package: bytes) -> bytes:
        return self.ref_hash(b"MLS 1.0 KeyPackage Reference", key_package)

    def make_proposal_ref(self, authenticated_content: bytes) -> bytes:
        return self.ref_hash(b"MLS 1.0 Proposal Reference", authenticated_content)

    # --- AEAD ----------------------------------------------------------------------------

    def seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        return self.hpke.aead.seal(key, nonce, aad, plaintext)

    def open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """AEAD open; a wrong key, nonce, aad or a tampered ciphertext is ``DecryptError``."""
        return self.hpke.aead.open(key, nonce, aad, ciphertext)

    # --- signatures ----------------------------------------------------------------------

    @staticmethod
    def _sign_content(label: bytes, content: bytes) -> bytes:
        w = Writer()
        w.opaque(_PREFIX + label)
        w.opaque(content)
        return w.bytes()

    def sign_with_label(self, priv: bytes | Any, label: bytes, content: bytes) -> bytes:
        """SignWithLabel; ``priv`` is the private key bytes or ``signature_private_key(priv)``."""
        return self.signature.sign(priv, self._sign_content(label, content))

    def verify_with_label(self, pub: bytes, label: bytes, content: bytes, signature: bytes) -> bool:
        """VerifyWithLabel: False for a wrong signature and for a malformed key or signature."""
        key = (pub, label, hashlib.sha256(content).digest(), signature)
        if key in self._verified:
            return True
        good: bool = self.signature.verify(pub, self._sign_content(label, content), signature)
        if good:
            if len(self._verified) >= _VERIFIED_MEMORY:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[key] = None
        return good

    def signature_private_key(self, priv: bytes) -> Any:
        """The parsed signing key, to sign many times without parsing it again."""
        return self.signature.private_key(priv)

    def signature_public_key(self, priv: bytes) -> bytes:
        """The public key of a signature private key."""
        return self.signature.public_from_private(priv)

    def signature_key_pair(self, rng: Rng) -> tuple[bytes, bytes]:
        return self.signature.generate(rng)

    # --- public-key encryption -----------------------------------------------------------

    def _encrypt_context(self, label: bytes, context: bytes) -> bytes:
        memo = self._last_big_context
        if memo and memo[0] is context and memo[1] == label:
            return memo[2]
        w = Writer()
        w.opaque(_PREFIX + label)
        w.opaque(context)
        encoded = w.bytes()
        if len(context) >= _BIG_CONTEXT:
            # a Welcome encrypts to every new member with the same multi-megabyte context (the
            # encrypted GroupInfo): encode it once, and HPKE then hashes that same object once
            memo[:] = (context, label, encoded)
        return encoded

    def encrypt_with_label(
        self, pub: bytes | KemPublicKey, label: bytes, context: bytes, plaintext: bytes, rng: Rng
    ) -> tuple[bytes, bytes]:
        """EncryptWithLabel -> (kem_output, ciphertext): SealBase(pub, EncryptContext, "", pt)."""
        return self.hpke.seal(pub, self._encrypt_context(label, context), b"", plaintext, rng=rng)

    def decrypt_with_label(
        self, priv: bytes | KemPrivateKey, label: bytes, context: bytes, kem_output: bytes, ciphertext: bytes
    ) -> bytes:
        """DecryptWithLabel; anything wrong (key, label, context, kem_output, ciphertext) is ``DecryptError``."""
        return self.hpke.open(kem_output, priv, self._encrypt_context(label, context), b"", ciphertext)

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """HPKE DeriveKeyPair of the suite's KEM -> (private, public), both serialised."""
        return self.hpke.kem.derive_key_pair(ikm)

    def hpke_key_pair(self, rng: Rng) -> tuple[bytes, bytes]:
        return self.hpke.kem.generate_key_pair(rng)

    def hpke_private_key(self, priv: bytes) -> KemPrivateKey:
        """The parsed HPKE private key, to decrypt many times without parsing it again."""
        return self.hpke.kem.private_key(priv)

    def hpke_public_key(self, pub: bytes) -> KemPublicKey:
        """The validated HPKE public key (``RemoteProtocolError`` if malformed)."""
        return self.hpke.kem.public_key(pub)

    def __repr__(self) -> str:
        return f"CipherSuite(0x{self.id:04x} {self.name})"


def _suite(suite_id: int, name: str, kem: int, kdf: int, aead: int, scheme: SignatureScheme) -> CipherSuite:
    return CipherSuite(suite_id, name, hpke_suite(kem, kdf, aead), signature_algorithm(scheme))


_SUITES = {
    s.id: s
    for s in (
        _suite(0x0001, "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", 0x0020, 1, 1, SignatureScheme.ED25519),
        _suite(0x0002, "MLS_128_DHKEMP256_AES128GCM_SHA256_P256", 0x0010, 1, 1, SignatureScheme.ECDSA_SECP256R1_SHA256),
        _suite(0x0003, "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519", 0x0020, 1, 3, SignatureScheme.ED25519),
        _suite(0x0004, "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448", 0x0021, 3, 2, SignatureScheme.ED448),
        _suite(0x0005, "MLS_256_DHKEMP521_AES256GCM_SHA512_P521", 0x0012, 3, 2, SignatureScheme.ECDSA_SECP521R1_SHA512),
        _suite(0x0006, "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448", 0x0021, 3, 3, SignatureScheme.ED448),
        _suite(0x0007, "MLS_256_DHKEMP384_AES256GCM_SHA384_P384", 0x0011, 2, 2, SignatureScheme.ECDSA_SECP384R1_SHA384),
        _suite(0x004D, "MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519", 0x647A, 1, 3, SignatureScheme.ED25519),
    )
}

#: the suites we implement, by number
SUITE_IDS = tuple(_SUITES)


def cipher_suite(suite_id: int) -> CipherSuite:
    """The suite ``suite_id``; one we do not implement is ``DecodeError`` (it came off the wire)."""
    try:
        return _SUITES[suite_id]
    except (KeyError, TypeError):
        raise DecodeError(f"unsupported cipher suite {suite_id!r}") from None
