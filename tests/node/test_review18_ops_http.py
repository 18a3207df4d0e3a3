"""Review of the operations listener's HTTP server (node/ops/http.py): one client holding
connections open (a slowloris) takes at most its own address's share, so a scraper on another
address is still answered; a refused client still reads its 503."""

from __future__ import annotations

import trio

from sonet.node.ops.http import Response, serve_http

from .ops.http_kit import get


async def _answer(path: str) -> Response:
    if path == "/slow":
        await trio.sleep_forever()
    return Response(200, b"ok\n")


async def test_one_address_cannot_take_every_connection(nursery: trio.Nursery) -> None:
    port = await nursery.start(serve_http(_answer, "127.0.0.1", 0, max_connections=4, max_per_address=2, deadline_s=3600))
    held = []
    for _ in range(3):  # the attacker, from 127.0.0.2: two served, the third refused
        stream = await trio.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.2")
        await stream.send_all(b"GET /slow HTTP/1.1\r\n\r\n")
        held.append(stream)
    try:
        data = b""
        while chunk := await held[2].receive_some(1000):
            data += chunk
        assert data.startswith(b"HTTP/1.1 503 ")
        assert await get(port, "/metrics") == (200, "ok\n")  # the scraper, from 127.0.0.1
    finally:
        for stream in held:
            await stream.aclose()


async def test_a_503_reaches_a_client_whose_request_was_never_read(nursery: trio.Nursery) -> None:
    # over the cap the answer goes before the request is read; the server then reads the request
    # before closing (a lingering close, RFC 9112 9.6: closing on unread bytes resets the
    # connection, and on a real network the reset can overtake the answer; loopback rarely shows it)
    port = await nursery.start(serve_http(_answer, "127.0.0.1", 0, max_connections=1, deadline_s=3600))
    busy = await trio.open_tcp_stream("127.0.0.1", port)
    await busy.send_all(b"GET /slow HTTP/1.1\r\n\r\n")
    try:
        while (await get(port, "/metrics"))[0] == 200:  # until the busy one is being served
            await trio.sleep(0.01)
        for _ in range(20):
            assert await get(port, "/metrics") == (503, "too many connections\n")
    finally:
        await busy.aclose()
