"""Encoding of the TLS presentation language as RFC 9420 uses it (§2.1): the mirror of ``Reader``.

A value that does not fit its field is our own bug (``LocalProtocolError``), never truncated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from ...errors import LocalProtocolError
from .varint import encode_varint

__all__ = ["Writer"]

T = TypeVar("T")


class Writer:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def _uint(self, x: int, size: int) -> None:
        if x < 0 or x >> (8 * size):
            raise LocalProtocolError(f"MLS: {x} does not fit in uint{8 * size}")
        self._buf += x.to_bytes(size, "big")

    def u8(self, x: int) -> None:
        self._uint(x, 1)

    def u16(self, x: int) -> None:
        self._uint(x, 2)

    def u32(self, x: int) -> None:
        self._uint(x, 4)

    def u64(self, x: int) -> None:
        self._uint(x, 8)

    def varint(self, n: int) -> None:
        self._buf += encode_varint(n)

    def raw(self, b: bytes) -> None:
        """Bytes as they are (a fixed-size field: no length prefix)."""
        self._buf += b

    def opaque(self, b: bytes) -> None:
        """``opaque data<V>``: varint length, then the bytes."""
        self._buf += encode_varint(len(b))
        self._buf += b

    def vector(self, items: Iterable[T], write_item: Callable[[Writer, T], None]) -> None:
        """``T items<V>``: varint byte length of the encoded items, then the items."""
        inner = Writer()
        for item in items:
            write_item(inner, item)
        self.opaque(inner._buf)

    def optional(self, item: T | None, write_item: Callable[[Writer, T], None]) -> None:
        """``optional<T>``: uint8 0 for None, else 1 and the item."""
        if item is None:
            self.u8(0)
        else:
            self.u8(1)
            write_item(self, item)

    def bytes(self) -> bytes:
        return bytes(self._buf)
