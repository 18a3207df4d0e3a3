"""Hashes, HKDF, HMAC and constant-time comparison (all from ``cryptography``)."""

from __future__ import annotations

from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

__all__ = ["sha256", "sha512", "sha3_256", "shake256", "hkdf", "hkdf_expand", "hmac_sha256", "ct_equal"]


def sha256(*parts: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    for p in parts:
        h.update(p)
    return h.finalize()


def sha512(*parts: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA512())
    for p in parts:
        h.update(p)
    return h.finalize()


def sha3_256(*parts: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA3_256())
    for p in parts:
        h.update(p)
    return h.finalize()


def shake256(data: bytes, length: int) -> bytes:
    h = hashes.Hash(hashes.SHAKE256(digest_size=length))
    h.update(data)
    return h.finalize()


def hkdf(ikm: bytes, *, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hkdf_expand(prk: bytes, *, info: bytes, length: int) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def ct_equal(a: bytes, b: bytes) -> bool:
    """Constant-time equality for MACs, tags and secrets."""
    return constant_time.bytes_eq(a, b)
