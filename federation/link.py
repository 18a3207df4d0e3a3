"""Node <-> node links over ``URL/federation`` (ARCHITECTURE §4, §6).

Dial side: ``async with dial_peer(url, identity=node_key, fingerprint=pin, name=our_name)`` runs
the secure-channel handshake as initiator (prologue ``b"/federation"``), pins the peer's key and
yields a ``PeerLink``. The dialer announces its node name in the ``Sonet-Node`` request header;
the name is only a claim used to pick the pin to check, the handshake proves the key.

Accept side: ``PeerGate`` is the responder's ``admit`` hook (the initiator's key must be the pin
of a configured peer) and ``serve_peer_link`` serves an admitted link. For now a link only
answers ``Ping`` with ``Pong``; anything else ends it with an ``ErrorFrame``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError as WsHandshakeError, open_websocket_url

from core import limits
from core.address import validate_node_name
from core.channel import Channel
from core.client_api import ErrorFrame, Ping, Pong
from core.crypto import CryptoPolicy, SigningKey, VerifyKey
from core.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from core.handshake import Handshake, HandshakeComplete, PeerIdentified, Role
from core.wire import Frame

from .peers import Peer, find_peer
from .status import FederationStatus

__all__ = [
    "ENDPOINT",
    "NAME_HEADER",
    "PeerLink",
    "DialError",
    "dial_peer",
    "PeerGate",
    "serve_peer_link",
]

log = logging.getLogger("sonet.federation")

ENDPOINT = "/federation"
NAME_HEADER = b"sonet-node"


class DialError(Exception):
    """The peer could not be reached or authenticated; ``code`` is the refusal code if any."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class PeerLink:
    """An authenticated link to a peer node (request/answer, one at a time)."""

    def __init__(self, ws: Any, channel: Channel, peer_key: VerifyKey) -> None:
        self._ws = ws
        self._channel = channel
        self.peer_key = peer_key
        self._numbers = 0
        self._lock = trio.Lock()

    async def send(self, frame: Frame) -> None:
        await self._ws.send_message(self._channel.send(frame))

    async def receive(self) -> Frame:
        message = await self._ws.get_message()
        if isinstance(message, str):
            raise RemoteProtocolError("peer sent a text message")
        self._channel.receive_data(message)
        return self._channel.next_event()

    async def ping(self) -> None:
        """Round trip: raise if the peer does not answer with the matching Pong."""
        async with self._lock:
            self._numbers += 1
            await self.send(Ping(request=self._numbers))
            answer = await self.receive()
        if not (isinstance(answer, Pong) and answer.request == self._numbers):
            raise RemoteProtocolError(f"expected Pong, got {type(answer).__name__}")


async def _initiate(ws: Any, hs: Handshake) -> HandshakeComplete:
    for out in hs.data_to_send():
        await ws.send_message(out)
    while True:
        message = await ws.get_message()
        if isinstance(message, str):
            raise RemoteProtocolError("peer sent a text message during the handshake")
        try:
            hs.receive_data(message)
        finally:
            for out in hs.data_to_send():
                await ws.send_message(out)
        event = hs.next_event()
        if isinstance(event, HandshakeComplete):
            return event


@asynccontextmanager
async def dial_peer(
    url: str, *, identity: SigningKey, fingerprint: str, name: str, policy: CryptoPolicy | None = None
) -> AsyncIterator[PeerLink]:
    """Open an authenticated link to the peer at ``url`` whose key must match ``fingerprint``."""
    endpoint = url.rstrip("/") + ENDPOINT
    headers = [(NAME_HEADER, validate_node_name(name).encode())]
    established = False
    try:
        async with open_websocket_url(
            endpoint,
            extra_headers=headers,
            max_message_size=limits.MAX_RECORD_BYTES,
            connect_timeout=limits.HANDSHAKE_DEADLINE_S,
            disconnect_timeout=2,
        ) as ws:
            hs = Handshake(
                Role.INITIATOR,
                identity=identity,
                policy=policy or CryptoPolicy(),
                rng=os.urandom,
                prologue=ENDPOINT.encode(),
                expected_peer=fingerprint,
            )
            with trio.fail_after(limits.HANDSHAKE_DEADLINE_S):
                done = await _initiate(ws, hs)
            established = True
            yield PeerLink(ws, Channel(done.keys), done.peer)
    except ProtocolError as exc:
        if established:
            raise
        raise DialError(f"secure channel with {url} failed: {exc}", code=exc.code) from None
    except ConnectionClosed as exc:
        if established:
            raise
        reason = exc.reason.reason if exc.reason is not None and exc.reason.reason else "connection lost"
        raise DialError(f"the peer at {url} closed the connection ({reason})") from None
    except (OSError, WsHandshakeError) as exc:
        if established:
            raise
        raise DialError(f"cannot connect to {endpoint}: {getattr(exc, 'strerror', None) or exc}") from None
    except trio.TooSlowError:
        if established:
            raise
        raise DialError(f"the peer at {url} did not complete the handshake in time") from None


# Accept side ------------------------------------------------------------------------------

LoadPeers = Callable[[], Awaitable[list[Peer]]]


def claimed_name(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The node name the dialer announced, normalised; None if absent or malformed."""
    for key, value in headers:
        if key.lower() == NAME_HEADER:
            try:
                return validate_node_name(value.decode("ascii"), remote=True)
            except (UnicodeDecodeError, ProtocolError):
                return None
    return None


class PeerGate:
    """Decides, during the handshake, whether an initiator is a configured peer.

    The peer table is read on every attempt, so ``sonet-node peer add/remove`` takes effect for
    the next link without a restart. Refusal messages never contain fingerprints."""

    def __init__(self, *, load_peers: LoadPeers, status: FederationStatus, clock_ms: Callable[[], int]) -> None:
        self._load_peers = load_peers
        self._status = status
        self._clock_ms = clock_ms

    def admit_for(self, headers: list[tuple[bytes, bytes]]) -> Callable[[PeerIdentified], Awaitable[tuple[str, str] | None]]:
        claim = claimed_name(headers)

        async def admit(event: PeerIdentified) -> tuple[str, str] | None:
            return await self.decide(event.peer.fingerprint, claim)

        return admit

    async def decide(self, fingerprint: str, claim: str | None) -> tuple[str, str] | None:
        peers = await self._load_peers()
        by_key = find_peer(peers, fingerprint=fingerprint)
        if claim is not None:
            named = find_peer(peers, name=claim)
            if named is not None and named.fingerprint != fingerprint:
                return self._refuse(claim, "wrong_identity", f"node {claim} is pinned to a different identity key")
            if named is None and by_key is None:
                return self._refuse(None, "unknown_peer", f"{claim} is not a configured peer of this node")
        if by_key is None:
            return self._refuse(None, "unknown_peer", "this node has no peer with that identity key")
        self._status.record_admitted()
        return None

    def _refuse(self, peer: str | None, code: str, message: str) -> tuple[str, str]:
        self._status.record_refusal(peer=peer, reason=code, at=self._clock_ms())
        log.info("refused federation link (%s)%s", code, f" claiming {peer}" if peer else "")
        return code, message


async def serve_peer_link(ws: Any, channel: Channel, status: FederationStatus) -> None:
    """Serve one admitted link until it closes: Ping -> Pong; anything else ends the link."""
    status.link_opened()
    try:
        while True:
            message = await ws.get_message()
            try:
                if isinstance(message, str):
                    raise RemoteProtocolError("federation records must be binary")
                channel.receive_data(message)
                frame = channel.next_event()
                if not isinstance(frame, Ping):
                    await ws.send_message(
                        channel.send(
                            ErrorFrame(request=0, code="unsupported", message=f"{type(frame).__name__} is not supported on federation links yet")
                        )
                    )
                    await ws.aclose(code=1008, reason="unsupported")
                    return
                await ws.send_message(channel.send(Pong(request=frame.request)))
            except ProtocolError as exc:
                try:
                    await ws.send_message(channel.send_last(ErrorFrame(request=0, code=exc.code, message=str(exc)[:300])))
                except LocalProtocolError:
                    pass
                await ws.aclose(code=1002, reason=exc.code)
                return
    except ConnectionClosed:
        pass
    finally:
        status.link_closed()
