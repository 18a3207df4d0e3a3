"""sonet.transport.dial against a responder on the transport: a pinned key is checked, every
failure before the connection is up is one DialError line (with the refusal code when the
other side refused), and an established connection carries frames both ways."""

from __future__ import annotations

import functools

import pytest
import trio

from sonet.core.client_api import CLIENT_FRAMES, Ping, Pong
from sonet.transport import DialError, dial

from .echo import echo_server, new_key

HANG_S = 20  # hang guard, never a performance threshold


async def test_a_dial_pins_the_key_and_carries_frames() -> None:
    with trio.fail_after(HANG_S):
        async with echo_server() as echo:
            async with dial(echo.url, "/client", identity=new_key(), expected_peer=echo.fingerprint, frames=CLIENT_FRAMES) as sock:
                assert sock.peer_key.fingerprint == echo.fingerprint
                await sock.ping()
                await sock.send(Ping(request=40))
                assert await sock.receive() == Pong(request=40)


async def test_a_dial_to_another_key_than_the_pin_fails_with_wrong_identity() -> None:
    with trio.fail_after(HANG_S):
        async with echo_server() as echo:
            with pytest.raises(DialError) as info:
                async with dial(echo.url, "/client", identity=new_key(), expected_peer=new_key().public.fingerprint, frames=CLIENT_FRAMES):
                    pytest.fail("connected to a responder with another key")
    assert info.value.code == "wrong_identity"
    assert str(info.value).startswith(f"secure channel with {echo.url} failed: ")


async def test_a_refused_initiator_learns_the_code() -> None:
    me = new_key()
    with trio.fail_after(HANG_S):
        async with echo_server() as echo:
            echo.deny.add(me.public.fingerprint)
            with pytest.raises(DialError) as info:
                async with dial(echo.url, "/client", identity=me, expected_peer=echo.fingerprint, frames=CLIENT_FRAMES):
                    pytest.fail("a refused initiator got a connection")
    assert info.value.code == "unknown_peer"


async def test_nothing_listening_is_one_line() -> None:
    with trio.fail_after(HANG_S):
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listener.socket.getsockname()[1]
        await listener.aclose()  # the port is free: nothing listens there
        with pytest.raises(DialError) as info:
            async with dial(f"ws://127.0.0.1:{port}", "/client", identity=new_key(), expected_peer=None, frames=CLIENT_FRAMES):
                pytest.fail("connected to nothing")
    assert str(info.value).startswith(f"cannot connect to ws://127.0.0.1:{port}/client: ")
    assert "\n" not in str(info.value) and info.value.code is None


async def test_an_oversized_message_while_the_dial_closes_is_one_dial_error() -> None:
    """The other side answers the handshake with garbage; while the dialler's close waits for
    its answer, it sends a message over the record cap. trio-websocket's 1009 answer is refused
    by wsproto in the closing state: the dial must still end in one DialError, never let that
    escape (a federation link would take its node down)."""
    import wsproto
    from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

    from sonet.core import limits

    async def hostile(stream: trio.SocketStream) -> None:
        server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                server.receive_data(data)
                for event in server.events():
                    if isinstance(event, Request):
                        await stream.send_all(server.send(AcceptConnection()))
                    elif isinstance(event, BytesMessage):
                        await stream.send_all(server.send(BytesMessage(data=b"not a handshake answer")))
                    elif isinstance(event, CloseConnection):
                        # left unanswered; a message over the cap instead (server frames are not
                        # masked; wsproto will not send in this state, so it is built by hand)
                        size = limits.MAX_RECORD_BYTES + 1
                        await stream.send_all(b"\x82\x7f" + size.to_bytes(8, "big") + b"x" * size)
                        await trio.sleep(1)
                        return

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, hostile, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            with pytest.raises(DialError) as info:
                async with dial(f"ws://127.0.0.1:{port}", "/client", identity=new_key(), expected_peer=None, frames=CLIENT_FRAMES):
                    pytest.fail("a garbage handshake answer was taken")
            nursery.cancel_scope.cancel()
    assert "\n" not in str(info.value)


async def _answering(answer: bytes, task_status=trio.TASK_STATUS_IGNORED) -> None:  # noqa: ANN001 - trio's
    """A server that reads a request head, writes ``answer`` and closes."""

    async def serve_one(stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := await stream.receive_some(65536)):
                head += chunk
            await stream.send_all(answer)

    await trio.serve_tcp(serve_one, 0, host="127.0.0.1", task_status=task_status)


@pytest.mark.parametrize(
    ("answer", "expected", "code"),
    [
        (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 23\r\n\r\ntoo many connections\nxx",
            "refused the connection (503: too many connections)",
            "too_many_connections",
        ),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "refused the connection (HTTP 404)", None),
        (b"HTTP/1.1 403 Forbidden\r\n\r\nno length: the body ends with the connection", "(403: no length: the body ends", None),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n",
            "not a WebSocket upgrade answer: Bad accept token",
            None,
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not a WebSocket upgrade answer", None),
        (b"", "closed the connection (connection lost)", None),
    ],
)
async def test_an_answer_that_is_no_upgrade_is_one_dial_error(answer: bytes, expected: str, code: str | None) -> None:
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(_answering, answer)
            port = listener.socket.getsockname()[1]
            with pytest.raises(DialError) as info:
                async with dial(f"ws://127.0.0.1:{port}", "/client", identity=new_key(), expected_peer=None, frames=CLIENT_FRAMES):
                    pytest.fail("a dial without an upgrade")
            nursery.cancel_scope.cancel()
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert info.value.code == code


async def test_a_url_that_is_no_websocket_url_is_one_dial_error() -> None:
    with pytest.raises(DialError, match=r"^cannot connect to http://127.0.0.1:1/client: not a ws:// URL"):
        async with dial("http://127.0.0.1:1", "/client", identity=new_key(), expected_peer=None, frames=CLIENT_FRAMES):
            pytest.fail("dialled an http URL")
