"""The Extension of RFC 9420 §13: a type and opaque data. Unknown types are kept as they are
(the registry is open); a list holding one type twice is refused (§13: at most one of each)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from ..codec import DecodeError, Encodable, Reader, Writer

__all__ = ["ExtensionType", "DEFAULT_EXTENSION_TYPES", "Extension", "read_extensions", "write_extensions", "find_extension"]


class ExtensionType(IntEnum):
    APPLICATION_ID = 1
    RATCHET_TREE = 2
    REQUIRED_CAPABILITIES = 3
    EXTERNAL_PUB = 4
    EXTERNAL_SENDERS = 5


#: types every client supports without listing them in its capabilities (§7.2)
DEFAULT_EXTENSION_TYPES = frozenset(int(t) for t in ExtensionType)


@dataclass(frozen=True, slots=True)
class Extension(Encodable):
    extension_type: int
    extension_data: bytes

    def write(self, w: Writer) -> None:
        w.u16(self.extension_type)
        w.opaque(self.extension_data)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.u16(), r.opaque())


def read_extensions(r: Reader) -> tuple[Extension, ...]:
    """``Extension extensions<V>``, refusing a type that appears twice."""
    items = r.vector(Extension.read)
    seen: set[int] = set()
    for ext in items:
        if ext.extension_type in seen:
            raise DecodeError(f"extension type {ext.extension_type} appears twice")
        seen.add(ext.extension_type)
    return tuple(items)


def write_extensions(w: Writer, extensions: Iterable[Extension]) -> None:
    w.vector(extensions, lambda w2, e: e.write(w2))


def find_extension(extensions: Iterable[Extension], extension_type: int) -> Extension | None:
    for ext in extensions:
        if ext.extension_type == extension_type:
            return ext
    return None
