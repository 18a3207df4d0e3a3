"""Thin wrappers for the session key agreement (core/ratchet): X25519 and ML-KEM-768 key pairs.

Key pairs are built from their secret bytes (X25519: the 32-byte scalar; ML-KEM-768: the
64-byte seed ``d || z`` of FIPS 203), so generation takes its randomness as a parameter and a
key pair is stored as exactly those bytes. Peer input is checked here: a wrong length, a
malformed ML-KEM encapsulation key or an X25519 point of low order (all-zero shared secret) is
a ``RemoteProtocolError``.

ML-KEM encapsulation draws its randomness from OpenSSL's CSPRNG: ``cryptography`` exposes no
derandomised encapsulation, so it is the one source of randomness that is not a parameter.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from ..errors import LocalProtocolError, RemoteProtocolError
from .kex import MLKEM_CT_LEN, MLKEM_PUB_LEN, X25519_LEN
from .modes import Rng

__all__ = [
    "X25519KeyPair",
    "MlKemKeyPair",
    "mlkem_encapsulate",
    "check_mlkem_public",
    "X25519_LEN",
    "MLKEM_SEED_LEN",
    "MLKEM_PUB_LEN",
    "MLKEM_CT_LEN",
]

MLKEM_SEED_LEN = 64


def _need_bytes(value: object, length: int, what: str) -> bytes:
    if type(value) is not bytes or len(value) != length:
        raise RemoteProtocolError(f"{what} must be {length} bytes")
    return value


class X25519KeyPair:
    """An X25519 key pair held as its 32-byte secret scalar."""

    __slots__ = ("_key", "_secret", "public")

    def __init__(self, secret: bytes) -> None:
        if type(secret) is not bytes or len(secret) != X25519_LEN:
            raise LocalProtocolError("X25519 secret must be 32 bytes")
        self._secret = secret
        self._key = x25519.X25519PrivateKey.from_private_bytes(secret)
        self.public: bytes = self._key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls, rng: Rng) -> "X25519KeyPair":
        return cls(rng(X25519_LEN))

    def secret_bytes(self) -> bytes:
        return self._secret

    def exchange(self, peer_public: bytes) -> bytes:
        """X25519 with a peer's public key; refuses malformed and low-order points."""
        peer = x25519.X25519PublicKey.from_public_bytes(_need_bytes(peer_public, X25519_LEN, "X25519 public key"))
        try:
            return self._key.exchange(peer)
        except ValueError:  # OpenSSL refuses an all-zero shared secret
            raise RemoteProtocolError("X25519 public key is a low-order point") from None

    def __repr__(self) -> str:
        return "X25519KeyPair(<secret>)"


def _mlkem_public(raw: object) -> mlkem.MLKEM768PublicKey:
    try:
        return mlkem.MLKEM768PublicKey.from_public_bytes(_need_bytes(raw, MLKEM_PUB_LEN, "ML-KEM-768 public key"))
    except ValueError:  # coefficients out of range (FIPS 203 modulus check)
        raise RemoteProtocolError("ML-KEM-768 public key is malformed") from None


def check_mlkem_public(raw: bytes) -> None:
    """Raise RemoteProtocolError unless ``raw`` is a well-formed ML-KEM-768 encapsulation key."""
    _mlkem_public(raw)


def mlkem_encapsulate(public: bytes) -> tuple[bytes, bytes]:
    """Encapsulate to an ML-KEM-768 public key: ``(shared_secret, ciphertext)``.

    The randomness comes from OpenSSL (see the module docstring)."""
    shared, ciphertext = _mlkem_public(public).encapsulate()
    return shared, ciphertext


class MlKemKeyPair:
    """An ML-KEM-768 key pair held as its 64-byte seed."""

    __slots__ = ("_key", "_seed", "public")

    def __init__(self, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != MLKEM_SEED_LEN:
            raise LocalProtocolError("ML-KEM-768 seed must be 64 bytes")
        self._seed = seed
        self._key = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
        self.public: bytes = self._key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls, rng: Rng) -> "MlKemKeyPair":
        return cls(rng(MLKEM_SEED_LEN))

    def seed_bytes(self) -> bytes:
        return self._seed

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """The shared secret. A well-formed but wrong ciphertext yields an unrelated secret
        (ML-KEM's implicit rejection), so the failure shows up when the derived key is used."""
        ct = _need_bytes(ciphertext, MLKEM_CT_LEN, "ML-KEM-768 ciphertext")
        try:
            return self._key.decapsulate(ct)
        except ValueError:
            raise RemoteProtocolError("ML-KEM-768 ciphertext is malformed") from None

    def __repr__(self) -> str:
        return "MlKemKeyPair(<secret>)"
