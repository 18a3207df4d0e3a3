"""A stream whose sends must make progress: a peer that stops reading is cut, never waited for.

Both ends use it: the server under every accepted connection (transport/server.py, with its
admission hooks on top) and ``dial`` under every connection this node opens (federation links,
devices' connections), so that a peer which accepts and then reads nothing cannot hold a send,
and whatever waits behind it, for ever.
"""

from __future__ import annotations

import socket as stdlib_socket
import struct

import trio

__all__ = ["SendDeadlineStream", "SEND_TIMEOUT_S", "SEND_PIECE", "SendStalled", "abort", "reset"]

#: the default: a send that makes no progress for this long ends the connection
SEND_TIMEOUT_S = 30.0
#: a send's progress is watched in pieces of this size
SEND_PIECE = 64 * 1024


class SendStalled(trio.BrokenResourceError):
    """The peer read nothing of a send for the whole deadline; the connection was reset."""


class SendDeadlineStream(trio.abc.Stream):
    """``stream`` whose sends must make progress: a piece that cannot be sent within
    ``send_timeout_s`` resets the connection (the peer stopped reading) and fails the send with
    SendStalled, so nothing piles up behind it."""

    __slots__ = ("_stream", "_send_timeout_s")

    def __init__(self, stream: trio.abc.Stream, send_timeout_s: float) -> None:
        if send_timeout_s <= 0:
            raise ValueError("a send deadline must be more than 0 s")
        self._stream = stream
        self._send_timeout_s = send_timeout_s

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), SEND_PIECE):
            with trio.move_on_after(self._send_timeout_s) as piece:
                await self._stream.send_all(view[start : start + SEND_PIECE])
            if piece.cancelled_caught:
                self._stalled()
                abort(self._stream)
                raise SendStalled(f"send timeout: the other side read nothing for {self._send_timeout_s:g} s")

    def _stalled(self) -> None:
        """A send made no progress within the deadline (before the connection is reset)."""

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


def abort(stream: trio.abc.Stream) -> None:
    """Close at once with a reset: no close handshake, no lingering kernel buffers."""
    raw = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    assert isinstance(raw, trio.SocketStream)
    reset(raw.socket)


def reset(sock: trio.socket.SocketType) -> None:
    try:
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
