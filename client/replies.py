"""What a device makes of its node's answer to a request: the frame the request expects, or one
clear error (never an assertion): a node that answers with another frame is at fault."""

from __future__ import annotations

from typing import TypeVar, overload

from sonet.core.errors import RemoteProtocolError
from sonet.core.wire import Frame

__all__ = ["expect_reply"]

A = TypeVar("A", bound=Frame)
B = TypeVar("B", bound=Frame)


@overload
def expect_reply(reply: Frame, kind: type[A], /) -> A: ...


@overload
def expect_reply(reply: Frame, kind: type[A], other: type[B], /) -> A | B: ...


def expect_reply(reply: Frame, *kinds: type[Frame]) -> Frame:
    """``reply`` if it is one of ``kinds``; else RemoteProtocolError ``unexpected_frame``."""
    if isinstance(reply, kinds):
        return reply
    expected = " or ".join(kind.__name__ for kind in kinds)
    raise RemoteProtocolError(f"the node answered with {type(reply).__name__} where {expected} was due", code="unexpected_frame")
