"""The listening side: accept TCP connections and hand each WebSocket upgrade request to a
handler (as trio-websocket's ``serve_websocket`` does), under the caps and deadlines of
``ConnectionLimits`` (transport/admission.py).

- Before the other side is authenticated, each phase has a deadline counted from accept (the
  upgrade request within ``upgrade_timeout_s``, the handshake within ``handshake_timeout_s``) and
  a WebSocket message may be no larger than a handshake message. At a deadline, an eviction or
  an oversized message the connection is ABORTED: its task is cancelled and the socket reset;
  nothing waits for a close reply from a peer nobody knows. The handler calls
  ``Connection.authenticated()`` once the handshake authenticated the other side.
- A plain HTTP request (no ``Upgrade: websocket``) gets a 400 with a short text saying what
  listens here; a connection over a cap gets a 503 saying which; both are then closed.
- A WebSocket message must come whole within ``message_timeout_s`` of its first byte (close
  1008; transport/websocket.py); the time between messages is not limited.
- Bytes of unfinished messages are budgeted per actor (``partial_bytes_per_*``): the source
  address until the node says who the connection is (``Connection.charge_to``); a message over
  its actor's budget is refused before it is buffered (close 1009, transport/admission.py).
- Every send must make progress within ``send_timeout_s``: a peer that stops reading is
  disconnected (the socket reset), never buffered for.
- The accept loop survives running out of file descriptors (EMFILE): it evicts the oldest
  pending connection or backs off, and says so in the summary line, never in a traceback.
- Refused, evicted, timed-out and stalled connections are counted and logged as one summary
  line per interval (transport/log_summary.py), not one line per connection.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import resource
import socket as stdlib_socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import trio
from .ws_errors import ConnectionClosed

from .admission import ACTORS, Admission, Admitted, ConnectionLimits, Refused
from .log_summary import SUMMARY_INTERVAL_S, LogSummary
from .send_deadline import SendDeadlineStream, abort as _abort, reset as _reset
from .tls import PLAIN_ON_TLS_ANSWER, opens_tls
from .websocket import BadUpgrade, UpgradeRequest

__all__ = ["serve", "Listening", "Tarpit", "Connection", "ConnectionLimits", "MAX_REQUEST_HEAD", "raise_fd_limit", "FD_RESERVE", "CAPACITY_ERRNOS", "MAX_ACCEPT_BACKOFF_S", "accept_forever"]

log = logging.getLogger("sonet.transport.server")

#: the most bytes of an HTTP request head read to tell an upgrade from a plain request
MAX_REQUEST_HEAD = 16 * 1024
#: file descriptors kept free of connections (the database, outgoing links, logs)
FD_RESERVE = 128
#: at most this long to write a 400 or 503 to a fresh connection before it is closed
ANSWER_GRACE_S = 1.0
#: 503 answers written at once; beyond, a refused connection is reset without one
MAX_REFUSING = 64
#: bounds of the listen backlog (``_backlog``)
MIN_BACKLOG, MAX_BACKLOG = 128, 4096
#: the longest pause of the accept loop when the process is out of file descriptors
MAX_ACCEPT_BACKOFF_S = 1.0
#: accept() failing for want of file descriptors or memory: wait and accept again, never a crash
CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
#: ways a connection ends that are closed normally (a refusal the handshake sent must arrive);
#: every other end the server decides (a deadline, an eviction, a stall) resets the socket
_GRACEFUL = {None, "ended_unauthenticated", "bad_request", "tls_on_plain"} | {f"partial_bytes_{kind}" for kind in ACTORS}
#: the stages of an evicted connection that go to the tarpit: silent ones (see ``Tarpit``)
_TARPITTED = {"new", "upgraded"}
#: how long the tarpit holds a socket (at most: it gives sockets back whenever room is needed)
TARPIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Listening:
    """Where the server listens (``port`` is the bound one when 0 was asked for)."""

    host: str
    port: int
    #: the caps in force (``max_connections`` may be lower than asked: the file limit)
    caps: ConnectionLimits
    #: the connections held right now (``held``, ``pending``)
    admission: Admission
    #: what was refused or cut since the last summary line
    summary: LogSummary
    #: sockets of evicted silent connections, held (TARPIT_S at most) without a word
    tarpit: Tarpit


class Connection:
    """What a handler sees of the connection it serves."""

    __slots__ = ("_admission", "_admitted")

    def __init__(self, admission: Admission, admitted: Admitted) -> None:
        self._admission = admission
        self._admitted = admitted

    @property
    def address(self) -> str:
        return self._admitted.address

    @property
    def pending(self) -> bool:
        return self._admitted.pending

    def authenticated(self) -> None:
        """The handshake authenticated the other side: the pre-auth deadline is lifted and the
        connection can no longer be evicted (the handler raises its message cap itself)."""
        self._admission.authenticated(self._admitted)

    def charge_to(self, **actors: str) -> None:
        """Charge its bytes of unfinished messages to these actors from now on (device=,
        account=, peer=; transport/admission.py) instead of its source address."""
        self._admitted.charge_to(**actors)

    def handshake_ended(self, code: str) -> None:
        """Its handshake ended without a link, for the reason ``code`` (a refusal's code, a
        failure's): what the log summary counts it as, so the summary and the status agree."""
        self._admitted.handshake_end = code


Handler = Callable[[UpgradeRequest, Connection], Awaitable[None]]


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (allowed without
    privileges); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def _backlog(caps: ConnectionLimits) -> int:
    """The kernel's queue of connections not yet accepted: as deep as the pending table. A
    deeper queue would only hold, in arrival order, connections to be evicted once accepted,
    and a legitimate client that connects during a flood would wait behind all of them."""
    return min(MAX_BACKLOG, max(MIN_BACKLOG, caps.max_pending))


def _fit_to_fd_limit(caps: ConnectionLimits) -> ConnectionLimits:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    room = max(16, soft - FD_RESERVE) if soft != resource.RLIM_INFINITY else caps.max_connections
    if caps.max_connections <= room:
        return caps
    log.warning(
        "the open-file limit is %d: holding at most %d connections instead of %d (raise `ulimit -n` for more)",
        soft, room, caps.max_connections,
    )
    return replace(caps, max_connections=room, max_pending=min(caps.max_pending, room))


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    plain_http_answer: str,
    caps: ConnectionLimits | None = None,
    handler_nursery: trio.Nursery | None = None,
    summary_interval_s: float = SUMMARY_INTERVAL_S,
    tls: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``plain_http_answer`` is the body of the 400 for plain HTTP.
    With ``tls`` (transport/tls.py) every connection is TLS first (``wss://``)."""
    caps = _fit_to_fd_limit(caps or ConnectionLimits())
    summary = LogSummary(log, what="refused or cut connections", interval_s=summary_interval_s)
    admission = Admission(caps)
    tarpit = Tarpit(room=lambda: caps.max_connections - admission.held)
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=_backlog(caps))
    bound = listeners[0].socket.getsockname()[1]
    server = _Server(handler, admission, summary, _answer(400, "Bad Request", plain_http_answer), tarpit=tarpit, tls=tls)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(summary.run)
        nursery.start_soon(tarpit.run)
        for listener in listeners:
            nursery.start_soon(server.accept_loop, listener, handler_nursery or nursery)
        # the listeners are bound: connections wait in the backlog until served
        task_status.started(Listening(host=host, port=bound, caps=caps, admission=admission, summary=summary, tarpit=tarpit))


async def accept_forever(
    listener: trio.abc.Listener[trio.SocketStream],
    take: Callable[[trio.SocketStream], None],
    summary: LogSummary,
    *,
    make_room: Callable[[], bool] = lambda: False,
) -> None:
    """Accept connections on ``listener`` (closed at the end) until cancelled, handing each to
    ``take``, which must not block (it starts the connection's task, or refuses it). An accept
    that fails for want of file descriptors or memory never ends the loop: it is counted in
    ``summary``, and the loop accepts again at once if ``make_room()`` freed a descriptor, else
    after a pause doubling up to MAX_ACCEPT_BACKOFF_S. Any other error is raised. The node's
    port and the operations listener (node/ops/http.py) both accept with it."""
    backoff = 0.0
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in CAPACITY_ERRNOS:
                    raise
                summary.count(f"accept_failed_{errno.errorcode.get(exc.errno, exc.errno)}")
                if make_room():
                    await trio.sleep(0)  # let it close before accepting again
                else:
                    backoff = min(max(backoff * 2, 0.01), MAX_ACCEPT_BACKOFF_S)
                    await trio.sleep(backoff)
                continue
            backoff = 0.0
            take(stream)


class Tarpit:
    """Sockets of connections evicted while silent (nothing sent since their upgrade request),
    held open and unread for ``TARPIT_S``, with no task and nothing buffered of ours.
    Their owner sees nothing happen, so it does not reconnect at once as a reset invites: a
    flood of such sockets larger than the pending caps would otherwise turn every eviction into
    a new connection for the node to accept and answer, as fast as the node can (the accept
    queue then overflows and the kernel drops everyone's new connections alike, a device's
    too). Only spare room is used: ``room()`` says how many sockets the node may hold besides
    its connections, and the tarpit resets its oldest whenever a connection needs one."""

    def __init__(self, *, room: Callable[[], int]) -> None:
        self._room = room
        # (deadline, socket) in the order held: each is held for the same TARPIT_S, so this is
        # their deadlines' order too
        self._held: deque[tuple[float, trio.socket.SocketType]] = deque()
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, sock: trio.socket.SocketType, deadline: float) -> bool:
        """Keep ``sock`` until ``deadline`` if there is room; False (the caller resets it) if not."""
        if len(self._held) >= self._room() or deadline <= trio.current_time():
            return False
        try:  # whatever it sends from now on is not buffered for it
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 1)
        except OSError:
            return False
        self._held.append((deadline, sock))
        self._changed.set()
        return True

    def make_room(self) -> bool:
        """Reset the oldest socket held (a connection needs its file descriptor)."""
        if not self._held:
            return False
        _reset(self._held.popleft()[1])
        return True

    async def run(self) -> None:
        """Reset each socket at its deadline, until cancelled (then all of them)."""
        try:
            while True:
                while self._held and self._held[0][0] <= trio.current_time():
                    _reset(self._held.popleft()[1])
                if self._held:
                    await trio.sleep_until(self._held[0][0])
                else:
                    await self._changed.wait()
                    self._changed = trio.Event()
        finally:
            while self._held:
                _reset(self._held.popleft()[1])


class _Server:
    def __init__(
        self,
        handler: Handler,
        admission: Admission,
        summary: LogSummary,
        plain_answer: bytes,
        *,
        tarpit: Tarpit | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._handler = handler
        self._admission = admission
        self._summary = summary
        self._tarpit = tarpit if tarpit is not None else Tarpit(room=lambda: 0)
        self._plain_answer = plain_answer
        self._tls = tls
        #: 503 answers being written right now
        self._refusing = 0

    async def accept_loop(self, listener: trio.abc.Listener[trio.SocketStream], nursery: trio.Nursery) -> None:
        def take(stream: trio.SocketStream) -> None:
            if self._admission.held + len(self._tarpit) >= self._admission.caps.max_connections:
                self._tarpit.make_room()
            address = _address_of(stream)
            try:
                conn = self._admission.admit(address)
            except Refused as refused:
                self._summary.count(f"refused_{refused.code}", address)
                nursery.start_soon(self._refuse, stream, str(refused))
                return
            nursery.start_soon(self._serve, stream, conn)

        await accept_forever(
            listener, take, self._summary, make_room=lambda: self._tarpit.make_room() or self._admission.evict_oldest("fd_limit")
        )

    async def _refuse(self, stream: trio.SocketStream, why: str) -> None:
        """Answer 503 saying why, then close. Its request is read (briefly, within a small
        budget of such answers) so that the close does not reset the connection under the
        answer before the client has read it. Over TLS it is reset without one: a plain answer
        would be noise to a TLS client, and a refused stranger is not worth a TLS handshake."""
        if self._refusing >= MAX_REFUSING or self._tls is not None:
            _abort(stream)
            return
        self._refusing += 1
        try:
            with trio.move_on_after(ANSWER_GRACE_S):
                await stream.send_all(_answer(503, "Service Unavailable", why + "\n"))
                stream.socket.shutdown(stdlib_socket.SHUT_WR)
                read = 0
                while read < MAX_REQUEST_HEAD and (chunk := await stream.receive_some(MAX_REQUEST_HEAD)):
                    read += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._refusing -= 1
            _abort(stream)

    async def _answer_plain(self, stream: trio.SocketStream, answer: bytes) -> None:
        """Send ``answer`` and read what the client sent (briefly, up to a request head), so that
        closing does not reset the connection under the answer before the client read it."""
        with trio.move_on_after(ANSWER_GRACE_S):
            try:
                await stream.send_all(answer)
                stream.socket.shutdown(stdlib_socket.SHUT_WR)
                await _read_head(stream)
            except (trio.BrokenResourceError, OSError):
                pass  # it went away: nobody to tell

    async def _serve(self, stream: trio.SocketStream, conn: Admitted) -> None:
        try:
            with conn.scope:
                await self._phases(stream, conn)
            if conn.scope.cancelled_caught and conn.ended_by is None:
                conn.ended_by = "handshake_timeout"
        except* (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
            pass  # the other side went away
        except* Exception:
            # a bug on one connection must not take the node's other connections down with it
            log.exception("connection from %s failed", conn.address)
            conn.ended_by = "internal_error"
        finally:
            self._admission.release(conn)
            if conn.ended_by is not None:
                why = conn.ended_by
                if why == "ended_unauthenticated" and conn.handshake_end is not None:
                    why = conn.handshake_end  # the handler said how (e.g. unknown_peer)
                self._summary.count(why, conn.address)
            if conn.ended_by in _GRACEFUL:
                stream.socket.close()  # the WebSocket close (if any) was exchanged already
            elif conn.evicted_from in _TARPITTED and self._tarpit.hold(stream.socket, trio.current_time() + TARPIT_S):
                self._summary.count("tarpitted")
            else:
                _abort(stream)

    async def _phases(self, stream: trio.SocketStream, conn: Admitted) -> None:
        caps = self._admission.caps
        head = b""
        spoken: trio.abc.Stream = stream
        with trio.move_on_after(caps.upgrade_timeout_s) as upgrade:
            if self._tls is not None:  # TLS first, within the same deadline as the upgrade request
                first = await stream.socket.recv(2, stdlib_socket.MSG_PEEK)
                if not first:
                    return  # closed before it said anything
                if not opens_tls(first):
                    # not TLS: a ws:// client, told in plain HTTP, as it would not understand TLS
                    conn.ended_by = "plain_on_tls"
                    await self._answer_plain(stream, _answer(400, "Bad Request", PLAIN_ON_TLS_ANSWER))
                    return
                spoken = trio.SSLStream(stream, self._tls, server_side=True)
                try:
                    await spoken.do_handshake()
                except trio.BrokenResourceError:  # not TLS, or the client refused our certificate
                    conn.ended_by = "tls_handshake_failed"
                    return
            head = await _read_head(spoken)
        if upgrade.cancelled_caught:
            conn.ended_by = "upgrade_timeout"
            return
        if self._tls is None and opens_tls(head[:2]):
            # a wss:// client on a plain listener: end it now (a clean end of stream, which its
            # TLS handshake reports at once) rather than wait out the upgrade deadline
            conn.ended_by = "tls_on_plain"
            with contextlib.suppress(OSError):  # it may have gone already
                stream.socket.shutdown(stdlib_socket.SHUT_WR)
            return
        if b"\r\n\r\n" not in head:  # closed, or no HTTP request within the cap
            conn.ended_by = "bad_request" if head else None
            return
        if not _asks_upgrade(head[: head.index(b"\r\n\r\n")]):
            with trio.move_on_after(ANSWER_GRACE_S):
                await spoken.send_all(self._plain_answer)
            return
        if head.index(b"\r\n\r\n") + 4 < len(head):
            self._admission.spoke(conn)  # what came after the request head: the client speaking
        guarded = _GuardedStream(spoken, conn, caps.send_timeout_s, spoke=self._admission.spoke, answered=self._admission.answered)
        try:
            # read and answered on this task, as the whole connection is: no reader task
            request = UpgradeRequest(
                guarded, head, max_message_bytes=caps.pending_message_bytes, message_timeout_s=caps.message_timeout_s, held_by=conn
            )
        except BadUpgrade as exc:
            conn.ended_by = "bad_request"
            with trio.move_on_after(ANSWER_GRACE_S):
                await spoken.send_all(_answer(400, "Bad Request", f"{exc}\n"))
            return
        await self._handler(request, Connection(self._admission, conn))
        if conn.pending and conn.ended_by is None:
            # the handler gave up before authentication: an oversized or bad handshake message
            conn.ended_by = "ended_unauthenticated"


def _address_of(stream: trio.SocketStream) -> str:
    """The source address a connection counts against: the IP, or an IPv6 address's /64 (one
    host usually holds a whole /64)."""
    try:
        host = stream.socket.getpeername()[0]
    except OSError:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


async def _read_head(stream: trio.abc.Stream) -> bytes:
    """What the client sent up to the end of its request head (maybe a little more), or less
    if it closed, sent more than MAX_REQUEST_HEAD without one, or opened a TLS handshake."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST_HEAD and not opens_tls(data[:2]):
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


def _answer(status: int, phrase: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {phrase}\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + body
    )


class _GuardedStream(SendDeadlineStream):
    """``stream`` whose sends must make progress (``SendDeadlineStream``; a stall is the
    connection's ``send_timeout`` end); its first send (the answer to the upgrade) and its first
    bytes read move the connection's admission stage on."""

    __slots__ = ("_conn", "_spoke", "_answered")

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: Admitted,
        send_timeout_s: float,
        *,
        spoke: Callable[[Admitted], None] = lambda conn: None,
        answered: Callable[[Admitted], None] = lambda conn: None,
    ) -> None:
        super().__init__(stream, send_timeout_s)
        self._conn = conn
        self._spoke = spoke
        self._answered = answered

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self._stream.receive_some(max_bytes)
        if data and not self._conn.spoke:
            self._spoke(self._conn)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await super().send_all(data)
        if not self._conn.answered:  # the first send is the answer to the upgrade request
            self._answered(self._conn)

    def _stalled(self) -> None:
        if self._conn.ended_by is None:
            self._conn.ended_by = "send_timeout"

    async def aclose(self) -> None:
        if self._conn.evicted_from is not None:
            # evicted: how its socket ends (a reset, or the tarpit) is the server's to decide
            await trio.lowlevel.checkpoint()
            return
        await self._stream.aclose()
