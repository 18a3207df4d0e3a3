"""Deterministic CBOR (RFC 8949 §4.2) for everything that is signed or hashed.

Encoding is canonical, so one logical object has exactly one byte string. Decoding is strict:
only plain data (int, bool, None, str, bytes, list, str-keyed map), no tags, no floats, and the
input must be the canonical encoding of what it decodes to — trailing bytes, indefinite lengths,
non-minimal integers or unsorted maps are all refused. That makes "verify what you hash" hold.

Canonical map order is cbor2's: keys by the length of their encoding, then bytewise (for text
keys: UTF-8 length, then UTF-8 bytes). For plain data that order is the only thing cbor2's
canonical mode adds to its default encoding, which is several times faster (it writes no
sorted copy of each map). So :func:`dumps_ordered` encodes maps already built in that order,
and :func:`loads` checks every map's key order while it checks the types, then compares the
input with the default encoding of what it decoded: equal bytes and ordered keys mean the
input is exactly ``dumps`` of the value.
"""

from __future__ import annotations

from typing import Any

import cbor2

from . import limits
from .errors import RemoteProtocolError

__all__ = ["dumps", "dumps_ordered", "loads", "loads_map"]

_SCALARS = frozenset({bool, str, bytes, type(None)})
_INT_MIN, _INT_MAX = -(2**64), 2**64 - 1
# what _scan finds: plain data in canonical order, plain data with a map out of order, not plain
_ORDERED, _UNORDERED, _NOT_PLAIN = 0, 1, 2
#: key sequences (all str) already found in canonical order: the protocol's maps come in a few
#: shapes, and a map of a known one needs no check per key. Only the first few shapes are
#: kept, and only small ones, so a peer's odd maps cost memory once and then nothing.
_ORDERED_KEYS: set[tuple[str, ...]] = set()
_MEMO_SHAPES, _MEMO_KEYS, _MEMO_CHARS = 512, 48, 512


def dumps(obj: Any) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def dumps_ordered(value: Any) -> bytes:
    """``dumps(value)`` for plain data whose maps (nested ones too) are already in canonical
    key order: built in that order, or decoded by :func:`loads` (cbor2 keeps the order). The
    per-message encodings use it; their tests check the result against :func:`dumps`."""
    return cbor2.dumps(value)


def _scan(value: Any, depth: int) -> int:
    """Whether ``value`` is plain data within the depth cap, and its maps in canonical order."""
    if depth > limits.MAX_DEPTH:
        return _NOT_PLAIN
    t = type(value)
    if t is int:
        # cbor2 turns bignum tags (2, 3) into plain ints; only major types 0/1 are plain data.
        return _ORDERED if _INT_MIN <= value <= _INT_MAX else _NOT_PLAIN
    if t in _SCALARS:
        return _ORDERED
    found = _ORDERED
    if t is dict:
        keys = tuple(value)
        if keys not in _ORDERED_KEYS:
            previous: bytes | None = None
            for key in keys:
                if type(key) is not str:
                    return _NOT_PLAIN
                raw = key.encode()
                if previous is not None and (len(raw), raw) <= (len(previous), previous):
                    found = _UNORDERED
                previous = raw
            if found == _ORDERED and len(_ORDERED_KEYS) < _MEMO_SHAPES and len(keys) <= _MEMO_KEYS and sum(map(len, keys)) <= _MEMO_CHARS:
                _ORDERED_KEYS.add(keys)
        items = value.values()
    elif t is list:
        items = value
    else:
        return _NOT_PLAIN
    leaf = depth < limits.MAX_DEPTH  # an item here is within the cap
    for item in items:
        kind = type(item)
        if leaf and (kind in _SCALARS or (kind is int and _INT_MIN <= item <= _INT_MAX)):
            continue  # the common case, without a call
        result = _scan(item, depth + 1)
        if result == _NOT_PLAIN:
            return _NOT_PLAIN
        found |= result
    return found


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
    found = _scan(value, 0)
    if found == _NOT_PLAIN:
        raise RemoteProtocolError("CBOR object holds a type that is not allowed")
    # maps in canonical order: the default encoding is the canonical one (module docstring)
    if found == _UNORDERED or cbor2.dumps(value) != data:
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
