"""What node tests use to act as devices, built on ``core`` and the transport (no client SDK).

``connect_raw`` dials ``/client`` (``sonet.transport.dial``, pinned to the node) and yields a
``RawConnection``: ``request(build)`` sends ``build(number)`` and returns the answer (raising
``NodeError`` for an ErrorFrame), pushed frames (Deliver, Drained, LinkOffer) arrive on
``deliveries``, and a connection-level ErrorFrame or close is kept in ``error`` / ``close_reason``.

``Account`` and ``Member`` hold the keys a real device would: the account identity key that
signs device lists, and per device an identity key, an HPKE key and a signed record. Message
bodies are opaque random bytes: the node never reads them.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

import trio
from sonet.transport.ws_errors import CloseReason, ConnectionClosed

from sonet.core import limits
from sonet.core.client_api import (
    CLIENT_FRAMES,
    AccessToken,
    Deliver,
    DeviceKeys,
    Drained,
    ErrorFrame,
    GetSenderCertificate,
    LinkOffer,
    SenderCertificate,
    Welcome,
)
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey
from sonet.core.device import make_device_record
from sonet.core.device_list import encode_account_identity, sign_device_list
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.errors import RemoteProtocolError
from sonet.core.ratchet.prekeys import MLKEM768, X25519, generate_prekey
from sonet.core.wire import Frame
from sonet.transport import DialError, LinkLost, Mux, SecureSocket, dial

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
    "first_keys",
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
    """A device connection on the transport's ``Mux``: a request after the node ended the
    connection fails at once."""

    def __init__(self, sock: SecureSocket, welcome: Welcome) -> None:
        self._sock = sock
        self.welcome = welcome
        send, self.deliveries = trio.open_memory_channel[Frame](64)
        self._deliveries_send = send
        self._mux = Mux(sock, peer="node", on_push=self._pushed, on_end=send.close)
        #: set once the reader stopped (after the close that follows a refusal, if any)
        self.closed = self._mux.stopped

    @property
    def error(self) -> Exception | None:
        lost = self._mux.lost
        if lost is None:
            return None
        if lost.refusal is not None:
            return NodeError(lost.refusal.code, lost.refusal.message)
        return ConnectError(str(lost))

    @property
    def close_reason(self) -> CloseReason | None:
        return None if self._mux.lost is None else self._mux.lost.close

    async def send(self, frame: Frame) -> None:
        await self._sock.send(frame)

    async def send_encoded(self, plaintext: bytes) -> None:
        """Seal and send bytes no encoder makes."""
        await self._sock.send_encoded(plaintext)

    async def request(self, build: Callable[[int], Frame]) -> Frame:
        try:
            answer = await self._mux.request(build)
        except LinkLost:
            raise self.error or ConnectError("the node closed the connection") from None
        if isinstance(answer, ErrorFrame):
            raise NodeError(answer.code, answer.message)
        return answer

    async def next_push(self) -> Frame:
        """The next pushed frame that is not a Drained marker."""
        async for frame in self.deliveries:
            if not isinstance(frame, Drained):
                return frame
        raise AssertionError(f"connection ended without a push: {self.error!r}")

    async def _pushed(self, frame: Frame) -> None:
        if not isinstance(frame, (Deliver, Drained, LinkOffer)):
            raise RemoteProtocolError(f"unexpected {type(frame).__name__} from the node")
        await self._deliveries_send.send(frame)


@asynccontextmanager
async def connect_raw(url: str, *, identity: SigningKey, node_fingerprint: str) -> AsyncIterator[RawConnection]:
    try:
        async with dial(
            url, "/client", identity=identity, expected_peer=node_fingerprint, frames=CLIENT_FRAMES, greeting=Welcome
        ) as sock:
            conn = RawConnection(sock, cast(Welcome, sock.greeting))
            async with conn._mux.running():
                yield conn
    except DialError as exc:
        raise ConnectError(str(exc)) from None
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
    _keys: DeviceKeys | None = field(default=None, repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        return self.identity.public.fingerprint

    @classmethod
    def new(cls, account: str) -> "Member":
        identity = new_identity()
        return cls(account=account, identity=identity, record=record_for(account, identity))

    @property
    def keys(self) -> DeviceKeys:
        """What a Register / LinkComplete of this device carries: its first prekeys (made
        once, so that a retry sends the same)."""
        if self._keys is None:
            self._keys = first_keys(self.identity)
        return self._keys


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


async def access_token(conn: RawConnection, account: str) -> AccessToken:
    """The access token of ``account`` (core/access.py), as its device ``conn`` gets it from
    its node: a sender that presents it is the account's contact, not a message request."""
    reply = await conn.request(lambda n: GetSenderCertificate(request=n))
    assert isinstance(reply, SenderCertificate) and reply.access, reply
    return AccessToken(account=account, token=reply.access)


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


#: the key id of the prekeys a device registers with (clear of the one-time ids tests publish)
FIRST_KEY_ID = 1_000_000


def first_keys(identity: SigningKey, *, one_time: int = 0, pq_one_time: int = 0) -> DeviceKeys:
    """A new device's first prekeys as Register / LinkComplete carry them: the signed X25519
    prekey and the ML-KEM last-resort key its mode uses, and ``one_time`` / ``pq_one_time``
    one-time keys (none by default, so that tests count what they publish themselves)."""
    mode = identity.public.mode
    return DeviceKeys(
        signed_prekey=prekey(identity, X25519, FIRST_KEY_ID) if mode.uses_classical else None,
        pq_last_resort=prekey(identity, MLKEM768, FIRST_KEY_ID, last_resort=True) if mode.uses_pq else None,
        one_time=tuple(prekey(identity, X25519, FIRST_KEY_ID + 1 + i) for i in range(one_time)),
        pq_one_time=tuple(prekey(identity, MLKEM768, FIRST_KEY_ID + 1 + i) for i in range(pq_one_time)),
    )
