"""A WebSocket stand-in for socket and mux tests: what the SecureSocket sends is opened by the
far end's channel and queued on ``sent``; what the far end seals (or an exception) comes in.
``stall`` makes every send hang (to cancel one midway)."""

from __future__ import annotations

import trio
from sonet.transport.ws_errors import CloseReason, ConnectionClosed

from sonet.core.channel import Channel
from sonet.core.client_api import CLIENT_FRAMES
from sonet.core.wire import Frame, FrameSet
from fuzz.wire_targets import channel_keys
from sonet.transport import SecureSocket

__all__ = ["FakeWs", "pair"]


class FakeWs:
    def __init__(self, far: Channel) -> None:
        self.far = far
        self.closed: CloseReason | None = None
        self.stall = False
        self.sent_in, self.sent = trio.open_memory_channel[Frame](64)
        self._in, self._incoming = trio.open_memory_channel[bytes | str | BaseException](64)

    async def send_message(self, record: bytes) -> None:
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        if self.stall:
            await trio.sleep_forever()
        self.far.receive_data(record)
        await self.sent_in.send(self.far.next_event())

    async def get_message(self) -> bytes | str:
        item = await self._incoming.receive()
        if isinstance(item, BaseException):
            raise item
        return item

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = CloseReason(code, reason)

    def stop_taking(self) -> None:
        """(SecureSocket.fail: the connection is ending; nothing is held here)"""

    # the far end -------------------------------------------------------------------------

    async def push(self, frame: Frame) -> None:
        """The far end sends ``frame``."""
        await self._in.send(self.far.send(frame))

    async def push_raw(self, item: bytes | str | BaseException) -> None:
        await self._in.send(item)

    async def hang_up(self, code: int = 1008, reason: str | None = None) -> None:
        await self._in.send(ConnectionClosed(CloseReason(code, reason)))


def pair(frames: FrameSet = CLIENT_FRAMES) -> tuple[SecureSocket, FakeWs]:
    """A socket whose channel decodes ``frames``, and the fake WebSocket under it."""
    ws = FakeWs(Channel(channel_keys(initiator=False), CLIENT_FRAMES))
    sock = SecureSocket(ws, Channel(channel_keys(initiator=True), frames), peer_key=None)  # type: ignore[arg-type]
    return sock, ws
