"""The node's one port (node/server.py on sonet.transport.serve): a plain HTTP GET gets a 400
whose body says this is a Sonet node's WebSocket endpoint and names its paths; an unknown path
still gets its 404 before any handshake; a device channel refuses a federation frame and a
federation channel a device frame (one frame set per endpoint), the connection then closing
with ``unexpected_frame``."""

from __future__ import annotations

import pytest
import trio

from fuzz.samples import frame_samples
from sonet.core.client_api import ErrorFrame, Ping, Pong, SendBatch
from sonet.core.federation_api import Push
from sonet.federation.link import dial_peer
from tests.federation.net import new_key, pin
from tests.node.conftest import HANG_S, RunningNode
from tests.node.kit import Member, NodeError

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


async def test_a_device_channel_refuses_a_federation_push(running: RunningNode) -> None:
    alice = await running.enroll("alice")
    with trio.fail_after(HANG_S):
        async with running.raw(alice.first) as conn:
            await conn.send_encoded(frame_samples()[Push.TAG])  # a valid Push, as a peer sends it
            await conn.closed.wait()
            assert isinstance(conn.error, NodeError)
            assert (conn.error.code, str(conn.error)) == ("unexpected_frame", "unexpected_frame: Push (frame tag 60) is not a /client frame")
            assert conn.close_reason is not None and (conn.close_reason.code, conn.close_reason.reason) == (1008, "unexpected_frame")
            with pytest.raises(NodeError, match="unexpected_frame"):  # at once: nobody is left to answer
                await conn.request(lambda n: Ping(request=n))
        async with running.raw(alice.first) as conn:  # the node serves on
            assert await conn.request(lambda n: Ping(request=n)) == Pong(request=1)


async def test_a_federation_channel_refuses_a_device_frame(running: RunningNode) -> None:
    key = new_key()
    await pin(running, "beta.example", fingerprint=key.public.fingerprint)
    with trio.fail_after(HANG_S):
        async with dial_peer(running.url, identity=key, fingerprint=running.fingerprint, name="beta.example") as link:
            await link.send_encoded(frame_samples()[SendBatch.TAG])
            answer = await link.receive()
            assert answer == ErrorFrame(request=0, code="unexpected_frame", message="SendBatch (frame tag 15) is not a /federation frame")
