"""Signature schemes of the MLS cipher suites (RFC 9420 §5.1.2, TLS SignatureScheme values).

Ed25519 (0x0807), Ed448 (0x0808), ECDSA P-256/SHA-256 (0x0403), P-384/SHA-384 (0x0503) and
P-521/SHA-512 (0x0603). Encodings are those of RFC 9420 and the IETF interop vectors
(crypto-basics, suites 2, 5, 7): an EdDSA key or signature is its raw RFC 8032 bytes; an ECDSA
private key is the scalar as a fixed-length big-endian integer (32, 48, 66 bytes; shorter
encodings without leading zero bytes are read too), a public key the
uncompressed SEC1 point (0x04 || x || y), a signature the DER ``Ecdsa-Sig-Value`` (RFC 8446 §4.2.3).

Pure: key generation takes ``rng``; ECDSA signs deterministically (RFC 6979), EdDSA is
deterministic by design. ``verify`` answers a bool: a malformed key or signature is ``False``.
"""

from __future__ import annotations

import enum
import functools
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

from ..errors import LocalProtocolError
from .modes import Rng
from .rfc9180 import EC_ORDERS, ec_scalar_length_ok

__all__ = ["SignatureScheme", "SignatureAlgorithm", "signature_algorithm"]

_PUBLIC_KEY_CACHE = 4096  # parsed member keys kept (public data only): a 1,500-member group fits


class SignatureScheme(enum.IntEnum):
    ECDSA_SECP256R1_SHA256 = 0x0403
    ECDSA_SECP384R1_SHA384 = 0x0503
    ECDSA_SECP521R1_SHA512 = 0x0603
    ED25519 = 0x0807
    ED448 = 0x0808


class SignatureAlgorithm:
    """One scheme: generate, parse, sign, verify. Parsed public keys are cached (bounded)."""

    scheme: SignatureScheme
    nsk: int  # private key bytes

    def __init__(self) -> None:
        self._public_cached = functools.lru_cache(maxsize=_PUBLIC_KEY_CACHE)(self._parse_public)

    def generate(self, rng: Rng) -> tuple[bytes, bytes]:
        """A fresh key pair (private, public) from ``rng``."""
        raise NotImplementedError

    def private_key(self, priv: bytes) -> Any:
        """The parsed private key; a malformed one is ``LocalProtocolError`` (it is ours)."""
        if type(priv) is not bytes or not self._private_length_ok(len(priv)):
            raise LocalProtocolError(f"{self.scheme.name} private key must be {self.nsk} bytes")
        try:
            return self._parse_private(priv)
        except ValueError:
            raise LocalProtocolError(f"{self.scheme.name} private key is malformed") from None

    def public_key(self, pub: bytes) -> Any | None:
        """The parsed public key, or None if ``pub`` is not one."""
        if type(pub) is not bytes:
            return None
        return self._public_cached(pub)

    def public_from_private(self, priv: bytes) -> bytes:
        return self._public_bytes(self.private_key(priv).public_key())

    def sign(self, priv: bytes | Any, message: bytes) -> bytes:
        key = self.private_key(priv) if isinstance(priv, bytes) else priv
        return self._sign(key, message)

    def verify(self, pub: bytes, message: bytes, signature: bytes) -> bool:
        key = self.public_key(pub)
        if key is None or type(signature) is not bytes:
            return False
        try:
            self._verify(key, message, signature)
        except (InvalidSignature, ValueError):
            return False
        return True

    def _private_length_ok(self, n: int) -> bool:
        return n == self.nsk

    def _parse_private(self, priv: bytes) -> Any:
        raise NotImplementedError

    def _parse_public(self, pub: bytes) -> Any | None:
        raise NotImplementedError

    def _public_bytes(self, key: Any) -> bytes:
        raise NotImplementedError

    def _sign(self, key: Any, message: bytes) -> bytes:
        raise NotImplementedError

    def _verify(self, key: Any, message: bytes, signature: bytes) -> None:
        raise NotImplementedError


class _EdDsa(SignatureAlgorithm):
    def __init__(self, scheme: SignatureScheme, size: int, private_cls: Any, public_cls: Any) -> None:
        self.scheme = scheme
        self.nsk = size
        self._private_cls = private_cls
        self._public_cls = public_cls
        super().__init__()

    def generate(self, rng: Rng) -> tuple[bytes, bytes]:
        priv = rng(self.nsk)
        return priv, self.public_from_private(priv)

    def _parse_private(self, priv: bytes) -> Any:
        return self._private_cls.from_private_bytes(priv)

    def _parse_public(self, pub: bytes) -> Any | None:
        if len(pub) != self.nsk:
            return None
        try:
            return self._public_cls.from_public_bytes(pub)
        except ValueError:
            return None

    def _public_bytes(self, key: Any) -> bytes:
        return bytes(key.public_bytes_raw())

    def _sign(self, key: Any, message: bytes) -> bytes:
        return bytes(key.sign(message))

    def _verify(self, key: Any, message: bytes, signature: bytes) -> None:
        key.verify(signature, message)


class _Ecdsa(SignatureAlgorithm):
    def __init__(self, scheme: SignatureScheme, curve: ec.EllipticCurve, hash_alg: hashes.HashAlgorithm) -> None:
        self.scheme = scheme
        self.curve = curve
        self.order = EC_ORDERS[curve.name]
        self.nsk = (curve.key_size + 7) // 8
        self._npk = 1 + 2 * self.nsk
        self._mask = 0xFF >> (8 * self.nsk - curve.key_size)  # P-521: the top byte holds one bit
        self._sign_alg = ec.ECDSA(hash_alg, deterministic_signing=True)  # RFC 6979: no randomness
        self._verify_alg = ec.ECDSA(hash_alg)
        super().__init__()

    def generate(self, rng: Rng) -> tuple[bytes, bytes]:
        while True:  # rejection sampling: uniform in [1, order), as HPKE's DeriveKeyPair does
            candidate = bytearray(rng(self.nsk))
            candidate[0] &= self._mask
            if 0 < int.from_bytes(candidate, "big") < self.order:
                priv = bytes(candidate)
                return priv, self.public_from_private(priv)

    def _private_length_ok(self, n: int) -> bool:
        return ec_scalar_length_ok(n, self.nsk)  # leading zero bytes may be dropped

    def _parse_private(self, priv: bytes) -> Any:
        return ec.derive_private_key(int.from_bytes(priv, "big"), self.curve)  # ValueError: 0 or >= order

    def _parse_public(self, pub: bytes) -> Any | None:
        if len(pub) != self._npk or pub[0] != 0x04:
            return None
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self.curve, pub)
        except ValueError:
            return None

    def _public_bytes(self, key: Any) -> bytes:
        return bytes(key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))

    def _sign(self, key: Any, message: bytes) -> bytes:
        return bytes(key.sign(message, self._sign_alg))

    def _verify(self, key: Any, message: bytes, signature: bytes) -> None:
        key.verify(signature, message, self._verify_alg)


_ALGORITHMS: dict[int, SignatureAlgorithm] = {
    SignatureScheme.ECDSA_SECP256R1_SHA256: _Ecdsa(SignatureScheme.ECDSA_SECP256R1_SHA256, ec.SECP256R1(), hashes.SHA256()),
    SignatureScheme.ECDSA_SECP384R1_SHA384: _Ecdsa(SignatureScheme.ECDSA_SECP384R1_SHA384, ec.SECP384R1(), hashes.SHA384()),
    SignatureScheme.ECDSA_SECP521R1_SHA512: _Ecdsa(SignatureScheme.ECDSA_SECP521R1_SHA512, ec.SECP521R1(), hashes.SHA512()),
    SignatureScheme.ED25519: _EdDsa(SignatureScheme.ED25519, 32, ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey),
    SignatureScheme.ED448: _EdDsa(SignatureScheme.ED448, 57, ed448.Ed448PrivateKey, ed448.Ed448PublicKey),
}


def signature_algorithm(scheme: int) -> SignatureAlgorithm:
    try:
        return _ALGORITHMS[scheme]
    except KeyError:
        raise LocalProtocolError(f"unsupported signature scheme 0x{scheme:04x}") from None
