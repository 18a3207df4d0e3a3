"""The attacker of test_connections.py, as its own process (its own file limit, its own CPU):
``STALLED`` sockets that send a WebSocket upgrade request and then nothing, and ``PARTIAL``
unauthenticated connections that each send most of one large WebSocket frame and stop, all
from ``SOURCE``, for ``SECONDS``. A slot whose socket the node closes opens a new one at once,
so the pressure stays on throughout (bounded: at most ``MAX_CONNECTIONS`` in all). Prints one
JSON object with what it saw.

    python -m tests.e2e.attacks.connection_flood URL STALLED PARTIAL SECONDS [SOURCE]
"""

from __future__ import annotations

import json
import math
import resource
import socket as stdlib_socket
import struct
import sys
import time
from collections import Counter

import trio

UPGRADE = (
    b"GET /client HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
#: the frame a partial connection announces (the largest record), and how much of it it sends
FRAME_BYTES = 4 * 1024 * 1024
PARTIAL_BYTES = FRAME_BYTES - 64 * 1024
MAX_CONNECTIONS = 40_000
CHUNK = 64 * 1024


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Flood:
    def __init__(self, host: str, port: int, source: str, deadline: float, *, answer_patience_s: float = math.inf) -> None:
        self.host, self.port, self.source, self.deadline = host, port, source, deadline
        #: how long a partial-frame connection waits for the answer to its upgrade before it
        #: starts again (the node holds silent sockets it evicts without a word)
        self.answer_patience_s = answer_patience_s
        self.seen: Counter[str] = Counter()
        self.open_now = 0
        self.most_open = 0
        self.bytes_sent = 0
        self.connections = 0

    def more(self) -> bool:
        return trio.current_time() < self.deadline and self.connections < MAX_CONNECTIONS

    async def connect(self) -> trio.SocketStream | None:
        self.connections += 1
        sock = trio.socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
        try:
            await sock.bind((self.source, 0))
            await sock.connect((self.host, self.port))
        except OSError as exc:
            sock.close()
            self.seen[f"connect_failed_{exc.errno}"] += 1
            await trio.sleep(0.05)
            return None
        except BaseException:  # cancelled while connecting (a caller's patience): no fd left behind
            sock.close()
            raise
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        return trio.SocketStream(sock)

    async def ended(self, stream: trio.SocketStream) -> None:
        """Wait (reading, never answering) until the node closes ``stream``; record how."""
        answer = b""
        try:
            while chunk := await stream.receive_some(65536):
                answer += chunk[:200] if len(answer) < 200 else b""
            how = "closed"
        except trio.BrokenResourceError:
            how = "reset"
        if b" 503 " in answer[:20]:
            how = "refused_503"
        self.seen[how] += 1

    async def stalled(self) -> None:
        while self.more():
            stream = await self.connect()
            if stream is None:
                continue
            try:
                with trio.move_on_at(self.deadline):
                    await stream.send_all(UPGRADE)
                    self.bytes_sent += len(UPGRADE)
                    await self.ended(stream)
            except trio.BrokenResourceError:
                self.seen["reset"] += 1
            finally:
                self.open_now -= 1
                await stream.aclose()

    async def partial(self) -> None:
        header = b"\x82" + bytes([0x80 | 127]) + struct.pack("!Q", FRAME_BYTES) + b"\x00\x00\x00\x00"
        while self.more():
            stream = await self.connect()
            if stream is None:
                continue
            try:
                with trio.move_on_at(self.deadline):
                    await stream.send_all(UPGRADE)
                    head = b""
                    with trio.move_on_after(self.answer_patience_s) as patience:
                        while b"\r\n\r\n" not in head:
                            chunk = await stream.receive_some(4096)
                            if not chunk:
                                raise trio.BrokenResourceError
                            head += chunk
                    if patience.cancelled_caught:
                        self.seen["partial_gave_up_waiting"] += 1
                        continue
                    await stream.send_all(header)
                    self.seen["partial_frame_started"] += 1
                    sent = 0
                    while sent < PARTIAL_BYTES:
                        await stream.send_all(bytes(min(CHUNK, PARTIAL_BYTES - sent)))
                        sent += CHUNK
                        self.bytes_sent += CHUNK
                    self.seen["partial_frame_sent"] += 1
                    await self.ended(stream)
            except trio.BrokenResourceError:
                self.seen["reset"] += 1
            finally:
                self.open_now -= 1
                await stream.aclose()


async def main(url: str, stalled: int, partial: int, seconds: float, source: str) -> dict:
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    flood = Flood(host, int(port), source, trio.current_time() + seconds)
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for _ in range(stalled):
            nursery.start_soon(flood.stalled)
        for _ in range(partial):
            nursery.start_soon(flood.partial)
        await trio.sleep(1.0)
        opened_in_first_second = flood.connections
    return {
        "seconds": round(time.monotonic() - started, 1),
        "connections": flood.connections,
        "opened_in_first_second": opened_in_first_second,
        "most_open_at_once": flood.most_open,
        "bytes_sent": flood.bytes_sent,
        "ends": dict(flood.seen),
    }


if __name__ == "__main__":
    url, stalled, partial, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    source = sys.argv[5] if len(sys.argv) > 5 else "127.0.0.1"
    limit = raise_fd_limit()
    assert limit > stalled + partial + 64, f"the open-file limit ({limit}) is too low for {stalled + partial} sockets"
    print(json.dumps(trio.run(main, url, stalled, partial, seconds, source)))
