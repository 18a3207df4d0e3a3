"""One authenticated device connection on ``/client``.

Requests are answered in order on the receiving task; deliveries are pushed by a second task
that follows the device's mailbox. A protocol violation gets an ErrorFrame and a closed
connection; nothing of a rejected batch is stored and other connections are unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from core.address import parse_address
from core.channel import Channel
from core.client_api import (
    Accepted,
    Ack,
    Deliver,
    Delivery,
    DeviceEntry,
    Devices,
    Drained,
    ErrorFrame,
    FetchDevices,
    Ping,
    Pong,
    Register,
    Registered,
    SendBatch,
    Welcome,
)
from core.crypto import CryptoPolicy, VerifyKey
from core.device import verify_device_record
from core.envelope import Envelope, Kind
from core.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from core.invite import hash_invite_secret
from core.wire import Frame

from .mailbox import MailboxKey, MailboxRegistry, Wakeup
from .store import AccountExists, InviteInvalid, NewEnvelope, Quota, Store, StoreError

__all__ = ["ClientContext", "ClientSession", "RequestError"]

log = logging.getLogger("sonet.node.client")

#: envelopes pushed but not yet acknowledged before the pusher waits for acks
MAX_IN_FLIGHT = 1024
DELIVER_BATCH = 128


class RequestError(Exception):
    """A request the node refuses; the connection stays open."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, kw_only=True)
class ClientContext:
    """What a session needs from the node; passed in, never fetched from a global."""

    name: str
    store: Store
    registry: MailboxRegistry
    policy: CryptoPolicy
    quota: Quota
    registration: str
    envelope_ttl_ms: int
    clock_ms: Callable[[], int]


class ClientSession:
    def __init__(self, ctx: ClientContext, ws: WebSocketConnection, channel: Channel, peer: VerifyKey) -> None:
        self._ctx = ctx
        self._ws = ws
        self._channel = channel
        self._peer = peer
        self._send_lock = trio.Lock()
        self._mailbox: MailboxKey | None = None
        self._in_flight: set[bytes] = set()
        self._acked = trio.Event()
        self._registered = trio.Event()

    async def run(self) -> None:
        row = await self._ctx.store.device_by_fingerprint(self._peer.fingerprint)
        if row is not None:
            self._mailbox = (row.account, row.device_id)
            self._registered.set()
        await self._send(
            Welcome(
                node=self._ctx.name,
                account=row.account if row else None,
                device=row.device_id if row else None,
                time=self._ctx.clock_ms(),
            )
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver_loop)
                try:
                    await self._request_loop()
                except ProtocolError as exc:
                    # Say why before the delivery task is cancelled: cancelling it between
                    # sealing a record and sending it would skip a record counter, and the
                    # device could not decrypt anything after that, the ErrorFrame included.
                    await self._fail(exc)
                nursery.cancel_scope.cancel()
        except* ConnectionClosed:
            pass  # the device went away; unacknowledged envelopes stay in its mailbox
        except* ProtocolError as group:
            await self._fail(group.exceptions[0])  # type: ignore[arg-type]

    # Sending ----------------------------------------------------------------------------

    async def _send(self, frame: Frame) -> None:
        # Seal and send under one lock: the record counter must follow the wire order.
        async with self._send_lock:
            await self._ws.send_message(self._channel.send(frame))

    async def _fail(self, exc: ProtocolError) -> None:
        if self._ws.closed:
            return  # already closed (by an earlier failure, or by the device): nobody to tell
        log.info("closing client %s: %s", self._peer.fingerprint, exc)
        error = ErrorFrame(request=0, code=exc.code, message=str(exc)[:300])
        # Shielded (but bounded): the delivery task failing on the broken channel must not cut
        # this short. Under the send lock up to the close: the ErrorFrame is the last record.
        with trio.move_on_after(2, shield=True):
            async with self._send_lock:
                try:
                    try:
                        record = self._channel.send(error)
                    except LocalProtocolError:  # the device's record broke the channel
                        record = self._channel.send_last(error)
                    await self._ws.send_message(record)
                except (ConnectionClosed, ProtocolError):
                    pass
                await self._ws.aclose(code=1008, reason=exc.code)

    # Requests ---------------------------------------------------------------------------

    async def _request_loop(self) -> None:
        while True:
            try:
                message = await self._ws.get_message()
            except ConnectionClosed:
                return
            if isinstance(message, str):
                raise RemoteProtocolError("text messages are not part of the protocol")
            self._channel.receive_data(message)
            frame = self._channel.next_event()
            try:
                await self._dispatch(frame)
            except RequestError as exc:
                request = getattr(frame, "request", 0)
                if not request:  # nothing to answer (an Ack): a connection-level error, so close
                    raise RemoteProtocolError(str(exc), code=exc.code) from None
                await self._send(ErrorFrame(request=request, code=exc.code, message=str(exc)))

    async def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, Ack):
            await self._on_ack(frame)
        elif isinstance(frame, SendBatch):
            await self._on_send(frame)
        elif isinstance(frame, FetchDevices):
            await self._on_fetch_devices(frame)
        elif isinstance(frame, Register):
            await self._on_register(frame)
        elif isinstance(frame, Ping):
            await self._send(Pong(request=frame.request))
        else:
            raise RemoteProtocolError(f"unexpected frame {type(frame).__name__} from a device", code="unexpected_frame")

    def _require_registered(self) -> MailboxKey:
        if self._mailbox is None:
            raise RequestError("not_registered", "this device is not registered on this node")
        return self._mailbox

    async def _on_register(self, req: Register) -> None:
        if self._mailbox is not None:
            raise RequestError("already_registered", f"this device is already registered as {self._mailbox[0]}")
        try:
            account = str(parse_address(f"{req.user}@{self._ctx.name}", remote=True))
            record = verify_device_record(req.record, policy=self._ctx.policy, account=account)
        except ProtocolError as exc:
            raise RequestError(exc.code, str(exc)) from None
        if record.identity != self._peer:
            raise RequestError("wrong_identity", "the device record is not for the key this device authenticated with")
        invite_hash = None
        if self._ctx.registration == "invite":
            if not req.invite:
                raise RequestError("invite_required", "this node requires an invite token")
            invite_hash = hash_invite_secret(req.invite)
        try:
            row = await self._ctx.store.register_account(
                account=account,
                fingerprint=record.fingerprint,
                record=req.record,
                invite_hash=invite_hash,
                now=self._ctx.clock_ms(),
            )
        except (AccountExists, InviteInvalid) as exc:
            raise RequestError(exc.code, _REGISTER_ERRORS[type(exc)].format(account=account)) from None
        log.info("registered %s device %d", row.account, row.device_id)
        self._mailbox = (row.account, row.device_id)
        self._registered.set()
        await self._send(Registered(request=req.request, account=row.account, device=row.device_id))

    async def _on_fetch_devices(self, req: FetchDevices) -> None:
        self._require_registered()
        address = _parse_or_refuse(req.account)
        if address.node != self._ctx.name:
            raise RequestError("unknown_node", f"{address.node} is not this node, and federation is not configured")
        rows = await self._ctx.store.devices(str(address))
        if not rows:
            raise RequestError("unknown_account", f"no account {address} on this node")
        entries = tuple(DeviceEntry(device=r.device_id, record=r.record) for r in rows)
        await self._send(Devices(request=req.request, account=str(address), devices=entries))

    async def _on_send(self, req: SendBatch) -> None:
        self._require_registered()
        now = self._ctx.clock_ms()
        stored: list[NewEnvelope] = []
        ephemeral: list[tuple[MailboxKey, Envelope]] = []
        known: dict[str, set[int]] = {}
        for env in req.envelopes:
            address = _parse_or_refuse(env.to)
            if address.node != self._ctx.name:
                raise RequestError("unknown_node", f"{address.node} is not this node, and federation is not configured")
            account = str(address)
            if account not in known:
                known[account] = {r.device_id for r in await self._ctx.store.devices(account)}
            if env.device not in known[account]:
                raise RequestError("unknown_recipient", f"{account} has no device {env.device}")
            if env.expires <= now:
                raise RequestError("expired", "envelope already expired")
            key = (account, env.device)
            if env.kind == Kind.EPHEMERAL:
                ephemeral.append((key, env))
                continue
            expires = min(env.expires, now + self._ctx.envelope_ttl_ms)
            stored.append(
                NewEnvelope(account=account, device_id=env.device, id=env.id, expires=expires, kind=env.kind, body=env.body)
            )
        count = 0
        if stored:
            try:
                count = await self._ctx.store.enqueue(stored, now=now, quota=self._ctx.quota)
            except StoreError as exc:
                raise RequestError(exc.code, _store_message(exc)) from None
        # Durably committed: only now acknowledge and wake the recipients.
        await self._send(Accepted(request=req.request, stored=count))
        self._ctx.registry.notify((e.account, e.device_id) for e in stored)
        for key, env in ephemeral:
            self._ctx.registry.push_ephemeral(key, env)

    async def _on_ack(self, req: Ack) -> None:
        account, device = self._require_registered()
        await self._ctx.store.ack(account, device, req.ids, now=self._ctx.clock_ms())
        self._in_flight.difference_update(req.ids)
        self._acked.set()

    # Delivery ---------------------------------------------------------------------------

    async def _deliver_loop(self) -> None:
        await self._registered.wait()
        assert self._mailbox is not None
        with self._ctx.registry.subscribe(self._mailbox) as wake:
            await self._push(wake)

    async def _push(self, wake: Wakeup) -> None:
        account, device = self._mailbox  # type: ignore[misc]
        last_seq = 0
        drained_sent = False
        while True:
            wake.clear()
            await self._push_ephemeral(wake)
            while len(self._in_flight) >= MAX_IN_FLIGHT:
                self._acked = trio.Event()
                await self._acked.wait()
            items = await self._ctx.store.pending(
                account, device, after_seq=last_seq, limit=DELIVER_BATCH, now=self._ctx.clock_ms()
            )
            if items:
                last_seq = items[-1].seq
                self._in_flight.update(i.id for i in items)
                deliveries = tuple(
                    Delivery(
                        envelope=Envelope(
                            v=1, id=i.id, to=account, device=device, expires=i.expires, kind=i.kind, body=i.body
                        ),
                        stored_at=i.stored_at,
                    )
                    for i in items
                )
                await self._send(Deliver(items=deliveries))
                continue
            if not drained_sent:
                await self._send(Drained())
                drained_sent = True
            await wake.wait()

    async def _push_ephemeral(self, wake: Wakeup) -> None:
        batch = []
        while len(batch) < DELIVER_BATCH:
            try:
                batch.append(wake.ephemeral.receive_nowait())
            except trio.WouldBlock:
                break
        if batch:
            now = self._ctx.clock_ms()
            await self._send(Deliver(items=tuple(Delivery(envelope=e, stored_at=now) for e in batch)))


_REGISTER_ERRORS = {
    AccountExists: "{account} is already taken (or this device key is registered already)",
    InviteInvalid: "the invite token is unknown, already used or expired; ask the operator for a new one",
}


def _parse_or_refuse(text: str):
    try:
        return parse_address(text, remote=True)
    except RemoteProtocolError as exc:
        raise RequestError("bad_address", str(exc)) from None


def _store_message(exc: StoreError) -> str:
    if exc.code == "mailbox_full":
        return "the recipient's mailbox is full; try again later"
    return "the node could not store the message"

