"""Frames of the device <-> home node protocol on ``/client`` (inside the secure channel).

Requests carry a client-chosen ``request`` number that the answer repeats. The node speaks
first with ``Welcome``. Deliveries are pushed; the device acknowledges them by id once it has
stored them, and only then does the node delete them.
"""

from __future__ import annotations

from . import limits
from .envelope import Envelope
from .wire import Frame, Struct, frame, struct

__all__ = [
    "Welcome",
    "Register",
    "Registered",
    "FetchDevices",
    "DeviceEntry",
    "Devices",
    "SendBatch",
    "Accepted",
    "Delivery",
    "Deliver",
    "Ack",
    "Drained",
    "ErrorFrame",
    "Ping",
    "Pong",
]


@frame(tag=10)
class Welcome(Frame):
    node: str
    #: the authenticated device's account and id, or None for a device not yet registered
    account: str | None
    device: int | None
    time: int


@frame(tag=11)
class Register(Frame):
    request: int
    user: str
    invite: str
    record: bytes


@frame(tag=12)
class Registered(Frame):
    request: int
    account: str
    device: int


@frame(tag=13)
class FetchDevices(Frame):
    request: int
    account: str


@struct
class DeviceEntry(Struct):
    device: int
    record: bytes


@frame(tag=14)
class Devices(Frame):
    request: int
    account: str
    devices: tuple[DeviceEntry, ...]


@frame(tag=15)
class SendBatch(Frame):
    request: int
    envelopes: tuple[Envelope, ...]

    def check(self) -> None:
        if not 0 < len(self.envelopes) <= limits.MAX_ENVELOPES_PER_FRAME:
            raise ValueError(f"a batch holds 1..{limits.MAX_ENVELOPES_PER_FRAME} envelopes")


@frame(tag=16)
class Accepted(Frame):
    """The batch is durably stored (or was already): safe to forget on the device."""

    request: int
    stored: int


@struct
class Delivery(Struct):
    envelope: Envelope
    #: when the home node durably accepted it (ms)
    stored_at: int


@frame(tag=17)
class Deliver(Frame):
    items: tuple[Delivery, ...]


@frame(tag=18)
class Ack(Frame):
    ids: tuple[bytes, ...]

    def check(self) -> None:
        if len(self.ids) > limits.MAX_ARRAY_LEN or any(len(i) != limits.ENVELOPE_ID_LEN for i in self.ids):
            raise ValueError("ack ids must be 16 bytes each")


@frame(tag=19)
class Drained(Frame):
    """Everything queued when the device connected has been pushed; live pushes follow."""


@frame(tag=20)
class ErrorFrame(Frame):
    #: the request it answers, or 0 for a connection-level error (the node then closes)
    request: int
    code: str
    message: str


@frame(tag=21)
class Ping(Frame):
    request: int


@frame(tag=22)
class Pong(Frame):
    request: int
