"""The server's connection hygiene (transport/server.py, transport/admission.py): every phase
before authentication has a deadline and ends in a reset that waits for nobody; before
authentication a WebSocket message may be no larger than a handshake message; pending
connections over a cap evict the oldest (silent ones first, into the tarpit), never an
authenticated one; a source address or the node over its cap, with
nothing pending to evict, is refused with a 503 saying so; running out of file descriptors
backs off without a traceback; a peer that stops reading is cut at the send timeout."""

from __future__ import annotations

import errno
import logging
import socket as stdlib_socket
import struct

import pytest
import trio

from sonet.core import limits
from sonet.core.client_api import CLIENT_FRAMES
from sonet.transport import DialError, dial
from sonet.transport.admission import Admission, ConnectionLimits, Refused
from sonet.transport.log_summary import LogSummary
from sonet.transport import server as server_module
from sonet.transport.server import Listening, _GuardedStream, _Server

from .echo import echo_server, new_key

HANG_S = 20  # hang guard, never a performance threshold

UPGRADE = (
    b"GET /client HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def open_from(port: int, source: str = "127.0.0.1") -> trio.SocketStream:
    """A TCP connection to the server from ``source`` (any 127.x.y.z is this host)."""
    sock = trio.socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def upgraded(port: int, source: str = "127.0.0.1") -> trio.SocketStream:
    """A connection that asked for the WebSocket upgrade and read the 101: then says nothing."""
    stream = await open_from(port, source)
    await stream.send_all(UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return stream


async def until_closed(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes or resets the connection; never answers."""
    data = b""
    try:
        while chunk := await stream.receive_some(65536):
            data += chunk
    except trio.BrokenResourceError:  # a reset
        pass
    return data


async def tarpitted(stream: trio.SocketStream) -> bool:
    """The server holds ``stream`` without a word: nothing arrives, neither a close nor a reset."""
    with trio.move_on_after(0.2):
        try:
            await stream.receive_some(1)
        except trio.BrokenResourceError:
            pass
        return False
    return True


def frame_header(length: int) -> bytes:
    """A masked binary WebSocket frame header announcing ``length`` payload bytes (the
    shortest length encoding, as RFC 6455 requires)."""
    if length < 126:
        size = bytes([0x80 | length])
    elif length < 1 << 16:
        size = bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        size = bytes([0x80 | 127]) + struct.pack("!Q", length)
    return b"\x82" + size + b"\x00\x00\x00\x00"


async def wait_for(check, what: str) -> None:  # noqa: ANN001 - a predicate
    while not check():
        await trio.sleep(0.01)


def state(listening: Listening | None) -> Listening:
    assert listening is not None
    return listening


async def test_a_connection_that_sends_no_upgrade_is_reset_at_the_upgrade_deadline() -> None:
    with trio.fail_after(HANG_S):
        async with echo_server(ConnectionLimits(upgrade_timeout_s=0.2, handshake_timeout_s=3600)) as echo:
            server = state(echo.listening)
            stream = await open_from(int(echo.url.rsplit(":", 1)[1]))
            assert await until_closed(stream) == b""
            await wait_for(lambda: server.admission.held == 0, "the connection released")
            assert server.summary.counts == {"upgrade_timeout": 1}


async def test_an_upgrade_then_silence_is_reset_at_the_handshake_deadline_without_awaiting_a_close_reply() -> None:
    # the client never answers the close: the server does not wait for it (it used to, forever)
    with trio.fail_after(HANG_S):
        async with echo_server(ConnectionLimits(handshake_timeout_s=0.3)) as echo:
            server = state(echo.listening)
            stream = await upgraded(int(echo.url.rsplit(":", 1)[1]))
            await until_closed(stream)
            await wait_for(lambda: server.admission.held == 0, "the connection released")
            assert server.summary.counts == {"handshake_timeout": 1}


async def test_a_large_frame_before_authentication_is_cut_at_the_handshake_message_cap() -> None:
    # the deadline is an hour away: the cap cuts it, after at most a handshake message
    with trio.fail_after(HANG_S):
        async with echo_server(ConnectionLimits(handshake_timeout_s=3600)) as echo:
            server = state(echo.listening)
            stream = await upgraded(int(echo.url.rsplit(":", 1)[1]))
            await stream.send_all(frame_header(limits.MAX_RECORD_BYTES))
            sent = 0
            try:
                while sent < 4 * limits.MAX_HANDSHAKE_MESSAGE_BYTES:
                    await stream.send_all(bytes(4096))
                    sent += 4096
            except trio.BrokenResourceError:
                pass  # cut while sending
            answer = await until_closed(stream)
            if answer:  # the close frame: 1009, message too big
                assert answer[0] == 0x88 and struct.unpack("!H", answer[2:4])[0] == 1009, answer[:4]
            await wait_for(lambda: server.admission.held == 0, "the connection released")
            assert server.summary.counts == {"ended_unauthenticated": 1}


async def test_a_full_pending_table_of_one_address_evicts_its_oldest_and_a_newcomer_gets_in() -> None:
    with trio.fail_after(HANG_S):
        async with echo_server(ConnectionLimits(max_pending_per_address=2, handshake_timeout_s=3600)) as echo:
            server = state(echo.listening)
            port = int(echo.url.rsplit(":", 1)[1])
            first = await upgraded(port)
            second = await upgraded(port)
            await wait_for(lambda: server.admission.pending == 2, "two pending")
            third = await upgraded(port)
            assert await tarpitted(first)  # the oldest went, to the tarpit: it hears nothing
            assert server.admission.pending == 2 and len(server.tarpit) == 1
            # another address is not affected by this one's cap
            elsewhere = await upgraded(port, "127.0.0.2")
            await wait_for(lambda: server.admission.pending == 3, "three pending")
            # a legitimate client still gets in: it evicts the oldest and authenticates
            async with dial(echo.url, "/client", identity=new_key(), expected_peer=echo.fingerprint, frames=CLIENT_FRAMES) as sock:
                await sock.ping()
            assert await tarpitted(second)
            assert server.summary.counts == {"evicted_pending_per_address": 2, "tarpitted": 2}
            for stream in (third, elsewhere):
                await stream.aclose()


async def test_silent_connections_are_evicted_before_one_whose_handshake_began() -> None:
    # a flood of upgrade-then-nothing from the legitimate client's own address does not push
    # out a connection that has started its handshake
    with trio.fail_after(HANG_S):
        async with echo_server(ConnectionLimits(max_pending_per_address=2, handshake_timeout_s=3600)) as echo:
            server = state(echo.listening)
            port = int(echo.url.rsplit(":", 1)[1])
            talking = await upgraded(port)
            await talking.send_all(frame_header(100))  # the start of a first message
            await wait_for(lambda: server.admission.pending == 1, "one pending")
            silent = [await upgraded(port) for _ in range(5)]
            await wait_for(lambda: len(server.tarpit) == 4, "four in the tarpit")
            for stream in silent[:-1]:
                assert await tarpitted(stream)
            assert server.admission.pending == 2  # the talking one and the newest silent one
            assert server.summary.counts == {"evicted_pending_per_address": 4, "tarpitted": 4}
            for stream in (talking, silent[-1]):
                await stream.aclose()


async def test_a_tarpitted_connection_is_reset_at_the_end_of_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # held without a word, so its owner does not reconnect at once; but not for ever
    monkeypatch.setattr(server_module, "TARPIT_S", 0.5)
    with trio.fail_after(HANG_S):
        async with echo_server(ConnectionLimits(max_pending_per_address=1, handshake_timeout_s=3600)) as echo:
            server = state(echo.listening)
            port = int(echo.url.rsplit(":", 1)[1])
            first = await upgraded(port)
            second = await upgraded(port)
            assert await tarpitted(first)
            assert await until_closed(first) == b""  # a reset, 0.5 s after its eviction
            await wait_for(lambda: len(server.tarpit) == 0, "the tarpit empty")
            await second.aclose()


async def test_the_tarpit_gives_its_oldest_socket_back_when_a_connection_needs_the_room() -> None:
    # three connections at most: two silent ones in the tarpit and one pending fill them; a new
    # connection resets the oldest in the tarpit rather than being refused
    caps = ConnectionLimits(max_connections=3, max_pending_per_address=1, handshake_timeout_s=3600)
    with trio.fail_after(HANG_S):
        async with echo_server(caps) as echo:
            server = state(echo.listening)
            port = int(echo.url.rsplit(":", 1)[1])
            a = await upgraded(port)
            b = await upgraded(port)
            c = await upgraded(port)
            await wait_for(lambda: len(server.tarpit) == 2, "a and b in the tarpit")
            async with dial(echo.url, "/client", identity=new_key(), expected_peer=echo.fingerprint, frames=CLIENT_FRAMES) as sock:
                await sock.ping()
            assert await until_closed(a) == b""  # the oldest made room
            assert await tarpitted(b)
            assert len(server.tarpit) == 2  # c went there too (the dial evicted it, pending)
            for stream in (b, c):
                await stream.aclose()


def test_admission_evicts_the_longest_answered_silent_then_the_unanswered_then_the_oldest_talking() -> None:
    async def main() -> None:
        table = Admission(ConnectionLimits(max_pending_per_address=4, max_pending=100))
        talking = table.admit("10.0.0.1")
        table.answered(talking)
        table.spoke(talking)
        fresh = table.admit("10.0.0.1")  # not answered yet: the node's own backlog
        late = table.admit("10.0.0.1")
        early = table.admit("10.0.0.1")
        table.answered(early)  # answered first, though accepted last of the three
        table.answered(late)
        order = []
        for _ in range(4):
            newcomer = table.admit("10.0.0.1")
            table.answered(newcomer)
            table.spoke(newcomer)  # each newcomer talks at once, as a device does
            order.append(next(c for c in (talking, fresh, late, early) if c.ended_by and c not in order))
        assert order == [early, late, fresh, talking]
        assert [c.evicted_from for c in order] == ["upgraded", "upgraded", "new", "talking"]
        assert all(c.ended_by == "evicted_pending_per_address" and c.scope.cancel_called for c in order)

    trio.run(main)


def test_admission_never_evicts_an_authenticated_connection() -> None:
    async def main() -> None:
        caps = ConnectionLimits(max_connections=4, max_connections_per_address=3, max_pending_per_address=2, max_pending=3)
        table = Admission(caps)
        devices = [table.admit("10.0.0.1") for _ in range(2)]
        for device in devices:
            table.answered(device)
            table.spoke(device)
            table.authenticated(device)
        # the address's third connection is pending: its fourth evicts that one, never a device
        pending = table.admit("10.0.0.1")
        newest = table.admit("10.0.0.1")
        assert pending.ended_by == "evicted_per_address" and newest.pending
        table.release(pending)
        table.authenticated(newest)
        with pytest.raises(Refused):  # the address holds only authenticated connections
            table.admit("10.0.0.1")
        other = table.admit("10.0.0.2")  # the node's fourth connection
        table.authenticated(other)
        with pytest.raises(Refused):  # the node is full, of authenticated connections only
            table.admit("10.0.0.3")
        assert all(c.ended_by is None and not c.scope.cancel_called for c in [*devices, newest, other])
        assert not table.evict_oldest("fd_limit")  # nothing pending to free either
        assert table.held == 4 and table.pending == 0

    trio.run(main)


async def test_an_address_at_its_cap_with_nothing_pending_is_refused_with_a_503() -> None:
    caps = ConnectionLimits(max_connections_per_address=2)
    with trio.fail_after(HANG_S):
        async with echo_server(caps) as echo:
            server = state(echo.listening)
            port = int(echo.url.rsplit(":", 1)[1])
            key = dict(identity=new_key(), expected_peer=echo.fingerprint, frames=CLIENT_FRAMES)
            async with dial(echo.url, "/client", **key) as a, dial(echo.url, "/client", **key) as b:  # type: ignore[arg-type]
                await a.ping()
                await b.ping()
                refused = await until_closed(await open_from(port))
                head, _, body = refused.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
                assert body == b"too many connections from 127.0.0.1; try again later\n"
                # another address is served
                other = await open_from(port, "127.0.0.2")
                await other.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await until_closed(other)).startswith(b"HTTP/1.1 400 ")
                assert server.summary.counts == {"refused_too_many_connections": 1}


async def test_a_node_at_its_overall_cap_with_nothing_pending_is_refused_with_a_503() -> None:
    with trio.fail_after(HANG_S):
        async with echo_server(ConnectionLimits(max_connections=1)) as echo:
            async with dial(echo.url, "/client", identity=new_key(), expected_peer=echo.fingerprint, frames=CLIENT_FRAMES) as a:
                await a.ping()
                refused = await until_closed(await open_from(int(echo.url.rsplit(":", 1)[1]), "127.0.0.3"))
                assert refused.startswith(b"HTTP/1.1 503 ")
                assert refused.endswith(b"this node holds as many connections as it can; try again later\n")
                # a device dialling it is told so in one line, with the code
                with pytest.raises(DialError) as error:
                    async with dial(echo.url, "/client", identity=new_key(), expected_peer=echo.fingerprint, frames=CLIENT_FRAMES):
                        pass
                assert error.value.code == "too_many_connections"
                assert str(error.value) == (
                    f"the node at {echo.url} refused the connection (503: this node holds as many connections as it can; try again later)"
                )


def test_admission_evicts_the_oldest_pending_at_the_overall_cap_and_refuses_only_when_none_is_pending() -> None:
    async def main() -> None:
        table = Admission(ConnectionLimits(max_connections=2, max_pending=10))
        a = table.admit("10.0.0.1")
        b = table.admit("10.0.0.2")
        c = table.admit("10.0.0.3")  # evicts a, the oldest pending
        assert a.ended_by == "evicted_overall" and a.scope.cancel_called
        table.release(a)
        table.authenticated(b)
        table.authenticated(c)
        with pytest.raises(Refused) as refused:
            table.admit("10.0.0.4")
        assert refused.value.code == "too_many_connections"
        table.release(b)
        assert table.admit("10.0.0.4").pending and table.held == 2

    trio.run(main)


class _OutOfFiles(trio.abc.Listener[trio.SocketStream]):
    """accept() fails with EMFILE ``times`` times, then waits for ever."""

    def __init__(self, times: int) -> None:
        self.left = times

    async def accept(self) -> trio.SocketStream:
        await trio.lowlevel.checkpoint()
        if self.left:
            self.left -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_running_out_of_file_descriptors_evicts_a_pending_connection_then_backs_off_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    admission = Admission(ConnectionLimits())
    summary = LogSummary(logging.getLogger("test.summary"))
    pending = admission.admit("10.0.0.1")
    server = _Server(lambda request, conn: trio.lowlevel.checkpoint(), admission, summary, b"")
    listener = _OutOfFiles(times=5)
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.accept_loop, listener, nursery)
            await wait_for(lambda: listener.left == 0, "five failures")
            nursery.cancel_scope.cancel()
    assert pending.ended_by == "evicted_fd_limit"  # the first failure freed a pending connection
    assert summary.counts == {"accept_failed_EMFILE": 5}
    assert not [r for r in caplog.records if r.exc_info], "no traceback in the log"
    line = summary.flush()
    assert line is not None and "accept_failed_EMFILE 5" in line
    assert summary.flush() is None  # one line per interval, only when something happened


async def test_a_peer_that_stops_reading_is_cut_at_the_send_timeout() -> None:
    ours, theirs = trio.socket.socketpair()
    stream = trio.SocketStream(ours)
    conn = Admission(ConnectionLimits()).admit("10.0.0.1")
    guarded = _GuardedStream(stream, conn, send_timeout_s=0.2)
    with trio.fail_after(HANG_S):
        with pytest.raises(trio.BrokenResourceError, match="read nothing for 0.2 s"):
            await guarded.send_all(bytes(64 * 1024 * 1024))  # far more than the socket buffers
    assert conn.ended_by == "send_timeout"
    assert ours.fileno() == -1  # closed at once, nothing kept for the peer
    theirs.close()


async def test_a_peer_that_reads_slowly_but_steadily_is_not_cut() -> None:
    ours, theirs = trio.socket.socketpair()
    conn = Admission(ConnectionLimits()).admit("10.0.0.1")
    guarded = _GuardedStream(trio.SocketStream(ours), conn, send_timeout_s=5)
    size = 8 * 1024 * 1024
    received = 0

    async def read_in_sips() -> None:
        nonlocal received
        peer = trio.SocketStream(theirs)
        while received < size:
            received += len(await peer.receive_some(256 * 1024))
            await trio.sleep(0.001)

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_in_sips)
            await guarded.send_all(bytes(size))
    assert received == size and conn.ended_by is None


async def test_a_flood_of_events_makes_one_log_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    summary = LogSummary(logging.getLogger("test.lazy"), what="device connections closed", interval_s=0.05)
    for _ in range(1000):
        summary.count("registration_timeout", "10.0.0.1")
    summary.count("too_many_connections", "10.0.0.2")
    await trio.sleep(0.06)
    summary.count("registration_timeout", "10.0.0.1")  # the first event after the interval writes the line
    lines = [r.getMessage() for r in caplog.records if r.name == "test.lazy"]
    assert lines == [
        "device connections closed in the last 0.05 s: registration_timeout 1001, too_many_connections 1 (most from 10.0.0.1: 1001)"
    ]
    assert summary.totals == {"registration_timeout": 1001, "too_many_connections": 1}
