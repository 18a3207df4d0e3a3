"""The file streaming AEAD (core/crypto/stream.py): round trips at every size boundary, the
layout checked against an independent composition of HKDF + AES-GCM, and each attack STREAM
must detect: truncation, reordering, a swap, extension, a flipped bit, a wrong key."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sonet.core.crypto.stream import (
    SEALED_SEGMENT_BYTES,
    SEGMENT_BYTES,
    Sha256Stream,
    StreamOpener,
    StreamSealer,
    plain_size,
    sealed_size,
)
from sonet.core.errors import DecryptError, LocalProtocolError

KEY = bytes(range(32))
SIZES = [0, 1, SEGMENT_BYTES - 1, SEGMENT_BYTES, SEGMENT_BYTES + 1, 3 * SEGMENT_BYTES, 3 * SEGMENT_BYTES + 17]


def seal(data: bytes, key: bytes = KEY, piece: int = 10_000) -> bytes:
    s = StreamSealer(key)
    out = b"".join(s.update(data[i : i + piece]) for i in range(0, len(data), piece))
    return out + s.finish()


def open_all(sealed: bytes, key: bytes = KEY, piece: int = 7_777) -> bytes:
    o = StreamOpener(key)
    out = b"".join(o.update(sealed[i : i + piece]) for i in range(0, len(sealed), piece))
    return out + o.finish()


def segments(sealed: bytes) -> list[bytes]:
    return [sealed[i : i + SEALED_SEGMENT_BYTES] for i in range(0, len(sealed), SEALED_SEGMENT_BYTES)]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_and_sizes(size: int) -> None:
    data = os.urandom(size)
    sealed = seal(data)
    assert len(sealed) == sealed_size(size)
    assert plain_size(len(sealed)) == size
    assert open_all(sealed) == data


def test_layout_matches_an_independent_composition() -> None:
    """Segment i = AES-256-GCM(k, prefix || i (4 bytes BE) || last, segment), (k, prefix) = HKDF."""
    data = bytes(range(256)) * (2 * SEGMENT_BYTES // 256) + b"tail"
    okm = HKDF(algorithm=hashes.SHA256(), length=39, salt=None, info=b"sonet file stream v1").derive(KEY)
    aead, prefix = AESGCM(okm[:32]), okm[32:]
    expected = (
        aead.encrypt(prefix + (0).to_bytes(4, "big") + b"\x00", data[:SEGMENT_BYTES], None)
        + aead.encrypt(prefix + (1).to_bytes(4, "big") + b"\x00", data[SEGMENT_BYTES : 2 * SEGMENT_BYTES], None)
        + aead.encrypt(prefix + (2).to_bytes(4, "big") + b"\x01", b"tail", None)
    )
    assert seal(data) == expected
    # a fixed vector: a change of the construction shows here
    assert hashlib.sha256(expected).hexdigest() == "3d51b336b58dadd91d87747a11a92754c4eae2e72905f424152e59bc6caa1852"
    assert seal(b"").hex() == aead.encrypt(prefix + bytes(4) + b"\x01", b"", None).hex()


def _refused(sealed: bytes, key: bytes = KEY) -> None:
    with pytest.raises(DecryptError):
        open_all(sealed, key)


def test_truncation_at_a_segment_boundary_is_detected() -> None:
    sealed = seal(os.urandom(3 * SEGMENT_BYTES + 5))
    for cut in range(1, 4):
        _refused(b"".join(segments(sealed)[:cut]))


def test_truncation_inside_a_segment_and_to_nothing_is_detected() -> None:
    sealed = seal(os.urandom(2 * SEGMENT_BYTES))
    _refused(sealed[:-1])
    _refused(sealed[: SEALED_SEGMENT_BYTES + 10])
    _refused(b"")
    _refused(seal(b"")[:-1])


def test_reordering_and_swaps_are_detected() -> None:
    segs = segments(seal(os.urandom(3 * SEGMENT_BYTES)))
    _refused(segs[1] + segs[0] + segs[2])  # a swap of two full segments
    _refused(segs[0] + segs[2] + segs[1])  # the last one moved


def test_extension_is_detected() -> None:
    sealed = seal(os.urandom(SEGMENT_BYTES))
    _refused(sealed + sealed)  # a last segment followed by more
    _refused(sealed + b"\x00" * 16)
    other = seal(os.urandom(2 * SEGMENT_BYTES))
    _refused(other + segments(other)[0])


def test_segments_of_another_file_are_refused() -> None:
    a, b = seal(os.urandom(2 * SEGMENT_BYTES), KEY), seal(os.urandom(2 * SEGMENT_BYTES), bytes(32))
    _refused(segments(a)[0] + segments(b)[1])


def test_any_flipped_bit_and_a_wrong_key_are_detected() -> None:
    sealed = bytearray(seal(os.urandom(SEGMENT_BYTES + 100)))
    for where in (0, SEGMENT_BYTES, SEALED_SEGMENT_BYTES + 3, len(sealed) - 1):
        tampered = bytearray(sealed)
        tampered[where] ^= 0x01
        _refused(bytes(tampered))
    _refused(bytes(sealed), key=bytes(32))


def test_an_opener_that_failed_gives_nothing_more() -> None:
    sealed = seal(os.urandom(2 * SEGMENT_BYTES + 3))
    opener = StreamOpener(KEY)
    bad = bytearray(sealed)
    bad[5] ^= 1
    with pytest.raises(DecryptError):
        opener.update(bytes(bad))
    with pytest.raises(DecryptError):
        opener.finish()


def test_bad_keys_and_a_finished_sealer_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        StreamSealer(b"short")
    s = StreamSealer(KEY)
    s.finish()
    with pytest.raises(LocalProtocolError):
        s.update(b"x")


def test_sizes_that_no_file_seals_to() -> None:
    assert plain_size(0) is None
    assert plain_size(15) is None
    assert plain_size(SEALED_SEGMENT_BYTES + 3) is None
    assert plain_size(16) == 0


def test_sha256_stream() -> None:
    data = os.urandom(100_000)
    h = Sha256Stream()
    for i in range(0, len(data), 999):
        h.update(data[i : i + 999])
    assert h.digest() == hashlib.sha256(data).digest() and h.size == len(data)
