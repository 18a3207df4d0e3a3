"""Strict field checks shared by the ratchet encodings (canonical CBOR maps with nullable fields).

``core.canonical.loads_map`` covers maps whose fields all have one type; the ratchet's maps also
hold optional parts (``null`` when the crypto mode has no such part), so the checks here take a
tuple of allowed types per field. ``err`` selects the error class: peer input raises
``RemoteProtocolError``, our own stored records ``LocalProtocolError``.

:func:`dumps_ordered` (core/canonical.py) is the encoder of the ratchet's per-message hot path
(headers, messages, session records): the encodings that use it list their keys in canonical
order (shortest first, then bytewise) and the tests check the result against
``canonical.dumps``; a map out of order would be refused by every strict decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import canonical
from ..canonical import dumps_ordered
from ..errors import ProtocolError, RemoteProtocolError

__all__ = ["NONE", "check_map", "decode_map", "dumps_ordered", "need_len", "need_range"]

NONE = type(None)
ErrorType = type[ProtocolError]


def check_map(value: Any, spec: Mapping[str, tuple[type, ...]], what: str, err: ErrorType = RemoteProtocolError) -> dict[str, Any]:
    """``value`` must be a map with exactly the fields of ``spec``, each of an allowed type."""
    if type(value) is not dict or value.keys() != spec.keys():
        raise err(f"{what} does not have the expected fields")
    for key, types in spec.items():
        if type(value[key]) not in types:
            raise err(f"{what} field {key!r} has the wrong type")
    return value


def decode_map(
    data: bytes, spec: Mapping[str, tuple[type, ...]], what: str, *, max_bytes: int, err: ErrorType = RemoteProtocolError
) -> dict[str, Any]:
    """Decode canonical CBOR of at most ``max_bytes`` and check it with :func:`check_map`."""
    if type(data) is bytes and len(data) > max_bytes:
        raise err(f"{what} of {len(data)} bytes exceeds {max_bytes}")
    try:
        value = canonical.loads(data, max_bytes=max_bytes)
    except RemoteProtocolError as exc:
        if err is RemoteProtocolError:
            raise
        raise err(f"{what} is malformed: {exc}") from None
    return check_map(value, spec, what, err)


def need_len(value: bytes | None, length: int, what: str, err: ErrorType = RemoteProtocolError) -> None:
    if value is not None and len(value) != length:
        raise err(f"{what} must be {length} bytes")


def need_range(value: int | None, lo: int, hi: int, what: str, err: ErrorType = RemoteProtocolError) -> None:
    if value is not None and not lo <= value <= hi:
        raise err(f"{what} is out of range")

