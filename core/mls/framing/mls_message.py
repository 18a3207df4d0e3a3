"""MLSMessage (RFC 9420 §6): the envelope of everything MLS sends — protocol version, wire format,
then a PublicMessage, PrivateMessage, Welcome, GroupInfo or KeyPackage."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Self

from ...errors import LocalProtocolError
from ..codec import DecodeError, Encodable, Reader, Writer
from .enums import ProtocolVersion, WireFormat
from .private_message import PrivateMessage
from .public_message import PublicMessage

__all__ = ["MLSMessage"]

#: wire format -> (package under core/mls/, class name) of the bodies framing does not own
_OTHER_BODIES = {
    WireFormat.WELCOME: ("messages", "Welcome"),
    WireFormat.GROUP_INFO: ("messages", "GroupInfo"),
    WireFormat.KEY_PACKAGE: ("key_package", "KeyPackage"),
}


def _body_class(wire_format: WireFormat) -> Any:
    if wire_format is WireFormat.PUBLIC_MESSAGE:
        return PublicMessage
    if wire_format is WireFormat.PRIVATE_MESSAGE:
        return PrivateMessage
    package, name = _OTHER_BODIES[wire_format]
    try:
        module = importlib.import_module(f"..{package}", __package__)
    except ImportError:
        module = None
    cls = getattr(module, name, None)
    if cls is None:
        raise DecodeError(f"an MLSMessage carrying a {name}: not implemented yet (core/mls/{package}/ has no {name})")
    return cls


@dataclass(frozen=True, slots=True)
class MLSMessage(Encodable):
    wire_format: WireFormat
    #: PublicMessage, PrivateMessage, or the Welcome / GroupInfo / KeyPackage struct
    body: Any
    version: ProtocolVersion = ProtocolVersion.MLS10

    def __post_init__(self) -> None:
        if not isinstance(self.body, _body_class(self.wire_format)):
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
        return cls(wire_format, _body_class(wire_format).read(r), version)
