"""sonet.transport.websocket: the WebSocket read and written from the tasks that use it (no
reader task). The far end is played by wsproto's client protocol over an in-memory stream, so
each test says exactly which frames arrive: an oversized message refused at its frame header,
fragments reassembled under the cap, a ping answered, the close handshake from either side, a
lost or broken connection, a peer that stops reading cut by the server's send timeout."""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing
from sonet.transport.ws_errors import ConnectionClosed
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from sonet.transport.admission import Admission, ConnectionLimits
from sonet.transport.server import _GuardedStream
from sonet.transport.websocket import CLOSE_GRACE_S, READ_BYTES, BadUpgrade, UpgradeRequest, WebSocket

HANG_S = 20  # hang guard, never a performance threshold

UPGRADE = (
    b"GET /client HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Peer:
    """The far end: a wsproto client over the other half of the stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.proto = Connection(ConnectionType.CLIENT)

    async def send(self, *events: object) -> None:
        await self.stream.send_all(b"".join(self.proto.send(e) for e in events))  # type: ignore[arg-type]

    async def events(self) -> list[object]:
        """What came from our side (at least one event)."""
        while True:
            got = list(self.proto.events())
            if got:
                return got
            data = await self.stream.receive_some(READ_BYTES)
            if not data:
                return []
            self.proto.receive_data(data)


def opened(max_message_bytes: int = 1000) -> tuple[WebSocket, Peer]:
    ours, theirs = trio.testing.memory_stream_pair()
    return WebSocket(ours, Connection(ConnectionType.SERVER), max_message_bytes=max_message_bytes), Peer(theirs)


def masked_header(length: int, opcode: int = 0x2, fin: bool = True) -> bytes:
    """A client frame header announcing ``length`` bytes (mask of zeros: the payload as is)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes([first, 0x80 | length]) + bytes(4)
    if length < 1 << 16:
        return bytes([first, 0x80 | 126]) + struct.pack("!H", length) + bytes(4)
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", length) + bytes(4)


async def test_a_message_comes_whole_and_the_answer_goes_back() -> None:
    ws, peer = opened()
    with trio.fail_after(HANG_S):
        await peer.send(BytesMessage(data=b"hello"), TextMessage(data="text"))
        assert await ws.get_message() == b"hello"
        assert await ws.get_message() == "text"
        await ws.send_message(b"back")
        [event] = await peer.events()
        assert isinstance(event, BytesMessage) and event.data == b"back"


async def test_sends_from_several_tasks_go_out_whole_and_an_idle_connection_keeps_no_lock() -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()  # a send waits for the peer's read
    ws, peer = WebSocket(ours, Connection(ConnectionType.SERVER), max_message_bytes=1000), Peer(theirs)
    received: list[bytes] = []
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            for size in (70_000, 50_000, 10):
                nursery.start_soon(ws.send_message, bytes([size % 251]) * size)
            await trio.testing.wait_all_tasks_blocked()
            assert ws._send_lock._lock is not None and ws._send_lock._lock.statistics().tasks_waiting == 2
            part = b""
            while len(received) < 3:
                for event in await peer.events():
                    assert isinstance(event, BytesMessage)
                    part += event.data
                    if event.message_finished:
                        received.append(part)
                        part = b""
    assert sorted(map(len, received)) == [10, 50_000, 70_000]
    assert all(len(set(message)) == 1 for message in received)  # no frame cut into another
    assert ws._send_lock._lock is None


async def test_an_idle_connection_keeps_no_frame_parser_and_what_is_half_received_is_kept() -> None:
    """The frame parser exists while bytes are being parsed and is dropped when the reader
    waits between messages (memory per idle connection): a frame header cut in two, a message
    in fragments and a character cut between two text fragments all still come whole."""
    ws, peer = opened()
    got: list[bytes | str] = []

    async def read() -> None:
        got.append(await ws.get_message())

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            assert ws._proto.frame_decoder() is None  # waiting, nothing received yet
            frame = masked_header(5) + b"cut!!"
            await peer.stream.send_all(frame[:1])  # half a header
            await trio.testing.wait_all_tasks_blocked()
            assert ws._proto.frame_decoder() is not None and not got
            await peer.stream.send_all(frame[1:])
        assert got == [b"cut!!"]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            assert ws._proto.frame_decoder() is None  # waiting between messages
            # "é" is 0xC3 0xA9 in UTF-8: its first byte ends the first fragment
            await peer.stream.send_all(masked_header(2, opcode=0x1, fin=False) + b"a\xc3")
            await trio.testing.wait_all_tasks_blocked()
            decoder = ws._proto.frame_decoder()
            assert decoder is not None and decoder.header is None and not got[1:]  # between fragments: kept
            await peer.stream.send_all(masked_header(2, opcode=0x0) + b"\xa9b")
        assert got == [b"cut!!", "aéb"]

        # two messages in one read: the second is not lost with the parser
        await peer.send(BytesMessage(data=b"one"), BytesMessage(data=b"two"))
        assert await ws.get_message() == b"one"
        assert await ws.get_message() == b"two"
        await ws.send_message(b"still open")
        [event] = await peer.events()
        assert isinstance(event, BytesMessage) and event.data == b"still open"


async def test_a_frame_header_over_the_cap_is_refused_before_its_payload_is_buffered() -> None:
    ws, peer = opened(max_message_bytes=1000)
    with trio.fail_after(HANG_S):
        # the header announces 10 MB; 10 bytes of it come, the rest never will
        await peer.stream.send_all(masked_header(10_000_000) + bytes(10))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1009
        assert ws._parts is None  # nothing of it held
        [close] = await peer.events()
        assert isinstance(close, CloseConnection) and close.code == 1009 and "1000 bytes" in close.reason
        with pytest.raises(ConnectionClosed):
            await ws.send_message(b"no more")


async def test_fragments_are_reassembled_under_the_cap_and_refused_at_the_fragment_that_goes_over() -> None:
    ws, peer = opened(max_message_bytes=1000)
    with trio.fail_after(HANG_S):
        await peer.send(
            BytesMessage(data=b"a" * 400, message_finished=False),
            Ping(payload=b"in between"),  # a control frame may come between fragments
            BytesMessage(data=b"b" * 400, message_finished=False),
            BytesMessage(data=b"c" * 200, message_finished=True),
        )
        assert await ws.get_message() == b"a" * 400 + b"b" * 400 + b"c" * 200
        [pong] = await peer.events()
        assert isinstance(pong, Pong) and pong.payload == b"in between"
        # 600 bytes, then a fragment whose header brings the message to 1001
        await peer.send(BytesMessage(data=b"d" * 600, message_finished=False))
        await peer.stream.send_all(masked_header(401, opcode=0x0) + bytes(1))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1009


async def test_a_raised_cap_takes_effect_for_the_next_message() -> None:
    ws, peer = opened(max_message_bytes=100)
    with trio.fail_after(HANG_S):
        ws.max_message_bytes = 5000
        await peer.send(BytesMessage(data=bytes(5000)))
        assert await ws.get_message() == bytes(5000)


async def test_a_ping_is_answered_while_waiting_for_a_message() -> None:
    ws, peer = opened()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(HANG_S):
            got: list[bytes | str] = []

            async def read() -> None:
                got.append(await ws.get_message())

            nursery.start_soon(read)
            await peer.send(Ping(payload=b"are you there"))
            [pong] = await peer.events()
            assert isinstance(pong, Pong) and pong.payload == b"are you there"
            await peer.send(BytesMessage(data=b"then this"))
    assert got == [b"then this"]


async def test_the_peers_close_is_answered_and_ends_the_connection_with_its_code() -> None:
    ws, peer = opened()
    with trio.fail_after(HANG_S):
        await peer.send(BytesMessage(data=b"last"), CloseConnection(code=1001, reason="going away"))
        assert await ws.get_message() == b"last"  # what came before the close is still read
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None and (closed.value.reason.code, closed.value.reason.reason) == (1001, "going away")
        [reply] = await peer.events()
        assert isinstance(reply, CloseConnection) and reply.code == 1001
        await ws.aclose()  # closed already: the stream is closed, nothing more is sent
        assert await peer.events() == []


async def test_our_close_waits_for_the_peers_reply_then_closes_the_stream() -> None:
    ws, peer = opened()
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.aclose, 1008, "bad_input")
            [close] = await peer.events()
            assert isinstance(close, CloseConnection) and (close.code, close.reason) == (1008, "bad_input")
            # a message that crossed our close (by hand: wsproto sends none after a close came)
            await peer.stream.send_all(masked_header(22) + b"dropped: it is closing")
            await peer.send(close.response())
        assert ws.closed is not None and ws.closed.code == 1008
        assert await peer.events() == []  # the stream is closed
        with pytest.raises(ConnectionClosed):
            await ws.get_message()


async def test_a_close_while_another_task_reads_is_completed_by_that_reader() -> None:
    ws, peer = opened()
    with trio.fail_after(HANG_S):
        ended: list[int] = []

        async def read() -> None:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason is not None
            ended.append(closed.value.reason.code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ws.aclose, 1000, "done")
            [close] = await peer.events()
            await peer.send(close.response())  # type: ignore[attr-defined]
        assert ended == [1000]
        assert await peer.events() == []


async def test_a_close_the_peer_never_answers_is_given_up_after_the_grace(autojump_clock: trio.testing.MockClock) -> None:
    ws, peer = opened()
    start = trio.current_time()
    await ws.aclose()
    assert trio.current_time() - start == pytest.approx(CLOSE_GRACE_S)
    [close] = await peer.events()
    assert isinstance(close, CloseConnection)
    assert await peer.events() == []  # and the stream was closed all the same


async def test_a_lost_connection_is_a_1006_close() -> None:
    ws, peer = opened()
    with trio.fail_after(HANG_S):
        await peer.stream.aclose()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1006


async def test_an_unmasked_client_frame_is_a_protocol_error_close() -> None:
    ws, peer = opened()
    with trio.fail_after(HANG_S):
        await peer.stream.send_all(b"\x82\x03abc")  # not masked: a client must mask
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1002
        [close] = await peer.events()
        assert isinstance(close, CloseConnection) and close.code == 1002


async def test_two_readers_at_once_are_refused() -> None:
    ws, _peer = opened()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.get_message)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await ws.get_message()
        nursery.cancel_scope.cancel()


async def test_a_peer_that_stops_reading_is_cut_at_the_send_timeout_and_nothing_more_is_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = trio.socket.socketpair()
    for sock in (a, b):
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, 4096)
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
    admission = Admission(ConnectionLimits())
    conn = admission.admit("127.0.0.1")
    guarded = _GuardedStream(trio.SocketStream(a), conn, send_timeout_s=5)
    ws = WebSocket(guarded, Connection(ConnectionType.SERVER), max_message_bytes=1000)
    with pytest.raises(ConnectionClosed) as closed:
        await ws.send_message(bytes(4 * 1024 * 1024))  # b never reads
    assert closed.value.reason is not None and closed.value.reason.code == 1006
    assert conn.ended_by == "send_timeout"
    with pytest.raises(ConnectionClosed):
        await ws.send_message(b"after")
    await ws.aclose()  # half a frame went out: no close frame after it, the stream is closed
    b.close()


async def test_an_upgrade_request_is_answered_and_what_came_after_its_head_is_kept() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    client = Connection(ConnectionType.CLIENT)
    first = client.send(BytesMessage(data=b"spoke at once"))
    request = UpgradeRequest(ours, UPGRADE + first, max_message_bytes=1000)
    assert request.path == "/client"
    with trio.fail_after(HANG_S):
        ws = await request.accept()
        answer = await theirs.receive_some(READ_BYTES)
        assert answer.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in answer
        assert await ws.get_message() == b"spoke at once"
        with pytest.raises(RuntimeError, match="answered already"):
            await request.accept()


async def test_an_upgrade_request_can_be_rejected_with_a_status_and_text() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    request = UpgradeRequest(ours, UPGRADE, max_message_bytes=1000)
    with trio.fail_after(HANG_S):
        await request.reject(404, body=b"unknown endpoint\n")
        answer = await theirs.receive_some(READ_BYTES)
    assert answer.startswith(b"HTTP/1.1 404 ") and answer.endswith(b"\r\n\r\nunknown endpoint\n")


@pytest.mark.parametrize(
    "head",
    [
        UPGRADE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""),
        UPGRADE.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
        UPGRADE.replace(b"GET", b"POST"),
        b"GET /client HTTP/1.1\r\nUpgrade websocket\r\n\r\n",
        b"no head end",
    ],
)
def test_an_invalid_upgrade_request_is_one_line(head: bytes) -> None:
    ours, _theirs = trio.testing.memory_stream_pair()
    with pytest.raises(BadUpgrade) as bad:
        UpgradeRequest(ours, head, max_message_bytes=1000)
    assert "\n" not in str(bad.value)


async def test_open_websocket_talks_to_the_server_and_closes_with_1000_on_the_way_out() -> None:
    """``open_websocket``: a bare WebSocket with the dialling side's settings (the benchmarks'
    ceilings measure the transport with it)."""
    import functools

    from sonet.transport.server import Connection, serve
    from sonet.transport.websocket import open_websocket

    closed: list[int] = []

    async def handler(request: UpgradeRequest, conn: Connection) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed as exc:
            closed.append(exc.reason.code)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve, handler, "127.0.0.1", 0, plain_http_answer="test"))
        async with open_websocket(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send_message(b"over and back")
            assert await ws.get_message() == b"over and back"
        with trio.fail_after(5):
            while not closed:
                await trio.sleep(0.01)
        assert closed == [1000]
        nursery.cancel_scope.cancel()
