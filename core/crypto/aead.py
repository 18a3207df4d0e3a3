"""AEAD ciphers. Failures raise the opaque ``DecryptError``."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..errors import DecryptError, LocalProtocolError

__all__ = ["Aead", "AES_256_GCM", "CHACHA20_POLY1305", "KEY_LEN", "NONCE_LEN", "TAG_LEN"]

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16

AES_256_GCM = "aes-256-gcm"
CHACHA20_POLY1305 = "chacha20-poly1305"
_CIPHERS: dict[str, type[AESGCM] | type[ChaCha20Poly1305]] = {AES_256_GCM: AESGCM, CHACHA20_POLY1305: ChaCha20Poly1305}


class Aead:
    """One key of one AEAD algorithm; 96-bit nonces, 128-bit tags."""

    __slots__ = ("_cipher",)

    def __init__(self, key: bytes, algorithm: str = AES_256_GCM) -> None:
        if len(key) != KEY_LEN:
            raise LocalProtocolError("AEAD key must be 32 bytes")
        self._cipher: AESGCM | ChaCha20Poly1305 = _CIPHERS[algorithm](key)

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        if len(nonce) != NONCE_LEN:
            raise LocalProtocolError("AEAD nonce must be 12 bytes")
        return self._cipher.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
        if len(nonce) != NONCE_LEN or len(ciphertext) < TAG_LEN:
            raise DecryptError()
        try:
            return self._cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise DecryptError() from None

    def __repr__(self) -> str:  # never show key material
        return "Aead(<secret>)"
