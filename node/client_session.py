"""One authenticated device connection on ``/client``.

Requests are answered in order on the receiving task; deliveries are pushed by a second task
that follows the device's mailbox, and a third forwards a LinkOffer to a device waiting to be
linked. A protocol violation gets an ErrorFrame and a closed connection; nothing of a rejected
batch is stored and other connections are unaffected. Removing a device closes its connections
with ``ErrorFrame(request=0, code="device_removed")``.
What a device submits about its account is checked by node/client_checks.py against the store
before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from core import limits
from core.address import parse_address
from core.certs import issue_certificate
from core.channel import Channel
from core.client_api import (
    Accepted,
    Ack,
    Bundle,
    Bundles,
    Deliver,
    Delivery,
    DeviceEntry,
    DeviceMismatch,
    DeviceRemoved,
    Devices,
    Drained,
    ErrorFrame,
    FetchBundles,
    FetchDevices,
    GetSenderCertificate,
    LinkApprove,
    LinkApproved,
    LinkBegin,
    LinkComplete,
    LinkFetch,
    LinkOffer,
    LinkPending,
    LinkSlot,
    Ping,
    Pong,
    PrekeysPublished,
    PublishPrekeys,
    Register,
    Registered,
    RemoveDevice,
    SendBatch,
    SenderCertificate,
    Welcome,
)
from core.crypto import CryptoPolicy, SigningKey, VerifyKey
from core.device import verify_device_record
from core.envelope import Envelope, Kind
from core.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from core.invite import hash_invite_secret
from core.wire import Frame

from .client_checks import (
    RequestError,
    check_linked_record,
    check_new_account,
    check_next_list,
    check_prekeys,
    parse_or_refuse,
    refused,
)
from .linking import LinkError, LinkRegistry
from .mailbox import DeviceConnections, MailboxKey, MailboxRegistry, Wakeup
from .store import (
    AccountExists,
    AccountRow,
    DeviceRow,
    InviteInvalid,
    NewEnvelope,
    Quota,
    StaleDeviceList,
    Store,
    StoreError,
)

__all__ = ["ClientContext", "ClientSession", "RequestError"]

log = logging.getLogger("sonet.node.client")

#: envelopes pushed but not yet acknowledged before the pusher waits for acks
MAX_IN_FLIGHT = 1024
DELIVER_BATCH = 128


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
    #: signs sender certificates
    node_key: SigningKey
    links: LinkRegistry
    connections: DeviceConnections


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
        # A LinkOffer for this (waiting, unregistered) connection; at most one per slot.
        self._offers_send, self._offers = trio.open_memory_channel[LinkOffer](1)

    async def run(self) -> None:
        # Tracked before the store is read: a removal commits either before that read (the
        # device is then unknown here) or signals this connection.
        with self._ctx.connections.track(self._peer.fingerprint) as removed:
            try:
                await self._serve(removed)
            finally:
                self._ctx.links.release(self)
                self._offers_send.close()

    async def _serve(self, removed: trio.Event) -> None:
        row = await self._ctx.store.device_by_fingerprint(self._peer.fingerprint)
        counts = (0, 0)
        if row is not None:
            self._become(row)
            counts = await self._ctx.store.prekey_counts(row.account, row.device_id)
        await self._send(
            Welcome(
                node=self._ctx.name,
                account=row.account if row else None,
                device=row.device_id if row else None,
                time=self._ctx.clock_ms(),
                one_time_left=counts[0],
                pq_one_time_left=counts[1],
            )
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver_loop)
                nursery.start_soon(self._offer_loop)
                nursery.start_soon(self._close_when_removed, removed, nursery.cancel_scope)
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

    def _become(self, row: DeviceRow) -> None:
        """This connection is now the registered device ``row``: deliveries start."""
        self._ctx.links.release(self)  # a slot it waited in, if any, is of no use any more
        self._mailbox = (row.account, row.device_id)
        self._registered.set()

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

    async def _close_when_removed(self, removed: trio.Event, scope: trio.CancelScope) -> None:
        await removed.wait()
        # Through _fail, under the send lock: a record being sent is finished first.
        await self._fail(RemoteProtocolError("this device was removed from its account", code="device_removed"))
        scope.cancel()

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
        handler = _HANDLERS.get(type(frame))
        if handler is None:
            raise RemoteProtocolError(f"unexpected frame {type(frame).__name__} from a device", code="unexpected_frame")
        await handler(self, frame)

    async def _on_ping(self, req: Ping) -> None:
        await self._send(Pong(request=req.request))

    def _require_registered(self) -> MailboxKey:
        if self._mailbox is None:
            raise RequestError("not_registered", "this device is not registered on this node")
        return self._mailbox

    def _require_unregistered(self) -> None:
        if self._mailbox is not None:
            raise RequestError("already_registered", f"this device is already registered as {self._mailbox[0]}")

    def _local_account(self, text: str) -> str:
        address = parse_or_refuse(text)
        if address.node != self._ctx.name:
            raise RequestError("unknown_node", f"{address.node} is not this node, and federation is not configured")
        return str(address)

    # Registration -------------------------------------------------------------------------

    async def _on_register(self, req: Register) -> None:
        self._require_unregistered()
        with refused():
            account = str(parse_address(f"{req.user}@{self._ctx.name}", remote=True))
        record, account_key = check_new_account(
            account=account,
            record=req.record,
            account_identity=req.account_identity,
            device_list=req.device_list,
            peer=self._peer,
            policy=self._ctx.policy,
        )
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
                account_identity=account_key.to_bytes(),
                device_list=req.device_list,
                invite_hash=invite_hash,
                now=self._ctx.clock_ms(),
            )
        except (AccountExists, InviteInvalid) as exc:
            raise RequestError(exc.code, _REGISTER_ERRORS[type(exc)].format(account=account)) from None
        log.info("registered %s device %d", row.account, row.device_id)
        self._become(row)
        await self._send(Registered(request=req.request, account=row.account, device=row.device_id))

    # Directory ------------------------------------------------------------------------------

    async def _account_row(self, account: str) -> AccountRow:
        row = await self._ctx.store.account(account)
        if row is None:
            raise RequestError("unknown_account", f"no account {account} on this node")
        return row

    async def _on_fetch_devices(self, req: FetchDevices) -> None:
        self._require_registered()
        account = self._local_account(req.account)
        row = await self._account_row(account)
        rows = await self._ctx.store.devices(account)
        entries = tuple(DeviceEntry(device=r.device_id, record=r.record) for r in rows)
        await self._send(
            Devices(
                request=req.request,
                account=account,
                account_identity=row.account_identity,
                device_list=row.device_list,
                devices=entries,
            )
        )

    # Prekeys, bundles, sender certificates ------------------------------------------------

    async def _on_publish_prekeys(self, req: PublishPrekeys) -> None:
        account, device = self._require_registered()
        cap = limits.MAX_ONE_TIME_PREKEYS
        if len(req.one_time) > cap or len(req.pq_one_time) > cap:
            raise RequestError("too_many_prekeys", f"at most {cap} one-time prekeys of each kind")
        identity = await self._stored_identity(account, device)
        # Up to a few hundred hybrid signatures: verified off the event loop.
        one_time, pq_one_time = await trio.to_thread.run_sync(check_prekeys, req, identity)
        try:
            counts = await self._ctx.store.publish_prekeys(
                account,
                device,
                signed_prekey=req.signed_prekey,
                pq_last_resort=req.pq_last_resort,
                one_time=one_time,
                pq_one_time=pq_one_time,
                max_one_time=cap,
            )
        except StoreError as exc:
            raise RequestError(exc.code, str(exc) if exc.code == "too_many_prekeys" else _store_message(exc)) from None
        await self._send(PrekeysPublished(request=req.request, one_time_left=counts[0], pq_one_time_left=counts[1]))

    async def _stored_identity(self, account: str, device: int) -> VerifyKey:
        """The device identity key from its stored record (what others verify prekeys with)."""
        for row in await self._ctx.store.devices(account):
            if row.device_id == device:
                with refused():
                    return verify_device_record(row.record, policy=self._ctx.policy, account=account).identity
        raise RequestError("device_removed", "this device was removed from its account")

    async def _on_fetch_bundles(self, req: FetchBundles) -> None:
        self._require_registered()
        account = self._local_account(req.account)
        row = await self._account_row(account)
        devices = {r.device_id: r for r in await self._ctx.store.devices(account)}
        wanted = sorted(set(req.devices)) if req.devices else sorted(devices)
        unknown = [d for d in wanted if d not in devices]
        if unknown:  # refused before any one-time key is handed out
            raise RequestError("unknown_recipient", f"{account} has no device {unknown[0]}")
        bundles = []
        for device in wanted:
            keys = await self._ctx.store.take_bundle(account, device)
            bundles.append(
                Bundle(
                    device=device,
                    record=devices[device].record,
                    signed_prekey=keys.signed_prekey,
                    pq_prekey=keys.pq_prekey,
                    one_time=keys.one_time,
                )
            )
        await self._send(
            Bundles(
                request=req.request,
                account=account,
                account_identity=row.account_identity,
                device_list=row.device_list,
                bundles=tuple(bundles),
            )
        )

    async def _on_sender_certificate(self, req: GetSenderCertificate) -> None:
        account, device = self._require_registered()
        certificate = issue_certificate(
            self._ctx.node_key,
            node=self._ctx.name,
            account=account,
            device=device,
            identity=self._peer,
            now=self._ctx.clock_ms(),
            validity_ms=limits.DEFAULT_SENDER_CERT_VALIDITY_MS,
        )
        await self._send(SenderCertificate(request=req.request, certificate=certificate))

    # Messages -------------------------------------------------------------------------------

    async def _on_send(self, req: SendBatch) -> None:
        me, my_device = self._require_registered()
        now = self._ctx.clock_ms()
        accounts = [self._local_account(env.to) for env in req.envelopes]  # normalised
        batch: dict[str, set[int]] = {}
        for account, env in zip(accounts, req.envelopes):
            batch.setdefault(account, set()).add(env.device)
            if env.expires <= now:
                raise RequestError("expired", "envelope already expired")
        current: dict[str, set[int]] = {}
        for account in batch:
            ids = {r.device_id for r in await self._ctx.store.devices(account)}
            if not ids:
                raise RequestError("unknown_recipient", f"no account {account} on this node")
            if account == me:
                ids.discard(my_device)  # the sender has the message already
            current[account] = ids
        for account, devices in batch.items():
            if devices != current[account]:
                # Nothing stored: the device refetches the account's devices and resends.
                missing, extra = current[account] - devices, devices - current[account]
                await self._send(
                    DeviceMismatch(request=req.request, account=account, missing=tuple(sorted(missing)), extra=tuple(sorted(extra)))
                )
                return
        stored: list[NewEnvelope] = []
        ephemeral: list[tuple[MailboxKey, Envelope]] = []
        for account, env in zip(accounts, req.envelopes):
            key = (account, env.device)
            if env.kind == Kind.EPHEMERAL:
                ephemeral.append((key, env))
                continue
            expires = min(env.expires, now + self._ctx.envelope_ttl_ms)
            stored.append(
                NewEnvelope(account=key[0], device_id=env.device, id=env.id, expires=expires, kind=env.kind, body=env.body)
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

    # Linking a new device ---------------------------------------------------------------

    async def _on_link_begin(self, req: LinkBegin) -> None:
        self._require_unregistered()
        if not 0 < len(req.ephemeral) <= limits.MAX_LINK_EPHEMERAL_BYTES:
            raise RequestError("bad_input", f"the ephemeral key must be 1..{limits.MAX_LINK_EPHEMERAL_BYTES} bytes")
        with _link_refused():
            slot = self._ctx.links.open(ephemeral=req.ephemeral, owner=self, push=self._push_offer, now=self._ctx.clock_ms())
        await self._send(LinkSlot(request=req.request, slot=slot.slot, expires=slot.expires))

    def _push_offer(self, offer: LinkOffer) -> bool:
        try:
            self._offers_send.send_nowait(offer)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    async def _offer_loop(self) -> None:
        async for offer in self._offers:
            await self._send(offer)

    async def _on_link_fetch(self, req: LinkFetch) -> None:
        self._require_registered()
        with _link_refused():
            slot = self._ctx.links.get(req.slot, now=self._ctx.clock_ms())
        await self._send(LinkPending(request=req.request, ephemeral=slot.ephemeral))

    async def _on_link_approve(self, req: LinkApprove) -> None:
        account, _ = self._require_registered()
        if len(req.provisioning) > limits.MAX_PROVISIONING_BYTES:
            raise RequestError("bad_input", f"the provisioning payload is larger than {limits.MAX_PROVISIONING_BYTES} bytes")
        row = await self._account_row(account)
        if len(await self._ctx.store.devices(account)) >= limits.MAX_DEVICES_PER_ACCOUNT:
            raise RequestError("too_many_devices", f"an account has at most {limits.MAX_DEVICES_PER_ACCOUNT} devices")
        offer = LinkOffer(slot=req.slot, account=account, provisioning=req.provisioning, device_list=row.device_list)
        with _link_refused():
            self._ctx.links.approve(req.slot, account=account, offer=offer, now=self._ctx.clock_ms())
        log.info("link slot approved by %s", account)
        await self._send(LinkApproved(request=req.request))

    async def _on_link_complete(self, req: LinkComplete) -> None:
        self._require_unregistered()
        with _link_refused():
            slot = self._ctx.links.owned_by(req.slot, self, now=self._ctx.clock_ms())
        if slot.approved_for is None:
            raise RequestError("link_not_approved", "no device of the account has approved this link yet")
        account = slot.approved_for
        record = check_linked_record(req.record, account=account, peer=self._peer, policy=self._ctx.policy)
        row = await self._account_row(account)
        current = {r.fingerprint for r in await self._ctx.store.devices(account)}
        check_next_list(row, req.device_list, current | {record.fingerprint})
        try:
            device = await self._ctx.store.add_device(
                account=account,
                fingerprint=record.fingerprint,
                record=req.record,
                device_list=req.device_list,
                expected_version=row.device_list_version,
                now=self._ctx.clock_ms(),
            )
        except (StaleDeviceList, AccountExists) as exc:
            raise RequestError(exc.code, str(exc)) from None
        log.info("linked %s device %d", account, device.device_id)
        self._become(device)
        await self._send(Registered(request=req.request, account=account, device=device.device_id))

    # Removing a device ------------------------------------------------------------------

    async def _on_remove_device(self, req: RemoveDevice) -> None:
        account, _ = self._require_registered()
        row = await self._account_row(account)
        devices = {r.device_id: r for r in await self._ctx.store.devices(account)}
        target = devices.get(req.device)
        if target is None:
            raise RequestError("unknown_device", f"{account} has no device {req.device}")
        if len(devices) == 1:
            raise RequestError("last_device", "the last device of an account cannot be removed")
        check_next_list(row, req.device_list, {r.fingerprint for r in devices.values()} - {target.fingerprint})
        try:
            removed = await self._ctx.store.remove_device(
                account=account, device_id=req.device, device_list=req.device_list, expected_version=row.device_list_version
            )
        except StaleDeviceList as exc:
            raise RequestError(exc.code, str(exc)) from None
        if not removed:
            raise RequestError("unknown_device", f"{account} has no device {req.device}")
        log.info("removed %s device %d", account, req.device)
        await self._send(DeviceRemoved(request=req.request, device=req.device))
        self._ctx.connections.removed(target.fingerprint)

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


_HANDLERS: dict[type[Frame], Callable[[ClientSession, Any], Awaitable[None]]] = {
    Ack: ClientSession._on_ack,
    SendBatch: ClientSession._on_send,
    FetchDevices: ClientSession._on_fetch_devices,
    Register: ClientSession._on_register,
    Ping: ClientSession._on_ping,
    PublishPrekeys: ClientSession._on_publish_prekeys,
    FetchBundles: ClientSession._on_fetch_bundles,
    GetSenderCertificate: ClientSession._on_sender_certificate,
    LinkBegin: ClientSession._on_link_begin,
    LinkFetch: ClientSession._on_link_fetch,
    LinkApprove: ClientSession._on_link_approve,
    LinkComplete: ClientSession._on_link_complete,
    RemoveDevice: ClientSession._on_remove_device,
}

_REGISTER_ERRORS = {
    AccountExists: "{account} is already taken (or this device key is registered already)",
    InviteInvalid: "the invite token is unknown, already used or expired; ask the operator for a new one",
}

@contextmanager
def _link_refused() -> Iterator[None]:
    try:
        yield
    except LinkError as exc:
        raise RequestError(exc.code, str(exc)) from None


def _store_message(exc: StoreError) -> str:
    if exc.code == "mailbox_full":
        return "the recipient's mailbox is full; try again later"
    return "the node could not store the message"
