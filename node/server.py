"""The node's one WebSocket port: routes ``/client`` and ``/federation``, runs the
secure-channel handshake as responder (``sonet.transport.respond``) and hands the established
connection to the endpoint's session, its channel decoding only that endpoint's frames."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import trio
from sonet.transport.ws_errors import ConnectionClosed

from sonet.core import limits
from sonet.core.channel import Channel
from sonet.core.crypto import CryptoPolicy, SigningKey
from sonet.core.handshake import HandshakeComplete
from sonet.core.handshake_guard import GuardSettings, HandshakeGuard
from sonet.core.wire import FrameSet
from sonet.transport import CLOSE_GRACE_S, Admit, SecureSocket, admit_everyone, respond
from sonet.transport.server import Connection
from sonet.transport.websocket import UpgradeRequest

__all__ = ["Router", "LinkHandler", "Admit", "AdmitFor", "PLAIN_HTTP_ANSWER"]

#: called with the established connection; decides about the peer and serves it
LinkHandler = Callable[[SecureSocket, HandshakeComplete], Awaitable[None]]
#: builds the ``admit`` hook for one request from its HTTP headers (e.g. a peer's claimed name)
#: and its source address (what a refusal records)
AdmitFor = Callable[[list[tuple[bytes, bytes]], str], Admit]

#: the body of the 400 a plain HTTP request (no WebSocket upgrade) gets
PLAIN_HTTP_ANSWER = (
    "This is a Sonet node. It speaks the Sonet protocol over WebSocket only, on two paths:\n"
    "  /client      devices (the sonet command)\n"
    "  /federation  other Sonet nodes\n"
)


class Router:
    """Maps request paths to link handlers; unknown paths get a 404 before any handshake."""

    def __init__(self, *, identity: SigningKey, policy: CryptoPolicy, guard: HandshakeGuard | None = None) -> None:
        self._identity = identity
        self._policy = policy
        #: screens every Hello1 of every path before any public-key work (replays, load, shares)
        self.guard = guard or HandshakeGuard(GuardSettings(), rng=os.urandom)
        self._routes: dict[str, tuple[LinkHandler, FrameSet, AdmitFor, int]] = {}

    def route(
        self,
        path: str,
        handler: LinkHandler,
        frames: FrameSet,
        admit: Admit = admit_everyone,
        *,
        admit_for: AdmitFor | None = None,
        max_message_bytes: int = limits.MAX_RECORD_BYTES,
    ) -> None:
        """Serve ``path`` with ``handler`` on a channel of ``frames``; ``admit`` (or, given the
        request headers and source address, ``admit_for(headers, address)``) decides about the
        authenticated initiator during the handshake. Once it is admitted, records of up to ``max_message_bytes`` are
        accepted (the handler may raise that later); before, only handshake messages."""
        self._routes[path] = (handler, frames, admit_for or (lambda headers, address: admit), max_message_bytes)

    async def __call__(self, request: UpgradeRequest, conn: Connection) -> None:
        path = request.path.split("?", 1)[0]
        if path not in self._routes:
            await request.reject(404, body=b"unknown endpoint; devices use /client, nodes /federation\n")
            return
        handler, frames, admit_for, max_message_bytes = self._routes[path]
        admit = admit_for(list(request.headers), conn.address)
        ws = await request.accept()
        try:
            done = await respond(
                ws, identity=self._identity, policy=self._policy, prologue=path.encode(), admit=admit, guard=self.guard,
                address=conn.address, ended=conn.handshake_ended,
            )  # fmt: skip
            if done is not None:
                conn.authenticated()
                sock = SecureSocket(ws, Channel(done.keys, frames), done.peer)
                sock.allow_messages(max_message_bytes)
                sock.source = conn.address
                await handler(sock, done)
        except ConnectionClosed:
            pass
        finally:
            # never wait long for the peer's close reply (before authentication the server's
            # deadline cuts this shorter still)
            with trio.move_on_after(CLOSE_GRACE_S):
                await ws.aclose()
