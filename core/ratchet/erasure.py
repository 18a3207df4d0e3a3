"""Erasure coding of the post-quantum ratchet's chunks: any ``k`` distinct chunks rebuild the whole.

A Reed-Solomon code over GF(2^8) (polynomial 0x11d), byte position by byte position: the
``k`` data chunks are the values at x = 0..k-1 of polynomials of degree < k, and chunk ``x``
for every x in 0..255 is their value there. The first ``k`` chunks are the data itself
(systematic). Signal's SPQR codes its chunks for the same reason: a plain round robin lets a
network that drops every message carrying one chunk stall the exchange for ever.
"""

from __future__ import annotations

import functools

__all__ = ["POINTS", "decode", "encode"]

#: distinct chunk indices (the field's elements)
POINTS = 256

_EXP = [0] * 510
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _EXP[_i + 255] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _div(a: int, b: int) -> int:
    return 0 if a == 0 else _EXP[_LOG[a] + 255 - _LOG[b]]


@functools.cache
def _times(c: int) -> bytes:
    """The table that multiplies every byte by ``c`` (for ``bytes.translate``)."""
    return bytes(_mul(c, b) for b in range(256))


def _at(x: int, points: dict[int, bytes]) -> bytes:
    """The value at ``x`` of the polynomials through ``points`` (x -> equal-length bytes)."""
    if x in points:
        return points[x]
    total, length = 0, len(next(iter(points.values())))
    for t, y in points.items():
        weight = 1  # Lagrange basis polynomial of t, at x (subtraction is XOR)
        for other in points:
            if other != t:
                weight = _mul(weight, _div(x ^ other, t ^ other))
        total ^= int.from_bytes(y.translate(_times(weight)), "big")
    return total.to_bytes(length, "big")


def encode(data: list[bytes], x: int) -> bytes:
    """Chunk ``x`` (0..255) of the data chunks ``data`` (all of one length)."""
    return _at(x, dict(enumerate(data)))


def decode(chunks: dict[int, bytes], k: int) -> list[bytes]:
    """The ``k`` data chunks from ``k`` distinct chunks (index -> bytes, all of one length)."""
    return [_at(x, chunks) for x in range(k)]
