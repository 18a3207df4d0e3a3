"""Ephemeral key agreement for the secure-channel handshake.

The initiator always offers both an X25519 share and an ML-KEM-768 encapsulation key, so one
round trip serves every mode; the responder answers with the parts of the chosen mode
(X25519 share and/or ML-KEM ciphertext). The shared secret is the concatenation of the
component secrets (X25519 first), as in the TLS hybrid design; the handshake transcript binds
every public value, so the plain concatenation is a sound combiner there.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from ..errors import RemoteProtocolError
from .modes import CryptoMode, Rng

__all__ = ["KexOffer", "KexResponse", "respond", "X25519_LEN", "MLKEM_PUB_LEN", "MLKEM_CT_LEN"]

X25519_LEN = 32
MLKEM_PUB_LEN = 1184
MLKEM_CT_LEN = 1088


def _x25519_public(raw: bytes) -> x25519.X25519PublicKey:
    if type(raw) is not bytes or len(raw) != X25519_LEN:
        raise RemoteProtocolError("X25519 share must be 32 bytes")
    return x25519.X25519PublicKey.from_public_bytes(raw)


def _x25519_exchange(private: x25519.X25519PrivateKey, peer_raw: bytes) -> bytes:
    try:
        return private.exchange(_x25519_public(peer_raw))
    except ValueError:  # low-order point: all-zero shared secret
        raise RemoteProtocolError("X25519 share is a low-order point") from None


class KexOffer:
    """The initiator's ephemeral secrets; :meth:`finish` consumes the responder's answer."""

    __slots__ = ("_x", "_kem", "x25519_public", "mlkem_public")

    def __init__(self, rng: Rng) -> None:
        self._x = x25519.X25519PrivateKey.from_private_bytes(rng(32))
        self._kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(rng(64))
        self.x25519_public = self._x.public_key().public_bytes_raw()
        self.mlkem_public = self._kem.public_key().public_bytes_raw()

    def finish(self, mode: CryptoMode, x25519_share: bytes | None, mlkem_ciphertext: bytes | None) -> bytes:
        parts = []
        if mode.uses_classical:
            if x25519_share is None:
                raise RemoteProtocolError("responder omitted its X25519 share")
            parts.append(_x25519_exchange(self._x, x25519_share))
        elif x25519_share is not None:
            raise RemoteProtocolError("unexpected X25519 share in pq mode")
        if mode.uses_pq:
            if type(mlkem_ciphertext) is not bytes or len(mlkem_ciphertext) != MLKEM_CT_LEN:
                raise RemoteProtocolError("ML-KEM ciphertext must be 1088 bytes")
            parts.append(self._kem.decapsulate(mlkem_ciphertext))
        elif mlkem_ciphertext is not None:
            raise RemoteProtocolError("unexpected ML-KEM ciphertext in classical mode")
        return b"".join(parts)


class KexResponse:
    __slots__ = ("x25519_share", "mlkem_ciphertext", "shared_secret")

    def __init__(self, x25519_share: bytes | None, mlkem_ciphertext: bytes | None, shared_secret: bytes) -> None:
        self.x25519_share = x25519_share
        self.mlkem_ciphertext = mlkem_ciphertext
        self.shared_secret = shared_secret


def respond(mode: CryptoMode, rng: Rng, x25519_offer: bytes, mlkem_offer: bytes) -> KexResponse:
    """Answer an offer in ``mode``. ML-KEM encapsulation randomness comes from OpenSSL's CSPRNG:
    ``cryptography`` exposes no derandomised encapsulation."""
    parts = []
    share = ciphertext = None
    if mode.uses_classical:
        eph = x25519.X25519PrivateKey.from_private_bytes(rng(32))
        share = eph.public_key().public_bytes_raw()
        parts.append(_x25519_exchange(eph, x25519_offer))
    if mode.uses_pq:
        if type(mlkem_offer) is not bytes or len(mlkem_offer) != MLKEM_PUB_LEN:
            raise RemoteProtocolError("ML-KEM encapsulation key must be 1184 bytes")
        try:
            peer = mlkem.MLKEM768PublicKey.from_public_bytes(mlkem_offer)
        except ValueError:
            raise RemoteProtocolError("ML-KEM encapsulation key is malformed") from None
        secret, ciphertext = peer.encapsulate()
        parts.append(secret)
    return KexResponse(share, ciphertext, b"".join(parts))
