"""Review of today's leaner connections (69552af, 4482414) attacked as a hostile peer would, over
real TCP: the frame parser made when bytes come and dropped between messages must keep what is
half-received (a byte at a time through masking keys, extended lengths, a split close, pings
between fragments, UTF-8 cut between fragments), and re-making it must reset nothing an attacker
could use (the caps on size and pieces, the ping budget, the message deadline, the pre-auth
deadline); LazyLock must serialize sends under cancellation without interleaving, losing a
wake-up, or leaving a lock behind."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from sonet.transport.ws_errors import CloseReason, ConnectionClosed
from wsproto.connection import Connection as WsConnection, ConnectionType
from wsproto.events import BytesMessage, Event, Pong, TextMessage

from fuzz.wire_targets import channel_keys
from sonet.core.channel import Channel
from sonet.core.client_api import CLIENT_FRAMES, Ping as PingFrame
from sonet.transport import SecureSocket
from sonet.transport.lazy_lock import LazyLock
from sonet.transport.server import Connection, ConnectionLimits, serve
from sonet.transport.websocket import CONTROL_BURST, PIECE_BYTES, PIECES_FREE, UpgradeRequest, WebSocket

from .test_ws_attacks import Client, blocked_pair

HANG_S = 20  # hang guard, never a performance threshold
CAP = 4096
MASK = b"\x37\xfa\x21\x3d"  # a real mask: a masking key cut by a re-made parser would garble


def masked(payload: bytes, *, opcode: int = 0x2, fin: bool = True) -> bytes:
    """One client frame with ``MASK`` (the shortest length encoding, as required)."""
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 1 << 16:
        length = bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        length = bytes([0x80 | 127]) + struct.pack("!Q", n)
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode]) + length + MASK + body


@dataclass
class Served:
    port: int
    #: the server's WebSocket of each connection (to look at what it holds)
    sockets: list[WebSocket] = field(default_factory=list)
    received: list[bytes | str] = field(default_factory=list)
    ended: list[CloseReason] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)


@asynccontextmanager
async def served(caps: ConnectionLimits | None = None, *, authenticate: bool = True) -> AsyncIterator[Served]:
    """A server echoing every message, its WebSockets exposed; ``authenticate``: lift the pre-auth
    deadline at once (as a handshake would)."""
    state: list[Served] = []

    async def handler(request: UpgradeRequest, conn: Connection) -> None:
        ws = await request.accept()
        if authenticate:
            conn.authenticated()
        ws.max_message_bytes = CAP
        me = state[0]
        me.sockets.append(ws)
        try:
            while True:
                message = await ws.get_message()
                me.received.append(message)
                await ws.send_message(message)
        except ConnectionClosed as exc:
            assert exc.reason is not None
            me.ended.append(exc.reason)
        finally:
            me.done.set()
            with trio.move_on_after(HANG_S):
                await ws.aclose()

    caps = caps or ConnectionLimits(handshake_timeout_s=3600, send_timeout_s=3600)
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(lambda task_status: serve(handler, "127.0.0.1", 0, plain_http_answer="ws only\n", caps=caps, task_status=task_status))
        state.append(Served(port=listening.port))
        yield state[0]
        nursery.cancel_scope.cancel()


async def trickle(client: Client, wire: bytes) -> None:
    """``wire`` a byte at a time, each read by the server before the next is sent."""
    for i in range(len(wire)):
        await client.stream.send_all(wire[i : i + 1])
        await trio.testing.wait_all_tasks_blocked()


def header_length(frame: bytes) -> int:
    short = frame[1] & 0x7F
    return 2 + {126: 2, 127: 8}.get(short, 0) + (4 if frame[1] & 0x80 else 0)


async def trickle_headers(client: Client, *frames: bytes) -> None:
    """Each frame's header a byte at a time (the masking key and extended length included), its
    payload in one send: a payload a byte at a time would be refused at the cap on pieces."""
    for frame in frames:
        header = header_length(frame)
        await trickle(client, frame[:header])
        if frame[header:]:
            await client.stream.send_all(frame[header:])
            await trio.testing.wait_all_tasks_blocked()


def parser_of(ws: WebSocket) -> object:
    return ws._proto._parser


async def echoed(client: Client, count: int) -> list[Event]:
    """The next ``count`` events from the server."""
    seen: list[Event] = []
    while len(seen) < count:
        seen.extend(client.proto.events())
        if len(seen) < count:
            client.proto.receive_data(await client.stream.receive_some(65536))
    return seen


# a byte at a time across the parser's drop and re-creation --------------------------------------


async def test_frames_trickled_a_byte_at_a_time_with_pings_between_fragments_come_whole_then_a_split_close() -> None:
    mid = 200  # a 16-bit extended length
    text = "añb€c" * 10  # multi-byte characters, cut between fragments below
    raw_text = text.encode()
    wire = (
        masked(b"a" * mid),  # extended length and mask, byte by byte
        masked(raw_text[:2], opcode=0x1, fin=False),  # "a" and half of "ñ"
        masked(b"ping in a message", opcode=0x9),
        masked(raw_text[2:7], opcode=0x0, fin=False),  # ends inside "€"
        masked(b"", opcode=0xA),  # an unsolicited pong between fragments too
        masked(raw_text[7:], opcode=0x0),
        masked(b""),  # an empty message
    )
    with trio.fail_after(HANG_S):
        async with served() as server:
            client, _ = await Client.upgrade(server.port)
            await trio.testing.wait_all_tasks_blocked()
            [ws] = server.sockets
            assert parser_of(ws) is None  # idle: nothing held
            await trickle_headers(client, *wire)
            assert parser_of(ws) is None  # between messages again
            seen = await echoed(client, 4)
            assert [type(e) for e in seen] == [BytesMessage, Pong, TextMessage, BytesMessage]
            assert seen[0].data == b"a" * mid and seen[1].payload == b"ping in a message"  # type: ignore[attr-defined]
            assert seen[2].data == text and seen[3].data == b""  # type: ignore[attr-defined]
            assert server.received == [b"a" * mid, text, b""]
            # a close frame cut byte by byte, its code and reason masked: answered, not garbled
            await trickle(client, masked(struct.pack("!H", 4001) + "bye ✓".encode(), opcode=0x8))
            _, close = await client.until_close()
            assert close is not None and close.code == 4001
            await server.done.wait()
            assert (server.ended[0].code, server.ended[0].reason) == (4001, "bye ✓")


async def test_a_header_announcing_over_the_cap_trickled_a_byte_at_a_time_is_refused_at_its_last_byte() -> None:
    header = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + MASK  # 64-bit length, 1 TiB
    with trio.fail_after(HANG_S):
        async with served() as server:
            client, _ = await Client.upgrade(server.port)
            await trickle(client, header[:-1])
            assert not server.ended  # every byte but the last: nothing refused yet
            await trickle(client, header[-1:])
            _, close = await client.until_close()
            assert close is not None and close.code == 1009
            assert server.ended[0].code == 1009 and server.received == []


# caps across reads and re-made parsers ----------------------------------------------------------


async def test_fragments_whose_sum_crosses_the_cap_are_refused_at_the_fragment_that_crosses() -> None:
    with trio.fail_after(HANG_S):
        async with served() as server:
            client, _ = await Client.upgrade(server.port)
            await client.stream.send_all(masked(b"ok"))  # a message first: the parser is dropped after it
            await echoed(client, 1)
            part = CAP // 4
            for i in range(4):  # exactly the cap, each fragment's header cut over reads
                fragment = masked(b"x" * part, opcode=0x2 if i == 0 else 0x0, fin=False)
                await trickle(client, fragment[:3])
                await client.stream.send_all(fragment[3:])
                await trio.testing.wait_all_tasks_blocked()
            assert not server.ended
            await trickle(client, masked(b"x", opcode=0x0)[:6])  # a header announcing one byte more, no payload
            _, close = await client.until_close()
            assert close is not None and close.code == 1009
            assert server.received == [b"ok"] and server.ended[0].code == 1009


async def test_a_message_in_too_many_pieces_is_refused_however_its_fragments_are_spread_over_reads() -> None:
    pieces = PIECES_FREE + CAP // PIECE_BYTES
    with trio.fail_after(HANG_S):
        async with served() as server:
            client, _ = await Client.upgrade(server.port)
            await client.stream.send_all(masked(b"", fin=False))
            for n in range(1, pieces):  # one read each: the parser is kept (a message is half-way)
                await client.stream.send_all(masked(b"", opcode=0x0, fin=False))
                await trio.testing.wait_all_tasks_blocked()
            assert not server.ended
            await client.stream.send_all(masked(b"", opcode=0x0, fin=False))
            _, close = await client.until_close()
            assert close is not None and close.code == 1009 and close.reason == f"a message in over {pieces} pieces"


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(masked(b"a\xc3", opcode=0x1, fin=False) + masked(b"(", opcode=0x0), id="broken-sequence-at-the-boundary"),
        pytest.param(masked(b"a\xe2\x82", opcode=0x1, fin=False) + masked(b"", opcode=0x0), id="sequence-left-unfinished-at-the-end"),
        pytest.param(masked(b"\xed\xa0", opcode=0x1, fin=False) + masked(b"\x80", opcode=0x0), id="surrogate-split"),
    ],
)
async def test_invalid_utf8_split_across_fragments_is_1007_byte_at_a_time(wire: bytes) -> None:
    with trio.fail_after(HANG_S):
        async with served() as server:
            client, _ = await Client.upgrade(server.port)
            await trickle(client, wire)
            _, close = await client.until_close()
            assert close is not None and close.code == 1007
            assert server.received == [] and server.ended[0].code == 1007


async def test_the_ping_budget_is_not_reset_by_a_parser_made_afresh_for_each_ping() -> None:
    with trio.fail_after(HANG_S):
        async with served() as server:
            client, _ = await Client.upgrade(server.port)
            await trio.testing.wait_all_tasks_blocked()
            [ws] = server.sockets
            for n in range(CONTROL_BURST):
                # each ping alone, the reader idle between them: a new parser for each
                await trickle(client, masked(b"%d" % n, opcode=0x9))
                assert parser_of(ws) is None
                await client.stream.send_all(masked(b"msg %d" % n))
                await trio.testing.wait_all_tasks_blocked()
            await client.stream.send_all(masked(b"one too many", opcode=0x9))
            seen, close = await client.until_close()
            assert sum(isinstance(e, Pong) for e in seen) == CONTROL_BURST
            assert close is not None and close.code == 1008
            assert len(server.received) == CONTROL_BURST


# deadlines --------------------------------------------------------------------------------------


async def test_a_message_left_between_fragments_or_inside_a_header_is_cut_at_the_message_deadline() -> None:
    caps = ConnectionLimits(handshake_timeout_s=3600, send_timeout_s=3600, message_timeout_s=0.25)
    with trio.fail_after(HANG_S):
        async with served(caps) as server:
            client, _ = await Client.upgrade(server.port)
            # a first fragment whole, a ping, then half of the next fragment's header, and nothing
            await trickle(client, masked(b"first", fin=False) + masked(b"", opcode=0x9) + masked(b"x" * 300, opcode=0x0)[:3])
            _, close = await client.until_close()
            assert close is not None and close.code == 1008 and close.reason == "a message took over 0.25 s"


async def test_half_a_frame_header_alone_is_cut_at_the_message_deadline() -> None:
    # the first bytes of a message's header: a parser (~1.7 KB) is held for them, as for a message
    # begun, so the message's deadline runs from them (it ran from a whole header only before)
    caps = ConnectionLimits(handshake_timeout_s=3600, send_timeout_s=3600, message_timeout_s=0.25)
    with trio.fail_after(HANG_S):
        async with served(caps) as server:
            client, _ = await Client.upgrade(server.port)
            await client.stream.send_all(masked(b"whole"))
            await echoed(client, 1)
            await client.stream.send_all(masked(b"x" * 300)[:1])
            _, close = await client.until_close()
            assert close is not None and close.code == 1008 and close.reason == "a message took over 0.25 s"
            assert server.received == [b"whole"]


async def test_an_unauthenticated_connection_trickling_frame_bytes_is_cut_at_the_pre_auth_deadline() -> None:
    caps = ConnectionLimits(handshake_timeout_s=0.5, send_timeout_s=3600)
    with trio.fail_after(HANG_S):
        async with served(caps, authenticate=False) as server:
            client, _ = await Client.upgrade(server.port)
            ping = masked(b"", opcode=0x9)
            with pytest.raises(trio.BrokenResourceError):
                while True:  # pings, a byte at a time, answered: it never goes quiet
                    for i in range(len(ping)):
                        await client.stream.send_all(ping[i : i + 1])
                        await trio.sleep(0.02)
                    data = await client.stream.receive_some(65536)
                    if not data:
                        raise trio.BrokenResourceError
            await server.done.wait()


# sends through LazyLock ---------------------------------------------------------------------------


async def test_senders_queued_behind_a_blocked_send_one_cancelled_go_whole_in_order_and_leave_no_lock() -> None:
    ws, peer = blocked_pair()
    sizes = {"first": 300_000, "cancelled": 200_000, "third": 100_000}
    outcome: dict[str, str] = {}
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            scopes: dict[str, trio.CancelScope] = {}

            async def send(name: str, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                with trio.CancelScope() as scopes[name]:
                    task_status.started()
                    await ws.send_message(bytes([len(name)]) * sizes[name])
                    outcome[name] = "sent"
                    return
                outcome[name] = "cancelled"

            await nursery.start(send, "first")
            await trio.testing.wait_all_tasks_blocked()
            await nursery.start(send, "cancelled")
            await nursery.start(send, "third")
            await trio.testing.wait_all_tasks_blocked()
            scopes["cancelled"].cancel()  # waiting for the lock: nothing of it went out
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == {"cancelled": "cancelled"}
            reader = WsConnection(ConnectionType.CLIENT)
            got: list[bytes] = []
            part = b""
            while len(got) < 2:  # the peer reads now: the first send and the third wake in turn
                reader.receive_data(await peer.recv(1 << 20))
                for event in reader.events():
                    assert isinstance(event, BytesMessage)
                    part += event.data
                    if event.message_finished:
                        got.append(part)
                        part = b""
    assert outcome == {"first": "sent", "cancelled": "cancelled", "third": "sent"}
    assert got == [bytes([5]) * sizes["first"], bytes([5]) * sizes["third"]]
    assert ws._send_lock._lock is None
    peer.close()


async def test_a_send_begun_already_cancelled_leaves_no_lock_behind() -> None:
    ws, peer = blocked_pair()
    with trio.CancelScope() as scope:
        scope.cancel()
        await ws.send_message(b"never")
    assert scope.cancelled_caught
    assert ws._send_lock._lock is None  # an idle connection keeps no lock, even after this
    await ws.send_message(b"still works")
    assert ws._send_lock._lock is None
    peer.close()


async def test_lazy_lock_hands_over_past_a_cancelled_waiter_and_is_dropped_by_the_last() -> None:
    lock = LazyLock()
    order: list[str] = []
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            release = trio.Event()

            async def hold(name: str, scope: trio.CancelScope | None = None) -> None:
                with scope or trio.CancelScope():
                    async with lock:
                        order.append(name)
                        if name == "a":
                            await release.wait()

            nursery.start_soon(hold, "a")
            await trio.testing.wait_all_tasks_blocked()
            cancelled = trio.CancelScope()
            nursery.start_soon(hold, "b", cancelled)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(hold, "c")
            await trio.testing.wait_all_tasks_blocked()
            cancelled.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert lock.locked()
            release.set()
    assert order == ["a", "c"] and lock._lock is None and not lock.locked()


async def test_a_send_interrupted_halfway_fails_the_sender_queued_behind_it_and_ends_the_connection() -> None:
    ws, peer = blocked_pair()
    results: dict[str, BaseException | None] = {}
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            halfway = trio.CancelScope()

            async def first() -> None:
                with halfway:
                    await ws.send_message(bytes(1 << 20))

            async def second() -> None:
                try:
                    await ws.send_message(b"after half a frame")
                    results["second"] = None
                except ConnectionClosed as exc:
                    results["second"] = exc

            nursery.start_soon(first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            halfway.cancel()
    assert isinstance(results["second"], ConnectionClosed)
    assert ws.closed is not None and ws.closed.code == 1006
    assert ws._send_lock._lock is None
    peer.close()


async def test_secure_socket_senders_behind_a_blocked_record_one_cancelled_keep_the_record_counter_in_step() -> None:
    # a sender cancelled while it waits for the socket's LazyLock has sealed nothing: every record
    # the peer gets opens, in order, and the socket can still send
    ws, peer = blocked_pair()
    sock = SecureSocket(ws, Channel(channel_keys(initiator=True), CLIENT_FRAMES), peer_key=None)  # type: ignore[arg-type]
    far = Channel(channel_keys(initiator=False), CLIENT_FRAMES)
    first_count = 3000  # more than the small socket buffers take: the first sender blocks
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:

            async def first() -> None:
                for n in range(first_count):
                    await sock.send(PingFrame(request=n + 1))

            waiting = trio.CancelScope()

            async def cancelled() -> None:
                with waiting:
                    await sock.send(PingFrame(request=88888))

            async def third() -> None:
                await sock.send(PingFrame(request=99999))

            nursery.start_soon(first)
            await trio.testing.wait_all_tasks_blocked()
            assert sock._send_lock.locked()
            nursery.start_soon(cancelled)
            nursery.start_soon(third)
            await trio.testing.wait_all_tasks_blocked()
            waiting.cancel()
            await trio.testing.wait_all_tasks_blocked()
            reader = WsConnection(ConnectionType.CLIENT)
            requests: list[int] = []
            while len(requests) < first_count + 1:
                reader.receive_data(await peer.recv(1 << 20))
                for event in reader.events():
                    assert isinstance(event, BytesMessage) and event.message_finished  # one frame each
                    far.receive_data(bytes(event.data))
                    frame = far.next_event()
                    assert isinstance(frame, PingFrame)
                    requests.append(frame.request)
    assert 88888 not in requests and requests.count(99999) == 1
    assert [r for r in requests if r != 99999] == list(range(1, first_count + 1))
    assert sock.send_broken is None and sock._send_lock._lock is None and ws._send_lock._lock is None
    peer.close()
