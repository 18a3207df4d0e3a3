"""Deterministic CBOR (RFC 8949 §4.2) for everything that is signed or hashed.

Encoding is canonical, so one logical object has exactly one byte string. Decoding is strict:
only plain data (int, bool, None, str, bytes, list, str-keyed map), no tags, no floats, and the
input must be the canonical encoding of what it decodes to — trailing bytes, indefinite lengths,
non-minimal integers or unsorted maps are all refused. That makes "verify what you hash" hold.
"""

from __future__ import annotations

from typing import Any

import cbor2

from . import limits
from .errors import RemoteProtocolError

__all__ = ["dumps", "loads", "loads_map"]

_PLAIN = (int, bool, str, bytes, type(None))
_INT_MIN, _INT_MAX = -(2**64), 2**64 - 1


def dumps(obj: Any) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def _plain(value: Any, depth: int) -> bool:
    if depth > limits.MAX_DEPTH:
        return False
    t = type(value)
    if t is int:
        # cbor2 turns bignum tags (2, 3) into plain ints; only major types 0/1 are plain data.
        number: int = value
        return _INT_MIN <= number <= _INT_MAX
    if t in _PLAIN:
        return True
    if t is list:
        return all(_plain(v, depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


def loads(data: bytes, *, max_bytes: int = limits.MAX_CBOR_BYTES) -> Any:
    """Decode canonical CBOR made of plain data only, or raise RemoteProtocolError."""
    if type(data) is not bytes:
        raise RemoteProtocolError("CBOR input must be bytes")
    if len(data) > max_bytes:
        raise RemoteProtocolError(f"CBOR object of {len(data)} bytes exceeds {max_bytes}")
    try:
        value = cbor2.loads(
            data,
            max_depth=limits.MAX_DEPTH + 1,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            semantic_decoders={},
        )
    except Exception as exc:  # cbor2 raises CBORDecodeError, but also ValueError/TypeError
        raise RemoteProtocolError(f"malformed CBOR: {type(exc).__name__}") from None
    if not _plain(value, 0):
        raise RemoteProtocolError("CBOR object holds a type that is not allowed")
    if dumps(value) != data:
        raise RemoteProtocolError("CBOR object is not canonically encoded")
    return value


def loads_map(data: bytes, required: dict[str, type], *, max_bytes: int = limits.MAX_CBOR_BYTES) -> dict[str, Any]:
    """Decode a canonical CBOR map whose keys are exactly ``required`` with the given types."""
    value = loads(data, max_bytes=max_bytes)
    if type(value) is not dict or set(value) != set(required):
        raise RemoteProtocolError("CBOR map does not have the expected fields")
    for key, tp in required.items():
        if type(value[key]) is not tp:
            raise RemoteProtocolError(f"CBOR field {key!r} must be {tp.__name__}")
    return value
