"""A raw HTTP/1.1 client for the operations listener's tests: bytes in, (status, headers, body) out."""

from __future__ import annotations

import trio

__all__ = ["exchange", "get"]


async def exchange(port: int, request: bytes, *, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is, read the answer to the end (the server closes)."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        try:
            await stream.send_all(request)
        except trio.BrokenResourceError:
            pass  # the server may answer and close before reading all of an oversized request
        data = bytearray()
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split(" ")[1]), headers, body


async def get(port: int, path: str) -> tuple[int, str]:
    status, _headers, body = await exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return status, body.decode()
