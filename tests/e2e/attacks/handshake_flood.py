"""The attacker of tests/e2e/attacks/test_handshake_flood.py, run as its own process so that its
CPU is not the node's nor the test's:

    python -m tests.e2e.attacks.handshake_flood URL HELLO1_HEX MODE WORKERS SECONDS MAX_ATTEMPTS

``MODE`` is ``replay`` (send the recorded Hello1 as it is, over and over) or ``fresh`` (the same
Hello1 with a new random nonce each time: a new first message for the price of 32 random bytes).
Each worker opens a WebSocket to ``URL/client``, sends the message, reads the one answer and
closes, until SECONDS passed or MAX_ATTEMPTS were made by all workers together. Prints one JSON
object: attempts, seconds, the attacker's own CPU time in ms, and the answers by kind
(``Hello2``, ``Cookie``, ``HandshakeError:<code>``, ``closed:<reason>``, ``error:<exception>``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections import Counter

import trio
from trio_websocket import ConnectionClosed, HandshakeError as WsHandshakeError, open_websocket_url

from sonet.core.errors import ProtocolError
from sonet.core.handshake import HandshakeError, Hello1
from sonet.core.wire import decode_frame, encode_frame

#: hang guard for one attempt (never a performance threshold)
ATTEMPT_GUARD_S = 10.0


async def flood(url: str, hello: bytes, mode: str, workers: int, seconds: float, max_attempts: int) -> dict[str, object]:
    original = decode_frame(hello)
    assert isinstance(original, Hello1)
    answers: Counter[str] = Counter()
    attempts = 0
    cpu = time.process_time()
    start = trio.current_time()
    end = start + seconds

    def message() -> bytes:
        return hello if mode == "replay" else encode_frame(dataclasses.replace(original, nonce=os.urandom(32)))

    async def worker() -> None:
        nonlocal attempts
        while trio.current_time() < end and attempts < max_attempts:
            attempts += 1
            with trio.move_on_after(ATTEMPT_GUARD_S):
                try:
                    async with open_websocket_url(url + "/client", disconnect_timeout=1) as ws:
                        await ws.send_message(message())
                        answer = decode_frame(await ws.get_message())
                        kind = type(answer).__name__
                        answers[f"{kind}:{answer.code}" if isinstance(answer, HandshakeError) else kind] += 1
                except ConnectionClosed as exc:
                    answers[f"closed:{exc.reason.reason if exc.reason else ''}"] += 1
                except (OSError, WsHandshakeError, ProtocolError) as exc:
                    answers[f"error:{type(exc).__name__}"] += 1
                    await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    return {
        "attempts": attempts,
        "seconds": round(trio.current_time() - start, 2),
        "cpu_ms": round((time.process_time() - cpu) * 1000),
        "answers": dict(answers),
    }


def main(argv: list[str]) -> None:
    url, hello_hex, mode, workers, seconds, max_attempts = argv
    assert mode in ("replay", "fresh"), mode
    result = trio.run(flood, url, bytes.fromhex(hello_hex), mode, int(workers), float(seconds), int(max_attempts))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
