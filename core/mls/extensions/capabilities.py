"""Capabilities (RFC 9420 §7.2): what a client supports, carried in its LeafNode. Values are
kept as plain integers: unknown (and GREASE) values are legal and must round-trip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ...limits import MLS_MAX_CAPABILITY_ITEMS
from ..codec import Encodable, Reader, Writer
from .extension import DEFAULT_EXTENSION_TYPES

__all__ = ["Capabilities"]


def read_capability_list(r: Reader) -> tuple[int, ...]:
    """One u16 list of capabilities, at most MLS_MAX_CAPABILITY_ITEMS values."""
    return r.uints(2, MLS_MAX_CAPABILITY_ITEMS, "capability list")


def _write_u16s(w: Writer, values: tuple[int, ...]) -> None:
    w.vector(values, Writer.u16)


@dataclass(frozen=True, slots=True)
class Capabilities(Encodable):
    versions: tuple[int, ...] = (1,)
    cipher_suites: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()
    proposals: tuple[int, ...] = ()
    credentials: tuple[int, ...] = ()

    def write(self, w: Writer) -> None:
        for values in (self.versions, self.cipher_suites, self.extensions, self.proposals, self.credentials):
            _write_u16s(w, values)

    @classmethod
    def read(cls, r: Reader) -> Self:
        read = read_capability_list
        return cls(read(r), read(r), read(r), read(r), read(r))

    def supports_extension(self, extension_type: int) -> bool:
        """Listed, or one of the default types every client supports unlisted (§7.2)."""
        return extension_type in DEFAULT_EXTENSION_TYPES or extension_type in self.extensions
