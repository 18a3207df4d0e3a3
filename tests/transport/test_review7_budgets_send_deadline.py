"""Review of the send deadline (round 7, transport/send_deadline.py, on every connection the node
dials and under every one it accepts): progress resets it - a peer that takes each piece
(SEND_PIECE) within the deadline is never cut, however long a whole send takes (a 4 MiB record
over a slow link); one that takes less than a piece per deadline is cut, saying so. The
default is far looser than what the node itself asks of a sender (a record within its message
deadline), so a device's sends (attachments in 1 MiB chunks) never meet it on a link the node
would take them over."""

from __future__ import annotations

import socket as stdlib_socket

import pytest
import trio
import trio.testing

from sonet.core import limits
from sonet.core.blob_api import BLOB_CHUNK_BYTES
from sonet.transport import send_deadline
from sonet.transport.send_deadline import SEND_PIECE, SEND_TIMEOUT_S, SendDeadlineStream, SendStalled

RECORD = limits.MAX_RECORD_BYTES


async def read_slowly(stream: trio.abc.ReceiveStream, nbytes: int, *, chunk: int, pause_s: float) -> bytes:
    """Read ``nbytes``, ``chunk`` at a time with ``pause_s`` between reads (a slow reader)."""
    data = bytearray()
    while len(data) < nbytes:
        got = await stream.receive_some(min(chunk, nbytes - len(data)))
        assert got, "ended early"
        data += got
        await trio.sleep(pause_s)
    return bytes(data)


async def test_a_reader_that_takes_a_piece_within_each_deadline_is_never_cut(autojump_clock: trio.testing.MockClock) -> None:
    # lockstep: a send returns only once the reader took all of it (no buffer to hide in);
    # 4 KiB every 50 ms is a piece in 0.8 s, within the 1 s deadline; the record takes ~51 s
    sender, receiver = trio.testing.lockstep_stream_pair()
    stream = SendDeadlineStream(sender, 1.0)
    record = bytes(range(256)) * (RECORD // 256) + b"tail"
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        got: list[bytes] = []

        async def read() -> None:
            got.append(await read_slowly(receiver, len(record), chunk=4096, pause_s=0.05))

        nursery.start_soon(read)
        await stream.send_all(record)
    assert got == [record]
    assert trio.current_time() - start > 40  # many deadlines long: progress reset it


async def test_a_reader_slower_than_a_piece_per_deadline_is_cut_saying_so(autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # the same reader against a 0.5 s deadline: it reads, but less than a piece per deadline
    aborted: list[object] = []
    monkeypatch.setattr(send_deadline, "abort", aborted.append)  # (a memory stream has no socket to reset)
    sender, receiver = trio.testing.lockstep_stream_pair()
    stream = SendDeadlineStream(sender, 0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: read_slowly(receiver, RECORD, chunk=4096, pause_s=0.05))
        with pytest.raises(SendStalled, match=r"^send timeout: the other side read nothing for 0.5 s$"):
            await stream.send_all(bytes(RECORD))
        nursery.cancel_scope.cancel()
    assert aborted == [sender]


async def test_a_record_over_a_slow_real_socket_goes_whole() -> None:
    # real sockets with small buffers: the reader must take the bytes for the send to go on;
    # 64 KiB every 20 ms is far within the 2 s deadline, the whole record takes ~1.3 s
    a, b = trio.socket.socketpair()
    for sock in (a, b):
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 16 * 1024)
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 16 * 1024)
    sender, receiver = trio.SocketStream(a), trio.SocketStream(b)
    stream = SendDeadlineStream(sender, 2.0)
    record = bytes(range(256)) * (RECORD // 256) + b"tail"
    with trio.fail_after(60):  # hang guard, never a performance threshold
        async with trio.open_nursery() as nursery:
            got: list[bytes] = []

            async def read() -> None:
                got.append(await read_slowly(receiver, len(record), chunk=SEND_PIECE, pause_s=0.02))

            nursery.start_soon(read)
            await stream.send_all(record)
    assert got == [record]
    await stream.aclose()
    await receiver.aclose()


def test_a_link_fast_enough_for_the_nodes_message_deadline_never_meets_the_send_deadline() -> None:
    # the slowest link on which the node takes a record within its message deadline, and the
    # slowest on which the send deadline lets a sender go on (a piece per deadline): the
    # first is the binding one by far, for records and for attachments' 1 MiB chunks
    slowest_the_node_takes = RECORD / limits.MESSAGE_DEADLINE_S  # ~35 KB/s
    slowest_the_deadline_lets_go_on = SEND_PIECE / SEND_TIMEOUT_S  # ~2.2 KB/s
    assert slowest_the_node_takes > 10 * slowest_the_deadline_lets_go_on
    assert BLOB_CHUNK_BYTES / limits.MESSAGE_DEADLINE_S > 3 * slowest_the_deadline_lets_go_on  # an attachment's chunk
