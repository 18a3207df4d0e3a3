"""One WebSocket carrying one secure channel (after the handshake): frames out, frames in.

Frames are sealed and sent under one lock: the record counter must follow the wire order. A
record sealed but not sent (the send was cancelled or failed) leaves the peer's counter behind
ours for good, so ``send_failed()`` marks the socket unable to send; the receiving direction
still works. ``fail()`` is the connection's last word: an ``ErrorFrame`` with request 0 saying
why, then a close with 1008 and the code.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from .ws_errors import ConnectionClosed

from sonet.core.channel import Channel
from sonet.core.client_api import ErrorFrame, Ping, Pong
from sonet.core.crypto import VerifyKey
from sonet.core.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from sonet.core.wire import Frame

from .handshake import POLICY_VIOLATION
from .lazy_lock import LazyLock
from .websocket import CLOSE_GRACE_S, READ_BYTES, WebSocket

__all__ = ["SecureSocket", "CLOSE_GRACE_S", "MAX_ERROR_MESSAGE", "READ_BYTES", "set_message_cap"]

#: characters of an error's text sent in its ErrorFrame
MAX_ERROR_MESSAGE = 300


def set_message_cap(ws: WebSocket, max_bytes: int) -> None:
    """The largest WebSocket message ``ws`` accepts from now on (a larger one closes it with
    1009 as soon as a frame header announces it, transport/websocket.py). The server starts a
    connection small (a handshake message) and raises the cap once the other side is
    authenticated."""
    ws.max_message_bytes = max_bytes


class SecureSocket:
    """An established connection: ``send``/``receive`` frames of the channel's endpoint."""

    __slots__ = ("_ws", "_channel", "peer_key", "_send_lock", "send_broken", "greeting", "source", "_pings")

    def __init__(self, ws: WebSocket, channel: Channel, peer_key: VerifyKey) -> None:
        self._ws = ws
        self._channel = channel
        #: the other side's identity key, authenticated by the handshake; held for the
        #: connection's life without its parsed ML-DSA component (parsed again if used)
        self.peer_key = peer_key
        if isinstance(peer_key, VerifyKey):  # (tests' fake sockets have none)
            peer_key.forget_parsed()
        #: records are sealed and sent under it (an idle connection holds no lock)
        self._send_lock = LazyLock()
        #: why nothing more can be sent (a sealed record was not sent), None while it can
        self.send_broken: str | None = None
        #: the first frame, when the dial asked for one (the node's Welcome on /client)
        self.greeting: Frame | None = None
        #: the address the connection comes from, as the server counts it (set by the node's
        #: server; "" if unknown): what per-address limits charge
        self.source = ""
        self._pings = 0

    @property
    def closed(self) -> bool:
        return self._ws.closed is not None

    async def send(self, frame: Frame) -> None:
        """Seal and send ``frame``. LocalProtocolError for a frame that must not be sent or a
        socket that cannot send any more; ConnectionClosed when the peer is gone."""
        await self._send(lambda: self._channel.send(frame))

    async def send_built(self, build: Callable[[], Frame]) -> None:
        """Seal and send ``build()``, called once this send's turn on the socket has come: what
        it numbers (a link's sequence) follows the wire order. A frame built is sent, or the
        socket can send nothing more (``send_failed``)."""
        await self._send(lambda: self._channel.send(build()))

    async def send_encoded(self, plaintext: bytes) -> None:
        """Seal and send bytes already encoded as a frame (encoded once for many sockets, or
        bytes no encoder makes, in tests of hostile input)."""
        await self._send(lambda: self._channel.seal(plaintext))

    async def _send(self, seal: Callable[[], bytes]) -> None:
        async with self._send_lock:
            if self.send_broken is not None:
                raise LocalProtocolError(f"cannot send any more: {self.send_broken}; reconnect")
            record = seal()
            sent = False
            try:
                await self._ws.send_message(record)
                sent = True
            finally:
                if not sent:
                    self.send_failed()

    def send_failed(self, reason: str = "a send was interrupted") -> None:
        """A sealed record did not go out: the peer's record counter no longer agrees with
        ours, so every later record would fail to decrypt there. Nothing more is sent."""
        if self.send_broken is None:
            self.send_broken = reason

    async def receive(self) -> Frame:
        """The next frame. RemoteProtocolError (or DecryptError) for a record that does not
        open or decode, text included; ConnectionClosed when the peer closed."""
        message = await self._ws.get_message()
        self._channel.receive_data(message)  # type: ignore[arg-type]  # a text message is refused there
        frame: Frame = self._channel.next_event()
        return frame

    async def ping(self) -> None:
        """One Ping and its Pong, on a socket nobody else reads (a ``Mux`` would): raise
        RemoteProtocolError if anything else answers."""
        self._pings += 1
        await self.send(Ping(request=self._pings))
        answer = await self.receive()
        if answer != Pong(request=self._pings):
            raise RemoteProtocolError(f"expected Pong {self._pings}, got {type(answer).__name__}")

    async def fail(self, exc: ProtocolError) -> None:
        """Tell the peer why this connection ends (``ErrorFrame`` with request 0, even after its
        record broke the receiving direction) and close with 1008 and the code. Shielded but
        bounded: whoever cancels the caller, this is the last record sent."""
        error = ErrorFrame(request=0, code=exc.code, message=str(exc)[:MAX_ERROR_MESSAGE])
        # ending: what it holds of a message comes back now, not once a peer that reads nothing
        # let the ErrorFrame and the close go (transport/admission.py's budgets)
        self._ws.stop_taking()
        with trio.move_on_after(CLOSE_GRACE_S, shield=True):
            async with self._send_lock:
                if self.closed:
                    return  # closed by an earlier failure, or by the peer: nobody to tell
                if self.send_broken is None:  # else the peer could not open it
                    try:
                        try:
                            record = self._channel.send(error)
                        except LocalProtocolError:  # the peer's record broke the channel
                            record = self._channel.send_last(error)
                        await self._ws.send_message(record)
                    except (ConnectionClosed, ProtocolError):
                        pass
                await self._ws.aclose(code=POLICY_VIOLATION, reason=exc.code)

    def allow_messages(self, max_bytes: int, **charge_to: str) -> None:
        """Accept records of up to ``max_bytes`` from now on (see ``set_message_cap``); with
        ``charge_to`` (device=, account=, peer=) the bytes of unfinished ones are charged to
        those actors' budgets instead of the source address's (transport/admission.py)."""
        set_message_cap(self._ws, max_bytes)
        if charge_to:
            self._ws.charge_partial_to(**charge_to)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close; the peer's close reply is awaited for CLOSE_GRACE_S at most, then the
        connection is dropped without it."""
        with trio.move_on_after(CLOSE_GRACE_S):
            await self._ws.aclose(code=code, reason=reason)
