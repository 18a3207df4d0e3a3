"""One WebSocket over a trio stream, driven by wsproto (sans-I/O) from the tasks that use it: no
task of its own, so an idle connection costs one task, the one that waits in ``get_message``
(memory per idle connection, docs/performance.md).

- Reading happens in ``get_message()``, one reader at a time, ``READ_BYTES`` per read: a ping is
  answered, the peer's close is answered and ends the connection (``ConnectionClosed`` with the
  peer's code and reason), a message is assembled from its fragments.
- A message over ``max_message_bytes`` is refused as soon as a frame header announces it (the
  length in the header counts, before its payload is buffered): close 1009 (text counts
  ``TEXT_CHAR_BYTES`` a character, the most a str holds for one). So is one that comes
  in more pieces than its cap allows (``PIECES_FREE``, ``PIECE_BYTES``): each piece held costs
  memory besides its bytes (an empty fragment costs 6 bytes of wire), so a flood of tiny
  fragments would otherwise grow without bound under the cap.
- The bytes of a message not yet whole are also charged to the connection's actors (``held_by``:
  the server's ``Admitted``, transport/admission.py) as soon as a frame header announces them,
  before they are buffered: over their budget the message is refused the same way (close 1009,
  the reason saying whose budget), and they are given back when it is whole, when this side
  starts ending the connection (``stop_taking``, or its close: nothing more of it is taken) or
  when the connection ends. Dialled connections have none (what they receive is answers to
  this node).
- A message must come whole within ``message_timeout_s`` of its first byte (of a data frame's
  header, or of any frame's header not yet whole): else close 1008. Held partial messages cost memory (up to the cap on each
  connection), so a peer must not keep one for ever by never finishing it or trickling it;
  pings and pongs between its fragments do not extend it. The time between messages is not
  limited here (idle connections are normal).
- Pings and pongs are budgeted: a burst of ``CONTROL_BURST``, then one per ``CONTROL_INTERVAL_S``
  (enough for any keepalive); beyond, close 1008. Each costs a parse and a ping a send of its
  own: unbudgeted, 6 bytes of wire bought ~0.1 ms of the node's CPU, from anyone who upgraded.
- ``aclose()`` sends our close and waits for the peer's (it reads for that itself, or lets the
  task already reading see it), at most ``CLOSE_GRACE_S``, then closes the stream in any case.
- Sends are serialized by one lock (a message, a pong, a close); a send that did not finish
  (cancelled, or the stream broke) leaves half a frame on the wire, so nothing more is sent
  after it, not even a close: the connection ends there (1006), its stream closed, and a task
  reading it sees ConnectionClosed rather than wait on a peer stuck in half a frame.

The server reads the HTTP upgrade request itself (transport/server.py) and hands it here as an
``UpgradeRequest`` to accept or reject; ``connect`` opens one (transport/dial.py). wsproto's h11
handshake state is dropped once the upgrade is answered. The exceptions (``ConnectionClosed`` with
a ``CloseReason``, ``ConnectionRejected``, ``HandshakeError``) are transport/ws_errors.py's, with
trio-websocket's names and attributes: no node or device process imports trio-websocket.
"""

from __future__ import annotations

import base64
import math
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol, cast

import trio
from .ws_errors import CloseReason, ConnectionClosed, ConnectionRejected, HandshakeError
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.frame_protocol import FrameDecoder, FrameProtocol, Opcode, ParseFailed
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.handshake import H11Handshake
from wsproto.utilities import LocalProtocolError as WebSocketStateError, RemoteProtocolError as BadUpgradeRequest

from sonet.core import limits

from .lazy_lock import LazyLock
from .send_deadline import SendDeadlineStream, SendStalled

__all__ = ["WebSocket", "UpgradeRequest", "BadUpgrade", "connect", "open_websocket", "READ_BYTES", "CLOSE_GRACE_S", "MESSAGE_TOO_BIG"]

#: the most bytes one socket read takes (trio-websocket's default is 4 KiB): a 1 MiB push is 16
#: reads, not 256, each a trip through trio and wsproto (docs/performance.md). Nothing is held
#: for it while a connection is idle (trio waits for the socket, then reads).
READ_BYTES = 64 * 1024
#: how long a closing connection may take to tell the peer why and hear its close (bounded even
#: when shielded)
CLOSE_GRACE_S = 2.0
#: after a refusal, what the peer still sends is dropped until it pauses this long (``_linger``)
LINGER_IDLE_S = 0.1
#: close codes: a message over the cap; a connection lost without a close
MESSAGE_TOO_BIG = 1009
ABNORMAL_CLOSURE = 1006
POLICY_VIOLATION = 1008

#: pings and pongs from the peer: ``CONTROL_BURST`` at once, then one per ``CONTROL_INTERVAL_S``
CONTROL_BURST = 16
CONTROL_INTERVAL_S = 1.0

#: pieces of a message held (fragments, or parts of one read as they came): a message may come in
#: at most ``PIECES_FREE + max_message_bytes // PIECE_BYTES`` of them. An object and a list slot
#: cost ~60 bytes each, so what a message holds stays within ~2x its cap, however it is cut
PIECES_FREE = 16
PIECE_BYTES = 64
#: what a text message's character counts against ``max_message_bytes``
TEXT_CHAR_BYTES = 4

#: the most bytes of a refusal's body kept (what a dial says about it is its first line)
MAX_REFUSAL_BODY = 16 * 1024

_OPEN = ConnectionState.OPEN
_CLOSED = ConnectionState.CLOSED
_LOCAL_CLOSING = ConnectionState.LOCAL_CLOSING
_REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING

#: frames we send are whole messages, so a frame writer keeps no state between them: one per
#: role serves every connection (a client masks what it sends, a server does not)
_FRAME_WRITERS = {True: FrameProtocol(True, []), False: FrameProtocol(False, [])}


class _Protocol:
    """wsproto's ``Connection`` (its states, its events) with the frame parser made when bytes
    come and dropped before a read once everything received is parsed and no frame or message
    is half-way: an idle connection holds no parser (wsproto keeps ~1.7 KB for one: a deque, the frame and
    message decoders, their buffer, a generator; docs/performance.md)."""

    __slots__ = ("_client", "state", "_parser", "_lost")

    def __init__(self, client: bool, received: bytes = b"") -> None:
        self._client = client
        self.state = _OPEN
        self._parser: FrameProtocol | None = None
        #: the stream ended without a close frame: a CloseConnection(1006) to hand out
        self._lost = False
        if received:
            self.receive_data(received)

    @classmethod
    def taking_over(cls, opened: Connection) -> "_Protocol":
        """In place of wsproto's ``Connection`` just opened (by a handshake, or a test): its
        side, and the bytes it received after the handshake and has not parsed yet."""
        if opened.state is not _OPEN:
            raise WebSocketStateError(f"a WebSocket in state {opened.state} cannot be taken over")
        return cls(opened.client, bytes(opened._proto._frame_decoder.buffer.buffer))

    def frame_decoder(self) -> FrameDecoder | None:
        """The parser's frame decoder (its header is the frame being received), None while idle."""
        return self._parser._frame_decoder if self._parser is not None else None

    def send(self, event: Event) -> bytes:
        writer = _FRAME_WRITERS[self._client]
        state = self.state
        if isinstance(event, Message) and state is _OPEN:
            return bytes(writer.send_data(event.data, True))
        if isinstance(event, Ping) and state is _OPEN:
            return bytes(writer.ping(event.payload))
        if isinstance(event, Pong) and state is _OPEN:
            return bytes(writer.pong(event.payload))
        if isinstance(event, CloseConnection) and state in (_OPEN, _REMOTE_CLOSING):
            data = bytes(writer.close(event.code, event.reason))
            self.state = _CLOSED if state is _REMOTE_CLOSING else _LOCAL_CLOSING
            return data
        raise WebSocketStateError(f"Event {event} cannot be sent in state {state}.")

    def receive_data(self, data: bytes | None) -> None:
        """Bytes received; None: the stream ended (without a close frame, if none came)."""
        if data is None:
            self._lost = True
            self.state = _CLOSED
            return
        if self.state is _OPEN or self.state is _LOCAL_CLOSING:
            if self._parser is None:
                self._parser = FrameProtocol(self._client, [])
            self._parser.receive_bytes(data)
        elif self.state is _CLOSED:
            raise WebSocketStateError("Connection already closed.")

    def events(self) -> Iterator[Event]:
        """What the bytes received so far make (as wsproto's ``Connection.events``)."""
        if self._lost:
            self._lost = False
            yield CloseConnection(code=ABNORMAL_CLOSURE)
        parser = self._parser
        if parser is None:
            return
        try:
            for frame in parser.received_frames():
                opcode = frame.opcode
                if opcode is Opcode.BINARY:
                    yield BytesMessage(data=frame.payload, frame_finished=frame.frame_finished, message_finished=frame.message_finished)  # type: ignore[arg-type]
                elif opcode is Opcode.TEXT:
                    yield TextMessage(data=frame.payload, frame_finished=frame.frame_finished, message_finished=frame.message_finished)  # type: ignore[arg-type]
                elif opcode is Opcode.PING:
                    yield Ping(payload=frame.payload)  # type: ignore[arg-type]
                elif opcode is Opcode.PONG:
                    yield Pong(payload=frame.payload)  # type: ignore[arg-type]
                elif opcode is Opcode.CLOSE:
                    code, reason = cast(tuple[int, str], frame.payload)  # (wsproto parsed the close)
                    self.state = _CLOSED if self.state is _LOCAL_CLOSING else _REMOTE_CLOSING
                    yield CloseConnection(code=code, reason=reason)
        except ParseFailed as exc:
            yield CloseConnection(code=exc.code, reason=str(exc))

    def drop_parser_if_idle(self) -> None:
        """Drop the frame parser if it holds nothing: every byte received parsed, no frame or
        fragmented message half-way (its state would be lost). Only while open: a parse that
        failed is answered with our close, so nothing is parsed afresh after it."""
        parser = self._parser
        if parser is None or self.state is not _OPEN:
            return
        decoder = parser._frame_decoder
        if decoder.header is None and not decoder.buffer.buffer and parser._message_decoder.opcode is None:
            self._parser = None


class BadUpgrade(Exception):
    """An HTTP request that asks for a WebSocket but is not a valid upgrade (one line)."""


class HeldBytes(Protocol):
    """Where a connection's bytes of unfinished messages are budgeted (the server's
    ``Admitted``, transport/admission.py)."""

    def hold(self, total: int) -> str | None:
        """Now ``total`` bytes are held (0: none): None if allowed, else why not."""

    def charge_to(self, **actors: str) -> None:
        """Charge them to these actors from now on."""


class WebSocket:
    """An open WebSocket: ``get_message``, ``send_message``, ``aclose``; ``closed`` is the close
    reason once it is closing or closed (None while open)."""

    __slots__ = ("_stream", "_proto", "max_message_bytes", "closed", "_parts", "_size", "_send_lock", "_send_broken", "_reading", "_reader_done", "_control_due", "message_timeout_s", "_message_due", "_held_by", "_held", "_taking", "_linger_at_close")

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: _Protocol | Connection,
        *,
        max_message_bytes: int,
        message_timeout_s: float = limits.MESSAGE_DEADLINE_S,
        held_by: HeldBytes | None = None,
    ) -> None:
        """``protocol``: wsproto's ``Connection`` just opened, or ours (``_Protocol``);
        ``held_by``: the budget of its bytes of unfinished messages (None: only the cap)."""
        self._stream = stream
        self._proto = protocol if isinstance(protocol, _Protocol) else _Protocol.taking_over(protocol)
        #: the largest message accepted (the server raises it once the peer is authenticated)
        self.max_message_bytes = max_message_bytes
        self.closed: CloseReason | None = None
        #: the fragments of a message being received (None between messages: nothing held)
        self._parts: list[bytes | str] | None = None
        self._size = 0
        #: serializes sends (a message, a pong, a close); an idle connection holds no lock
        self._send_lock = LazyLock()
        self._send_broken = False
        #: we closed for what the peer sent: drop what it still sends before closing (_linger)
        self._linger_at_close = False
        self._reading = False
        #: made only when ``aclose`` waits for the task that is reading to see the close reply
        self._reader_done: trio.Event | None = None
        #: when the peer's ping and pong budget is whole again (a GCRA: one float, no task)
        self._control_due = 0.0
        #: how long a message may take from its first byte to its last
        self.message_timeout_s = message_timeout_s
        #: when the message being received must be whole (inf between messages)
        self._message_due = math.inf
        self._held_by = held_by
        #: bytes of the message being received charged to ``held_by`` (0 between messages)
        self._held = 0
        #: messages are taken (False once this side is ending the connection: ``stop_taking``)
        self._taking = True

    def stop_taking(self) -> None:
        """This side is ending the connection and says why first (a last message, then the
        close, which may wait on a peer that reads nothing): the message being received is
        dropped and its bytes given back now, and nothing more is taken or charged. Reading
        goes on (the close's reply); ``get_message`` returns no message any more."""
        self._taking = False
        self._drop_message()

    def charge_partial_to(self, **actors: str) -> None:
        """Charge the bytes of its unfinished messages to these actors (device=, account=,
        peer=; transport/admission.py) from now on; nothing for a dialled WebSocket."""
        if self._held_by is not None:
            self._held_by.charge_to(**actors)

    # receiving -----------------------------------------------------------------------------

    async def get_message(self) -> bytes | str:
        """The next message; ConnectionClosed once the connection closed (by either side, or
        lost: 1006), at once if it is closing. One task reads at a time."""
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        if self._reading:
            raise trio.BusyResourceError("another task is already reading this WebSocket")
        self._reading = True
        try:
            while True:
                message = await self._handle_events()
                if message is not None:
                    self._message_due = math.inf
                    return message
                await self._receive_within_message_deadline()
        finally:
            self._reading = False
            if self._reader_done is not None:
                self._reader_done.set()

    async def _handle_events(self) -> bytes | str | None:
        """Act on what wsproto parsed so far; a complete message if one is there (while open)."""
        for event in self._proto.events():
            if isinstance(event, (BytesMessage, TextMessage)):
                message = await self._add_part(event.data, event.message_finished)
                if message is not None:
                    return message
            elif isinstance(event, (Ping, Pong)):
                if self.closed is not None:
                    continue  # closing: not answered, not budgeted
                if not self._control_allowed():
                    await self._refuse(POLICY_VIOLATION, f"over {CONTROL_BURST} pings or pongs at once (1 a second after)")
                if isinstance(event, Ping) and self._proto.state is _OPEN:
                    await self._send_event(event.response())
            elif isinstance(event, CloseConnection):
                await self._close_received(event)
        if self.closed is None and self._taking and (need := self._size + self._announced()):
            if need > self.max_message_bytes:
                await self._too_big()
            if need > self._held:
                await self._hold(need)
        return None

    async def _add_part(self, data: bytes | str, finished: bool) -> bytes | str | None:
        if self.closed is not None or not self._taking:
            return None  # closing or ending: what still comes is dropped, never buffered
        # text counts 4 bytes a character: what the joined str may hold for each (one character
        # beyond U+FFFF widens them all), while UTF-8 sends ASCII in 1
        self._size += len(data) if isinstance(data, bytes) else TEXT_CHAR_BYTES * len(data)
        if self._size + self._announced() > self.max_message_bytes:
            await self._too_big()
        if finished and self._parts is None:
            self._drop_message()
            return data  # the common case: one frame, no copy
        if self._parts is None:
            self._parts = []
        elif len(self._parts) >= PIECES_FREE + self.max_message_bytes // PIECE_BYTES:
            await self._too_big(f"a message in over {len(self._parts)} pieces")
        if self._size > self._held:
            await self._hold(self._size + self._announced())
        self._parts.append(data)
        if not finished:
            return None
        parts = self._parts
        self._drop_message()
        return b"".join(parts) if isinstance(data, bytes) else "".join(parts)  # type: ignore[arg-type]

    async def _hold(self, need: int) -> None:
        """Charge the message being received at ``need`` bytes (what came of it and what its
        frame header announced) before more of it is buffered; over the budget it is refused."""
        if self._held_by is not None and (why := self._held_by.hold(need)) is not None:
            await self._too_big(why)
        self._held = need

    def _drop_message(self) -> None:
        """Nothing of a message is held any more (it is whole, refused, or the connection ended)."""
        self._parts = None
        self._size = 0
        if self._held:
            self._held = 0
            if self._held_by is not None:
                self._held_by.hold(0)

    async def _receive_within_message_deadline(self) -> None:
        """One read; while a message is in progress, only until its deadline (then close 1008).
        The deadline starts when the first bytes of its first frame header have come, and
        nothing after (fragments, pings) moves it."""
        if not self._in_message():
            self._message_due = math.inf
            await self._receive()
            return
        if self._message_due == math.inf:
            self._message_due = trio.current_time() + self.message_timeout_s
        with trio.move_on_at(self._message_due):
            await self._receive()
            return
        await self._refuse(POLICY_VIOLATION, f"a message took over {self.message_timeout_s:g} s")

    def _in_message(self) -> bool:
        """A message has begun and is not whole yet: fragments are held, a data frame's header
        has been parsed (its payload may be coming), or part of a frame's header came (a frame
        parser is held for it: without a deadline, one byte would keep it for ever)."""
        if self._parts is not None:
            return True
        decoder = self._proto.frame_decoder()
        if decoder is None:
            return False
        header = decoder.header
        if header is None:
            return bool(decoder.buffer.buffer)
        return not header.opcode.iscontrol()

    def _announced(self) -> int:
        """Bytes of the data frame being received that its header announced and that have not
        come yet (wsproto hands a frame's payload over as it arrives; its header says how much
        is coming). 0 between frames and for control frames (125 bytes at most)."""
        decoder = self._proto.frame_decoder()
        header = decoder.header if decoder is not None else None
        if decoder is None or header is None or header.opcode.iscontrol():
            return 0
        return int(header.payload_len - decoder.payload_consumed)

    def _control_allowed(self) -> bool:
        """Take a ping or pong from the peer's budget: False once it is spent."""
        now = trio.current_time()
        due = max(self._control_due, now) + CONTROL_INTERVAL_S
        if due - now > CONTROL_BURST * CONTROL_INTERVAL_S:
            return False
        self._control_due = due
        return True

    async def _too_big(self, why: str | None = None) -> None:
        await self._refuse(MESSAGE_TOO_BIG, why or f"a message over {self.max_message_bytes} bytes")

    async def _refuse(self, code: int, why: str) -> None:
        """End the connection for what the peer sent: our close with ``code`` and why, then
        ConnectionClosed (the peer's reply is not awaited)."""
        self._drop_message()
        self.closed = CloseReason(code, why)
        try:
            await self._send_event(CloseConnection(code=code, reason=why))
        except ConnectionClosed:
            pass
        else:
            self._linger_at_close = True
        raise ConnectionClosed(self.closed)

    async def _linger(self) -> None:
        """After our close for what the peer sent, read and drop what it is still sending, until
        it closes, pauses LINGER_IDLE_S or CLOSE_GRACE_S passed: closing a socket with unread
        bytes resets the connection, and a reset can reach the peer before our close frame,
        which it then never reads (it sees 1006, not why: e.g. an oversize message still on its
        way). Nothing is parsed or kept: one read's buffer at a time."""
        with trio.move_on_after(CLOSE_GRACE_S):
            try:
                while True:
                    with trio.move_on_after(LINGER_IDLE_S):
                        if await self._stream.receive_some(READ_BYTES):
                            continue
                    return  # the peer closed, or paused: nothing more to drop
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _close_received(self, event: CloseConnection) -> None:
        state = self._proto.state
        if state is ConnectionState.REMOTE_CLOSING:  # the peer closes: answer it
            self.closed = CloseReason(event.code, event.reason or None)
            try:
                await self._send_event(event.response())
            except ConnectionClosed:
                pass
        elif state is _OPEN:  # wsproto could not parse what came (1002, 1007): we close
            self.closed = self.closed or CloseReason(event.code, event.reason or None)
            try:
                await self._send_event(CloseConnection(code=event.code, reason=event.reason))
            except ConnectionClosed:
                pass
        # else the reply to our close: the close handshake is complete
        self._drop_message()
        raise ConnectionClosed(self.closed or CloseReason(event.code, event.reason or None))

    async def _receive(self) -> None:
        """One read into wsproto; ConnectionClosed (1006 unless a close was exchanged) when the
        stream ended or broke."""
        self._proto.drop_parser_if_idle()  # what an idle connection waits with: no parser
        try:
            data = await self._stream.receive_some(READ_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._lost()
        self._proto.receive_data(data)

    def _lost(self) -> None:
        if self._proto.state is not _CLOSED:
            self._proto.receive_data(None)  # wsproto: closed without a close frame
        self._drop_message()
        if self.closed is None:
            self.closed = CloseReason(ABNORMAL_CLOSURE, None)
        raise ConnectionClosed(self.closed)

    # sending -------------------------------------------------------------------------------

    async def send_message(self, message: bytes | str) -> None:
        """Send one message (in one frame); ConnectionClosed if it is closing or closed."""
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        await self._send_event(BytesMessage(data=message) if isinstance(message, bytes) else TextMessage(data=message))

    async def _send_event(self, event: Event) -> None:
        async with self._send_lock:  # framed under the lock: nothing goes out after our close
            await self._frame_and_send(event)

    async def _frame_and_send(self, event: Event) -> None:
        """Frame ``event`` and send it (under the send lock)."""
        if self._send_broken:
            raise ConnectionClosed(self.closed or CloseReason(ABNORMAL_CLOSURE, "a send was interrupted"))
        try:
            data = self._proto.send(event)
        except WebSocketStateError:  # closing or closed meanwhile
            raise ConnectionClosed(self.closed or CloseReason(ABNORMAL_CLOSURE, None)) from None
        sent = False
        try:
            await self._stream.send_all(data)
            sent = True
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if self.closed is None:  # (a send deadline's stall says so: why the link ended)
                self.closed = CloseReason(ABNORMAL_CLOSURE, str(exc) if isinstance(exc, SendStalled) else None)
            raise ConnectionClosed(self.closed) from None
        finally:
            if not sent:
                self._send_broken = True
                if self.closed is None:
                    self.closed = CloseReason(ABNORMAL_CLOSURE, "a send was interrupted")
                await trio.aclose_forcefully(self._stream)  # (closes even when cancelled)

    # closing -------------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close: our close frame, the peer's answer awaited for CLOSE_GRACE_S at most, then the
        stream closed (whatever happened). Idempotent."""
        try:
            if self._proto.state is _OPEN and not self._send_broken:
                if self.closed is None:
                    self.closed = CloseReason(code, reason)
                # closing: nothing more of a message is taken (what still comes is dropped), so
                # what it held is given back now, not after the peer's reply or the grace
                self._drop_message()
                with trio.move_on_after(CLOSE_GRACE_S):
                    try:
                        await self._send_event(CloseConnection(code=code, reason=reason))
                        await self._await_close_reply()
                    except ConnectionClosed:
                        pass
            elif self.closed is None:
                self.closed = CloseReason(code, reason)
        finally:
            await self._close_stream()

    async def _await_close_reply(self) -> None:
        while self._proto.state is not _CLOSED:
            if self._reading:  # another task reads: it sees the reply (or the end)
                self._reader_done = trio.Event()
                try:
                    await self._reader_done.wait()
                finally:
                    self._reader_done = None
                continue
            self._reading = True
            try:
                while True:  # messages are dropped (closing); the reply raises ConnectionClosed
                    await self._handle_events()
                    await self._receive()
            finally:
                self._reading = False

    async def _close_stream(self) -> None:
        try:
            if self._linger_at_close and not self._reading:  # (a reader still at it sees the end itself)
                self._linger_at_close = False
                await self._linger()
        finally:  # closed also when the linger is cancelled
            try:
                await self._stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


class UpgradeRequest:
    """A WebSocket upgrade request the server read (``path``, ``headers``): ``accept()`` it or
    ``reject()`` it with an HTTP status."""

    __slots__ = ("_stream", "_handshake", "_trailing", "_max_message_bytes", "_message_timeout_s", "_held_by", "path", "headers")

    def __init__(
        self,
        stream: trio.abc.Stream,
        head: bytes,
        *,
        max_message_bytes: int,
        message_timeout_s: float = limits.MESSAGE_DEADLINE_S,
        held_by: HeldBytes | None = None,
    ) -> None:
        """``head``: the bytes read so far, the request head and whatever came after it (the
        client speaking already). BadUpgrade if it is not a valid WebSocket upgrade.
        ``held_by``: the budget of the WebSocket's bytes of unfinished messages."""
        end = head.find(b"\r\n\r\n") + 4
        if end < 4:
            raise BadUpgrade("no complete HTTP request head")
        self._stream = stream
        self._handshake: H11Handshake | None = H11Handshake(ConnectionType.SERVER)
        try:
            self._handshake.receive_data(head[:end])
            event = next(self._handshake.events(), None)
        except BadUpgradeRequest as exc:
            raise BadUpgrade(f"not a valid WebSocket upgrade request: {exc}") from None
        if not isinstance(event, Request):  # pragma: no cover - a head always makes a request or an error
            raise BadUpgrade("not a valid WebSocket upgrade request")
        _check_upgrade(head[: head.find(b"\r\n")], event.extra_headers)
        self._trailing = head[end:]
        self._max_message_bytes = max_message_bytes
        self._message_timeout_s = message_timeout_s
        self._held_by = held_by
        self.path: str = event.target
        #: the request's headers (those of the upgrade itself excepted: Host, extensions, ...),
        #: until it is answered
        self.headers: list[tuple[bytes, bytes]] = list(event.extra_headers)

    async def accept(self) -> WebSocket:
        """Answer 101 and return the WebSocket (no extension, no subprotocol)."""
        handshake = self._take()
        answer = handshake.send(AcceptConnection())
        protocol = _Protocol(client=False, received=self._trailing)
        ws = WebSocket(
            self._stream, protocol, max_message_bytes=self._max_message_bytes, message_timeout_s=self._message_timeout_s, held_by=self._held_by
        )
        self._trailing = b""
        await _send_answer(self._stream, answer)
        return ws

    async def reject(self, status_code: int, *, body: bytes = b"") -> None:
        """Answer ``status_code`` with ``body`` (text) instead of the upgrade."""
        handshake = self._take()
        headers = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Content-Length", str(len(body)).encode())]
        answer = handshake.send(RejectConnection(status_code=status_code, headers=headers, has_body=True))
        answer += handshake.send(RejectData(data=body, body_finished=True))
        await _send_answer(self._stream, answer)

    def _take(self) -> H11Handshake:
        """The handshake, answered once; dropped here (the h11 parser and the request are
        needed for nothing more)."""
        handshake, self._handshake = self._handshake, None
        if handshake is None:
            raise RuntimeError("this upgrade request was answered already")
        self.headers = []  # read before answering; the handler holds the request for its life
        return handshake


def _check_upgrade(request_line: bytes, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """What wsproto lets through and RFC 6455 (4.2.1, 11.3) refuses: an upgrade over HTTP/1.0, a
    key or version header given twice (which one would count?), a key that is not 16 bytes in
    base64. h11 has checked the head's syntax already."""
    if not request_line.endswith(b" HTTP/1.1"):
        raise BadUpgrade("a WebSocket upgrade needs HTTP/1.1")
    keys = [value for name, value in headers if name == b"sec-websocket-key"]
    if sum(name == b"sec-websocket-version" for name, _ in headers) > 1 or len(keys) > 1:
        raise BadUpgrade("not a valid WebSocket upgrade request: a Sec-WebSocket header given twice")
    try:
        if len(base64.b64decode(keys[0], validate=True)) != 16:
            raise ValueError
    except (ValueError, IndexError):
        raise BadUpgrade("not a valid WebSocket upgrade request: Sec-WebSocket-Key is not 16 bytes in base64") from None


async def _send_answer(stream: trio.abc.Stream, answer: bytes) -> None:
    try:
        await stream.send_all(answer)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise ConnectionClosed(CloseReason(ABNORMAL_CLOSURE, None)) from None


async def connect(
    url: str,
    *,
    tls: ssl.SSLContext | None,
    headers: Sequence[tuple[bytes, bytes]] = (),
    max_message_bytes: int,
    message_timeout_s: float = limits.MESSAGE_DEADLINE_S,
    send_timeout_s: float | None = None,
) -> WebSocket:
    """Open a WebSocket to ``url`` (``ws://``, or ``wss://`` with ``tls``): the TCP connection,
    TLS, the upgrade request and its answer. OSError if it cannot be reached; ConnectionRejected
    for an HTTP answer instead of the upgrade (its status and body); HandshakeError for an
    answer that is no valid upgrade, or a URL that is no WebSocket URL; ConnectionClosed (1006)
    if it closed before answering. No deadline of its own: the caller's (transport/dial.py).
    Each message it then receives has ``message_timeout_s`` (the server's default too); with
    ``send_timeout_s`` each send must make progress within it, else the connection is reset
    and the send fails (ConnectionClosed 1006 saying so), as the server's sends must."""
    host, port, target = _split_url(url, tls)
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    try:
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_hostname=host, https_compatible=True)
        if send_timeout_s is not None:
            stream = SendDeadlineStream(stream, send_timeout_s)
        handshake = H11Handshake(ConnectionType.CLIENT)
        host_header = host if port in (80, 443) else f"{host}:{port}"
        await _send_answer(stream, handshake.send(Request(host=host_header, target=target, extra_headers=list(headers))))
        refusal: RejectConnection | None = None
        body = b""
        while True:
            try:
                data = await stream.receive_some(READ_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                if refusal is not None:  # a refusal whose body ends with the connection
                    raise ConnectionRejected(refusal.status_code, tuple(refusal.headers), body)
                raise ConnectionClosed(CloseReason(ABNORMAL_CLOSURE, None))
            try:
                handshake.receive_data(data)
                events = list(handshake.events())
            except BadUpgradeRequest as exc:
                raise HandshakeError(f"not a WebSocket upgrade answer: {exc}") from None
            for event in events:
                if isinstance(event, AcceptConnection):
                    protocol = handshake.connection  # with what came after the answer
                    assert protocol is not None
                    return WebSocket(stream, protocol, max_message_bytes=max_message_bytes, message_timeout_s=message_timeout_s)
                if isinstance(event, RejectConnection):
                    if not event.has_body:
                        raise ConnectionRejected(event.status_code, tuple(event.headers), None)
                    refusal = event
                elif isinstance(event, RejectData) and refusal is not None:
                    body = (body + event.data)[:MAX_REFUSAL_BODY]
                    if event.body_finished:
                        raise ConnectionRejected(refusal.status_code, tuple(refusal.headers), body)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


def _split_url(url: str, tls: ssl.SSLContext | None) -> tuple[str, int, str]:
    """(host, port, request target) of a ws:// (or, with TLS, wss://) URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != ("wss" if tls is not None else "ws") or not parts.hostname:
        raise HandshakeError(f"not a {'wss' if tls is not None else 'ws'}:// URL: {url}")
    try:
        port = parts.port or (443 if tls is not None else 80)
    except ValueError:
        raise HandshakeError(f"not a valid port in {url}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, target


@asynccontextmanager
async def open_websocket(url: str, *, max_message_bytes: int = limits.MAX_RECORD_BYTES) -> AsyncIterator[WebSocket]:
    """A bare ``ws://`` WebSocket with the settings of the node's dialling side (``connect``
    within the handshake deadline, no secure channel), closed on the way out: what the
    benchmarks measure the transport's ceiling with."""
    with trio.fail_after(limits.HANDSHAKE_DEADLINE_S):
        ws = await connect(url, tls=None, max_message_bytes=max_message_bytes)
    try:
        yield ws
    finally:
        with trio.CancelScope(shield=True):
            await ws.aclose()
