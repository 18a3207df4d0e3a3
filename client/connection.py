"""A device's authenticated connection to its home node (initiator side of the handshake).

``connect()`` dials ``URL/client``, pins the node's fingerprint, and yields a ``Connection``
whose background reader routes answers to the request that asked and pushes deliveries into
a bounded channel. Everything runs inside the caller's ``async with``: no stray tasks.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError as WsHandshakeError, open_websocket_url

from sonet.core import limits
from sonet.core.channel import Channel
from sonet.core.client_api import Deliver, Drained, ErrorFrame, LinkOffer, Welcome
from sonet.core.crypto import CryptoPolicy, SigningKey, VerifyKey
from sonet.core.errors import ProtocolError, RemoteProtocolError, sole_exception
from sonet.core.handshake import Handshake, Role
from sonet.core.handshake_driver import run_initiator
from sonet.core.wire import Frame

__all__ = ["Connection", "connect", "NodeError", "ConnectError", "describe_close", "TRANSIENT_LOOKUP_CODES"]

#: codes of lookup failures that mean "not now": the home node could not ask another node, no
#: witness cosigned the directory head yet, an older directory entry than one seen (a cache), a
#: proof that came relayed and did not verify, or a node key that changed and waits for the
#: user's decision (client/transparency.py)
TRANSIENT_LOOKUP_CODES = frozenset(
    {"unreachable", "rate_limited", "unavailable", "bad_node_key", "unwitnessed", "stale_entry", "bad_consistency_proof", "node_key_changed"}
)


_DELIVERY_BUFFER = 64
#: slots kept free for the once-per-connection control frames (Drained, LinkOffer)
_CONTROL_HEADROOM = 8


class ConnectError(Exception):
    """The node could not be reached or authenticated (one clear line)."""


class NodeError(Exception):
    """The node refused a request; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Connection:
    def __init__(self, ws: Any, channel: Channel, welcome: Welcome, node_key: VerifyKey) -> None:
        self._ws = ws
        self._channel = channel
        self.welcome = welcome
        #: the node's identity key, authenticated by the handshake
        self.node_key = node_key
        #: other nodes' keys (or why the home node definitely cannot give one), asked once per
        #: connection (client/transparency.py node_key)
        self.node_keys: dict[str, VerifyKey | NodeError] = {}
        self._numbers = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[Frame]] = {}
        self._send_lock = trio.Lock()
        send, self.deliveries = trio.open_memory_channel[Frame](_DELIVERY_BUFFER)
        self._deliveries_send = send
        self._fatal: Exception | None = None
        #: the reader has stopped: nothing can answer a request any more
        self._ended = False

    async def send(self, frame: Frame) -> None:
        async with self._send_lock:
            await self._ws.send_message(self._channel.send(frame))

    async def request(self, build: Any) -> Frame:
        """Send ``build(request_number)`` and return the node's answer (or raise NodeError)."""
        if self._ended:  # else it would wait for an answer nobody is left to read
            raise self._fatal or ConnectError("the node closed the connection")
        number = next(self._numbers)
        send, receive = trio.open_memory_channel[Frame](1)
        self._waiting[number] = send
        try:
            await self.send(build(number))
            try:
                answer = await receive.receive()
            except trio.EndOfChannel:
                raise self._fatal or ConnectError("the node closed the connection") from None
        finally:
            self._waiting.pop(number, None)
        if isinstance(answer, ErrorFrame):
            raise NodeError(answer.code, answer.message)
        return answer

    async def read_loop(self) -> None:
        try:
            while True:
                message = await self._ws.get_message()
                if isinstance(message, str):
                    raise RemoteProtocolError("node sent a text message")
                self._channel.receive_data(message)
                frame = self._channel.next_event()
                request = getattr(frame, "request", None)
                if isinstance(frame, ErrorFrame) and request == 0:
                    self._fatal = NodeError(frame.code, frame.message)
                    return
                if request is not None and request in self._waiting:
                    await self._waiting[request].send(frame)
                elif isinstance(frame, Deliver):
                    # Never block the reader (answers to requests come through it): when nobody
                    # consumes deliveries (e.g. during a send), drop them. Stored envelopes stay
                    # unacknowledged on the node and come again on the next connection.
                    if self._deliveries_send.statistics().current_buffer_used < _DELIVERY_BUFFER - _CONTROL_HEADROOM:
                        self._deliveries_send.send_nowait(frame)
                elif isinstance(frame, (Drained, LinkOffer)):
                    self._deliveries_send.send_nowait(frame)  # once per connection: the headroom holds it
                else:
                    raise RemoteProtocolError(f"unexpected {type(frame).__name__} from the node")
        except ConnectionClosed as exc:
            self._fatal = self._fatal or ConnectError(f"the node closed the connection ({describe_close(exc.reason)})")
        except ProtocolError as exc:
            self._fatal = ConnectError(f"protocol error from the node: {exc}")
        finally:
            self._ended = True
            for waiter in self._waiting.values():
                waiter.close()
            self._deliveries_send.close()

    @property
    def error(self) -> Exception | None:
        return self._fatal


@asynccontextmanager
async def connect(
    url: str, *, identity: SigningKey, node_fingerprint: str | None, policy: CryptoPolicy | None = None
) -> AsyncIterator[Connection]:
    endpoint = url.rstrip("/") + "/client"
    policy = policy or CryptoPolicy()
    established = False  # after this, errors belong to the caller's body and pass through as they are
    try:
        # One deadline for the connect, the upgrade and the handshake, lifted once connected:
        # trio-websocket's connect_timeout does not fire when the node accepts the TCP
        # connection but never answers the upgrade.
        with trio.CancelScope(deadline=trio.current_time() + limits.HANDSHAKE_DEADLINE_S) as connecting:
            async with open_websocket_url(
                endpoint, max_message_size=limits.MAX_RECORD_BYTES, connect_timeout=limits.HANDSHAKE_DEADLINE_S, disconnect_timeout=2
            ) as ws:
                hs = Handshake(
                    Role.INITIATOR,
                    identity=identity,
                    policy=policy,
                    rng=os.urandom,
                    prologue=b"/client",
                    expected_peer=node_fingerprint,
                )
                done = await run_initiator(hs, send=ws.send_message, receive=ws.get_message, peer="node")
                channel = Channel(done.keys)
                channel.receive_data(await ws.get_message())
                welcome = channel.next_event()
                if not isinstance(welcome, Welcome):
                    raise RemoteProtocolError("node did not start with Welcome")
                connecting.deadline = math.inf
                conn = Connection(ws, channel, welcome, done.peer)
                established = True
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(conn.read_loop)
                        try:
                            yield conn
                        finally:
                            nursery.cancel_scope.cancel()
                except BaseExceptionGroup as group:
                    raise sole_exception(group) from None  # the reader task never raises
        if connecting.cancelled_caught:
            raise ConnectError(f"the node at {url} did not complete the handshake in time")
    except ConnectionClosed as exc:
        raise ConnectError(f"the node at {url} closed the connection ({describe_close(exc.reason)})") from None
    except (OSError, WsHandshakeError) as exc:
        if established:
            raise
        reason = getattr(exc, "strerror", None) or str(exc) or "connection refused"
        raise ConnectError(f"cannot connect to {endpoint}: {reason}") from None
    except ProtocolError as exc:
        if established:
            raise
        raise ConnectError(f"secure channel with {url} failed: {exc}") from None


def describe_close(reason: Any) -> str:
    """A close reason for humans: the peer's own words, else what happened."""
    if reason is None:
        return "connection lost"
    if reason.reason:
        return str(reason.reason)
    return "connection lost" if reason.code == 1006 else reason.name.lower().replace("_", " ")
