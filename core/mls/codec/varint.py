"""The variable-length integer of RFC 9420 §2.1.2 (vector and opaque length prefixes).

The two top bits of the first byte give the length: 00 one byte (6 bits), 01 two bytes (14
bits), 10 four bytes (30 bits); 11 is invalid. Only the shortest encoding of a value is valid.
Decoding lives in ``Reader.varint``.
"""

from __future__ import annotations

from ...errors import LocalProtocolError

__all__ = ["VARINT_MAX", "encode_varint"]

#: the largest value a varint holds (30 bits)
VARINT_MAX = (1 << 30) - 1


def encode_varint(n: int) -> bytes:
    """The shortest encoding of ``n``; a value out of 0..VARINT_MAX is our own bug."""
    if n < 0 or n > VARINT_MAX:
        raise LocalProtocolError(f"MLS: varint value {n} is outside 0..{VARINT_MAX}")
    if n < 1 << 6:
        return n.to_bytes(1, "big")
    if n < 1 << 14:
        return (n | 0x4000).to_bytes(2, "big")
    return (n | 0x8000_0000).to_bytes(4, "big")
