"""The node's own WebSocket layer (transport/websocket.py, server.py) attacked from outside, over
real TCP: a stranger's malformed or hostile upgrade requests and a peer's hostile frames each end
in a clear refusal (an HTTP 400, or a close with the code that says why), with nothing buffered
beyond the caps (text counted at what its characters take in memory); a flood of tiny fragments
is refused at the cap on pieces, a flood of pings or pongs after a burst (a keepalive's pace is
fine); a message not whole within its deadline (started and left, trickled, kept alive by
pings) is cut, idle time between messages is not; a send cancelled halfway ends the connection
instead of leaving the peer stuck in half a frame; what was accepted before a half-close is
answered. The dialling side refuses a server's masked frames and unoffered extensions."""

from __future__ import annotations

import base64
import functools
import hashlib
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from sonet.transport.ws_errors import CloseReason, ConnectionClosed, HandshakeError
from wsproto.connection import Connection as WsConnection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage

from sonet.core import limits
from sonet.transport.server import Connection, ConnectionLimits, Listening, serve
from sonet.transport.websocket import CONTROL_BURST, CONTROL_INTERVAL_S, PIECE_BYTES, PIECES_FREE, TEXT_CHAR_BYTES, UpgradeRequest, WebSocket, connect

HANG_S = 20  # hang guard, never a performance threshold
CAP = 4096  # the message cap of the server under attack

KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    + KEY
    + b"Sec-WebSocket-Version: 13\r\n\r\n"
)


@dataclass
class Target:
    port: int
    listening: Listening
    #: messages the handler read, in order
    received: list[bytes | str] = field(default_factory=list)
    #: how each connection ended, as the handler saw it
    ended: list[CloseReason] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)


@asynccontextmanager
async def target(caps: ConnectionLimits | None = None, *, read: bool = True) -> AsyncIterator[Target]:
    """A listening server whose handler accepts, then echoes every message (``read``) or reads
    nothing; authenticated at once, so only the WebSocket layer's own defences are in play."""
    state: list[Target] = []

    async def handler(request: UpgradeRequest, conn: Connection) -> None:
        ws = await request.accept()
        conn.authenticated()
        ws.max_message_bytes = CAP
        me = state[0]
        try:
            if not read:
                await trio.sleep_forever()
            while True:
                message = await ws.get_message()
                me.received.append(message)
                await ws.send_message(message)
        except ConnectionClosed as exc:
            assert exc.reason is not None
            me.ended.append(exc.reason)
        finally:
            with trio.move_on_after(HANG_S):
                await ws.aclose()
            me.done.set()

    caps = caps or ConnectionLimits(handshake_timeout_s=3600, send_timeout_s=3600)
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(lambda task_status: serve(handler, "127.0.0.1", 0, plain_http_answer="ws only\n", caps=caps, task_status=task_status))
        state.append(Target(port=listening.port, listening=listening))
        yield state[0]
        nursery.cancel_scope.cancel()


async def raw(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def head_of_answer(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    """(the HTTP answer's head, what came after it); b"" for a connection closed unanswered."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            chunk = b""
        if not chunk:
            return data, b""
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


class Client:
    """A hostile client past the upgrade: raw bytes out, the server's frames parsed by wsproto."""

    def __init__(self, stream: trio.SocketStream, after_head: bytes) -> None:
        self.stream = stream
        self.proto = WsConnection(ConnectionType.CLIENT, trailing_data=after_head)

    @classmethod
    async def upgrade(cls, port: int, request: bytes = UPGRADE) -> tuple[Client, bytes]:
        stream = await raw(port)
        await stream.send_all(request)
        head, rest = await head_of_answer(stream)
        assert head.startswith(b"HTTP/1.1 101 "), head
        return cls(stream, rest), head

    async def send(self, *events: Event) -> None:
        await self.stream.send_all(b"".join(self.proto.send(e) for e in events))

    async def until_close(self) -> tuple[list[Event], CloseConnection | None]:
        """Every event until the server's close (None: the connection ended without one)."""
        seen: list[Event] = []
        while True:
            for event in self.proto.events():
                if isinstance(event, CloseConnection):
                    return seen, event
                seen.append(event)
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                return seen, None
            self.proto.receive_data(data)


def frame(payload: bytes, *, opcode: int = 0x2, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    """One frame as a client would send it (mask of zeros: the payload as is)."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        length = bytes([mask | n])
    elif n < 1 << 16:
        length = bytes([mask | 126]) + struct.pack("!H", n)
    else:
        length = bytes([mask | 127]) + struct.pack("!Q", n)
    return bytes([first]) + length + (bytes(4) if masked else b"") + payload


def header_announcing(length: int) -> bytes:
    """A binary frame's header announcing ``length`` bytes (its shortest encoding, as required)."""
    if length < 1 << 16:
        return bytes([0x82, 0x80 | 126]) + struct.pack("!H", length) + bytes(4)
    return bytes([0x82, 0x80 | 127]) + struct.pack("!Q", length) + bytes(4)


# the upgrade request ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_head",
    [
        pytest.param(UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"), id="http-1.0"),
        pytest.param(UPGRADE.replace(KEY, b""), id="no-key"),
        pytest.param(UPGRADE.replace(KEY, KEY + KEY), id="two-keys"),
        pytest.param(UPGRADE.replace(b"Version: 13", b"Version: 12"), id="wrong-version"),
        pytest.param(UPGRADE.replace(b"Connection: Upgrade", b"Connection: keep-alive"), id="no-connection-upgrade"),
        pytest.param(UPGRADE.replace(KEY, KEY.replace(b"==", b"")), id="key-not-base64"),
        pytest.param(UPGRADE.replace(KEY, b"Sec-WebSocket-Key: AAAA\r\n"), id="key-not-16-bytes"),
        pytest.param(UPGRADE.replace(b"Version: 13\r\n", b"Version: 13\r\nSec-WebSocket-Version: 13\r\n"), id="two-versions"),
        pytest.param(UPGRADE.replace(b"Host: localhost\r\n", b"Host: localhost\r\nBad header line\r\n"), id="malformed-header"),
    ],
)
async def test_an_invalid_upgrade_request_gets_a_400_in_one_line_and_no_websocket(request_head: bytes) -> None:
    with trio.fail_after(HANG_S):
        async with target() as server:
            stream = await raw(server.port)
            await stream.send_all(request_head)
            head, body = await head_of_answer(stream)
            assert head.startswith(b"HTTP/1.1 400 "), head
            while chunk := await stream.receive_some(65536):
                body += chunk
            assert body.endswith(b"\n") and body.count(b"\n") == 1, body
            assert server.received == [] and not server.done.is_set()


async def test_endless_header_lines_are_cut_at_the_head_cap_without_a_websocket() -> None:
    with trio.fail_after(HANG_S):
        async with target() as server:
            stream = await raw(server.port)
            sent = 0
            try:
                await stream.send_all(UPGRADE[: UPGRADE.index(KEY)])
                while sent < 1 << 20:  # the server stops reading at its cap and closes
                    await stream.send_all(b"X-More: " + b"a" * 1000 + b"\r\n")
                    sent += 1010
            except trio.BrokenResourceError:
                pass
            head, _ = await head_of_answer(stream)
            assert not head.startswith(b"HTTP/1.1 101")
            assert sent < 1 << 20, "the server read a megabyte of header lines"
            assert not server.done.is_set()


async def test_an_upgrade_request_trickled_a_byte_at_a_time_is_cut_at_the_upgrade_deadline() -> None:
    caps = ConnectionLimits(upgrade_timeout_s=0.5, handshake_timeout_s=3600)
    with trio.fail_after(HANG_S):
        async with target(caps) as server:
            stream = await raw(server.port)
            try:
                for byte in UPGRADE:  # 120-odd bytes at 20 per second: 6 s, over the deadline
                    await stream.send_all(bytes([byte]))
                    await trio.sleep(0.05)
            except trio.BrokenResourceError:
                pass
            head, _ = await head_of_answer(stream)
            assert head == b""
            assert server.listening.summary.counts.get("upgrade_timeout") == 1
            assert not server.done.is_set()


async def test_permessage_deflate_and_subprotocols_offered_are_not_negotiated() -> None:
    offer = UPGRADE.replace(
        b"\r\n\r\n",
        b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n",
    )
    with trio.fail_after(HANG_S):
        async with target() as server:
            client, head = await Client.upgrade(server.port, offer)
            assert b"sec-websocket-extensions" not in head.lower() and b"sec-websocket-protocol" not in head.lower()
            # a compressed frame (RSV1) anyway: a decompression bomb is never inflated
            await client.stream.send_all(frame(b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=0b100))
            _, close = await client.until_close()
            assert close is not None and close.code == 1002
            await server.done.wait()
            assert server.received == [] and server.ended[0].code == 1002


async def test_garbage_pipelined_after_the_upgrade_request_is_a_protocol_error_not_a_message() -> None:
    with trio.fail_after(HANG_S):
        async with target() as server:
            stream = await raw(server.port)
            await stream.send_all(UPGRADE + b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
            head, rest = await head_of_answer(stream)
            assert head.startswith(b"HTTP/1.1 101 ")
            _, close = await Client(stream, rest).until_close()
            assert close is not None and close.code == 1002
            await server.done.wait()
            assert server.received == []


async def test_a_first_message_sent_with_the_upgrade_request_is_not_lost() -> None:
    with trio.fail_after(HANG_S):
        async with target() as server:
            stream = await raw(server.port)
            await stream.send_all(UPGRADE + frame(b"at once"))
            head, rest = await head_of_answer(stream)
            assert head.startswith(b"HTTP/1.1 101 ")
            client = Client(stream, rest)
            await client.send(CloseConnection(code=1000))
            seen, close = await client.until_close()
            assert [e.data for e in seen if isinstance(e, BytesMessage)] == [b"at once"]
            assert close is not None and close.code == 1000


# frames ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        pytest.param(frame(b"x" * 126, opcode=0x9), 1002, id="ping-over-125-bytes"),
        pytest.param(frame(b"ab", opcode=0x9, fin=False), 1002, id="fragmented-ping"),
        pytest.param(frame(b"orphan", opcode=0x0), 1002, id="continuation-without-start"),
        pytest.param(frame(b"a", fin=False) + frame(b"b"), 1002, id="new-message-inside-a-fragmented-one"),
        pytest.param(frame(b"\xff\xfe", opcode=0x1), 1007, id="text-not-utf8"),
        pytest.param(frame(b"caf\xc3", opcode=0x1, fin=False) + frame(b"(", opcode=0x0), 1007, id="text-not-utf8-across-fragments"),
        pytest.param(frame(b"x", rsv=0b010), 1002, id="reserved-bit"),
        pytest.param(frame(b"x", opcode=0x3), 1002, id="reserved-data-opcode"),
        pytest.param(frame(b"x", opcode=0xB), 1002, id="reserved-control-opcode"),
        pytest.param(frame(b"abc", masked=False), 1002, id="unmasked-client-frame"),
        pytest.param(bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 63) + bytes(4), 1002, id="length-top-bit-set"),
        pytest.param(header_announcing((1 << 63) - 1), 1009, id="length-2^63-1"),
        pytest.param(header_announcing(CAP + 1) + bytes(10), 1009, id="length-over-the-cap"),
        pytest.param(frame(struct.pack("!H", 999), opcode=0x8), 1002, id="close-code-999"),
        pytest.param(frame(struct.pack("!H", 1005), opcode=0x8), 1002, id="close-code-1005"),
        pytest.param(frame(struct.pack("!H", 1006), opcode=0x8), 1002, id="close-code-1006"),
        pytest.param(frame(struct.pack("!H", 5000), opcode=0x8), 1002, id="close-code-5000"),
        pytest.param(frame(b"\x03", opcode=0x8), 1002, id="close-payload-one-byte"),
        pytest.param(frame(struct.pack("!H", 1000) + b"\xff", opcode=0x8), 1007, id="close-reason-not-utf8"),
        pytest.param(frame(struct.pack("!H", 1000) + b"r" * 124, opcode=0x8), 1002, id="close-reason-over-123-bytes"),
    ],
)
async def test_a_hostile_frame_ends_the_connection_with_the_code_that_says_why(wire: bytes, code: int) -> None:
    with trio.fail_after(HANG_S):
        async with target() as server:
            client, _ = await Client.upgrade(server.port)
            await client.stream.send_all(frame(b"before") + wire)
            seen, close = await client.until_close()
            assert [e.data for e in seen if isinstance(e, BytesMessage)] == [b"before"]  # answered first
            assert close is not None and close.code == code, close
            await server.done.wait()
            assert server.received == [b"before"] and server.ended[0].code == code


async def test_a_flood_of_empty_fragments_is_refused_at_the_cap_on_pieces() -> None:
    # each costs 6 bytes of wire and, held, a list slot; the byte cap alone never stops them
    limit = PIECES_FREE + CAP // PIECE_BYTES
    with trio.fail_after(HANG_S):
        async with target() as server:
            client, _ = await Client.upgrade(server.port)
            try:
                await client.stream.send_all(frame(b"", fin=False) + frame(b"", opcode=0x0, fin=False) * 100_000)
            except trio.BrokenResourceError:
                pass  # cut while sending
            _, close = await client.until_close()
            assert close is not None and close.code == 1009 and "pieces" in (close.reason or "")
            await server.done.wait()
            assert server.received == [] and server.ended[0].code == 1009
            assert f"over {limit} pieces" in (server.ended[0].reason or "")


async def test_text_in_fragments_is_capped_at_what_its_characters_take_in_memory() -> None:
    # 1000 bytes of 4-byte characters a fragment: counted as 250 (characters), twelve of them
    # fitted under a 4096-byte cap, 12 KB held; a str takes 4 bytes for each such character
    emoji = "\U0001f600" * 250
    wire = frame(emoji.encode(), opcode=0x1, fin=False) + frame(emoji.encode(), opcode=0x0, fin=False) * 11 + frame(b"", opcode=0x0)
    with trio.fail_after(HANG_S):
        async with target() as server:
            client, _ = await Client.upgrade(server.port)
            await client.send(TextMessage(data="a" * (CAP // TEXT_CHAR_BYTES)))  # at the cap: comes
            try:
                await client.stream.send_all(wire)
            except trio.BrokenResourceError:
                pass  # cut while sending
            seen, close = await client.until_close()
            assert [e.data for e in seen if isinstance(e, TextMessage)] == ["a" * (CAP // TEXT_CHAR_BYTES)]
            assert close is not None and close.code == 1009
            await server.done.wait()
            assert server.received == ["a" * (CAP // TEXT_CHAR_BYTES)] and server.ended[0].code == 1009


async def test_a_message_in_many_small_fragments_within_the_cap_on_pieces_comes_whole() -> None:
    pieces = PIECES_FREE + CAP // PIECE_BYTES
    message = bytes(range(256)) * (CAP // 256)
    size = -(-len(message) // pieces)
    chunks = [message[i : i + size] for i in range(0, len(message), size)]
    assert len(chunks) <= pieces
    with trio.fail_after(HANG_S):
        async with target() as server:
            client, _ = await Client.upgrade(server.port)
            wire = [frame(c, opcode=0x2 if i == 0 else 0x0, fin=i == len(chunks) - 1) for i, c in enumerate(chunks)]
            # pings between the fragments (as many as the budget allows) are answered, and do not
            # cut the message
            pinged = range(0, len(wire), -(-len(wire) // CONTROL_BURST))
            await client.stream.send_all(b"".join(w + (frame(b"p%d" % i, opcode=0x9) if i in pinged else b"") for i, w in enumerate(wire)))
            await client.send(CloseConnection(code=1000))
            seen, close = await client.until_close()
            assert [e.payload for e in seen if isinstance(e, Pong)] == [b"p%d" % i for i in pinged]
            assert [e.data for e in seen if isinstance(e, BytesMessage)] == [message]
            assert close is not None and close.code == 1000


@pytest.mark.parametrize("opcode", [pytest.param(0x9, id="pings"), pytest.param(0xA, id="unsolicited-pongs")])
async def test_a_flood_of_pings_or_pongs_is_refused_after_the_burst(opcode: int) -> None:
    # unbudgeted, each empty ping (6 bytes) cost the node ~0.1 ms of CPU and a send of its own
    with trio.fail_after(HANG_S):
        async with target() as server:
            client, _ = await Client.upgrade(server.port)
            try:
                await client.stream.send_all(frame(b"", opcode=opcode) * (CONTROL_BURST + 10))
            except trio.BrokenResourceError:
                pass  # cut while sending
            seen, close = await client.until_close()
            assert close is not None and close.code == 1008 and "pings or pongs" in (close.reason or "")
            pongs = len([e for e in seen if isinstance(e, Pong)])
            # the burst answered, not all ten after it (one more a second, if the node was slow)
            assert CONTROL_BURST <= pongs < CONTROL_BURST + 10 if opcode == 0x9 else pongs == 0
            await server.done.wait()
            assert server.ended[0].code == 1008


async def test_pings_at_the_budgets_pace_are_answered_for_ever(autojump_clock: trio.testing.MockClock) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    ws = WebSocket(ours, WsConnection(ConnectionType.SERVER), max_message_bytes=1000)
    peer = WsConnection(ConnectionType.CLIENT)
    answered = 0
    ended: list[CloseReason] = []

    async def read() -> None:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None
        ended.append(closed.value.reason)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        for i in range(5 * CONTROL_BURST):  # a keepalive: a burst, then one a second
            if i >= CONTROL_BURST:
                await trio.sleep(CONTROL_INTERVAL_S)
            await theirs.send_all(peer.send(Ping(payload=b"%d" % i)))
            peer.receive_data(await theirs.receive_some(65536))
            answered += sum(isinstance(e, Pong) for e in peer.events())
        assert answered == 5 * CONTROL_BURST and ws.closed is None
        await theirs.send_all(peer.send(Ping()) * (CONTROL_BURST + 1))  # a burst again: refused
        peer.receive_data(await theirs.receive_some(65536))
        assert [e.code for e in peer.events() if isinstance(e, CloseConnection)] == [1008]
    assert [reason.code for reason in ended] == [1008]


async def test_a_peer_that_closes_then_keeps_sending_has_its_later_data_dropped() -> None:
    with trio.fail_after(HANG_S):
        async with target() as server:
            client, _ = await Client.upgrade(server.port)
            await client.stream.send_all(frame(b"kept") + frame(struct.pack("!H", 1000), opcode=0x8) + frame(b"after the close") * 10)
            _, close = await client.until_close()
            assert close is not None and close.code == 1000
            await server.done.wait()
            assert server.received == [b"kept"] and server.ended[0].code == 1000


async def test_a_half_closed_peer_gets_the_answer_to_what_it_sent_before() -> None:
    with trio.fail_after(HANG_S):
        async with target() as server:
            client, _ = await Client.upgrade(server.port)
            await client.stream.send_all(frame(b"then I stop writing"))
            await client.stream.send_eof()
            seen, close = await client.until_close()
            assert [e.data for e in seen if isinstance(e, BytesMessage)] == [b"then I stop writing"]
            await server.done.wait()
            assert server.ended[0].code == 1006  # ended without a close frame


# sends ----------------------------------------------------------------------------------------


def blocked_pair() -> tuple[WebSocket, trio.socket.SocketType]:
    """Our WebSocket over a socket whose peer never reads (small buffers: sends block soon)."""
    a, b = trio.socket.socketpair()
    for sock in (a, b):
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, 4096)
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
    return WebSocket(trio.SocketStream(a), WsConnection(ConnectionType.SERVER), max_message_bytes=1000), b


async def test_a_send_cancelled_halfway_ends_the_connection_and_wakes_its_reader() -> None:
    ws, peer = blocked_pair()
    got: list[CloseReason] = []

    async def read() -> None:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None
        got.append(closed.value.reason)

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            with trio.CancelScope() as scope:

                async def cancel_when_blocked() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()

                nursery.start_soon(cancel_when_blocked)
                await ws.send_message(bytes(1 << 20))  # half of it goes out, then it is cancelled
        # the peer is left with half a frame: nothing more can follow, so the connection is over
        assert got and got[0].code == 1006 and got[0].reason == "a send was interrupted"
        assert ws.closed is got[0]
        with pytest.raises(ConnectionClosed):
            await ws.send_message(b"more")
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
        await ws.aclose()
    peer.close()


async def test_aclose_while_a_send_is_blocked_ends_both_within_the_grace(autojump_clock: trio.testing.MockClock) -> None:
    ws, peer = blocked_pair()
    failed: list[BaseException] = []

    async def send() -> None:
        try:
            await ws.send_message(bytes(1 << 20))
        except ConnectionClosed as exc:
            failed.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        await ws.aclose()  # its close waits behind the blocked send, for the grace at most
    assert len(failed) == 1 and ws.closed is not None
    peer.close()


# the dialling side --------------------------------------------------------------------------


ACCEPT = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: {accept}\r\n"
)


async def test_a_dialled_server_that_sends_a_masked_frame_is_a_protocol_error() -> None:
    with trio.fail_after(HANG_S):
        ws = await _dial_with_answer(b"", frame(b"masked", masked=True))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1002
        await ws.aclose()


async def test_a_dialled_server_that_names_an_extension_not_offered_is_refused() -> None:
    with trio.fail_after(HANG_S):
        with pytest.raises(HandshakeError):
            await _dial_with_answer(b"Sec-WebSocket-Extensions: permessage-deflate\r\n", b"")


async def test_a_dialled_server_with_endless_header_lines_is_refused_at_the_head_cap() -> None:
    with trio.fail_after(HANG_S):
        with pytest.raises(HandshakeError):
            await _dial_with_answer(b"X-Filler: " + b"a" * 70_000 + b"\r\n", b"")


async def _dial_with_answer(extra_headers: bytes, after: bytes) -> WebSocket:
    """``connect`` to a server that answers a proper 101 (plus ``extra_headers``), then sends
    ``after``; the WebSocket, or what ``connect`` raised."""
    result: list[WebSocket | Exception] = []

    async def serve_one(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        key = next(line.split(b":", 1)[1].strip() for line in data.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        await stream.send_all(ACCEPT.replace(b"{accept}", accept) + extra_headers + b"\r\n" + after)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(functools.partial(trio.serve_tcp, serve_one, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        try:
            result.append(await connect(f"ws://127.0.0.1:{port}/ws", tls=None, max_message_bytes=1000))
        except Exception as exc:  # raised below, not inside the nursery's group
            result.append(exc)
        nursery.cancel_scope.cancel()
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]


# a message's deadline -------------------------------------------------------------------------


DEADLINE_S = limits.MESSAGE_DEADLINE_S


@dataclass
class Pair:
    """Our WebSocket (``side``) over a memory stream, and the peer's end of it, driven by wsproto."""

    ws: WebSocket
    wire: trio.testing.MemorySendStream | trio.abc.Stream
    peer: WsConnection
    #: messages our side read, and when it ended (the close reason and the clock)
    received: list[bytes | str] = field(default_factory=list)
    ended: list[tuple[CloseReason, float]] = field(default_factory=list)

    async def read(self) -> None:
        try:
            while True:
                self.received.append(await self.ws.get_message())
        except ConnectionClosed as exc:
            assert exc.reason is not None
            self.ended.append((exc.reason, trio.current_time()))

    async def closes(self) -> list[CloseConnection]:
        """The close frames our side sent so far (what it sent read until 1 s of silence: under
        the mock clock)."""
        with trio.move_on_after(1):
            while True:
                self.peer.receive_data(await self.wire.receive_some(65536))
        return [e for e in self.peer.events() if isinstance(e, CloseConnection)]


def pair(side: ConnectionType = ConnectionType.SERVER) -> Pair:
    ours, theirs = trio.testing.memory_stream_pair()
    other = ConnectionType.CLIENT if side is ConnectionType.SERVER else ConnectionType.SERVER
    return Pair(WebSocket(ours, WsConnection(side), max_message_bytes=CAP), theirs, WsConnection(other))


@pytest.mark.parametrize("side", [pytest.param(ConnectionType.SERVER, id="server"), pytest.param(ConnectionType.CLIENT, id="dialled")])
async def test_a_message_started_and_never_finished_is_cut_at_the_deadline(autojump_clock: trio.testing.MockClock, side: ConnectionType) -> None:
    # each connection of a device could otherwise hold a partial message of up to the cap for ever
    p = pair(side)
    with trio.fail_after(3600 + 2 * DEADLINE_S):  # (mock clock) a hang guard
        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.read)
            await trio.sleep(3600)  # idle first: not a message, not cut
            assert not p.ended
            started = trio.current_time()
            whole = p.peer.send(BytesMessage(data=bytes(CAP // 2)))
            await p.wire.send_all(whole[:100])  # its header and the first bytes, then nothing
    [(reason, at)] = p.ended
    assert reason.code == 1008 and reason.reason == f"a message took over {DEADLINE_S:g} s"
    assert at == pytest.approx(started + DEADLINE_S)
    assert [(c.code, c.reason) for c in await p.closes()] == [(1008, reason.reason)]
    assert p.received == []


@pytest.mark.parametrize("trickle", [pytest.param("bytes", id="a-byte-at-a-time"), pytest.param("pings", id="pings-between-fragments")])
async def test_a_trickled_message_is_cut_at_the_deadline(autojump_clock: trio.testing.MockClock, trickle: str) -> None:
    # neither what still comes of it nor pings between its fragments move the deadline
    p = pair()
    async with trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + 10 * DEADLINE_S  # (mock clock) a hang guard
        nursery.start_soon(p.read)
        started = trio.current_time()
        if trickle == "bytes":
            whole = p.peer.send(BytesMessage(data=bytes(CAP // 2)))
            await p.wire.send_all(whole[:8])
            wire = whole[8:]
        else:
            await p.wire.send_all(p.peer.send(BytesMessage(data=b"first fragment", message_finished=False)))
            wire = p.peer.send(Ping(payload=b"still here")) * 1000
            ping_len = len(p.peer.send(Ping(payload=b"still here")))
        sent = 0
        while not p.ended and sent < len(wire):
            await trio.sleep(4)  # with closes()' second: one step every 5 s (within the ping budget)
            step = 1 if trickle == "bytes" else ping_len
            try:
                await p.wire.send_all(wire[sent : sent + step])
            except trio.BrokenResourceError:
                break
            sent += step
            await p.closes()  # (the pongs read, so sends never block)
    [(reason, at)] = p.ended
    assert reason.code == 1008 and reason.reason == f"a message took over {DEADLINE_S:g} s"
    assert at == pytest.approx(started + DEADLINE_S)
    assert sent >= (DEADLINE_S // 5 - 1) * (1 if trickle == "bytes" else ping_len)  # it kept coming until the cut
    assert p.received == []


async def test_honest_fragmented_messages_each_within_the_deadline_arrive(autojump_clock: trio.testing.MockClock) -> None:
    # two slow messages in a row, each within its own deadline (together well over it), pings
    # between their fragments, then idle time far over the deadline, then one more message
    p = pair()
    fragments = 8
    expected = [bytes([n]) * (CAP // 2) for n in range(2)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(p.read)
        for message in expected:
            size = len(message) // fragments
            for i in range(fragments):
                await p.wire.send_all(p.peer.send(BytesMessage(data=message[i * size : (i + 1) * size], message_finished=i == fragments - 1)))
                await p.wire.send_all(p.peer.send(Ping(payload=b"%d" % i)))
                await trio.sleep(0.75 * DEADLINE_S / fragments)
                await p.closes()
        await trio.sleep(10 * DEADLINE_S)
        await p.wire.send_all(p.peer.send(TextMessage(data="after a long idle")))
        await trio.testing.wait_all_tasks_blocked()
        assert p.received == [*expected, "after a long idle"] and not p.ended
        nursery.cancel_scope.cancel()
    assert await p.closes() == []


async def test_the_servers_message_deadline_is_its_connection_limits() -> None:
    caps = ConnectionLimits(handshake_timeout_s=3600, send_timeout_s=3600, message_timeout_s=0.25)
    with trio.fail_after(HANG_S):
        async with target(caps) as server:
            client, _ = await Client.upgrade(server.port)
            await client.send(BytesMessage(data=b"whole"))
            await client.stream.send_all(header_announcing(1000) + bytes(10))
            seen, close = await client.until_close()
            assert [e.data for e in seen if isinstance(e, BytesMessage)] == [b"whole"]
            assert close is not None and close.code == 1008 and close.reason == "a message took over 0.25 s"
            await server.done.wait()
            assert server.received == [b"whole"] and server.ended[0].code == 1008
