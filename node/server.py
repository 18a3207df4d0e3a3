"""The node's one WebSocket port: routes ``/client`` and ``/federation`` and runs the
secure-channel handshake as responder before handing the link to a session."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from sonet.core import limits
from sonet.core.channel import Channel
from sonet.core.crypto import CryptoPolicy, SigningKey
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.handshake import Handshake, HandshakeComplete, PeerIdentified, Role

__all__ = ["Router", "LinkHandler", "Admit", "AdmitFor", "respond_handshake"]

log = logging.getLogger("sonet.node.server")

#: called with the established link; decides about the peer and serves it
LinkHandler = Callable[[WebSocketConnection, Channel, HandshakeComplete], Awaitable[None]]
Admit = Callable[[PeerIdentified], Awaitable[tuple[str, str] | None]]
#: builds the ``admit`` hook for one request from its HTTP headers (e.g. a peer's claimed name)
AdmitFor = Callable[[list[tuple[bytes, bytes]]], Admit]


async def _admit_everyone(event: PeerIdentified) -> tuple[str, str] | None:
    return None


async def respond_handshake(
    ws: WebSocketConnection, *, identity: SigningKey, policy: CryptoPolicy, prologue: bytes, admit: Admit = _admit_everyone
) -> HandshakeComplete | None:
    """Run the responder side under a deadline; None if the peer failed or was refused."""
    hs = Handshake(Role.RESPONDER, identity=identity, policy=policy, rng=os.urandom, prologue=prologue)
    with trio.move_on_after(limits.HANDSHAKE_DEADLINE_S):
        try:
            while True:
                message = await ws.get_message()
                if isinstance(message, str):
                    raise RemoteProtocolError("handshake messages must be binary")
                try:
                    hs.receive_data(message)
                finally:
                    for out in hs.data_to_send():
                        await ws.send_message(out)
                event = hs.next_event()
                if isinstance(event, PeerIdentified):
                    refusal = await admit(event)
                    if refusal is None:
                        hs.accept()
                    else:
                        hs.reject(*refusal)
                    for out in hs.data_to_send():
                        await ws.send_message(out)
                    if refusal is not None:
                        await ws.aclose(code=1008, reason=refusal[0])
                        return None
                    done = hs.next_event()
                    assert isinstance(done, HandshakeComplete)
                    return done
        except ProtocolError as exc:
            log.info("handshake failed: %s", exc)
            await ws.aclose(code=1002, reason=exc.code)
            return None
        except ConnectionClosed:
            return None
    await ws.aclose(code=1008, reason="handshake timeout")
    return None


class Router:
    """Maps request paths to link handlers; unknown paths get a 404 before any handshake."""

    def __init__(self, *, identity: SigningKey, policy: CryptoPolicy) -> None:
        self._identity = identity
        self._policy = policy
        self._routes: dict[str, tuple[LinkHandler, AdmitFor]] = {}

    def route(
        self, path: str, handler: LinkHandler, admit: Admit = _admit_everyone, *, admit_for: AdmitFor | None = None
    ) -> None:
        """Serve ``path`` with ``handler``; ``admit`` (or, given the request headers,
        ``admit_for(headers)``) decides about the authenticated initiator during the handshake."""
        self._routes[path] = (handler, admit_for or (lambda headers: admit))

    async def __call__(self, request: WebSocketRequest) -> None:
        path = request.path.split("?", 1)[0]
        if path not in self._routes:
            await request.reject(404, body=b"unknown endpoint; devices use /client, nodes /federation\n")
            return
        handler, admit_for = self._routes[path]
        admit = admit_for(list(request.headers))
        ws = await request.accept()
        try:
            done = await respond_handshake(
                ws, identity=self._identity, policy=self._policy, prologue=path.encode(), admit=admit
            )
            if done is not None:
                await handler(ws, Channel(done.keys), done)
        except ConnectionClosed:
            pass
        finally:
            await ws.aclose()
