"""The fixed-set enums of MLS framing (RFC 9420 §6): protocol version, content type, sender type
and wire format. RFC 9420 fixes these sets for this protocol version, so an unknown value on the
wire is malformed input, never kept."""

from __future__ import annotations

import enum
from typing import TypeVar

from ..codec import DecodeError, Reader, Writer

__all__ = ["ProtocolVersion", "ContentType", "SenderType", "WireFormat"]

_E = TypeVar("_E", bound=enum.IntEnum)


def _known(cls: type[_E], value: int, what: str) -> _E:
    try:
        member = cls(value)
    except ValueError:
        raise DecodeError(f"MLS {what} {value} is not one RFC 9420 defines (0 is reserved)") from None
    return member


class ProtocolVersion(enum.IntEnum):
    MLS10 = 1

    @classmethod
    def read(cls, r: Reader) -> ProtocolVersion:
        return _known(cls, r.u16(), "protocol version")

    def write(self, w: Writer) -> None:
        w.u16(self.value)


class ContentType(enum.IntEnum):
    APPLICATION = 1
    PROPOSAL = 2
    COMMIT = 3

    @classmethod
    def read(cls, r: Reader) -> ContentType:
        return _known(cls, r.u8(), "content type")

    def write(self, w: Writer) -> None:
        w.u8(self.value)


class SenderType(enum.IntEnum):
    MEMBER = 1
    EXTERNAL = 2
    NEW_MEMBER_PROPOSAL = 3
    NEW_MEMBER_COMMIT = 4

    @classmethod
    def read(cls, r: Reader) -> SenderType:
        return _known(cls, r.u8(), "sender type")

    def write(self, w: Writer) -> None:
        w.u8(self.value)


class WireFormat(enum.IntEnum):
    """The "MLS Wire Formats" registry of RFC 9420 §17.2. The registry can grow, but a wire format
    this implementation does not know has a body it cannot parse, so it is refused."""

    PUBLIC_MESSAGE = 1
    PRIVATE_MESSAGE = 2
    WELCOME = 3
    GROUP_INFO = 4
    KEY_PACKAGE = 5

    @classmethod
    def read(cls, r: Reader) -> WireFormat:
        return _known(cls, r.u16(), "wire format")

    def write(self, w: Writer) -> None:
        w.u16(self.value)
