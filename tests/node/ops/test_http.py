"""The operations listener's HTTP server (node/ops/http.py): GET only, caps on the request
head, no bodies, a deadline per connection, a cap on connections; one answer per connection."""

from __future__ import annotations

import pytest
import trio

from sonet.node.ops.http import MAX_HEAD_BYTES, MAX_HEADERS, MAX_REQUEST_LINE, Response, serve_http

from .http_kit import exchange, get


async def _echo(path: str) -> Response:
    if path == "/boom":
        raise RuntimeError("a bug in a handler")
    if path == "/slow":
        await trio.sleep_forever()
    return Response(200, f"path {path}\n".encode())


@pytest.fixture
async def port(nursery: trio.Nursery) -> int:
    return await nursery.start(serve_http(_echo, "127.0.0.1", 0, max_connections=2, deadline_s=1.0))


async def test_a_get_is_answered_and_the_connection_closed(port: int) -> None:
    status, headers, body = await exchange(port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n")
    assert (status, body) == (200, b"path /metrics\n")
    assert headers["connection"] == "close" and headers["content-length"] == str(len(body))
    assert headers["cache-control"] == "no-store"
    assert (await get(port, "/health"))[0] == 200  # HTTP/1.0 too
    assert (await exchange(port, b"GET / HTTP/1.0\r\n\r\n"))[0] == 200


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS"])
async def test_other_methods_are_405(port: int, method: bytes) -> None:
    status, headers, _ = await exchange(port, method + b" /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert status == 405 and headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 413),
        (b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413),
        (b"GET /x HTTP/2.0\r\n\r\n", 505),
        (b"GET /x FTP/1.0\r\n\r\n", 400),
        (b"GET  /x HTTP/1.1\r\n\r\n", 400),
        (b"get /x HTTP/1.1\r\n\r\n", 400),
        (b"GET http://evil/x HTTP/1.1\r\n\r\n", 400),
        (b"GET /x\x00y HTTP/1.1\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\n folded: value\r\n\r\n", 400),
        (b"\xff\xfe\r\n\r\n", 400),
        (b"GET /" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /x HTTP/1.1\r\n" + b"X-A: b\r\n" * (MAX_HEADERS + 1) + b"\r\n", 431),
        (b"GET /x HTTP/1.1\r\nX-A: " + b"b" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
    ],
)
async def test_malformed_and_oversized_requests_are_refused(port: int, request_bytes: bytes, status: int) -> None:
    assert (await exchange(port, request_bytes))[0] == status
    assert (await get(port, "/after"))[0] == 200  # the listener goes on


async def test_a_handler_bug_is_a_500_and_the_listener_goes_on(port: int, caplog: pytest.LogCaptureFixture) -> None:
    assert (await get(port, "/boom"))[0] == 500
    assert "operations request failed" in caplog.text
    assert (await get(port, "/after"))[0] == 200


async def test_a_silent_or_slow_client_is_cut_at_the_deadline(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /x HTTP/1.1\r\n")  # never finishes its head
        assert await stream.receive_some(100) == b""  # closed by the server after 1 s
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /slow HTTP/1.1\r\n\r\n")
        assert await stream.receive_some(100) == b""


async def test_connections_over_the_cap_get_503(port: int) -> None:
    held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    try:
        for stream in held:
            await stream.send_all(b"GET /slow HTTP/1.1\r\n\r\n")
        await trio.sleep(0.2)  # both are being served
        status, _ = await get(port, "/x")
        assert status == 503
    finally:
        for stream in held:
            await stream.aclose()
    # the slow handlers are cut at their deadline (1 s), which frees their places
    while (await get(port, "/x"))[0] == 503:
        await trio.sleep(0.05)


async def test_a_rated_path_is_429_per_address_past_its_rate(nursery: trio.Nursery) -> None:
    from sonet.core.ratelimit import Rate

    # no refill within the test: the burst is all there is
    port = await nursery.start(serve_http(_echo, "127.0.0.1", 0, rates={"/metrics": Rate(per_second=0.001, burst=2)}))
    for _ in range(2):
        assert await get(port, "/metrics") == (200, "path /metrics\n")
    status, headers, body = await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert (status, headers["retry-after"], headers["connection"]) == (429, "1", "close")
    assert body == b"too many requests for /metrics from this address: at most 0.001 a second (2 at once); try again in a second\n"
    assert await get(port, "/health") == (200, "path /health\n")  # other paths are not rated
    assert (await get(port, "/metrics?again"))[0] == 429  # the query is not another path
