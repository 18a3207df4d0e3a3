"""sonet.transport.serve: a plain HTTP request (no WebSocket upgrade) gets a 400 with a short
text saying what listens there, and an upgrade is still served after its head was read."""

from __future__ import annotations

import trio

from sonet.core.client_api import CLIENT_FRAMES
from sonet.transport import dial
from sonet.transport.server import MAX_REQUEST_HEAD

from .echo import PLAIN, echo_server, new_key

HANG_S = 20  # hang guard, never a performance threshold


async def http(port: int, request: bytes) -> bytes:
    """Send ``request`` over a fresh TCP connection; everything the server answers until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        answer = b""
        while chunk := await stream.receive_some(65536):
            answer += chunk
    return answer


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_a_plain_get_gets_a_400_that_says_what_this_is() -> None:
    with trio.fail_after(HANG_S):
        async with echo_server() as echo:
            answer = await http(port_of(echo.url), b"GET /client HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 ")
            assert b"content-type: text/plain; charset=utf-8" in head.lower()
            assert f"content-length: {len(body)}".encode() in head.lower()
            assert body.decode() == PLAIN
            # the server goes on serving WebSocket connections
            async with dial(echo.url, "/client", identity=new_key(), expected_peer=echo.fingerprint, frames=CLIENT_FRAMES) as sock:
                await sock.ping()


async def test_a_request_that_never_ends_its_head_is_closed_without_an_answer() -> None:
    with trio.fail_after(HANG_S):
        async with echo_server() as echo:
            request = b"GET / HTTP/1.1\r\nX-Pad: "
            assert await http(port_of(echo.url), request + b"a" * (MAX_REQUEST_HEAD - len(request))) == b""


async def test_an_oversized_message_while_the_server_closes_ends_only_that_connection() -> None:
    """The server refused a bad handshake message and sent its close; before answering the
    close the client sends a message over the pre-authentication cap. trio-websocket then tries
    to send a 1009 close in the closing state and raises: that must end this connection only,
    never the server (it once took a whole node down)."""
    import wsproto
    from wsproto.events import BytesMessage, CloseConnection, Request

    with trio.fail_after(HANG_S):
        async with echo_server() as echo:
            stream = await trio.open_tcp_stream("127.0.0.1", port_of(echo.url))
            client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            await stream.send_all(client.send(Request(host="localhost", target="/client")))
            closed = False
            while not closed:
                client.receive_data(await stream.receive_some(65536))
                for event in client.events():
                    if isinstance(event, wsproto.events.AcceptConnection):
                        await stream.send_all(client.send(BytesMessage(data=b"not a handshake message")))
                    if isinstance(event, CloseConnection):
                        closed = True  # the server is closing; the close is left unanswered
            # wsproto will not send in the closing state: the frame is built by hand (masked, a
            # 64-bit length) — the peer this test plays does not care about states
            payload = b"x" * (2 * 65536)
            mask = b"\x01\x02\x03\x04"
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            big = b"\x82\xff" + len(payload).to_bytes(8, "big") + mask + masked
            try:
                await stream.send_all(big)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server cut the connection first: fine too
            await stream.aclose()
            # the server goes on serving
            async with dial(echo.url, "/client", identity=new_key(), expected_peer=echo.fingerprint, frames=CLIENT_FRAMES) as sock:
                await sock.ping()
