"""MLSMessage (RFC 9420 §6): the envelope of everything MLS sends — protocol version, wire format,
then a PublicMessage, PrivateMessage, Welcome, GroupInfo or KeyPackage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ...errors import LocalProtocolError
from ..codec import Encodable, Reader, Writer
from ..key_package import KeyPackage
from ..messages import GroupInfo, Welcome
from .enums import ProtocolVersion, WireFormat
from .private_message import PrivateMessage
from .public_message import PublicMessage

__all__ = ["MLSMessage"]

Body = PublicMessage | PrivateMessage | Welcome | GroupInfo | KeyPackage

#: the struct each wire format carries
_BODIES: dict[WireFormat, type[Body]] = {
    WireFormat.PUBLIC_MESSAGE: PublicMessage,
    WireFormat.PRIVATE_MESSAGE: PrivateMessage,
    WireFormat.WELCOME: Welcome,
    WireFormat.GROUP_INFO: GroupInfo,
    WireFormat.KEY_PACKAGE: KeyPackage,
}


@dataclass(frozen=True, slots=True)
class MLSMessage(Encodable):
    wire_format: WireFormat
    #: PublicMessage, PrivateMessage, or the Welcome / GroupInfo / KeyPackage struct
    body: Body
    version: ProtocolVersion = ProtocolVersion.MLS10

    def __post_init__(self) -> None:
        if not isinstance(self.body, _BODIES[self.wire_format]):
            wire_format, body = self.wire_format.name.lower(), type(self.body).__name__
            raise LocalProtocolError(f"MLS: an MLSMessage of wire format {wire_format} with a {body}")

    def write(self, w: Writer) -> None:
        self.version.write(w)
        self.wire_format.write(w)
        self.body.write(w)

    @classmethod
    def read(cls, r: Reader) -> Self:
        version = ProtocolVersion.read(r)
        wire_format = WireFormat.read(r)
        return cls(wire_format, _BODIES[wire_format].read(r), version)
