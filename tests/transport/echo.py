"""A minimal responder on the transport alone (no node): ``serve`` + ``respond`` + a
``SecureSocket`` that answers a Ping with its Pong, refuses any other frame with ``fail`` and
refuses an initiator whose key is on its deny list. What the dial, server and socket tests
talk to."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
from sonet.transport.ws_errors import ConnectionClosed

from sonet.core import limits
from sonet.core.channel import Channel
from sonet.core.client_api import CLIENT_FRAMES, Ping, Pong
from sonet.core.crypto import CryptoMode, CryptoPolicy, SigningKey
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.handshake import PeerIdentified
from sonet.transport import SecureSocket, respond, serve
from sonet.transport.server import Connection, ConnectionLimits, Listening
from sonet.transport.websocket import UpgradeRequest

__all__ = ["Echo", "echo_server", "new_key", "PLAIN"]

PLAIN = "an echo responder; WebSocket only, on /client\n"


def new_key() -> SigningKey:
    return SigningKey.generate(CryptoMode.HYBRID, os.urandom)


@dataclass
class Echo:
    url: str
    key: SigningKey
    #: fingerprints refused during the handshake (code "unknown_peer")
    deny: set[str] = field(default_factory=set)
    #: frames the responder received, in order
    received: list[object] = field(default_factory=list)
    #: the server's state (its connection table, its log summary)
    listening: Listening | None = None

    @property
    def fingerprint(self) -> str:
        return self.key.public.fingerprint


@asynccontextmanager
async def echo_server(caps: ConnectionLimits | None = None) -> AsyncIterator[Echo]:
    key = new_key()
    echo = Echo(url="", key=key)

    async def admit(event: PeerIdentified) -> tuple[str, str] | None:
        return ("unknown_peer", "not welcome here") if event.peer.fingerprint in echo.deny else None

    async def handler(request: UpgradeRequest, conn: Connection) -> None:
        ws = await request.accept()
        try:
            done = await respond(ws, identity=key, policy=CryptoPolicy(), prologue=b"/client", admit=admit)
            if done is None:
                return
            conn.authenticated()
            sock = SecureSocket(ws, Channel(done.keys, CLIENT_FRAMES), done.peer)
            sock.allow_messages(limits.MAX_RECORD_BYTES)
            while True:
                try:
                    frame = await sock.receive()
                    echo.received.append(frame)
                    if not isinstance(frame, Ping):
                        raise RemoteProtocolError(f"unexpected {type(frame).__name__}", code="unexpected_frame")
                except ProtocolError as exc:
                    await sock.fail(exc)
                    return
                await sock.send(Pong(request=frame.request))
        except ConnectionClosed:
            pass
        finally:
            with trio.move_on_after(2):
                await ws.aclose()

    async with trio.open_nursery() as nursery:
        listening = await nursery.start(
            lambda task_status: serve(
                handler,
                "127.0.0.1",
                0,
                plain_http_answer=PLAIN,
                caps=caps,
                task_status=task_status,
            )
        )
        echo.url = f"ws://127.0.0.1:{listening.port}"
        echo.listening = listening
        yield echo
        nursery.cancel_scope.cancel()
