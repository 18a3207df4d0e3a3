"""A device's authenticated connection to its home node (initiator side of the handshake).

``connect()`` dials ``URL/client`` through the transport (one deadline over connect, upgrade,
handshake and the node's Welcome), pins the node's fingerprint, and yields a ``Connection``
whose background reader routes answers to the request that asked and pushes deliveries into
a bounded channel. Everything runs inside the caller's ``async with``: no stray tasks.

A node refuses the handshakes of an address past its share (core/handshake_guard.py:
``rate_limited``) before doing any work for them, so nothing was sent yet: ``connect()`` dials
again after a short wait that doubles (``RATE_LIMITED_FIRST_S``, ``RATE_LIMITED_RETRIES``
times, each wait spread as client/backoff.py spreads them so devices behind one address do not
knock together), and gives up with that refusal after them.
A script that runs ``sonet send`` in a loop is paced to the node's share instead of failing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast

import trio
from sonet.transport.ws_errors import ConnectionClosed

from sonet.core import limits
from sonet.core.client_api import CLIENT_FRAMES, Deliver, Drained, ErrorFrame, LinkOffer, Welcome
from sonet.core.crypto import CryptoPolicy, SigningKey, VerifyKey
from sonet.core.errors import RemoteProtocolError
from sonet.core.wire import Frame
from sonet.transport import DialError, LinkLost, Mux, SecureSocket, describe_close, dial

from .backoff import Backoff

__all__ = [
    "Connection", "connect", "NodeError", "ConnectError", "describe_close", "TRANSIENT_LOOKUP_CODES", "RATE_LIMITED_FIRST_S", "RATE_LIMITED_RETRIES",
    "TOLD_WAIT_S",
]

#: codes of lookup failures that mean "not now": the home node could not ask another node, no
#: witness cosigned the directory head yet, an older directory entry than one seen (a cache), a
#: proof that came relayed and did not verify, or a node key that changed and waits for the
#: user's decision (client/transparency.py)
TRANSIENT_LOOKUP_CODES = frozenset(
    {"unreachable", "rate_limited", "unavailable", "bad_node_key", "unwitnessed", "stale_entry", "bad_consistency_proof", "node_key_changed"}
)

ENDPOINT = "/client"
#: after a ``rate_limited`` handshake refusal, dialled again this many times, after waits of
#: 0.25 s doubling (client/backoff.py: 0.25, 0.5, 1, 2, 4 s, each within a quarter of it either
#: way, ~10 s in all at most); a node's default share refills 20 a second
RATE_LIMITED_FIRST_S = 0.25
RATE_LIMITED_RETRIES = 5
#: the shortest of those waits that ``connect(waiting=...)`` is told of (a shorter one goes unseen)
TOLD_WAIT_S = 1.0
#: how long a request waits for the node's answer before the node is taken for stalled and the
#: connection given up: the longest a node may take (a lookup it asks another node for: a dial
#: and that node's answer; a request and its answer of the largest record on a slow link) with
#: room to spare. A node that stops answering cannot hold a command, or the chat app, for ever.
REQUEST_DEADLINE_S = 2 * limits.MESSAGE_DEADLINE_S + limits.HANDSHAKE_DEADLINE_S + limits.PEER_REQUEST_DEADLINE_S
_DELIVERY_BUFFER = 64
#: slots kept free for the once-per-connection control frames (Drained, LinkOffer)
_CONTROL_HEADROOM = 8


class ConnectError(Exception):
    """The node could not be reached or authenticated (one clear line); ``code`` is
    "unreachable", "wrong_identity" when the node is not the one pinned, or "rate_limited" when
    it still refused this address's handshakes after ``RATE_LIMITED_RETRIES`` more tries."""

    def __init__(self, message: str, *, code: str = "unreachable") -> None:
        super().__init__(message)
        self.code = code


class NodeError(Exception):
    """The node refused a request; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _error_of(lost: LinkLost) -> Exception:
    """What the device is told when the connection ended: the node's own refusal, or why."""
    if lost.refusal is not None:
        return NodeError(lost.refusal.code, lost.refusal.message)
    return ConnectError(str(lost))


class Connection:
    def __init__(self, sock: SecureSocket, welcome: Welcome) -> None:
        self.welcome = welcome
        #: the node's identity key, authenticated by the handshake
        self.node_key: VerifyKey = sock.peer_key
        #: other nodes' keys (or why the home node definitely cannot give one), asked once per
        #: connection (client/transparency.py node_key)
        self.node_keys: dict[str, VerifyKey | NodeError] = {}
        send, self.deliveries = trio.open_memory_channel[Frame](_DELIVERY_BUFFER)
        self._deliveries_send = send
        self._mux = Mux(sock, peer="node", on_push=self._pushed, on_end=send.close)

    async def send(self, frame: Frame) -> None:
        """Send a frame that has no answer (an Ack)."""
        try:
            await self._mux.send(frame)
        except LinkLost as exc:
            raise _error_of(exc) from None

    async def request(self, build: Callable[[int], Frame]) -> Frame:
        """Send ``build(request_number)`` and return the node's answer (or raise NodeError)."""
        try:
            with trio.fail_after(REQUEST_DEADLINE_S):
                answer = await self._mux.request(build)
        except LinkLost as exc:  # at once when the connection had ended already
            raise _error_of(exc) from None
        except trio.TooSlowError:
            reason = f"the node did not answer a request within {REQUEST_DEADLINE_S:g} s"
            self._mux.close(reason)  # (a request cut off mid-send leaves nothing to send on anyway)
            raise ConnectError(reason) from None
        if isinstance(answer, ErrorFrame):
            raise NodeError(answer.code, answer.message)
        return answer

    async def _pushed(self, frame: Frame) -> None:
        if isinstance(frame, Deliver):
            # Never block the reader (answers to requests come through it): when nobody
            # consumes deliveries (e.g. during a send), drop them. Stored envelopes stay
            # unacknowledged on the node and come again on the next connection.
            if self._deliveries_send.statistics().current_buffer_used < _DELIVERY_BUFFER - _CONTROL_HEADROOM:
                self._deliveries_send.send_nowait(frame)
        elif isinstance(frame, (Drained, LinkOffer)):
            self._deliveries_send.send_nowait(frame)  # once per connection: the headroom holds it
        else:
            raise RemoteProtocolError(f"unexpected {type(frame).__name__} from the node", code="unexpected_frame")

    @property
    def error(self) -> Exception | None:
        """Why the connection ended (None while it is up, or when this side closed it)."""
        lost = self._mux.lost
        return None if lost is None else _error_of(lost)


@asynccontextmanager
async def connect(
    url: str,
    *,
    identity: SigningKey,
    node_fingerprint: str | None,
    policy: CryptoPolicy | None = None,
    waiting: Callable[[str], object] | None = None,
) -> AsyncIterator[Connection]:
    """``waiting``: told once, in a line, when the node's handshake share makes this connection
    wait ``TOLD_WAIT_S`` or more (the CLI prints it on stderr: the command is not stuck)."""
    established = False  # after this, errors belong to the caller's body and pass through as they are
    try:
        async with _dial_within_share(
            url, waiting, identity=identity, expected_peer=node_fingerprint, frames=CLIENT_FRAMES, policy=policy, greeting=Welcome
        ) as sock:
            conn = Connection(sock, cast(Welcome, sock.greeting))  # dial checked its type
            established = True
            async with conn._mux.running():
                yield conn
    except DialError as exc:
        if established:
            raise
        raise ConnectError(str(exc), code=exc.code if exc.code in ("wrong_identity", "rate_limited") else "unreachable") from None
    except ConnectionClosed as exc:
        raise ConnectError(f"the node at {url} closed the connection ({describe_close(exc.reason)})") from None


@asynccontextmanager
async def _dial_within_share(url: str, waiting: Callable[[str], object] | None, **options: Any) -> AsyncIterator[SecureSocket]:
    """``dial(url, ENDPOINT, **options)``, dialled again up to ``RATE_LIMITED_RETRIES`` times,
    with backoff, while the node refuses the handshake as ``rate_limited`` (then that DialError)."""
    backoff = Backoff(os.urandom, first_s=RATE_LIMITED_FIRST_S, max_s=RATE_LIMITED_FIRST_S * 2 ** (RATE_LIMITED_RETRIES - 1))
    told = False
    for retries_left in range(RATE_LIMITED_RETRIES, -1, -1):
        dialled = AsyncExitStack()
        try:
            sock = await dialled.enter_async_context(dial(url, ENDPOINT, **options))
        except DialError as exc:
            if exc.code != "rate_limited" or not retries_left:
                raise
            pause = backoff.next()
            if waiting is not None and not told and pause >= TOLD_WAIT_S:
                waiting(f"the node at {url} takes only so many new connections a second from this address: connecting again in {pause:.1f} s")
                told = True
            await trio.sleep(pause)
            continue
        async with dialled:
            yield sock
        return
