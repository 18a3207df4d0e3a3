"""The attacker of test_combined.py, as ONE process (one core at most, its own file limit): all
of issue 13's connection-level attacks at once, from ``SOURCE``, for ``SECONDS``:

- ``STALLED`` sockets that send a WebSocket upgrade request and then nothing, and ``PARTIAL``
  unauthenticated connections that each send most of a 4 MiB frame and stop (connection_flood.py's
  ``Flood``: a slot the node closes opens a new socket at once; a partial one not answered
  within ANSWER_PATIENCE_S starts again too);
- ``WORKERS`` workers replaying one recorded first handshake message (``HELLO1_HEX``): each opens
  a WebSocket to ``/client``, sends it, reads the one answer and closes, over and over (an
  upgrade not answered within ANSWER_PATIENCE_S is given up, counted ``upgrade_unanswered``;
  so are a TCP connect and a Hello1, counted ``connect_unanswered`` and ``hello_unanswered``).

Every socket is bound to ``SOURCE`` (127.0.0.2 is this host too, as another address). The
attack ends after ``SECONDS`` or, sooner, at a SIGTERM (the test says when it has seen enough).
Prints one JSON object: what the flood saw (as connection_flood.py), the replay answers by kind,
the most sockets open at once, and the process's own CPU time.

    python -m tests.e2e.attacks.combined_flood URL HELLO1_HEX STALLED PARTIAL WORKERS SECONDS SOURCE
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter

import trio
from trio_websocket import ConnectionClosed, HandshakeError as WsHandshakeError, wrap_client_stream

from sonet.core.errors import ProtocolError
from sonet.core.handshake import HandshakeError
from sonet.core.wire import decode_frame

from .connection_flood import Flood, raise_fd_limit

#: hang guard for one replay attempt (never a performance threshold)
ATTEMPT_GUARD_S = 10.0
#: bound on the replay attempts of all workers together
MAX_REPLAYS = 200_000
#: a partial-frame connection whose upgrade is not answered within this long starts again (the
#: node holds silent sockets it evicts without a word: a persistent attacker gives up on them)
ANSWER_PATIENCE_S = 2.0


class Replays:
    """The replay workers; they count their sockets in ``flood`` (open now, most at once)."""

    def __init__(self, flood: Flood, hello: bytes) -> None:
        self.flood = flood
        self.hello = hello
        self.answers: Counter[str] = Counter()
        self.attempts = 0

    async def worker(self) -> None:
        flood = self.flood
        while trio.current_time() < flood.deadline and self.attempts < MAX_REPLAYS:
            self.attempts += 1
            # A connect whose SYN met a full accept queue (the flood's first wave on a busy node)
            # waits out the kernel's backoff (1, 2, 4, 8 s...): given up on and tried afresh,
            # as the upgrades are, else one worker could wait out the whole attack unanswered
            with trio.move_on_after(ANSWER_PATIENCE_S) as connecting:
                stream = await flood.connect()
            if connecting.cancelled_caught:
                self.answers["connect_unanswered"] += 1
                continue
            if stream is None:
                continue
            try:
                with trio.move_on_after(ATTEMPT_GUARD_S), trio.move_on_at(flood.deadline):
                    await self.attempt(stream)
            finally:
                flood.open_now -= 1
                await stream.aclose()

    async def attempt(self, stream: trio.SocketStream) -> None:
        """Send the recorded Hello1 over a new WebSocket, record the answer, leave (no close
        handshake: the node resets or closes on its side)."""
        ws = None
        answer = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    # The node evicts silent sockets of a crowded address without a word (the
                    # flood's own stalled ones crowd it): given up on, as the partial frames do,
                    # and tried again; else one unanswered upgrade held a worker all attack long
                    with trio.move_on_after(ANSWER_PATIENCE_S):
                        ws = await wrap_client_stream(nursery, stream, self.flood.host, "/client")
                    if ws is None:
                        self.answers["upgrade_unanswered"] += 1
                        return
                    # an upgraded socket can still be evicted to the node's tarpit (held without
                    # a word) while its Hello1 waits: given up on and tried afresh, likewise
                    with trio.move_on_after(ANSWER_PATIENCE_S):
                        await ws.send_message(self.hello)
                        answer = decode_frame(await ws.get_message())
                    if answer is None:
                        self.answers["hello_unanswered"] += 1
                        return
                    kind = type(answer).__name__
                    self.answers[f"{kind}:{answer.code}" if isinstance(answer, HandshakeError) else kind] += 1
                finally:
                    nursery.cancel_scope.cancel()
        except* ConnectionClosed as group:
            closed = group.exceptions[0]
            assert isinstance(closed, ConnectionClosed)
            self.answers[f"closed:{closed.reason.reason if closed.reason else ''}"] += 1
        except* (OSError, WsHandshakeError, ProtocolError, trio.BrokenResourceError) as group:
            self.answers[f"error:{type(group.exceptions[0]).__name__}"] += 1
            await trio.sleep(0.01)


async def _until_told(flood: Flood, attack: trio.CancelScope) -> None:
    """End the attack at the first SIGTERM (its figures are printed all the same)."""
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            break
    flood.deadline = trio.current_time()
    attack.cancel()


async def main(url: str, hello: bytes, stalled: int, partial: int, workers: int, seconds: float, source: str) -> dict:
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    flood = Flood(host, int(port), source, trio.current_time() + seconds, answer_patience_s=ANSWER_PATIENCE_S)
    replays = Replays(flood, hello)
    started, cpu = time.monotonic(), time.process_time()
    opened_in_first_second = 0
    async with trio.open_nursery() as watching:
        async with trio.open_nursery() as attack:
            for _ in range(stalled):
                attack.start_soon(flood.stalled)
            for _ in range(partial):
                attack.start_soon(flood.partial)
            for _ in range(workers):
                attack.start_soon(replays.worker)
            watching.start_soon(_until_told, flood, attack.cancel_scope)
            await trio.sleep(1.0)
            opened_in_first_second = flood.connections
        watching.cancel_scope.cancel()  # the attack ended by itself: stop listening
    return {
        "seconds": round(time.monotonic() - started, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "connections": flood.connections,
        "opened_in_first_second": opened_in_first_second,
        "most_open_at_once": flood.most_open,
        "bytes_sent": flood.bytes_sent,
        "ends": dict(flood.seen),
        "replays": replays.attempts,
        "replay_answers": dict(replays.answers),
    }


if __name__ == "__main__":
    url, hello_hex = sys.argv[1], sys.argv[2]
    stalled, partial, workers, seconds = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    source = sys.argv[7]
    limit = raise_fd_limit()
    assert limit > stalled + partial + workers + 64, f"the open-file limit ({limit}) is too low"
    print(json.dumps(trio.run(main, url, bytes.fromhex(hello_hex), stalled, partial, workers, seconds, source)))
