"""What node tests use to act as devices, built on ``core`` only (no client SDK).

``connect_raw`` dials ``/client``, runs the initiator handshake pinned to the node and yields a
``RawConnection``: ``request(build)`` sends ``build(number)`` and returns the answer (raising
``NodeError`` for an ErrorFrame), pushed frames (Deliver, Drained, LinkOffer) arrive on
``deliveries``, and a connection-level ErrorFrame or close is kept in ``error`` / ``close_reason``.

``Account`` and ``Member`` hold the keys a real device would: the account identity key that
signs device lists, and per device an identity key, an HPKE key and a signed record. Message
bodies are opaque random bytes: the node never reads them.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import CloseReason, ConnectionClosed, open_websocket_url

from sonet.core import limits
from sonet.core.channel import Channel
from sonet.core.client_api import Deliver, Drained, ErrorFrame, LinkOffer, Welcome
from sonet.core.crypto import CryptoMode, CryptoPolicy, HpkePrivateKey, SigningKey
from sonet.core.device import make_device_record
from sonet.core.device_list import encode_account_identity, sign_device_list
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.handshake import Handshake, Role
from sonet.core.handshake_driver import run_initiator
from sonet.core.ratchet.prekeys import MLKEM768, X25519, generate_prekey
from sonet.core.wire import Frame

__all__ = [
    "NodeError",
    "ConnectError",
    "RawConnection",
    "connect_raw",
    "Member",
    "Account",
    "new_identity",
    "record_for",
    "opaque_envelope",
    "prekey",
    "wall_ms",
]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ConnectError(Exception):
    """The node could not be reached or closed the connection."""


class NodeError(Exception):
    """The node refused a request (or the connection, for request 0)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class RawConnection:
    def __init__(self, ws: Any, channel: Channel, welcome: Welcome) -> None:
        self._ws = ws
        self._channel = channel
        self.welcome = welcome
        self._numbers = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[Frame]] = {}
        self._send_lock = trio.Lock()
        send, self.deliveries = trio.open_memory_channel[Frame](64)
        self._deliveries_send = send
        self.error: Exception | None = None
        self.close_reason: CloseReason | None = None
        self.closed = trio.Event()

    async def send(self, frame: Frame) -> None:
        async with self._send_lock:
            await self._ws.send_message(self._channel.send(frame))

    async def request(self, build: Callable[[int], Frame]) -> Frame:
        number = next(self._numbers)
        send, receive = trio.open_memory_channel[Frame](1)
        self._waiting[number] = send
        try:
            await self.send(build(number))
            try:
                answer = await receive.receive()
            except trio.EndOfChannel:
                raise self.error or ConnectError("the node closed the connection") from None
        finally:
            self._waiting.pop(number, None)
        if isinstance(answer, ErrorFrame):
            raise NodeError(answer.code, answer.message)
        return answer

    async def next_push(self) -> Frame:
        """The next pushed frame that is not a Drained marker."""
        async for frame in self.deliveries:
            if not isinstance(frame, Drained):
                return frame
        raise AssertionError(f"connection ended without a push: {self.error!r}")

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
                    self.error = NodeError(frame.code, frame.message)
                    self._end()
                elif request is not None and request in self._waiting:
                    await self._waiting[request].send(frame)
                elif isinstance(frame, (Deliver, Drained, LinkOffer)):
                    await self._deliveries_send.send(frame)
                else:
                    raise RemoteProtocolError(f"unexpected {type(frame).__name__} from the node")
        except ConnectionClosed as exc:
            self.close_reason = exc.reason
            self.error = self.error or ConnectError(f"the node closed the connection ({exc.reason})")
        except ProtocolError as exc:
            self.error = ConnectError(f"protocol error from the node: {exc}")
        finally:
            self._end()
            self.closed.set()

    def _end(self) -> None:
        for waiter in self._waiting.values():
            waiter.close()
        self._deliveries_send.close()


@asynccontextmanager
async def connect_raw(url: str, *, identity: SigningKey, node_fingerprint: str) -> AsyncIterator[RawConnection]:
    try:
        async with open_websocket_url(
            url + "/client", max_message_size=limits.MAX_RECORD_BYTES, connect_timeout=10, disconnect_timeout=2
        ) as ws:
            hs = Handshake(
                Role.INITIATOR,
                identity=identity,
                policy=CryptoPolicy(),
                rng=os.urandom,
                prologue=b"/client",
                expected_peer=node_fingerprint,
            )
            done = await run_initiator(hs, send=ws.send_message, receive=ws.get_message, peer="node")
            channel = Channel(done.keys)
            channel.receive_data(await ws.get_message())
            welcome = channel.next_event()
            assert isinstance(welcome, Welcome), welcome
            conn = RawConnection(ws, channel, welcome)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.read_loop)
                try:
                    yield conn
                finally:
                    nursery.cancel_scope.cancel()
    except ConnectionClosed as exc:
        raise ConnectError(f"the node closed the connection ({exc.reason})") from None


# Keys and records -------------------------------------------------------------------------


def new_identity() -> SigningKey:
    return SigningKey.generate(CryptoMode.HYBRID, os.urandom)


def record_for(account: str, identity: SigningKey, *, created: int | None = None) -> bytes:
    hpke = HpkePrivateKey.generate(CryptoMode.HYBRID, os.urandom)
    return make_device_record(
        account=account, identity=identity, hpke=hpke.public, created=wall_ms() if created is None else created
    )


@dataclass
class Member:
    """One device of an account, as the device itself holds it."""

    account: str
    identity: SigningKey
    record: bytes
    device_id: int = 0

    @property
    def fingerprint(self) -> str:
        return self.identity.public.fingerprint

    @classmethod
    def new(cls, account: str) -> "Member":
        identity = new_identity()
        return cls(account=account, identity=identity, record=record_for(account, identity))


@dataclass
class Account:
    """An account's identity key, its devices and the version of its signed device list."""

    address: str
    key: SigningKey = field(default_factory=new_identity)
    version: int = 0
    devices: dict[int, Member] = field(default_factory=dict)

    @property
    def identity_bytes(self) -> bytes:
        return encode_account_identity(self.key)

    @property
    def first(self) -> Member:
        return self.devices[min(self.devices)]

    def device(self, device_id: int) -> Member:
        return self.devices[device_id]

    def fingerprints(self) -> set[str]:
        return {m.fingerprint for m in self.devices.values()}

    def sign_list(self, fingerprints: Iterable[str], *, version: int, key: SigningKey | None = None, account: str | None = None) -> bytes:
        return sign_device_list(
            key or self.key, account=account or self.address, version=version, devices=fingerprints, now=wall_ms()
        )

    def list_with(self, member: Member) -> bytes:
        """The next list (version + 1), adding ``member``."""
        return self.sign_list(self.fingerprints() | {member.fingerprint}, version=self.version + 1)

    def list_without(self, device_id: int) -> bytes:
        """The next list (version + 1), without device ``device_id``."""
        return self.sign_list(self.fingerprints() - {self.devices[device_id].fingerprint}, version=self.version + 1)


def opaque_envelope(
    to: Member | tuple[str, int],
    *,
    body: bytes | None = None,
    msg_id: bytes | None = None,
    expires: int | None = None,
    kind: int = Kind.SEALED,
) -> Envelope:
    account, device = (to.account, to.device_id) if isinstance(to, Member) else to
    return Envelope(
        v=ENVELOPE_VERSION,
        id=os.urandom(limits.ENVELOPE_ID_LEN) if msg_id is None else msg_id,
        to=account,
        device=device,
        expires=wall_ms() + limits.DEFAULT_ENVELOPE_TTL_MS if expires is None else expires,
        kind=kind,
        body=os.urandom(200) if body is None else body,
    )


def prekey(identity: SigningKey, kind: str, key_id: int, *, last_resort: bool = False) -> bytes:
    """A signed prekey as a device publishes it."""
    assert kind in (X25519, MLKEM768)
    return generate_prekey(identity, kind, key_id, os.urandom, last_resort=last_resort)[1].to_bytes()
