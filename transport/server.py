"""The listening side: accept TCP connections and hand each WebSocket upgrade request to a
handler (as trio-websocket's ``serve_websocket`` does), except that a plain HTTP request (no
``Upgrade: websocket``) gets a 400 with a short text saying what listens here; the WebSocket
library would answer it with a bare 400 and no body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from trio_websocket import WebSocketRequest, wrap_server_stream

__all__ = ["serve", "Listening", "MAX_REQUEST_HEAD"]

#: the most bytes of an HTTP request head read to tell an upgrade from a plain request
MAX_REQUEST_HEAD = 16 * 1024

Handler = Callable[[WebSocketRequest], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Listening:
    """Where the server listens (``port`` is the bound one when 0 was asked for)."""

    host: str
    port: int


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    plain_http_answer: str,
    max_message_size: int,
    connect_timeout: float,
    disconnect_timeout: float,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``plain_http_answer`` is the body of the 400 for plain HTTP."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    refusal = _bad_request(plain_http_answer)

    async def connection(stream: trio.SocketStream) -> None:
        await _serve_connection(
            stream,
            handler,
            refusal=refusal,
            max_message_size=max_message_size,
            connect_timeout=connect_timeout,
            disconnect_timeout=disconnect_timeout,
        )

    # the listeners are bound: connections wait in the backlog until served
    task_status.started(Listening(host=host, port=bound))
    await trio.serve_listeners(connection, listeners, handler_nursery=handler_nursery)


async def _serve_connection(
    stream: trio.SocketStream,
    handler: Handler,
    *,
    refusal: bytes,
    max_message_size: int,
    connect_timeout: float,
    disconnect_timeout: float,
) -> None:
    try:
        head = b""
        with trio.move_on_after(connect_timeout):
            head = await _read_head(stream)
        if b"\r\n\r\n" not in head:  # silent, closed, or no HTTP request within the cap
            return
        if not _asks_upgrade(head[: head.index(b"\r\n\r\n")]):
            with trio.move_on_after(disconnect_timeout):
                await stream.send_all(refusal)
            return
        async with trio.open_nursery() as nursery:
            # the connection's reader task runs in this nursery; cancelled once the handler ends
            request = None
            with trio.move_on_after(connect_timeout):
                request = await wrap_server_stream(nursery, _Replayed(stream, head), max_message_size=max_message_size)
            try:
                if request is not None:
                    await handler(request)
            finally:
                nursery.cancel_scope.cancel()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the other side went away
    finally:
        with trio.move_on_after(disconnect_timeout):
            await stream.aclose()


async def _read_head(stream: trio.SocketStream) -> bytes:
    """What the client sent up to the end of its request head (maybe a little more), or less
    if it closed or sent more than MAX_REQUEST_HEAD without one."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST_HEAD:
        chunk = await stream.receive_some(MAX_REQUEST_HEAD)
        if not chunk:
            break
        data += chunk
    return data


def _asks_upgrade(head: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def _bad_request(text: str) -> bytes:
    body = text.encode()
    return (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + body
    )


class _Replayed(trio.abc.Stream):
    """``stream`` with the bytes already read from it put back in front."""

    def __init__(self, stream: trio.SocketStream, already: bytes) -> None:
        self._stream = stream
        self._already = already

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._already:
            size = len(self._already) if max_bytes is None else max_bytes
            data, self._already = self._already[:size], self._already[size:]
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()
