"""Attack round 9 on the operations listener (node/ops/http.py): its sockets are the node's
file descriptors too. A flood of connections to it drove a real node (``ulimit -n`` 1024) to
EMFILE: devices were refused on the node's port, audit entries could not be written, and
trio.serve_listeners logged a traceback every 0.1 s. It now holds at most twice
``max_connections`` sockets and resets the rest at once; an accept failing for want of
descriptors is counted in one summary line, never a traceback."""

from __future__ import annotations

import errno
import logging

import pytest
import trio

from sonet.node.ops import http
from sonet.node.ops.http import Response, serve_http

from .ops.http_kit import get


async def _answer(path: str) -> Response:
    return Response(200, b"ok\n")


async def _connect(port: int) -> trio.SocketStream | None:
    """A connection, or None when the server reset it before the connect returned."""
    try:
        return await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return None


async def _outcome(stream: trio.SocketStream | None) -> str:
    """'503' once its answer is read, 'reset' if the server dropped it unanswered."""
    if stream is None:
        return "reset"
    data = b""
    try:
        while chunk := await stream.receive_some(1000):
            data += chunk
            if b"\r\n\r\n" in data:
                break
    except trio.BrokenResourceError:
        pass
    return "503" if data.startswith(b"HTTP/1.1 503 ") else "reset"


async def test_a_flood_of_connections_holds_at_most_twice_the_cap(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    # a 503 lingers while its client keeps the connection open (no clock in the count)
    monkeypatch.setattr(http, "LINGER_S", 3600.0)
    port = await nursery.start(serve_http(_answer, "127.0.0.1", 0, max_connections=2, max_per_address=100, deadline_s=3600))
    held = []
    try:
        for _ in range(2):  # served: they never send a request
            held.append(await trio.open_tcp_stream("127.0.0.1", port))
        while True:  # wait until both are being served (a GET is answered 503 from then on)
            if (await get(port, "/metrics"))[0] == 503:
                break
            await trio.sleep(0.01)
        flood = [await _connect(port) for _ in range(20)]
        held += [stream for stream in flood if stream is not None]
        outcomes = [await _outcome(stream) for stream in flood]
        assert outcomes.count("503") == 2, outcomes  # the refusals lingering: max_connections
        assert outcomes.count("reset") == 18, outcomes
    finally:
        for stream in held:
            await stream.aclose()
    assert await get(port, "/health") == (200, "ok\n")  # room again once they are gone


class _Failing:
    """A listener whose first ``failures`` accepts fail with EMFILE."""

    def __init__(self, listener: trio.SocketListener, failures: int) -> None:
        self._listener = listener
        self.socket = listener.socket
        self.failures = failures

    async def accept(self) -> trio.SocketStream:
        if self.failures:
            self.failures -= 1
            await trio.sleep(0)
            raise OSError(errno.EMFILE, "Too many open files")
        return await self._listener.accept()

    async def aclose(self) -> None:
        await self._listener.aclose()

    async def __aenter__(self) -> "_Failing":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def test_out_of_descriptors_is_counted_not_a_traceback(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = trio.open_tcp_listeners
    failing: list[_Failing] = []

    async def open_failing(port: int, *, host: str) -> list[_Failing]:
        failing.extend(_Failing(listener, 5) for listener in await real(port, host=host))
        return failing

    monkeypatch.setattr(http.trio, "open_tcp_listeners", open_failing)
    caplog.set_level(logging.DEBUG)
    port = await nursery.start(serve_http(_answer, "127.0.0.1", 0))
    monkeypatch.undo()
    assert await get(port, "/health") == (200, "ok\n")  # it accepts again once it can
    assert all(f.failures == 0 for f in failing)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert len([r for r in caplog.records if "EMFILE" in r.getMessage()]) <= 1
