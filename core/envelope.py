"""The envelope: what nodes store and forward (ARCHITECTURE §5). Nothing in it names the sender."""

from __future__ import annotations

import enum

from . import limits
from .address import parse_address
from .errors import RemoteProtocolError
from .wire import Struct, struct

__all__ = ["Envelope", "Kind", "ENVELOPE_VERSION"]

ENVELOPE_VERSION = 1


class Kind(enum.IntEnum):
    #: a sealed-sender box for one device (core/sealed_sender.py): stored until acknowledged
    SEALED = 1
    #: ephemeral (typing, presence): pushed to connected devices, never stored
    EPHEMERAL = 2
    #: a group item for one member device (core/groups/items.py): stored until acknowledged
    GROUP = 3


@struct
class Envelope(Struct):
    v: int
    id: bytes
    to: str
    device: int
    expires: int
    kind: int
    body: bytes

    def check(self) -> None:
        if self.v != ENVELOPE_VERSION:
            raise ValueError(f"unsupported envelope version {self.v}")
        if len(self.id) != limits.ENVELOPE_ID_LEN:
            raise ValueError("envelope id must be 16 bytes")
        if not 0 < self.device < 2**31:
            raise ValueError("device id out of range")
        if not 0 < self.expires < 2**63:
            raise ValueError("expiry out of range")
        if self.kind not in Kind._value2member_map_:
            raise ValueError(f"unknown envelope kind {self.kind}")
        if len(self.body) > (limits.MAX_GROUP_ITEM_BYTES if self.kind == Kind.GROUP else limits.MAX_ENVELOPE_BODY):
            raise ValueError("envelope body too large")
        if self.kind == Kind.EPHEMERAL and len(self.body) > limits.MAX_EPHEMERAL_BODY:
            raise ValueError(f"ephemeral envelope body over {limits.MAX_EPHEMERAL_BODY} bytes")
        try:
            parse_address(self.to, remote=True)
        except RemoteProtocolError as exc:
            raise ValueError(str(exc)) from None
