"""Node <-> node links over ``URL/federation`` (ARCHITECTURE §4, §6).

Dial side: ``async with dial_peer(url, identity=node_key, fingerprint=pin, name=our_name)`` runs
the secure-channel handshake as initiator (prologue ``b"/federation"``), pins the peer's key and
yields a ``PeerLink`` (raw: one frame at a time). The dialer announces its node name in the
``Sonet-Node`` request header; the name is only a claim used to pick the pin to check, the
handshake proves the key. ``MuxLink`` wraps a PeerLink so that several requests can be
outstanding: ``run()`` reads the answers and hands each to the request with its number; when
the link breaks every pending request fails with ``LinkLost``.

Accept side: ``PeerGate`` is the responder's ``admit`` hook (the initiator's key must be the pin
of a configured peer) and ``serve_link`` serves an admitted link: requests are answered
concurrently (at most ``MAX_CONCURRENT_REQUESTS`` per link), answers are sealed and sent under
one lock (the record counter must follow the wire order). A malformed record, or a handler
raising ProtocolError, gets ``ErrorFrame(request=0)`` and closes that link only.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError as WsHandshakeError, open_websocket_url

from sonet.core import limits
from sonet.core.address import validate_node_name
from sonet.core.channel import Channel
from sonet.core.client_api import ErrorFrame, Ping, Pong
from sonet.core.crypto import CryptoPolicy, SigningKey, VerifyKey
from sonet.core.errors import LocalProtocolError, ProtocolError, RemoteProtocolError, VerifyError
from sonet.core.handshake import Handshake, PeerIdentified, Role
from sonet.core.handshake_driver import run_initiator
from sonet.core.wire import Frame

from .peers import Peer, find_peer
from .status import FederationStatus

__all__ = [
    "ENDPOINT",
    "NAME_HEADER",
    "MAX_CONCURRENT_REQUESTS",
    "PeerLink",
    "MuxLink",
    "LinkLost",
    "DialError",
    "dial_peer",
    "PeerGate",
    "Handler",
    "serve_link",
]

log = logging.getLogger("sonet.federation")
#: what a refusal code looks like (the close reason of a refused handshake)
_REFUSAL_CODE = re.compile(r"[a-z_]{1,40}")

ENDPOINT = "/federation"
NAME_HEADER = b"sonet-node"
#: requests of one inbound link handled at the same time; the link reads no more until one ends
MAX_CONCURRENT_REQUESTS = 16
#: how long a closing link may take to tell the peer why (bounded even when shielded)
_CLOSE_GRACE_S = 2.0


class DialError(Exception):
    """The peer could not be reached or authenticated; ``code`` is the refusal code if any."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class LinkLost(Exception):
    """A dialled link ended before the answer to a request came; the message says why."""


class PeerLink:
    """An authenticated link to a peer node, one frame at a time (``MuxLink`` multiplexes)."""

    def __init__(self, ws: Any, channel: Channel, peer_key: VerifyKey) -> None:
        self._ws = ws
        self._channel = channel
        self.peer_key = peer_key
        self._numbers = 0
        self._lock = trio.Lock()

    def seal(self, frame: Frame) -> bytes:
        """The record for ``frame``; it must be sent next (the counter advanced)."""
        return self._channel.send(frame)

    async def send_record(self, record: bytes) -> None:
        await self._ws.send_message(record)

    async def send(self, frame: Frame) -> None:
        await self.send_record(self.seal(frame))

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


class MuxLink:
    """A dialled link with several requests outstanding; ``run()`` must be running."""

    def __init__(self, link: PeerLink, peer: Peer) -> None:
        self._link = link
        #: the peer entry this link was dialled for (its URL and pin)
        self.peer = peer
        self._numbers = itertools.count(1)
        self._pending: dict[int, trio.MemorySendChannel[Frame]] = {}
        self._send_lock = trio.Lock()
        self._scope = trio.CancelScope()
        #: why the link ended, None while it is usable
        self.closed: str | None = None
        #: frames received so far: tells a silent peer from one slow request
        self.heard = 0

    @property
    def peer_key(self) -> VerifyKey:
        return self._link.peer_key

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
        self._scope.cancel()

    async def request(self, frame: Frame) -> Frame:
        """Send ``frame`` (any request number; it is renumbered) and return the peer's answer
        to it, whatever frame that is. LinkLost if the link ends first."""
        if self.closed is not None:
            raise LinkLost(self.closed)
        number = next(self._numbers)
        send, receive = trio.open_memory_channel[Frame](1)
        self._pending[number] = send
        try:
            await self._send(dataclasses.replace(frame, request=number))  # type: ignore[type-var]
            try:
                return await receive.receive()
            except trio.EndOfChannel:
                raise LinkLost(self.closed or "link closed") from None
        finally:
            self._pending.pop(number, None)

    async def _send(self, frame: Frame) -> None:
        async with self._send_lock:
            if self.closed is not None:
                raise LinkLost(self.closed)
            try:
                record = self._link.seal(frame)
            except LocalProtocolError as exc:  # a frame we must not send, or a worn-out channel
                self.close(f"cannot send {type(frame).__name__}: {exc}")
                raise LinkLost(self.closed or "link closed") from None
            sent = False
            try:
                await self._link.send_record(record)
                sent = True
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                self.close("the peer closed the link")
                raise LinkLost(self.closed or "link closed") from None
            finally:
                if not sent:  # sealed but not sent: the record counters no longer agree
                    self.close("a request was interrupted while being sent")

    async def run(self) -> None:
        """Read answers until the link ends or ``close()``; then fail every pending request."""
        with self._scope:
            try:
                while True:
                    frame = await self._link.receive()
                    self.heard += 1
                    number = getattr(frame, "request", 0)
                    if not number:
                        detail = f"{frame.code}: {frame.message}" if isinstance(frame, ErrorFrame) else type(frame).__name__
                        self.close(f"the peer ended the link ({detail})")
                        break
                    waiter = self._pending.pop(number, None)
                    if waiter is not None:  # else: the requester gave up (deadline) meanwhile
                        waiter.send_nowait(frame)
            except ConnectionClosed as exc:
                reason = exc.reason.reason if exc.reason is not None and exc.reason.reason else "connection lost"
                self.close(f"the peer closed the link ({reason})")
            except ProtocolError as exc:
                self.close(f"protocol error on the link: {exc}")
        self.close("link closed")
        for waiter in self._pending.values():
            waiter.close()
        self._pending.clear()


@asynccontextmanager
async def dial_peer(
    url: str, *, identity: SigningKey, fingerprint: str, name: str, policy: CryptoPolicy | None = None
) -> AsyncIterator[PeerLink]:
    """Open an authenticated link to the peer at ``url`` whose key must match ``fingerprint``."""
    endpoint = url.rstrip("/") + ENDPOINT
    headers = [(NAME_HEADER, validate_node_name(name).encode())]
    established = False
    try:
        # One deadline for the connect, the upgrade and the handshake, lifted once the link is
        # up. trio-websocket's connect_timeout is not enough: when the peer accepts the TCP
        # connection but never answers the upgrade, its reader task keeps open_websocket_url
        # waiting until the peer closes.
        with trio.CancelScope(deadline=trio.current_time() + limits.HANDSHAKE_DEADLINE_S) as dialling:
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
                done = await run_initiator(hs, send=ws.send_message, receive=ws.get_message, peer="peer")
                dialling.deadline = math.inf
                established = True
                yield PeerLink(ws, Channel(done.keys), done.peer)
        if dialling.cancelled_caught:
            raise DialError(f"the peer at {url} did not complete the handshake in time")
    except VerifyError as exc:
        if established:
            raise
        if exc.code == "wrong_identity":  # the message would name fingerprints: not for logs
            raise DialError(f"the node at {url} presented a different identity key than pinned", code=exc.code) from None
        raise DialError(f"secure channel with {url} failed: the peer's identity did not verify", code=exc.code) from None
    except ProtocolError as exc:
        if established:
            raise
        raise DialError(f"secure channel with {url} failed: {exc}", code=exc.code) from None
    except ConnectionClosed as exc:
        if established:
            raise
        reason = exc.reason.reason if exc.reason is not None and exc.reason.reason else "connection lost"
        # A refusal closes with 1008 and its code as the reason; the close can overtake the
        # refusal message itself, so the code is taken from either.
        refused = exc.reason is not None and exc.reason.code == 1008 and _REFUSAL_CODE.fullmatch(reason)
        raise DialError(f"the peer at {url} closed the connection ({reason})", code=reason if refused else None) from None
    except (OSError, WsHandshakeError) as exc:
        if established:
            raise
        raise DialError(f"cannot connect to {endpoint}: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    """One line on a connection failure (trio-websocket wraps the OSError, without a message)."""
    for error in (exc, exc.__cause__, exc.__context__):
        if error is not None and (text := getattr(error, "strerror", None) or str(error)):
            return text
    return type(exc).__name__


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
    the next link without a restart; while it cannot be read (one of ``store_errors``) links
    are refused with ``unavailable``. Refusal messages never contain fingerprints."""

    def __init__(
        self,
        *,
        load_peers: LoadPeers,
        status: FederationStatus,
        clock_ms: Callable[[], int],
        store_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._load_peers = load_peers
        self._store_errors = store_errors
        self._status = status
        self._clock_ms = clock_ms

    def admit_for(self, headers: list[tuple[bytes, bytes]]) -> Callable[[PeerIdentified], Awaitable[tuple[str, str] | None]]:
        claim = claimed_name(headers)

        async def admit(event: PeerIdentified) -> tuple[str, str] | None:
            return await self.decide(event.peer.fingerprint, claim)

        return admit

    async def decide(self, fingerprint: str, claim: str | None) -> tuple[str, str] | None:
        try:
            peers = await self._load_peers()
        except self._store_errors as exc:
            log.warning("refused a federation link: cannot read the peer table: %s", exc)
            return "unavailable", "this node cannot check its peers right now; try again later"
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


Handler = Callable[[Frame], Awaitable[Frame]]


async def serve_link(ws: Any, channel: Channel, handle: Handler, *, max_concurrent: int = MAX_CONCURRENT_REQUESTS) -> None:
    """Serve one admitted link until it closes: every frame is answered by ``handle`` (several
    at a time). A malformed record, or ``handle`` raising ProtocolError, ends the link with
    ``ErrorFrame(request=0)`` saying why."""
    send_lock = trio.Lock()
    slots = trio.Semaphore(max_concurrent)

    async def fail(exc: ProtocolError, scope: trio.CancelScope) -> None:
        error = ErrorFrame(request=0, code=exc.code, message=str(exc)[:300])
        # Shielded but bounded: it is the link's last word, whoever cancels the handlers.
        with trio.move_on_after(_CLOSE_GRACE_S, shield=True):
            async with send_lock:
                if not ws.closed:
                    try:
                        try:
                            record = channel.send(error)
                        except LocalProtocolError:  # the peer's record broke the channel
                            record = channel.send_last(error)
                        await ws.send_message(record)
                    except (ConnectionClosed, ProtocolError):
                        pass
                    await ws.aclose(code=1008, reason=exc.code)
        scope.cancel()

    async def answer(frame: Frame, scope: trio.CancelScope) -> None:
        try:
            reply = await handle(frame)
            async with send_lock:
                await ws.send_message(channel.send(reply))
        except ProtocolError as exc:
            log.info("closing a federation link: %s", exc)
            await fail(exc, scope)
        except ConnectionClosed:
            scope.cancel()
        finally:
            slots.release()

    async with trio.open_nursery() as nursery:
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed:
                break
            try:
                if isinstance(message, str):
                    raise RemoteProtocolError("federation records must be binary")
                channel.receive_data(message)
                frame = channel.next_event()
            except ProtocolError as exc:
                log.info("closing a federation link: %s", exc)
                await fail(exc, nursery.cancel_scope)
                break
            await slots.acquire()
            nursery.start_soon(answer, frame, nursery.cancel_scope)
        nursery.cancel_scope.cancel()
