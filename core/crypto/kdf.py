"""Hashes, HKDF, HMAC and constant-time comparison.

HKDF and HMAC come from ``cryptography``; the plain hashes and the comparison from the standard
library's ``hashlib`` and ``hmac.compare_digest``, the same OpenSSL digests and the same C
comparison that ``cryptography`` wraps, at a quarter of the cost per call (a hash object of
``cryptography`` costs ~1.3 µs more to make and finish, and the ratchet hashes every message).
"""

from __future__ import annotations

import hashlib
from hmac import compare_digest

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

__all__ = ["sha256", "sha512", "sha3_256", "shake256", "hkdf", "hkdf_expand", "hmac_sha256", "hmac_sha256_pair", "ct_equal"]

_SHA256 = hashes.SHA256()  # stateless: one instance serves every call


def sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def sha512(*parts: bytes) -> bytes:
    h = hashlib.sha512()
    for p in parts:
        h.update(p)
    return h.digest()


def sha3_256(*parts: bytes) -> bytes:
    h = hashlib.sha3_256()
    for p in parts:
        h.update(p)
    return h.digest()


def shake256(data: bytes, length: int) -> bytes:
    if length < 1:  # as cryptography's SHAKE256(digest_size=...) refuses
        raise ValueError("digest_size must be a positive integer")
    return hashlib.shake_256(data).digest(length)


def hkdf(ikm: bytes, *, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(algorithm=_SHA256, length=length, salt=salt, info=info).derive(ikm)


def hkdf_expand(prk: bytes, *, info: bytes, length: int) -> bytes:
    return HKDFExpand(algorithm=_SHA256, length=length, info=info).derive(prk)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, _SHA256)
    h.update(data)
    return h.finalize()


def hmac_sha256_pair(key: bytes, first: bytes, second: bytes) -> tuple[bytes, bytes]:
    """``(hmac_sha256(key, first), hmac_sha256(key, second))``, the key set up once (a copy of
    the keyed context): the ratchet's chain step takes two MACs under one chain key."""
    h = hmac.HMAC(key, _SHA256)
    other = h.copy()
    h.update(first)
    other.update(second)
    return h.finalize(), other.finalize()


def ct_equal(a: bytes, b: bytes) -> bool:
    """Constant-time equality for MACs, tags and secrets (bytes only, as ``cryptography``'s
    ``bytes_eq``, which is this same comparison)."""
    if not isinstance(a, bytes) or not isinstance(b, bytes):
        raise TypeError("a and b must be bytes.")
    return compare_digest(a, b)
