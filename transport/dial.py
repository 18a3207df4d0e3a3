"""Open a secure connection: the WebSocket (transport/websocket.py ``connect``: TCP, TLS, the
upgrade), and the initiator handshake under ONE deadline (``limits.HANDSHAKE_DEADLINE_S``),
lifted once the connection is up: a black hole that accepts the TCP connection and never
answers is given up at it. Every failure before the connection is up is one ``DialError``
line; after it, errors belong to the caller's body and pass through as they are. Once up,
every send must make progress within a send deadline (transport/send_deadline.py, the same as
the server's sends): a peer that stops reading ends the connection, it never blocks a sender.
"""

from __future__ import annotations

import math
import os
import re
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio
from .ws_errors import CloseReason, ConnectionClosed, ConnectionRejected, HandshakeError as WsHandshakeError

from sonet.core import limits
from sonet.core.client_api import ErrorFrame
from sonet.core.channel import Channel
from sonet.core.crypto import CryptoPolicy, SigningKey
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.handshake import Handshake, Role
from sonet.core.wire import Frame, FrameSet

from .handshake import PEER_REFUSED, POLICY_VIOLATION, run_initiator
from .send_deadline import SEND_TIMEOUT_S
from .socket import SecureSocket
from .tls import TlsError, client_context, describe_failure
from .websocket import connect

__all__ = ["dial", "DialError", "describe_close"]

#: what a refusal code looks like (the close reason of a refused handshake)
_REFUSAL_CODE = re.compile(r"[a-z_]{1,40}")


class DialError(Exception):
    """The other side could not be reached or authenticated (one line); ``code`` is the
    protocol or refusal code when there is one (e.g. ``wrong_identity``, ``unknown_peer``);
    ``said``: the other side's own words when it refused us ("this node" in them is that
    side), for whoever logs it to say who said them."""

    def __init__(self, message: str, code: str | None = None, *, said: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.said = said




@asynccontextmanager
async def dial(
    url: str,
    endpoint: str,
    *,
    identity: SigningKey,
    expected_peer: str | None,
    frames: FrameSet,
    policy: CryptoPolicy | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
    greeting: type[Frame] | None = None,
    peer: str = "node",
    send_timeout_s: float = SEND_TIMEOUT_S,
) -> AsyncIterator[SecureSocket]:
    """Connect to ``url + endpoint`` (prologue: the endpoint), pin the other side's key to
    ``expected_peer`` (None: any key, trust on first use) and yield the connection. With
    ``greeting`` its first frame must be of that type (within the deadline): it is
    ``socket.greeting``. ``peer`` names the other side in errors ("node", "peer"). Every send
    on the connection must make progress within ``send_timeout_s`` (the server's default): a
    peer that accepts and stops reading has the connection reset, and the send fails with
    ConnectionClosed saying so, instead of blocking its sender for ever."""
    target = url.rstrip("/") + endpoint
    established = False
    connecting = trio.CancelScope(deadline=trio.current_time() + limits.HANDSHAKE_DEADLINE_S)
    tls_failures: list[ssl.SSLError] = []

    def tls_failed(exc: ssl.SSLError) -> None:
        tls_failures.append(exc)
        connecting.cancel()

    try:
        # wss://: the server's certificate checked against the system's CAs or $SONET_TLS_CA
        tls = client_context(tls_failed) if target.startswith("wss://") else None
    except TlsError as exc:
        raise DialError(f"cannot connect to {target}: {exc}") from None
    try:
        with connecting:
            ws = await connect(
                target,
                tls=tls,
                headers=headers,
                max_message_bytes=limits.MAX_RECORD_BYTES,
                message_timeout_s=limits.MESSAGE_DEADLINE_S,
                send_timeout_s=send_timeout_s,
            )
            try:
                hs = Handshake(
                    Role.INITIATOR,
                    identity=identity,
                    policy=policy or CryptoPolicy(),
                    rng=os.urandom,
                    prologue=endpoint.encode(),
                    expected_peer=expected_peer,
                )
                done = await run_initiator(hs, send=ws.send_message, receive=ws.get_message, peer=peer)
                sock = SecureSocket(ws, Channel(done.keys, frames), done.peer)
                if greeting is not None:
                    first = await sock.receive()
                    if isinstance(first, ErrorFrame) and greeting is not ErrorFrame:
                        # refused before the greeting (e.g. "unavailable": its store is down): say why
                        raise DialError(f"the {peer} at {url} refused the connection: {first.message}", code=first.code, said=first.message)
                    if not isinstance(first, greeting):
                        raise RemoteProtocolError(f"{peer} did not start with {greeting.__name__}")
                    sock.greeting = first
                connecting.deadline = math.inf
                established = True
                yield sock
            finally:
                await ws.aclose()  # bounded (CLOSE_GRACE_S), the stream closed in any case
        if connecting.cancelled_caught and tls_failures:
            raise DialError(f"cannot connect to {target}: {describe_failure(tls_failures[0])}")
        if connecting.cancelled_caught:
            raise DialError(f"the {peer} at {url} did not complete the handshake in time")
    except ProtocolError as exc:
        if established:
            raise
        words = PEER_REFUSED.fullmatch(str(exc)) if isinstance(exc, RemoteProtocolError) else None
        if words is not None:
            raise DialError(f"the {peer} at {url} refused the handshake: {words[1]}", code=exc.code, said=words[1]) from None
        raise DialError(f"secure channel with {url} failed: {exc}", code=exc.code) from None
    except ConnectionClosed as exc:
        if established:
            raise
        if tls_failures:  # the TLS handshake failed: the connection ended under it
            raise DialError(f"cannot connect to {target}: {describe_failure(tls_failures[0])}") from None
        # A refusal closes with 1008 and its code as the reason; the close can overtake the
        # refusal message itself, so the code is taken from either.
        reason = exc.reason
        refused = reason is not None and reason.code == POLICY_VIOLATION and _REFUSAL_CODE.fullmatch(reason.reason or "")
        code = reason.reason if refused and reason is not None else None
        raise DialError(f"the {peer} at {url} closed the connection ({describe_close(reason)})", code=code) from None
    except ConnectionRejected as exc:
        if established:
            raise
        # an HTTP answer instead of the upgrade: a node over a connection cap says which (503)
        text = (exc.body or b"").decode("utf-8", "replace").strip().splitlines()
        why = f"{exc.status_code}: {text[0][:200]}" if text else f"HTTP {exc.status_code}"
        code = "too_many_connections" if exc.status_code == 503 else None
        raise DialError(f"the {peer} at {url} refused the connection ({why})", code=code) from None
    except (OSError, WsHandshakeError) as exc:
        if established:
            raise
        if tls_failures:
            raise DialError(f"cannot connect to {target}: {describe_failure(tls_failures[0])}") from None
        raise DialError(f"cannot connect to {target}: {_why(exc)}") from None


def describe_close(reason: CloseReason | None) -> str:
    """A close reason for humans: the peer's own words, else what happened."""
    if reason is None:
        return "connection lost"
    if reason.reason:
        return str(reason.reason)
    return "connection lost" if reason.code == 1006 else reason.name.lower().replace("_", " ")


def _why(exc: BaseException) -> str:
    """One line on a connection failure (the OSError's text, or the error's own)."""
    for error in (exc, exc.__cause__, exc.__context__):
        if error is not None and (text := getattr(error, "strerror", None) or str(error)):
            return text
    return "connection refused"
