"""The node's one port (node/server.py on sonet.transport.serve): a plain HTTP GET gets a 400
whose body says this is a Sonet node's WebSocket endpoint and names its paths; an unknown path
still gets its 404 before any handshake; devices and peers are served as before."""

from __future__ import annotations

import trio

from sonet.core.client_api import Ping, Pong
from tests.node.conftest import HANG_S, RunningNode
from tests.node.kit import Member

from .test_server import http, port_of


async def test_a_plain_http_get_is_told_what_the_port_is(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        for path in (b"/", b"/client", b"/federation"):
            answer = await http(port_of(running.url), b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert b"content-type: text/plain; charset=utf-8" in head.lower()
            text = body.decode()
            assert text.startswith("This is a Sonet node.") and "WebSocket" in text
            assert "/client" in text and "/federation" in text
        # and the node serves on
        async with running.raw(Member.new("alice@" + running.config.name)) as conn:
            assert await conn.request(lambda n: Ping(request=n)) == Pong(request=1)


async def test_an_upgrade_to_an_unknown_path_still_gets_a_404(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        upgrade = (
            b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = await http(port_of(running.url), upgrade)
        assert answer.startswith(b"HTTP/1.1 404 ")
        assert answer.endswith(b"unknown endpoint; devices use /client, nodes /federation\n")
