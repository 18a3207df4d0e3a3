"""Decoding of the TLS presentation language as RFC 9420 uses it (§2.1).

A ``Reader`` walks one buffer. Every read checks the bytes that are left before it takes any,
and a length prefix is checked against what is left (and against the cap) before anything is
allocated, so hostile input costs at most its own size. Inside ``vector`` the reader is bounded
by the vector's end: an item cannot read past it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from ...limits import MLS_MAX_MESSAGE_BYTES
from .errors import DecodeError

__all__ = ["Reader", "decode_all"]

T = TypeVar("T")


#: one int object for each value below 2^16 (~2 MB, made once at import so no decode pays for
#: it), shared by every decoded integer list: a list costs its 8-byte pointers, not a fresh
#: 28-byte int per 2-byte value
_SHARED_INTS = tuple(range(1 << 16))


class Reader:
    __slots__ = ("_data", "_pos", "_end", "_max_bytes")

    def __init__(self, data: bytes, *, max_bytes: int = MLS_MAX_MESSAGE_BYTES) -> None:
        if len(data) > max_bytes:
            raise DecodeError(f"{len(data)} bytes is over the cap of {max_bytes}")
        self._data = bytes(data)
        self._pos = 0
        self._end = len(self._data)  # moves in while a vector is read
        self._max_bytes = max_bytes

    @property
    def remaining(self) -> int:
        """Bytes left before the current end (the end of the vector being read, or of the data)."""
        return self._end - self._pos

    def _take(self, n: int, what: str) -> bytes:
        if n > self._end - self._pos:
            raise DecodeError(f"truncated: {what} needs {n} bytes, {self._end - self._pos} left")
        start = self._pos
        self._pos += n
        return self._data[start : self._pos]

    def _uint(self, n: int, what: str) -> int:
        return int.from_bytes(self._take(n, what), "big")

    def u8(self) -> int:
        return self._uint(1, "uint8")

    def u16(self) -> int:
        return self._uint(2, "uint16")

    def u32(self) -> int:
        return self._uint(4, "uint32")

    def u64(self) -> int:
        return self._uint(8, "uint64")

    def varint(self) -> int:
        """A §2.1.2 variable-length integer: prefix 0b11 and non-minimal encodings are refused."""
        first = self._uint(1, "varint")
        prefix = first >> 6
        if prefix == 3:
            raise DecodeError(f"varint with the invalid prefix 0b11 (first byte {first:#04x})")
        size = 1 << prefix  # 1, 2 or 4 bytes
        value = first & 0x3F
        if size > 1:
            value = (value << (8 * (size - 1))) | self._uint(size - 1, "varint")
            if value < 1 << (8 * (size // 2) - 2):  # fits the next shorter form: 6 or 14 bits
                raise DecodeError(f"varint {value} is not minimally encoded ({size} bytes)")
        return value

    def _length(self, what: str) -> int:
        n = self.varint()
        if n > self._max_bytes:
            raise DecodeError(f"{what} of {n} bytes is over the cap of {self._max_bytes}")
        if n > self._end - self._pos:
            raise DecodeError(f"{what} of {n} bytes runs past the end ({self._end - self._pos} left)")
        return n

    def raw(self, n: int) -> bytes:
        """Exactly ``n`` bytes (a fixed-size field)."""
        return self._take(n, "field")

    def opaque(self) -> bytes:
        """``opaque data<V>``: a varint length, then that many bytes."""
        # Fast path for the common 1- and 2-byte lengths (a 1,500-member commit holds thousands
        # of these); anything else, malformed input included, goes the checked way below.
        data, pos, end = self._data, self._pos, self._end
        if pos + 1 < end:
            first = data[pos]
            start = n = -1
            if first < 0x40:
                start, n = pos + 1, first
            elif first < 0x80 and (two := ((first & 0x3F) << 8) | data[pos + 1]) >= 0x40:
                start, n = pos + 2, two
            if n >= 0 and start + n <= end:
                self._pos = start + n
                return data[start : start + n]
        return self._take(self._length("opaque"), "opaque")

    def read_encoded(self, read_item: Callable[[Reader], T]) -> tuple[T, bytes]:
        """An item and the exact bytes it was read from."""
        start = self._pos
        item = read_item(self)
        return item, self._data[start : self._pos]

    def vector(self, read_item: Callable[[Reader], T]) -> list[T]:
        """``T items<V>``: a varint byte length, then items until exactly that many bytes are read."""
        n = self._length("vector")
        outer_end, self._end = self._end, self._pos + n
        items: list[T] = []
        try:
            while self._pos < self._end:
                before = self._pos
                items.append(read_item(self))
                if self._pos == before:  # an empty item would repeat forever
                    raise DecodeError("vector item of zero bytes")
        finally:
            self._end = outer_end
        return items

    def uints(self, size: int, max_items: int, what: str) -> tuple[int, ...]:
        """``uint16 values<V>`` (``size`` 2) or ``uint32 values<V>`` (``size`` 4) of at most
        ``max_items`` values: a longer list is refused from its length prefix, before any value
        is decoded (each costs a Python int, ~18 times its 2 bytes)."""
        n = self._length(what)
        if n % size:
            raise DecodeError(f"{what} of {n} bytes is not a whole number of {size}-byte values")
        if n // size > max_items:
            raise DecodeError(f"{what} of {n // size} values is over the cap of {max_items}")
        values = struct.unpack(f">{n // size}{'H' if size == 2 else 'I'}", self._take(n, what))
        if values and max(values) < len(_SHARED_INTS):
            values = tuple(map(_SHARED_INTS.__getitem__, values))
        return values

    def optional(self, read_item: Callable[[Reader], T]) -> T | None:
        """``optional<T>``: a uint8 presence flag 0 or 1, then the item when 1."""
        flag = self.u8()
        if flag == 0:
            return None
        if flag != 1:
            raise DecodeError(f"optional presence flag {flag} (must be 0 or 1)")
        return read_item(self)

    def done(self) -> None:
        """Refuse trailing bytes."""
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes")


def decode_all(data: bytes, read_fn: Callable[[Reader], T], *, max_bytes: int = MLS_MAX_MESSAGE_BYTES) -> T:
    """``read_fn`` over the whole of ``data``: trailing bytes are refused."""
    r = Reader(data, max_bytes=max_bytes)
    value = read_fn(r)
    r.done()
    return value
