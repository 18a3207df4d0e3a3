"""Node <-> node links over ``URL/federation`` (ARCHITECTURE §4, §6), on the transport.

Dial side: ``async with dial_peer(url, identity=node_key, fingerprint=pin, name=our_name)`` runs
the secure-channel handshake as initiator (prologue ``b"/federation"``; ``sonet.transport.dial``:
one deadline over connect, upgrade and handshake), pins the peer's key and yields a
``PeerLink`` (raw: one frame at a time). The dialer announces its node name in the
``Sonet-Node`` request header; the name picks the pin to check, the handshake proves the key.
``MuxLink`` lets several requests be outstanding (the transport's ``Mux``): ``run()`` reads
the answers and hands each to the request with its number; when the link breaks every pending
request fails with ``LinkLost``. It numbers its pushes in the order they go out and follows
their answers (federation/push_sequence.py).

Accept side: ``PeerGate`` is the responder's ``admit`` hook (the initiator must announce the
name of a configured peer and its key must be that peer's pin) and ``serve_link`` serves an
admitted link: requests are answered concurrently (at most ``MAX_CONCURRENT_REQUESTS`` per
link), except the sequenced pushes, which are taken one at a time in the order read and
answered in that order (``pipelined``: the next one taken while the one before still waits for
its commit);
answers are sealed and sent in wire order by the socket. A malformed record, or a
handler raising ProtocolError, gets ``ErrorFrame(request=0)`` and closes that link only
(``SecureSocket.fail``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import trio
from sonet.transport.ws_errors import ConnectionClosed

from sonet.core.address import validate_node_name
from sonet.core.crypto import CryptoPolicy, SigningKey, VerifyKey
from sonet.core.errors import LocalProtocolError, ProtocolError
from sonet.core.federation_api import FEDERATION_FRAMES, Push
from sonet.core.handshake import PeerIdentified
from sonet.core.wire import Frame
from sonet.transport import DialError, LinkLost, Mux, SecureSocket, dial, events
from sonet.transport.log_summary import LogSummary
from sonet.transport.send_deadline import SEND_TIMEOUT_S

from .peers import Peer, find_peer
from .push_sequence import Sending
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
    "Pipelined",
    "Taken",
    "serve_link",
]

log = logging.getLogger("sonet.federation")
#: refused inbound links, one line per 10 s (the name most claimed): anybody can dial and claim
#: any name, and each refusal was a line (~36 a second from one stranger); the last refusals
#: are in ``sonet-node status`` (FederationStatus) and the audit log
refusals_summary = LogSummary(log, what="federation links refused")

ENDPOINT = "/federation"
NAME_HEADER = b"sonet-node"
#: requests of one inbound link handled at the same time; the link reads no more until one ends
MAX_CONCURRENT_REQUESTS = 16

#: an authenticated link to a peer node, one frame at a time (``MuxLink`` multiplexes)
PeerLink = SecureSocket


class MuxLink:
    """A dialled link with several requests outstanding; ``run()`` must be running. Pushes are
    numbered in the order they go out (federation/push_sequence.py)."""

    def __init__(self, link: PeerLink, peer: Peer) -> None:
        self._pushes = Sending()
        self._mux = Mux(link, peer="peer", on_answer=self._answered)
        #: the peer entry this link was dialled for (its URL and pin)
        self.peer = peer
        self.peer_key: VerifyKey = link.peer_key

    @property
    def closed(self) -> str | None:
        """Why the link ended, None while it is usable."""
        return None if self._mux.lost is None else str(self._mux.lost)

    @property
    def heard(self) -> int:
        """Frames received so far: tells a silent peer from one slow request."""
        return self._mux.heard

    def close(self, reason: str) -> None:
        self._mux.close(reason)

    async def request(self, frame: Frame, *, sent: Callable[[], object] | None = None) -> Frame:
        """Send ``frame`` (any request number; it is renumbered, a push gets its sequence
        number) and return the peer's answer to it, whatever frame that is. ``sent()`` is
        called once it has its place on the link. LinkLost if the link ends first."""

        def build(number: int) -> Frame:
            numbered = dataclasses.replace(frame, request=number)
            if isinstance(numbered, Push):
                numbered = self._pushes.number(numbered)
            if sent is not None:
                sent()
            return numbered

        try:
            return await self._mux.request(build)
        except LocalProtocolError as exc:  # a frame we must not send, or a worn-out channel
            self.close(f"cannot send {type(frame).__name__}: {exc}")
            raise LinkLost(self.closed or "link closed") from None

    async def run(self) -> None:
        """Read answers until the link ends or ``close()``; then fail every pending request."""
        await self._mux.run()

    def _answered(self, answer: Frame) -> None:
        out_of_step = self._pushes.answered(answer)
        if out_of_step is not None:
            log.info("closing the link to %s: %s", self.peer.name, out_of_step)
            self.close(out_of_step)


@asynccontextmanager
async def dial_peer(
    url: str,
    *,
    identity: SigningKey,
    fingerprint: str,
    name: str,
    policy: CryptoPolicy | None = None,
    send_timeout_s: float = SEND_TIMEOUT_S,
    peer: str | None = None,
) -> AsyncIterator[PeerLink]:
    """Open an authenticated link to the peer at ``url`` whose key must match ``fingerprint``;
    a send that makes no progress for ``send_timeout_s`` ends it (the peer stopped reading).
    ``peer``: the name it is pinned under, for the audit of a wrong identity."""
    headers = [(NAME_HEADER, validate_node_name(name).encode())]
    established = False
    try:
        async with dial(
            url,
            ENDPOINT,
            identity=identity,
            expected_peer=fingerprint,
            frames=FEDERATION_FRAMES,
            policy=policy,
            headers=headers,
            peer="peer",
            send_timeout_s=send_timeout_s,
        ) as link:
            established = True
            yield link
    except DialError as exc:
        if established:
            raise
        # the handshake's own words would name fingerprints: not for logs. (A wrong_identity
        # without our pin in it is the peer's gate refusing this node's name and key: its words
        # name no fingerprint and say what is wrong.)
        if exc.code == "wrong_identity" and fingerprint in str(exc):
            events.emit("wrong_identity", peer=peer, url=url, direction="outbound", code=exc.code)
            raise DialError(f"the node at {url} presented a different identity key than pinned", code=exc.code) from None
        if exc.code == "verify_failed":
            raise DialError(f"secure channel with {url} failed: the peer's identity did not verify", code=exc.code) from None
        raise


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

    def admit_for(
        self, headers: list[tuple[bytes, bytes]], address: str | None = None
    ) -> Callable[[PeerIdentified], Awaitable[tuple[str, str] | None]]:
        """The ``admit`` hook of one request (its headers; ``address``: where it came from)."""
        claim = claimed_name(headers)

        async def admit(event: PeerIdentified) -> tuple[str, str] | None:
            return await self.decide(event.peer.fingerprint, claim, address=address)

        return admit

    async def decide(self, fingerprint: str, claim: str | None, *, address: str | None = None) -> tuple[str, str] | None:
        """Admit (None) only the configured peer the initiator names AND whose pin its key
        matches: a key pinned for one name announcing another (configured or not), or no name
        at all, is refused, so one peer can never act as another or as a stranger. A refusal
        is recorded with the configured peer it concerns (if any), the name it announced
        (``unverified_name``: anyone can announce any name) and ``address``."""
        try:
            peers = await self._load_peers()
        except self._store_errors as exc:
            log.warning("refused a federation link: cannot read the peer table: %s", exc)
            return "unavailable", "this node cannot check its peers right now; try again later"
        by_key = find_peer(peers, fingerprint=fingerprint)
        known_as = by_key.name if by_key is not None else None

        def refuse(peer: str | None, code: str, message: str) -> tuple[str, str]:
            return self._refuse(peer, code, message, claim=claim, address=address)

        if claim is None:
            return refuse(known_as, "unknown_peer", "a peer node must announce its name (the Sonet-Node header)")
        named = find_peer(peers, name=claim)
        if named is None:
            if by_key is not None:
                log.info("the key pinned for %s announced the unconfigured name %s", by_key.name, claim)
            return refuse(known_as, "unknown_peer", f"{claim} is not a configured peer of this node")
        if named.fingerprint != fingerprint:
            return refuse(claim, "wrong_identity", f"node {claim} is pinned to a different identity key")
        also = sorted(p.name for p in peers if p.fingerprint == fingerprint and p.name != claim)
        if also:  # the link is served as the key's peer: it must have one name only
            return refuse(claim, "wrong_identity", f"the key of {claim} is pinned for {', '.join(also)} as well")
        self._status.record_admitted()
        return None

    def _refuse(self, peer: str | None, code: str, message: str, *, claim: str | None, address: str | None) -> tuple[str, str]:
        self._status.record_refusal(peer=peer, reason=code, at=self._clock_ms(), unverified_name=claim, address=address)
        # the gate reports its own refusals (the transport does not report admit's decisions)
        kind = "wrong_identity" if code == "wrong_identity" else "handshake_refused"
        events.emit(kind, peer=peer, unverified_name=claim, address=address, code=code, direction="inbound")
        refusals_summary.count(code, peer or (f"{claim} (unverified)" if claim else "(no name)"))
        log.debug("refused federation link from %s announcing %s (%s): %s", address or "?", claim or "no name", code, message)
        return code, message


Handler = Callable[[Frame], Awaitable[Frame]]


class Taken(Protocol):
    """A frame of the ordered lane, taken by ``Pipelined.start``."""

    async def wait(self, queued: Callable[[], object]) -> None:
        """Until its work is done (a durable commit), beside the next frames' starts; calls
        ``queued()`` as soon as the next frame may be taken (its work has its place)."""
        ...

    def answer(self) -> Frame:
        """Its answer, once ``wait`` ended and the answers of the frames before it went."""
        ...


class Pipelined(Protocol):
    """A handler of the ordered lane that lets a frame's work overlap the next ones'."""

    #: frames taken ahead of the oldest one whose answer has not gone yet
    ahead: int

    async def start(self, frame: Frame) -> Taken:
        """Take the next ordered frame (one at a time, in the order read)."""
        ...


def sequenced(frame: Frame) -> bool:
    """A push numbered on its link: handled in the link's ordered lane."""
    return isinstance(frame, Push) and frame.seq > 0


async def serve_link(
    link: PeerLink,
    handle: Handler,
    *,
    max_concurrent: int = MAX_CONCURRENT_REQUESTS,
    ordered: Callable[[Frame], bool] = sequenced,
    pipelined: Pipelined | None = None,
) -> None:
    """Serve one admitted link until it closes: every frame is answered by ``handle`` (several
    at a time). The frames ``ordered`` picks are handled in the order read, their answers sent
    in that order (the sequenced pushes): without ``pipelined`` one at a time, each answered
    before the next starts; with it, ``pipelined.start`` takes them one at a time and each
    one's ``wait`` runs beside the next ones' (at most ``pipelined.ahead`` unanswered). The
    others are answered beside them. A malformed record, or a handler raising ProtocolError,
    ends the link with ``ErrorFrame(request=0)`` saying why (after the answers of the ordered
    frames before it)."""
    slots = trio.Semaphore(max_concurrent)
    # the ordered lane holds at most the frames the slots let in
    to_lane, lane = trio.open_memory_channel[Frame](max_concurrent)

    async def fail(exc: ProtocolError, scope: trio.CancelScope) -> None:
        log.info("closing a federation link: %s", exc)
        await link.fail(exc)
        scope.cancel()

    async def answer(frame: Frame, scope: trio.CancelScope) -> None:
        try:
            await link.send(await handle(frame))
        except ProtocolError as exc:
            await fail(exc, scope)
        except ConnectionClosed:
            scope.cancel()
        finally:
            slots.release()

    async def one_at_a_time(scope: trio.CancelScope) -> None:
        async for frame in lane:
            await answer(frame, scope)

    async def finish(
        taken: Taken, queued: trio.Event, previous: trio.Event, answered: trio.Event, ahead: trio.Semaphore, scope: trio.CancelScope
    ) -> None:
        try:
            try:
                await taken.wait(queued.set)
            finally:
                queued.set()
            await previous.wait()
            await link.send(taken.answer())
        except ProtocolError as exc:
            await fail(exc, scope)
        except ConnectionClosed:
            scope.cancel()
        finally:
            answered.set()
            ahead.release()
            slots.release()

    async def overlapped(lane_handler: Pipelined, nursery: trio.Nursery) -> None:
        scope = nursery.cancel_scope
        ahead = trio.Semaphore(lane_handler.ahead)
        previous = trio.Event()  # set once the answer of the ordered frame before has gone
        previous.set()
        async for frame in lane:
            await ahead.acquire()
            try:
                taken = await lane_handler.start(frame)
            except ProtocolError as exc:
                await previous.wait()  # the answers before it go first
                await fail(exc, scope)
                return
            queued, answered = trio.Event(), trio.Event()
            nursery.start_soon(finish, taken, queued, previous, answered, ahead, scope)
            await queued.wait()
            previous = answered

    async with trio.open_nursery() as nursery:
        if pipelined is None:
            nursery.start_soon(one_at_a_time, nursery.cancel_scope)
        else:
            nursery.start_soon(overlapped, pipelined, nursery)
        while True:
            try:
                frame = await link.receive()
            except ConnectionClosed:
                break
            except ProtocolError as exc:
                await fail(exc, nursery.cancel_scope)
                break
            await slots.acquire()
            if ordered(frame):
                to_lane.send_nowait(frame)  # never full: it holds at most the slots taken
            else:
                nursery.start_soon(answer, frame, nursery.cancel_scope)
        nursery.cancel_scope.cancel()
