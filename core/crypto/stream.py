"""Streaming AEAD for files: AES-256-GCM segments in the STREAM construction
(Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
Misuse-Resistance", CRYPTO 2015; the nonce layout of Tink's AES-GCM-HKDF streaming AEAD).

A file is cut into plaintext segments of ``SEGMENT_BYTES`` (the last one 0..SEGMENT_BYTES
bytes; an empty file is one empty last segment). Segment ``i`` is sealed with

    nonce = prefix (7 bytes) || i (4 bytes, big-endian) || last (1 byte: 1 on the last segment)

under a segment key; both are derived from the file's random 32-byte key with HKDF-SHA256
(info ``sonet file stream v1``), so one key is used for one file only and nothing but the key
travels with the file (inside the end-to-end-encrypted message). Ciphertext = the sealed
segments back to back, ``SEGMENT_BYTES + 16`` each but the last: no header.

What this detects (each with a test, tests/core/crypto/test_stream.py): a segment moved to
another place (reordering, a swap: the counter is in the nonce), a stream cut at a segment
boundary (truncation: the segment before the cut was not sealed as the last), bytes after the
last segment (extension), any changed byte (the tag). Every failure is the opaque
``DecryptError``.

``StreamSealer`` and ``StreamOpener`` are fed any number of bytes at a time and return what is
ready; ``finish()`` ends the stream. ``Sha256Stream`` digests a stream the same way (the
plaintext and ciphertext digests a file message carries).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import DecryptError, LocalProtocolError
from .kdf import hkdf

__all__ = [
    "FILE_KEY_LEN",
    "SEGMENT_BYTES",
    "SEALED_SEGMENT_BYTES",
    "MAX_SEGMENTS",
    "StreamSealer",
    "StreamOpener",
    "Sha256Stream",
    "sealed_size",
    "plain_size",
]

FILE_KEY_LEN = 32
SEGMENT_BYTES = 64 * 1024
_TAG = 16
SEALED_SEGMENT_BYTES = SEGMENT_BYTES + _TAG
_PREFIX_LEN = 7
#: the counter is 4 bytes: 2**32 segments of 64 KiB (256 TiB) per file
MAX_SEGMENTS = 2**32
_INFO = b"sonet file stream v1"


def _derive(key: bytes) -> tuple[AESGCM, bytes]:
    if type(key) is not bytes or len(key) != FILE_KEY_LEN:
        raise LocalProtocolError(f"a file key is {FILE_KEY_LEN} bytes")
    okm = hkdf(key, salt=None, info=_INFO, length=32 + _PREFIX_LEN)
    return AESGCM(okm[:32]), okm[32:]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def sealed_size(plain: int) -> int:
    """The ciphertext size of a ``plain``-byte file."""
    if plain < 0:
        raise LocalProtocolError("a size is not negative")
    segments = max(1, -(-plain // SEGMENT_BYTES))
    return plain + segments * _TAG


def plain_size(sealed: int) -> int | None:
    """The plaintext size of a ``sealed``-byte ciphertext, or None when no file seals to that size."""
    full, rest = divmod(sealed, SEALED_SEGMENT_BYTES)
    if rest == 0:  # ends on a full segment: that one was the last (0 is no stream at all)
        return full * SEGMENT_BYTES if full else None
    if rest < _TAG:
        return None
    return full * SEGMENT_BYTES + rest - _TAG


class StreamSealer:
    """Encrypts one file. ``update`` returns the sealed segments completed so far (a segment is
    sealed once the next byte is seen, so that the last one is known); ``finish`` the last."""

    __slots__ = ("_aead", "_prefix", "_index", "_buffer", "_done")

    def __init__(self, key: bytes) -> None:
        self._aead, self._prefix = _derive(key)
        self._index = 0
        self._buffer = bytearray()
        self._done = False

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise LocalProtocolError("this stream is finished")
        self._buffer += data
        out = bytearray()
        while len(self._buffer) > SEGMENT_BYTES:
            out += self._seal(bytes(self._buffer[:SEGMENT_BYTES]), last=False)
            del self._buffer[:SEGMENT_BYTES]
        return bytes(out)

    def finish(self) -> bytes:
        if self._done:
            raise LocalProtocolError("this stream is finished")
        self._done = True
        last = self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        return last

    def _seal(self, segment: bytes, *, last: bool) -> bytes:
        if self._index >= MAX_SEGMENTS:
            raise LocalProtocolError("file too large for one stream")
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, last), segment, None)
        self._index += 1
        return sealed

    def __repr__(self) -> str:
        return "StreamSealer(<secret>)"


class StreamOpener:
    """Decrypts one file sealed by ``StreamSealer``: ``update`` returns the plaintext of the
    segments it could open (it holds back the final one, not knowing yet that it is the last);
    ``finish`` opens that one as the last. Any failure: ``DecryptError``, and the opener is
    dead (nothing more comes out of it)."""

    __slots__ = ("_aead", "_prefix", "_index", "_buffer", "_done")

    def __init__(self, key: bytes) -> None:
        self._aead, self._prefix = _derive(key)
        self._index = 0
        self._buffer = bytearray()
        self._done = False

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise DecryptError()
        self._buffer += data
        out = bytearray()
        while len(self._buffer) > SEALED_SEGMENT_BYTES:
            out += self._open(bytes(self._buffer[:SEALED_SEGMENT_BYTES]), last=False)
            del self._buffer[:SEALED_SEGMENT_BYTES]
        return bytes(out)

    def finish(self) -> bytes:
        if self._done:
            raise DecryptError()
        plain = self._open(bytes(self._buffer), last=True)
        self._done = True
        self._buffer.clear()
        return plain

    def _open(self, sealed: bytes, *, last: bool) -> bytes:
        if len(sealed) < _TAG or self._index >= MAX_SEGMENTS:
            self._done = True
            raise DecryptError()
        try:
            plain = self._aead.decrypt(_nonce(self._prefix, self._index, last), sealed, None)
        except InvalidTag:
            self._done = True
            raise DecryptError() from None
        self._index += 1
        return plain

    def __repr__(self) -> str:
        return "StreamOpener(<secret>)"


class Sha256Stream:
    """SHA-256 of a stream fed in pieces."""

    __slots__ = ("_hash", "size")

    def __init__(self) -> None:
        self._hash = hashes.Hash(hashes.SHA256())
        self.size = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def digest(self) -> bytes:
        """The digest of everything fed so far (the stream may go on)."""
        return self._hash.copy().finalize()
