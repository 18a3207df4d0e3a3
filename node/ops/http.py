"""A tiny HTTP/1.1 server on trio for the operations listener: one GET per connection.

Hostile input rules hold here as on the node's port: the request head is capped (request line,
header count, total bytes), no request body is accepted, each connection has one deadline from
accept to the last byte written, and at most ``max_connections`` are served at once, at most
``max_per_address`` of them from one source address (others get a 503 and are closed). Every
answer closes the connection (``Connection: close``): a Prometheus scrape is one request, and
nothing is kept open for anybody. The listener shares the process's file descriptors with the
node's port, its database and audit log, so it holds at most twice ``max_connections`` sockets
(those served and their 503s); past that a new connection is reset at once, and an accept that
fails for want of descriptors waits and tries again: both counted in one summary line per 10 s,
never a traceback.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import trio

from sonet.core.ratelimit import Limiter, Rate
from sonet.transport.log_summary import LogSummary
from sonet.transport.send_deadline import abort
from sonet.transport.server import accept_forever

__all__ = ["Response", "serve_http", "MAX_HEAD_BYTES", "MAX_REQUEST_LINE", "MAX_HEADERS", "CONNECTION_DEADLINE_S", "MAX_PER_ADDRESS"]

log = logging.getLogger("sonet.node.ops")

#: the whole request head (request line and headers) may be no larger
MAX_HEAD_BYTES = 8 * 1024
MAX_REQUEST_LINE = 1024
MAX_HEADERS = 64
#: from accept to the answer's last byte; a slower client is cut
CONNECTION_DEADLINE_S = 10.0
#: connections served at once
MAX_CONNECTIONS = 32
#: how long an answered connection waits for the rest of what its client sent (see _linger)
LINGER_S = 1.0
#: of them from one source address (a client holding connections open cannot take them all
#: from the scraper and the health checker)
MAX_PER_ADDRESS = 8
#: source addresses whose request rates are remembered (core/ratelimit.py's LRU)
MAX_RATE_ADDRESSES = 1024
_READ = 4096
_METHOD = re.compile(rb"[A-Z]{1,16}")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
            413: "Content Too Large", 414: "URI Too Long", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    #: a 429's Retry-After (whole seconds)
    retry_after_s: int | None = None


#: answers a GET of ``path`` (the target without its query)
Handler = Callable[[str], Awaitable[Response]]


class _Refuse(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.response = Response(status, text.encode() + b"\n")


def _encode(response: Response) -> bytes:
    head = (
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n"
        + ("Allow: GET\r\n" if response.status == 405 else "")
        + (f"Retry-After: {response.retry_after_s}\r\n" if response.retry_after_s is not None else "")
        + "\r\n"
    )
    return head.encode("ascii") + response.body


async def _read_head(stream: trio.abc.Stream) -> bytes | None:
    """The request head without its blank line; None when the client closed before sending one."""
    buf = bytearray()
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            if end + 4 > MAX_HEAD_BYTES:
                raise _Refuse(431, "request head too large")
            return bytes(buf[:end])
        if len(buf) >= MAX_HEAD_BYTES:
            line_end = buf.find(b"\r\n")
            if line_end < 0 or line_end > MAX_REQUEST_LINE:
                raise _Refuse(414, "request line too long")
            raise _Refuse(431, "request head too large")
        data = await stream.receive_some(_READ)
        if not data:
            return None
        buf += data


def parse_request(head: bytes) -> str:
    """The path a GET asks for; _Refuse with the status of anything else."""
    request_line, *headers = head.split(b"\r\n")
    if len(request_line) > MAX_REQUEST_LINE:
        raise _Refuse(414, "request line too long")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not _METHOD.fullmatch(parts[0]):
        raise _Refuse(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise _Refuse(505 if version.startswith(b"HTTP/") else 400, "HTTP/1.0 or HTTP/1.1 only")
    if len(headers) > MAX_HEADERS:
        raise _Refuse(431, f"more than {MAX_HEADERS} header fields")
    for line in headers:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise _Refuse(400, "malformed header field")
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (lowered == b"content-length" and value.strip() != b"0"):
            raise _Refuse(413, "no request body is accepted here")
    if not _TARGET.fullmatch(target):
        raise _Refuse(400, "malformed request target")
    if method != b"GET":
        raise _Refuse(405, "only GET is allowed here")
    return target.split(b"?", 1)[0].decode("ascii")


async def _serve_one(stream: trio.SocketStream, handler: Handler, over_rate: Callable[[str], Response | None]) -> bool:
    """Read one request and answer it; whether an answer was sent."""
    try:
        head = await _read_head(stream)
        if head is None:
            return False
        path = parse_request(head)
        response = over_rate(path) or await handler(path)
    except _Refuse as refusal:
        response = refusal.response
    except trio.BrokenResourceError:
        return False
    await stream.send_all(_encode(response))
    return True


async def _linger(stream: trio.SocketStream) -> None:
    """After an answer: end our side, then read (briefly, a bounded amount) what the client
    still sends: closing with its bytes unread would reset the connection, and a reset can
    destroy the answer before the client read it (a 503 sent before its request was read)."""
    with trio.move_on_after(LINGER_S):
        try:
            await stream.send_eof()
            read = 0
            while read < MAX_HEAD_BYTES and (chunk := await stream.receive_some(_READ)):
                read += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


def _address_of(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "unknown"


def serve_http(
    handler: Handler,
    host: str,
    port: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
    max_per_address: int = MAX_PER_ADDRESS,
    deadline_s: float = CONNECTION_DEADLINE_S,
    rates: Mapping[str, Rate] | None = None,
) -> Callable[..., Awaitable[None]]:
    """``nursery.start(serve_http(handler, host, port))`` binds (an OSError if it cannot),
    returns the bound port and serves until cancelled. ``rates``: the paths whose requests are
    limited per source address, each to its rate; past it a 429 saying so (the handler is not
    asked: the answer costs nothing of what the path does)."""
    serving = 0
    by_address: Counter[str] = Counter()
    limiters = {path: (rate, Limiter(rate, max_keys=MAX_RATE_ADDRESSES)) for path, rate in (rates or {}).items()}

    def over_rate(path: str, address: str) -> Response | None:
        limited = limiters.get(path)
        if limited is None:
            return None
        rate, limiter = limited
        if limiter.allow(address, int(trio.current_time() * 1000)):
            return None
        return Response(
            429,
            f"too many requests for {path} from this address: at most {rate.per_second:g} a second "
            f"({rate.burst:g} at once); try again in a second\n".encode(),
            retry_after_s=1,
        )

    async def connection(stream: trio.SocketStream) -> None:
        nonlocal serving
        address = _address_of(stream)
        answered = False
        try:
            with trio.move_on_after(deadline_s) as scope:
                if serving >= max_connections or by_address[address] >= max_per_address:
                    await stream.send_all(_encode(Response(503, b"too many connections\n")))
                    answered = True
                    return
                serving += 1
                by_address[address] += 1
                try:
                    answered = await _serve_one(stream, handler, lambda path: over_rate(path, address))
                finally:
                    serving -= 1
                    by_address[address] -= 1
                    if not by_address[address]:
                        del by_address[address]
            if scope.cancelled_caught:
                log.debug("an operations request took longer than %g s: connection cut", deadline_s)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away: nothing to answer
        except Exception:  # a bug in a handler: logged, the listener keeps serving
            log.exception("operations request failed")
            with trio.move_on_after(1.0):
                try:
                    await stream.send_all(_encode(Response(500, b"internal error\n")))
                    answered = True
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        finally:
            try:
                if answered:
                    await _linger(stream)
            finally:
                with trio.move_on_after(1.0):
                    await stream.aclose()

    summary = LogSummary(log, what="operations connections reset or not accepted")
    held = 0  # sockets of connections being served or answered 503, each its own task

    async def holding(stream: trio.SocketStream) -> None:
        nonlocal held
        try:
            await connection(stream)
        finally:
            held -= 1

    async def accept_loop(listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        def take(stream: trio.SocketStream) -> None:
            nonlocal held
            if held >= 2 * max_connections:  # no descriptor more for anybody's flood
                summary.count("reset_over_cap", _address_of(stream))
                abort(stream)
                return
            held += 1
            nursery.start_soon(holding, stream)

        await accept_forever(listener, take, summary)

    async def run(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(accept_loop, listener, nursery)
            task_status.started(bound)

    return run
