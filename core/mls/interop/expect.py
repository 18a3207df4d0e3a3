"""Small helpers of the kind modules: decode a case's hex fields, compare with a clear message."""

from __future__ import annotations

from typing import Any

__all__ = ["VectorMismatch", "expect_equal", "hex_field"]


class VectorMismatch(AssertionError):
    """A computed value differs from the vector's."""


def hex_field(case: dict[str, Any], key: str) -> bytes:
    """``case[key]`` as bytes (the vectors hex-encode every binary field)."""
    value = case[key]
    if not isinstance(value, str):
        raise VectorMismatch(f"{key}: expected a hex string, got {type(value).__name__}")
    return bytes.fromhex(value)


def _show(value: object) -> str:
    text = value.hex() if isinstance(value, (bytes, bytearray)) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def expect_equal(what: str, got: object, expected: object) -> None:
    if got != expected:
        raise VectorMismatch(f"{what}: got {_show(got)}, expected {_show(expected)}")
