"""HPKE (RFC 9180) single-shot sealing to a device key, in the three modes.

KEMs: ``classical`` DHKEM(X25519, HKDF-SHA256); ``hybrid`` MLKEM768-X25519 (X-Wing,
draft-ietf-hpke-pq); ``pq`` ML-KEM-768. KDF HKDF-SHA256, AEAD AES-256-GCM. The ``info``
string binds the context (purpose, recipient); a ciphertext for another context fails to open.

Private keys are stored as seeds: X25519 32-byte scalar; X-Wing 32-byte seed expanded with
SHAKE256 to ML-KEM (d, z) and the X25519 scalar as in the X-Wing draft; ML-KEM 64-byte (d, z).
A key read from its stored bytes is built once and kept expanded (``_EXPANDED``, bounded).
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography.hazmat.primitives import hpke as _hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from .. import canonical
from ..errors import DecryptError, LocalProtocolError, RemoteProtocolError
from .expanded import ExpandedKeys
from .kdf import shake256
from .modes import CryptoMode, Rng

__all__ = ["HpkePrivateKey", "HpkePublicKey", "SUITES", "xwing_private_from_seed"]

SUITES = {
    CryptoMode.CLASSICAL: _hpke.Suite(_hpke.KEM.X25519, _hpke.KDF.HKDF_SHA256, _hpke.AEAD.AES_256_GCM),
    CryptoMode.HYBRID: _hpke.Suite(_hpke.KEM.MLKEM768_X25519, _hpke.KDF.HKDF_SHA256, _hpke.AEAD.AES_256_GCM),
    CryptoMode.PQ: _hpke.Suite(_hpke.KEM.MLKEM768, _hpke.KDF.HKDF_SHA256, _hpke.AEAD.AES_256_GCM),
}
_SEED_LEN = {CryptoMode.CLASSICAL: 32, CryptoMode.HYBRID: 32, CryptoMode.PQ: 64}
_PUB_LEN = {CryptoMode.CLASSICAL: 32, CryptoMode.HYBRID: 1184 + 32, CryptoMode.PQ: 1184}


def xwing_private_from_seed(seed: bytes) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
    expanded = shake256(seed, 96)
    return mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]), x25519.X25519PrivateKey.from_private_bytes(expanded[64:])


#: public keys read by :meth:`HpkePublicKey.from_bytes`, by their encoding (immutable objects);
#: at most this many, then forgotten all at once
_PARSED: dict[bytes, "HpkePublicKey"] = {}
_PARSED_MAX = 128


class HpkePublicKey:
    __slots__ = ("mode", "raw", "_key")

    def __init__(self, mode: CryptoMode, raw: bytes) -> None:
        if type(raw) is not bytes or len(raw) != _PUB_LEN[mode]:
            raise RemoteProtocolError(f"HPKE public key for {mode.value} mode has the wrong length")
        try:
            if mode is CryptoMode.CLASSICAL:
                key: Any = x25519.X25519PublicKey.from_public_bytes(raw)
            elif mode is CryptoMode.PQ:
                key = mlkem.MLKEM768PublicKey.from_public_bytes(raw)
            else:  # X-Wing public key: ML-KEM-768 key || X25519 key
                key = _hpke.MLKEM768X25519PublicKey(
                    mlkem.MLKEM768PublicKey.from_public_bytes(raw[:1184]),
                    x25519.X25519PublicKey.from_public_bytes(raw[1184:]),
                )
        except ValueError:
            raise RemoteProtocolError("HPKE public key is malformed") from None
        self.mode = mode
        self.raw = raw
        self._key = key

    @classmethod
    def from_bytes(cls, data: bytes) -> "HpkePublicKey":
        """The key of its encoding (RemoteProtocolError if malformed). A key read before is
        handed out again (``_PARSED``): parsing an X-Wing key costs ~30 µs (the ML-KEM-768
        part), and every send reads each recipient device's record, which holds one."""
        key = _PARSED.get(data) if type(data) is bytes else None
        if key is None:
            value = canonical.loads_map(data, {"mode": str, "key": bytes})
            key = cls(CryptoMode.parse(value["mode"]), value["key"])
            if type(data) is bytes:
                if len(_PARSED) >= _PARSED_MAX:
                    _PARSED.clear()  # bounded; clear() is one step, safe beside another thread
                _PARSED[data] = key
        return key

    def to_bytes(self) -> bytes:
        return canonical.dumps({"mode": self.mode.value, "key": self.raw})

    def seal(self, plaintext: bytes, info: bytes) -> bytes:
        """Encrypt to this key; randomness comes from OpenSSL (HPKE encapsulation is not derandomisable here)."""
        try:
            return SUITES[self.mode].encrypt(plaintext, self._key, info=info)
        except ValueError:  # X25519 key is a low-order point (all-zero shared secret)
            raise RemoteProtocolError("HPKE public key is a low-order point") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HpkePublicKey) and other.mode is self.mode and other.raw == self.raw

    def __hash__(self) -> int:
        return hash((self.mode, self.raw))


class HpkePrivateKey:
    __slots__ = ("mode", "_seed", "_key", "public")

    def __init__(self, mode: CryptoMode, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != _SEED_LEN[mode]:
            raise LocalProtocolError("HPKE private seed has the wrong length")
        if mode is CryptoMode.CLASSICAL:
            key: Any = x25519.X25519PrivateKey.from_private_bytes(seed)
            raw = key.public_key().public_bytes_raw()
        elif mode is CryptoMode.PQ:
            key = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
            raw = key.public_key().public_bytes_raw()
        else:
            kem, x = xwing_private_from_seed(seed)
            key = _hpke.MLKEM768X25519PrivateKey(kem, x)
            raw = kem.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
        self.mode = mode
        self._seed = seed
        self._key = key
        self.public = HpkePublicKey(mode, raw)

    @classmethod
    def generate(cls, mode: CryptoMode, rng: Rng) -> "HpkePrivateKey":
        return cls(mode, rng(_SEED_LEN[mode]))

    @classmethod
    def from_private_bytes(cls, data: bytes) -> "HpkePrivateKey":
        try:
            value = canonical.loads_map(data, {"mode": str, "seed": bytes})
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"HPKE private key is malformed: {exc}") from None
        return _EXPANDED[CryptoMode.parse(value["mode"], remote=False)].get(value["seed"])

    def private_bytes(self) -> bytes:
        return canonical.dumps({"mode": self.mode.value, "seed": self._seed})

    def open(self, ciphertext: bytes, info: bytes) -> bytes:
        try:
            return SUITES[self.mode].decrypt(ciphertext, self._key, info=info)
        except Exception:  # InvalidTag, ValueError on a short/garbled encapsulation: all opaque
            raise DecryptError() from None

    def __repr__(self) -> str:
        return f"HpkePrivateKey({self.mode.value}, <secret>)"


#: Keys read from their stored bytes stay expanded (core/crypto/expanded.py): the device's
#: sealed-sender key is read with its profile for every send and receive, and an X-Wing key
#: costs an ML-KEM-768 key generation and an X25519 multiplication to build. A few per mode.
_EXPANDED = {mode: ExpandedKeys(functools.partial(HpkePrivateKey, mode), 4) for mode in CryptoMode}
