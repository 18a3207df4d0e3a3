"""What a device does: register, send, receive. All end-to-end crypto happens here.

Time and randomness are injected so tests can pin them. Every operation opens one
authenticated connection to the home node and closes it before returning.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from core import limits
from core.address import Address, parse_address
from core.client_api import Ack, Accepted, Deliver, Devices, FetchDevices, Register, Registered, SendBatch
from core.crypto import CryptoMode, CryptoPolicy, HpkePrivateKey, SigningKey
from core.device import DeviceRecord, make_device_record, verify_device_record
from core.envelope import ENVELOPE_VERSION, Envelope, Kind
from core.errors import LocalProtocolError, ProtocolError
from core.invite import parse_invite
from core.sealed import Plain, open_message, seal_message

from .connection import Connection, NodeError, connect
from .state import DeviceState, InboxMessage, Profile, StateError

__all__ = ["Device", "SendResult", "ReceiveResult", "now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, kw_only=True)
class SendResult:
    id: bytes
    recipient: str
    devices: int
    #: device fingerprints of the recipient not seen before (informational until safety numbers)
    new_devices: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ReceiveResult:
    messages: list[InboxMessage]
    #: one line per envelope that was dropped because it failed verification
    rejected: list[str]


class Device:
    def __init__(
        self,
        state: DeviceState,
        *,
        clock: Callable[[], int] = now_ms,
        rng: Callable[[int], bytes] = os.urandom,
        policy: CryptoPolicy | None = None,
    ) -> None:
        self.state = state
        self._clock = clock
        self._rng = rng
        self._policy = policy or CryptoPolicy()

    def _connect(self, profile: Profile):  # noqa: ANN202 - async context manager
        return connect(profile.node_url, identity=profile.identity, node_fingerprint=profile.node_fingerprint, policy=self._policy)

    # Registration ---------------------------------------------------------------------

    async def register(self, address: str, node_url: str, invite: str, *, mode: CryptoMode = CryptoMode.HYBRID) -> Profile:
        if self.state.registered():
            raise StateError(
                f"{self.state.home} already holds {self.state.profile().address}; use another --home for a new account"
            )
        addr = parse_address(address)
        fingerprint, secret = parse_invite(invite)
        identity = SigningKey.generate(mode, self._rng)
        hpke = HpkePrivateKey.generate(mode, self._rng)
        record = make_device_record(account=str(addr), identity=identity, hpke=hpke.public, created=self._clock())
        async with connect(node_url, identity=identity, node_fingerprint=fingerprint, policy=self._policy) as conn:
            if conn.welcome.node != addr.node:
                raise LocalProtocolError(f"the node at {node_url} is {conn.welcome.node}, not {addr.node}")
            reply = await conn.request(lambda n: Register(request=n, user=addr.user, invite=secret, record=record))
        assert isinstance(reply, Registered)
        profile = Profile(
            address=reply.account,
            device_id=reply.device,
            node_url=node_url,
            node_fingerprint=fingerprint,
            identity=identity,
            hpke=hpke,
        )
        self.state.save_profile(profile)
        return profile

    # Directory ------------------------------------------------------------------------

    async def _devices(self, conn: Connection, account: Address) -> list[tuple[int, DeviceRecord]]:
        reply = await conn.request(lambda n: FetchDevices(request=n, account=str(account)))
        assert isinstance(reply, Devices)
        if reply.account != str(account):
            raise LocalProtocolError("node answered for a different account")
        return [(e.device, verify_device_record(e.record, policy=self._policy, account=str(account))) for e in reply.devices]

    # Sending --------------------------------------------------------------------------

    async def send_text(self, recipient: str, text: str) -> SendResult:
        profile = self.state.profile()
        to = parse_address(recipient)
        if not text:
            raise LocalProtocolError("refusing to send an empty message")
        if len(text) > limits.MAX_TEXT_LEN:
            raise LocalProtocolError(f"message is longer than {limits.MAX_TEXT_LEN} characters")
        now = self._clock()
        msg_id = self._rng(limits.ENVELOPE_ID_LEN)
        async with self._connect(profile) as conn:
            devices = await self._devices(conn, to)
            fingerprints = {rec.fingerprint for _, rec in devices}
            known = self.state.known_devices(str(to))
            new = tuple(sorted(fingerprints - known)) if known else ()
            envelopes = tuple(
                Envelope(
                    v=ENVELOPE_VERSION,
                    id=msg_id,
                    to=str(to),
                    device=device_id,
                    expires=now + limits.DEFAULT_ENVELOPE_TTL_MS,
                    kind=Kind.SEALED,
                    body=seal_message(
                        Plain(
                            msg_id=msg_id,
                            sender=profile.address,
                            recipient=str(to),
                            recipient_fp=rec.fingerprint,
                            sent_at=now,
                            type="text",
                            text=text,
                        ),
                        sender_identity=profile.identity,
                        to_key=rec.hpke,
                    ),
                )
                for device_id, rec in devices
            )
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=envelopes))
            assert isinstance(reply, Accepted)
        self.state.remember_devices(str(to), fingerprints, now)
        self.state.record_sent(msg_id, str(to), now, text, len(envelopes))
        return SendResult(id=msg_id, recipient=str(to), devices=len(envelopes), new_devices=new)

    # Receiving ------------------------------------------------------------------------

    async def receive(self, *, wait: float | None = None) -> ReceiveResult:
        """Fetch what is queued; with ``wait``, if nothing was queued, wait up to that many
        seconds for the next arrival. Messages are stored locally before they are acked."""
        profile = self.state.profile()
        rejected: list[str] = []
        async with self._connect(profile) as conn:
            senders: dict[str, set[str]] = {}
            drained = False
            got_any = False
            with trio.move_on_after(wait if wait is not None else float("inf")) as scope:
                async for frame in conn.deliveries:
                    if isinstance(frame, Deliver):
                        got_any |= await self._accept(conn, profile, frame, senders, rejected)
                        if drained and got_any:
                            break
                    else:  # Drained
                        drained = True
                        if got_any or wait is None:
                            break
            if conn.error is not None and not scope.cancelled_caught:
                raise conn.error
        return ReceiveResult(messages=self.state.unshown(), rejected=rejected)

    async def _accept(
        self, conn: Connection, profile: Profile, frame: Deliver, senders: dict[str, set[str]], rejected: list[str]
    ) -> bool:
        fresh: list[InboxMessage] = []
        for item in frame.items:
            env = item.envelope
            if self.state.has_message(env.id):
                continue  # redelivered after a lost ack: already shown or queued for showing
            try:
                opened = open_message(
                    env.body,
                    envelope_id=env.id,
                    me=profile.address,
                    my_fp=profile.identity.public.fingerprint,
                    my_key=profile.hpke,
                    policy=self._policy,
                )
                sender = opened.plain.sender
                if sender not in senders:
                    records = await self._devices(conn, parse_address(sender))
                    senders[sender] = {rec.fingerprint for _, rec in records}
                if opened.sender_identity.fingerprint not in senders[sender]:
                    raise LocalProtocolError(f"message claims to be from {sender} but its key is not one of theirs")
            except (ProtocolError, NodeError) as exc:
                rejected.append(f"dropped envelope {env.id.hex()}: {exc}")
                continue
            fresh.append(
                InboxMessage(
                    id=env.id,
                    sender=sender,
                    sent_at=opened.plain.sent_at,
                    received_at=item.stored_at,
                    type=opened.plain.type,
                    text=opened.plain.text,
                )
            )
        self.state.store_received(fresh)  # durable before the node may delete anything
        await conn.send(Ack(ids=tuple(item.envelope.id for item in frame.items if item.envelope.kind == Kind.SEALED)))
        return bool(fresh)
