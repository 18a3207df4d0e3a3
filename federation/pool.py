"""Dialled links to the direct peers: one per peer, dialled on demand, shared by the outbox
workers and lookups; and what went wrong with each peer, which drives its backoff.

A failure (cannot connect, wrong identity, a refusal, a broken link, no answer in time, an
answer that says "try later") records the peer's ``last_error`` and, unless it is already
backing off, draws the next retry time from its ``Backoff``. Outbox workers wait for that time
(``wait_ready``); lookups dial at once whatever the backoff (a user is waiting). A successful
dial, an admitted inbound link from the peer, or a push it answered (the outbox calls
``seen``) resets the backoff and wakes the waiting workers at once: a peer that comes back is
used again immediately, and its next failure waits from the base delay again.

A link is used only under the peer's current entry (URL and pin): once ``update`` told the pool
of a changed or removed entry, a request for the old one fails (its caller reads the routes
again) and a dial still on its way under it is dropped when it completes, never handed to the
requests that waited for it (a slow dial under a pin the operator has just replaced would
otherwise carry items to the node the operator un-pinned).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import trio
from sonet.transport.ws_errors import ConnectionClosed, HandshakeError as WsHandshakeError

from sonet.core.crypto import CryptoPolicy, SigningKey, VerifyKey
from sonet.core.errors import ProtocolError
from sonet.core.wire import Frame

from .backoff import Backoff
from .errors import FederationError
from .link import DialError, LinkLost, MuxLink, dial_peer
from .peers import Peer
from .routes import Routes
from .settings import FederationSettings

__all__ = ["LinkPool", "LinkError", "LinkRefused"]

log = logging.getLogger("sonet.federation")


@dataclass(frozen=True, slots=True)
class LinkError:
    code: str
    message: str
    at: int  # ms since the epoch


class LinkRefused(FederationError):
    """The peer refused this node's link (its gate: ``unknown_peer``, ``wrong_identity``, ...),
    in its own words: its operator has to pin this node, or fix the pin."""


class _Attempt:
    """One dial in progress; others wanting the link wait for it."""

    __slots__ = ("peer", "done", "error")

    def __init__(self, peer: Peer) -> None:
        #: the entry it dials under
        self.peer = peer
        self.done = trio.Event()
        self.error: FederationError | None = None


class _PeerState:
    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.link: MuxLink | None = None
        self.dialling: _Attempt | None = None
        self.retry_at: float | None = None  # trio clock
        self.next_attempt_at: int | None = None  # the same, in ms since the epoch (status)
        self.last_error: LinkError | None = None
        #: the last dial was refused by the peer (``LinkRefused``) and none worked since
        self.refused = False
        self.changed = trio.Event()

    def backing_off(self) -> bool:
        return self.retry_at is not None and trio.current_time() < self.retry_at

    def wake(self) -> None:
        """Let every worker waiting on this peer look again."""
        self.changed.set()
        self.changed = trio.Event()

    def reset(self) -> None:
        self.backoff.reset()
        self.retry_at = self.next_attempt_at = None
        self.refused = False
        self.wake()


class LinkPool:
    def __init__(
        self,
        *,
        name: str,
        identity: SigningKey,
        policy: CryptoPolicy,
        remember_key: Callable[[Peer, VerifyKey], object],
        clock_ms: Callable[[], int],
        rng: Callable[[int], bytes],
        settings: FederationSettings,
    ) -> None:
        """``remember_key(peer, key)`` (awaitable) stores a dialled peer's checked key."""
        self._name = name
        self._identity = identity
        self._policy = policy
        self._remember_key = remember_key
        self._clock_ms = clock_ms
        self._rng = rng
        self._settings = settings
        self._states: dict[str, _PeerState] = {}
        self._inbound: dict[str, int] = {}
        self._peers: dict[str, Peer] = {}
        #: ``update`` was called: ``_peers`` is the table the entries of requests must match
        self._updated = False
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        #: bumped on every change a status reader would see
        self.version = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the link tasks until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._stopping = True  # the nursery takes no new link from here on

    def _state(self, name: str) -> _PeerState:
        state = self._states.get(name)
        if state is None:
            s = self._settings
            backoff = Backoff(rng=self._rng, base=s.retry_base_s, factor=s.retry_factor, cap=s.retry_max_s)
            state = self._states[name] = _PeerState(backoff)
        return state

    # Using links ----------------------------------------------------------------------------

    async def request(
        self, peer: Peer, frame: Frame, *, sent: Callable[[MuxLink], object] | None = None, follows: MuxLink | None = None
    ) -> Frame:
        """The answer of direct peer ``peer`` to ``frame`` (whatever frame it is), over the
        shared link, dialled now if needed, whatever the backoff. FederationError if there is
        no link, it breaks, or no answer comes within the request deadline. ``sent(link)`` is
        called once the frame has its place on the link (a push its sequence number). With
        ``follows`` (the link an earlier push went on) it goes on that link or not at all: on
        a new link, whose sequence starts again, the peer would apply it ahead of that push if
        the push was lost with the old link (no backoff: that push's failure records it)."""
        gone = FederationError("unreachable", f"the link to {peer.name} the pushes before it went on is gone")
        if follows is not None and follows.closed is not None:
            raise gone
        link = await self._link(peer)
        if follows is not None and link is not follows:
            raise gone
        deadline = self._settings.request_deadline_s
        heard = link.heard
        error = FederationError("unreachable", f"{peer.name} did not answer within {deadline:g} s")
        with trio.move_on_after(deadline) as scope:
            try:
                return await link.request(frame, sent=None if sent is None else lambda: sent(link))
            except LinkLost as exc:
                error = FederationError("unreachable", f"the link to {peer.name} broke: {exc}")
        if scope.cancelled_caught:
            if link.heard != heard:
                # the peer answers other requests: only this one is slow (e.g. a lookup it
                # relays towards a stalled node); the shared link and its backoff stay as they are
                raise error
            link.close("no answer in time")  # a silent peer: a fresh link next time
        self.setback(peer.name, error.code, str(error))
        error.logged = True
        raise error

    def _superseded(self, peer: Peer) -> bool:
        """``peer`` is not the entry of the peer table the pool was last told of (changed or gone)."""
        if not self._updated:
            return False
        current = self._peers.get(peer.name)
        return current is None or (current.url, current.fingerprint) != (peer.url, peer.fingerprint)

    def _superseded_error(self, peer: Peer) -> FederationError:
        return FederationError("unreachable", f"the peer entry of {peer.name} changed; its items wait for the new one")

    async def _link(self, peer: Peer) -> MuxLink:
        while True:
            if self._superseded(peer):
                raise self._superseded_error(peer)
            state = self._state(peer.name)  # (a peer removed and added again has a new state)
            link = state.link
            if link is not None and link.closed is None:
                if (link.peer.url, link.peer.fingerprint) == (peer.url, peer.fingerprint):
                    return link
                link.close("the peer's entry changed")
                state.link = None
            attempt = state.dialling
            if attempt is None:
                return await self._dial(peer, state)
            await attempt.done.wait()
            if attempt.error is not None and not self._superseded(attempt.peer):
                raise attempt.error  # (one under an old entry: look again under ours)

    async def _dial(self, peer: Peer, state: _PeerState) -> MuxLink:
        assert self._nursery is not None, "LinkPool.run is not running"
        if self._stopping:  # e.g. a witness round while a node that could not listen stops
            raise FederationError("unavailable", "this node is stopping")
        attempt = state.dialling = _Attempt(peer)
        self.version += 1
        try:
            return await self._nursery.start(self._hold, peer, state)
        except FederationError as exc:
            attempt.error = exc
            if not self._superseded(peer):  # (the new entry is dialled afresh, no backoff)
                self.setback(peer.name, exc.code, str(exc), refused=isinstance(exc, LinkRefused))
                exc.logged = True  # (the requests that waited for this dial get it too)
            raise
        finally:
            state.dialling = None
            attempt.done.set()
            self.version += 1

    async def _hold(self, peer: Peer, state: _PeerState, *, task_status: trio.TaskStatus[MuxLink]) -> None:
        """Dial ``peer`` and keep the link until it ends; errors before ``started`` go to the
        dialler, after it they only end the link."""
        started = False
        try:
            async with dial_peer(
                peer.url,
                identity=self._identity,
                fingerprint=peer.fingerprint,
                name=self._name,
                policy=self._policy,
                send_timeout_s=self._settings.send_timeout_s,
                peer=peer.name,
            ) as raw:
                link = MuxLink(raw, peer)
                await self._remember_key(peer, raw.peer_key)  # type: ignore[misc]
                if self._superseded(peer):  # re-pinned while dialling: this link is not used
                    raise self._superseded_error(peer)
                state.link = link
                self.seen(peer.name)
                task_status.started(link)
                started = True
                try:
                    await link.run()
                finally:
                    if state.link is link:
                        state.link = None
                    self.version += 1
                    log.info("link to %s ended: %s", peer.name, link.closed)
        except DialError as exc:
            if exc.said is not None:  # its words, which may say "this node": logged here, they must name it
                raise LinkRefused(exc.code or "unreachable", f"{peer.name} refused the link, saying: {exc.said}") from None
            raise FederationError(exc.code or "unreachable", f"cannot reach {peer.name}: {exc}") from None
        except (ConnectionClosed, WsHandshakeError, ProtocolError, OSError, trio.BrokenResourceError) as exc:
            # after ``started``: closing the link failed or timed out, nothing to tell anyone
            if not started:
                raise FederationError("unreachable", f"cannot reach {peer.name}: {exc}") from None
            log.info("link to %s ended: %s", peer.name, exc)

    # Backoff ----------------------------------------------------------------------------------

    def backing_off(self, name: str) -> bool:
        state = self._states.get(name)
        return state is not None and state.backing_off()

    async def wait_ready(self, name: str) -> None:
        """Return when ``name``'s backoff has passed, it was reset, or the peer table changed
        (the caller then looks at its route again)."""
        state = self._state(name)
        if state.retry_at is not None and state.backing_off():
            with trio.move_on_at(state.retry_at):
                await state.changed.wait()

    def setback(self, name: str, code: str, message: str, *, refused: bool = False) -> None:
        """Record a failure with ``name`` (``refused``: the peer refused this node's link); start
        a backoff period unless one is running."""
        state = self._state(name)
        now = self._clock_ms()
        before, state.last_error = state.last_error, LinkError(code=code, message=message, at=now)
        state.refused = refused
        started = not state.backing_off()
        if started:
            delay = state.backoff.next_delay()
            state.retry_at = trio.current_time() + delay
            state.next_attempt_at = now + int(delay * 1000)
        self.version += 1
        # one line per backoff (or change of error): lookups dial whatever the backoff, and a
        # peer gossiping heads of an unreachable node made a failed key lookup ~30 times a second
        level = logging.INFO if started or before is None or before.code != code else logging.DEBUG
        log.log(level, "federation with %s: %s (%s)", name, message, code)

    def seen(self, name: str) -> None:
        """``name`` is reachable again: retry its items at once."""
        self._state(name).reset()
        self.version += 1

    # Inbound links and the peer table -----------------------------------------------------------

    def inbound_opened(self, name: str) -> None:
        self._inbound[name] = self._inbound.get(name, 0) + 1
        self.seen(name)

    def inbound_closed(self, name: str) -> None:
        self._inbound[name] -= 1
        if not self._inbound[name]:
            del self._inbound[name]
        self.version += 1

    def update(self, routes: Routes) -> None:
        """The peer table changed: close links whose entry changed or went, retry changed peers
        at once, and wake every waiting worker (its route may be another now)."""
        direct = {p.name: p for p in routes.direct()}
        self._updated = True
        for name in set(self._states) | set(direct):
            old, new = self._peers.get(name), direct.get(name)
            state = self._states.get(name)
            if state is None:
                continue
            if new is None:
                if state.link is not None:
                    state.link.close("the peer is no longer a direct peer")
                del self._states[name]
                state.wake()
            elif old is None or (old.url, old.fingerprint) != (new.url, new.fingerprint):
                if state.link is not None:
                    state.link.close("the peer's entry changed")
                state.last_error = None
                state.reset()
            else:
                state.wake()
        self._peers = direct
        self.version += 1

    def inbound(self, name: str) -> int:
        """Inbound links from ``name`` open now."""
        return self._inbound.get(name, 0)

    def describe(self, name: str) -> dict:
        """Status of the link to direct peer ``name``: link (connected / connecting / refused:
        the peer refused the last dial / backoff / idle), last_error, next_attempt_at (the end
        of the backoff, while backing off: when the outbox may dial it again)."""
        state = self._states.get(name)
        if state is None:
            return {"link": "idle", "last_error": None, "next_attempt_at": None}
        backing_off = state.backing_off()
        if state.link is not None and state.link.closed is None:
            link = "connected"
        elif state.dialling is not None:
            link = "connecting"
        elif state.refused:
            link = "refused"
        else:
            link = "backoff" if backing_off else "idle"
        return {
            "link": link,
            "last_error": asdict(state.last_error) if state.last_error else None,
            "next_attempt_at": state.next_attempt_at if backing_off else None,
        }
