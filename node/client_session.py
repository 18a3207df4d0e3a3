"""One authenticated device connection on ``/client``.

Requests are answered in order on the connection's own task, which is the only one an idle
connection has (memory per idle connection, docs/performance.md): deliveries are pushed by a
task started when the device's mailbox is woken (it ends once the device is drained), a
LinkOffer for a device waiting to be linked by a task started for it, and a removal or
supersession starts the task that closes the connection; the registration deadline bounds the
connection task's wait for the next request. A protocol violation gets an ErrorFrame and a closed connection; nothing of a rejected
batch is stored and other connections are unaffected. Removing a device closes its connections
with ``ErrorFrame(request=0, code="device_removed")``; the devices of an account the operator
disabled are refused at connect and their open connections closed (node/admin_watch.py) with
``account_disabled``.

Connections are bounded: a connection without an account must register or link within
``unregistered_timeout_s`` (while it waits in a link slot: until the slot expires), else it is
closed with ``registration_timeout``; a device holds at most ``max_per_device`` connections
(node/mailbox.py ``DeviceConnections``), its oldest closed with ``too_many_connections`` when a
newer one goes over. A device that stops reading is cut by the server's send timeout
(transport/server.py); what it has not acknowledged stays in its mailbox.
The requests themselves are answered by node/client_registration.py (accounts and devices),
node/client_keys.py (devices, prekeys, bundles, KeyPackage lookups, certificates, the key
directory), node/client_key_packages.py (KeyPackages a device publishes) and
node/client_messages.py (envelopes), node/client_groups.py (groups); what a device submits about its account is checked by
node/client_checks.py against the store before anything is written.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
from sonet.transport.ws_errors import ConnectionClosed

from sonet.core import limits
from sonet.core.blob_api import BlobCreate, BlobExpire, BlobGet, BlobPut, BlobStatus
from sonet.core.client_api import (
    Ack,
    Deliver,
    Delivery,
    Drained,
    ErrorFrame,
    FetchBundles,
    FetchConsistency,
    FetchDevices,
    FetchGroupTree,
    FetchHead,
    FetchKeyPackages,
    FetchLeaves,
    FetchNodeKey,
    FetchStatus,
    GetSenderCertificate,
    CreateGroup,
    GroupSubmit,
    LinkApprove,
    LinkBegin,
    LinkComplete,
    LinkFetch,
    LinkOffer,
    LinkSlot,
    Ping,
    Pong,
    PublishKeyPackages,
    PublishPrekeys,
    Register,
    RemoveDevice,
    SendBatch,
    Welcome,
)
from sonet.core.crypto import VerifyKey
from sonet.core.envelope import Envelope
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.wire import Frame, encode_frame
from sonet.transport import SecureSocket
from sonet.transport.log_summary import LogSummary

from .client_checks import RequestError
from .client_context import ClientContext, require_registered
from .client_keys import (
    fetch_bundles,
    fetch_consistency,
    fetch_devices,
    fetch_head,
    fetch_key_packages,
    fetch_leaves,
    fetch_node_key,
    publish_prekeys,
    sender_certificate,
)
from .group_trees import fetch_group_tree
from .client_messages import send_batch
from .client_blobs import blob_create, blob_expire, blob_get, blob_put, blob_status
from .client_registration import link_approve, link_begin, link_complete, link_fetch, register, remove_device
from .client_status import fetch_status
from .mailbox import MailboxKey, Wakeup
from .store import DeviceRow, StoreError

__all__ = ["ClientContext", "ClientSession", "RequestError"]

log = logging.getLogger("sonet.node.client")
#: closes are counted, one summary line per interval instead of one each: anybody can cause
#: them at will (a stranger's malformed frame after a handshake was a line a connection, ~30 a
#: second from one address); what each was is logged at DEBUG
closes_summary = LogSummary(log, what="device connections closed")

#: envelopes pushed but not yet acknowledged before the pusher waits for acks
MAX_IN_FLIGHT = 1024
#: envelopes per Deliver frame, and their body bytes: a mailbox of large envelopes goes in
#: several frames. Kept well under the frame cap: a frame being sent is held in memory (the
#: frame, its record, the WebSocket's copy) until the device reads it
DELIVER_BATCH = 128
DELIVER_BYTES = 1024 * 1024


class _Signal:
    """A one-shot flag whose ``set()`` starts what it signals (``on_set``) instead of waking a
    task kept waiting for it: an idle connection holds no task per thing it watches."""

    __slots__ = ("_on_set", "_set")

    def __init__(self, on_set: Callable[[], None]) -> None:
        self._on_set = on_set
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._on_set()

    def is_set(self) -> bool:
        return self._set


class ClientSession:
    """The connection of one device; what request handlers see of it is ``Session``. What an
    idle connection does not use is made when needed (memory per idle connection,
    docs/performance.md)."""

    __slots__ = (
        "_ctx", "_sock", "_peer", "_mailbox", "_in_flight", "_acked", "_tasks", "_scope", "_subscription", "_wake",
        "_delivering", "_woken", "_last_seq", "_drained_sent", "_offer", "_superseded", "_removed",
        "_unregistered_deadline", "__weakref__",
    )

    def __init__(self, ctx: ClientContext, sock: SecureSocket) -> None:
        self._ctx = ctx
        self._sock = sock
        self._peer: VerifyKey = sock.peer_key
        self._mailbox: MailboxKey | None = None
        #: ids pushed and not acknowledged yet (None while there are none)
        self._in_flight: set[bytes] | None = None
        #: set by an Ack while the delivery task waits for room in flight
        self._acked: trio.Event | None = None
        #: where the tasks started on demand run (None before the session serves and after)
        self._tasks: trio.Nursery | None = None
        #: its scope: a closing task cancels the requests and tasks once the device was told why
        self._scope: trio.CancelScope | None = None
        #: the mailbox subscription, left when the session ends (registered devices only)
        self._subscription: AbstractContextManager[Wakeup] | None = None
        self._wake: Wakeup | None = None
        #: a delivery task runs; ``_woken``: the mailbox was woken since it last looked
        self._delivering = False
        self._woken = False
        self._last_seq = 0
        self._drained_sent = False
        #: the LinkOffer being sent to this (waiting, unregistered) connection; one at a time
        self._offer: LinkOffer | None = None
        #: set when newer connections of this device push this one over the per-device cap
        self._superseded = _Signal(self._start_close_when_superseded)
        #: set when the device is removed or its account disabled
        self._removed = _Signal(self._start_close_when_removed)
        #: (trio time) when a connection without an account is closed; a link slot extends it
        self._unregistered_deadline = trio.current_time() + ctx.unregistered_timeout_s

    @property
    def ctx(self) -> ClientContext:
        return self._ctx

    @property
    def peer(self) -> VerifyKey:
        return self._peer

    @property
    def mailbox(self) -> MailboxKey | None:
        return self._mailbox

    @property
    def source(self) -> str:
        return self._sock.source

    def delivered_here(self, ids: Sequence[bytes]) -> int:
        in_flight = self._in_flight
        return 0 if in_flight is None else sum(1 for i in ids if i in in_flight)

    async def run(self) -> None:
        # Tracked before the store is read: a removal commits either before that read (the
        # device is then unknown here) or signals this connection.
        try:
            with self._ctx.connections.track(self._peer.fingerprint, self._superseded, self._removed):
                try:
                    await self._serve()
                except* StoreError as group:
                    # the store cannot be used now (e.g. its PostgreSQL server is down): the device
                    # is told to come back later, not dropped without a word
                    log.warning("closing client %s: %s", self._peer.fingerprint, group.exceptions[0])
                    await self._fail(RemoteProtocolError("the node cannot use its store right now; try again later", code="unavailable"))
                finally:
                    self._tasks = None  # nothing is started any more (offers are refused)
                    await self._ctx.links.close(self)
                    if self._ctx.unregistered is not None:
                        self._ctx.unregistered.done(self)
        finally:
            subscription, self._subscription = self._subscription, None
            if subscription is not None:
                subscription.__exit__(None, None, None)

    def _start_close_when_superseded(self) -> None:
        self._start(self._close_when_superseded)

    def _start_close_when_removed(self) -> None:
        self._start(self._close_when_removed)

    def _start(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run ``task`` beside the requests, if the session is serving (else ``_serve`` starts
        what was signalled before it began, and nothing is started once it ended)."""
        if self._tasks is not None:
            self._tasks.start_soon(task)

    async def _serve(self) -> None:
        row = await self._ctx.store.device_by_fingerprint(self._peer.fingerprint)
        counts = (0, 0)
        if row is not None:
            self.become(row)
            counts = await self._ctx.store.prekey_counts(row.account, row.device_id)
        elif self._ctx.unregistered is not None:
            self._ctx.unregistered.add(self, self._sock.source or "unknown", self._superseded)
        # Read at every connect: a witness that cosigned since is counted without a restart.
        witnesses = await self._ctx.directory.witnesses()
        await self.send(
            Welcome(
                node=self._ctx.name,
                account=row.account if row else None,
                device=row.device_id if row else None,
                time=self._ctx.clock_ms(),
                one_time_left=counts[0],
                pq_one_time_left=counts[1],
                witnesses=witnesses,
                minimum_crypto_mode=self._ctx.policy.minimum.value,
            )
        )
        if row is not None and await self._ctx.store.account_disabled(row.account):
            # The operator disabled the account (node/admin.py): refused until it is enabled.
            await self._fail(_account_disabled(row.account))
            return
        if row is None and await self._ctx.store.removed_device(self._peer.fingerprint) is not None:
            # A removed device comes back: say so, rather than "not registered" at its first request.
            await self._fail(RemoteProtocolError("this device was removed from its account", code="device_removed"))
            return
        try:
            async with trio.open_nursery() as nursery:
                self._tasks, self._scope = nursery, nursery.cancel_scope
                # what was signalled before the session served (set() could not start it then)
                if self._removed.is_set():
                    nursery.start_soon(self._close_when_removed)
                if self._superseded.is_set():
                    nursery.start_soon(self._close_when_superseded)
                if self._mailbox is not None:
                    self._wake_delivery()
                try:
                    await self._request_loop()
                except ProtocolError as exc:
                    # Say why before the delivery task is cancelled: cancelling it between
                    # sealing a record and sending it would skip a record counter, and the
                    # device could not decrypt anything after that, the ErrorFrame included.
                    await self._fail(exc)
                self._tasks = None
                nursery.cancel_scope.cancel()
        except* ConnectionClosed:
            pass  # the device went away; unacknowledged envelopes stay in its mailbox
        except* ProtocolError as group:
            await self._fail(group.exceptions[0])  # type: ignore[arg-type]

    def become(self, row: DeviceRow) -> None:
        """This connection is now the registered device ``row``: deliveries start."""
        self._ctx.links.release(self)  # a slot it waited in, if any, is of no use any more
        if self._ctx.unregistered is not None:
            self._ctx.unregistered.done(self)
        self._mailbox = (row.account, row.device_id)
        self._sock.allow_messages(limits.MAX_RECORD_BYTES, device=self._peer.fingerprint, account=row.account)
        if self._wake is None:
            self._subscription = self._ctx.registry.subscribe(self._mailbox, on_set=self._wake_delivery)
            self._wake = self._subscription.__enter__()
            self._wake_delivery()

    # Sending ----------------------------------------------------------------------------

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, LinkSlot):  # waiting to be linked: may wait as long as the slot lives
            left_s = (frame.expires - self._ctx.clock_ms()) / 1000
            self._unregistered_deadline = max(self._unregistered_deadline, trio.current_time() + left_s)
        await self._sock.send(frame)

    async def _fail(self, exc: ProtocolError) -> None:
        if self._sock.closed:
            return  # already closed (by an earlier failure, or by the device): nobody to tell
        closes_summary.count(exc.code, self._sock.source or None)
        log.debug("closing client %s: %s", self._peer.fingerprint, exc)
        # the ErrorFrame is the last record, whoever cancels this (the delivery task failing
        # on the broken channel must not cut it short)
        await self._sock.fail(exc)

    async def _close_when_removed(self) -> None:
        # Set on a removal (committed before: the device is gone), and by node/admin_watch.py
        # when the operator disabled the account (the device is still there, even if enabled
        # again meanwhile). Through _fail, under the send lock: a record being sent is finished
        # first.
        if self._mailbox is not None and await self._ctx.store.device_by_fingerprint(self._peer.fingerprint) is not None:
            await self._fail(_account_disabled(self._mailbox[0]))
        else:
            await self._fail(RemoteProtocolError("this device was removed from its account", code="device_removed"))
        assert self._scope is not None  # (started in the session's nursery, whose scope it is)
        self._scope.cancel()

    async def _close_when_superseded(self) -> None:
        """Newer connections pushed this one out: of the same device (over its cap) or, while
        it has no account, of other keys without one (node/unregistered.py)."""
        if self._mailbox is not None:
            why = f"this device opened more than {self._ctx.connections.max_per_device} connections; the oldest is closed"
        else:
            why = "too many connections without an account; the oldest is closed (register or link sooner)"
        await self._fail(RemoteProtocolError(why, code="too_many_connections"))
        assert self._scope is not None  # (started in the session's nursery, whose scope it is)
        self._scope.cancel()

    # Requests ---------------------------------------------------------------------------

    async def _request_loop(self) -> None:
        """Answer requests in order. A connection without an account waits for its next request
        until its registration deadline (a link slot moves it; a request being answered is
        finished first), then is closed: a throwaway key holds nothing here for long."""
        while True:
            try:
                if self._mailbox is not None:  # no deadline: no cancel scope held while idle
                    frame: Frame | None = await self._sock.receive()
                else:
                    frame = await self._receive_before_registration_deadline()
            except ConnectionClosed:
                return
            if frame is not None:
                await self._answer(frame)

    async def _receive_before_registration_deadline(self) -> Frame | None:
        """The next request of a connection without an account; None if the deadline was moved
        (a link slot) while it waited; registration_timeout once it passed."""
        with trio.move_on_at(self._unregistered_deadline):
            return await self._sock.receive()
        if trio.current_time() >= self._unregistered_deadline:
            timeout = self._ctx.unregistered_timeout_s
            raise RemoteProtocolError(
                f"no account was registered or linked on this connection within {timeout:g} s", code="registration_timeout"
            )
        return None

    async def _answer(self, frame: Frame) -> None:
        try:
            await self._dispatch(frame)
        except RequestError as exc:
            request = getattr(frame, "request", 0)
            if not request:  # nothing to answer (an Ack): a connection-level error, so close
                raise RemoteProtocolError(str(exc), code=exc.code) from None
            await self.send(ErrorFrame(request=request, code=exc.code, message=str(exc)))

    async def _dispatch(self, frame: Frame) -> None:
        handler = _HANDLERS.get(type(frame))
        if handler is None:
            raise RemoteProtocolError(f"unexpected frame {type(frame).__name__} from a device", code="unexpected_frame")
        if self._ctx.limits is None:
            await handler(self, frame)
            return
        await self._ctx.limits.check(self, frame)
        with self._ctx.limits.charging_lookups(self):  # what goes out to other nodes, per device
            await handler(self, frame)

    async def _on_ping(self, req: Ping) -> None:
        await self.send(Pong(request=req.request))

    async def _on_ack(self, req: Ack) -> None:
        account, device = require_registered(self)
        try:
            await self._ctx.store.ack(account, device, req.ids, now=self._ctx.clock_ms())
        except StoreError as exc:
            # e.g. a full disk: the envelopes stay and come again on the next connection (the
            # device drops ids it already has); an Ack has no answer, so the connection closes
            log.warning("cannot record an acknowledgement: %s", exc)
            raise RequestError("unavailable", "the node cannot record acknowledgements right now; try again later") from None
        if self._in_flight is not None:
            self._in_flight.difference_update(req.ids)
            if not self._in_flight:
                self._in_flight = None
        if self._acked is not None:
            self._acked.set()

    # Linking: a LinkOffer for this waiting connection ----------------------------------------

    def push_offer(self, offer: LinkOffer) -> bool:
        if self._offer is not None or self._tasks is None:
            return False  # one being sent already, or the session ended
        self._offer = offer
        self._tasks.start_soon(self._send_offer)
        return True

    async def _send_offer(self) -> None:
        try:
            if self._offer is not None:
                await self.send(self._offer)
        finally:
            self._offer = None

    # Delivery ---------------------------------------------------------------------------

    def _wake_delivery(self) -> None:
        """The mailbox may have something new: the delivery task looks again, started if it
        does not run (it ends once the device is drained)."""
        self._woken = True
        if not self._delivering and self._tasks is not None and self._wake is not None:
            self._delivering = True
            self._tasks.start_soon(self._push, self._wake)

    async def _push(self, wake: Wakeup) -> None:
        try:
            await self._push_until_drained(wake)
        finally:
            self._delivering = False

    async def _push_until_drained(self, wake: Wakeup) -> None:
        account, device = self._mailbox  # type: ignore[misc]
        while True:
            self._woken = False
            wake.clear()
            await self._push_ephemeral(wake)
            while self._in_flight is not None and len(self._in_flight) >= MAX_IN_FLIGHT:
                self._acked = trio.Event()
                await self._acked.wait()
            self._acked = None
            items = await self._ctx.store.pending(
                account, device, after_seq=self._last_seq, limit=DELIVER_BATCH, now=self._ctx.clock_ms(), max_bytes=DELIVER_BYTES
            )
            if items:
                self._last_seq = items[-1].seq
                if self._in_flight is None:
                    self._in_flight = set()
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
                # the stored envelopes passed their checks when this node took them in: the
                # frame's types and caps are checked, not each envelope's check() again
                await self._sock.send_encoded(encode_frame(Deliver(items=deliveries), nested_checked=True))
                if not items.complete or self._woken:
                    continue
                # The read held everything past _last_seq, and whatever was stored since woke
                # this task: looking again would find nothing (a store read saved per batch).
            if not self._drained_sent:
                await self.send(Drained())
                self._drained_sent = True
            if not self._woken:
                return  # drained and not woken meanwhile: the next wake starts this task again

    async def _push_ephemeral(self, wake: Wakeup) -> None:
        batch: list[Envelope] = []
        size = 0
        while True:
            try:
                env = wake.ephemeral.receive_nowait()
            except trio.WouldBlock:
                break
            if batch and (len(batch) == DELIVER_BATCH or size + len(env.body) > DELIVER_BYTES):
                await self._send_ephemeral(batch)
                batch, size = [], 0
            batch.append(env)
            size += len(env.body)
        if batch:
            await self._send_ephemeral(batch)

    async def _send_ephemeral(self, batch: list[Envelope]) -> None:
        now = self._ctx.clock_ms()
        await self.send(Deliver(items=tuple(Delivery(envelope=e, stored_at=now) for e in batch)))


def _account_disabled(account: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"the account {account} is disabled on this node; ask its operator", code="account_disabled")


# The KeyPackage and group requests check MLS messages: MLS (~0.1 s of a node's start-up CPU) is
# imported by the first of them, not by every `sonet-node run` (tests/test_cli_imports.py).
async def _publish_key_packages(session: ClientSession, req: PublishKeyPackages) -> None:
    from .client_key_packages import publish_key_packages

    await publish_key_packages(session, req)


async def _create_group(session: ClientSession, req: CreateGroup) -> None:
    from .client_groups import create_group

    await create_group(session, req)


async def _group_submit(session: ClientSession, req: GroupSubmit) -> None:
    from .client_groups import group_submit

    await group_submit(session, req)


_HANDLERS: dict[type[Frame], Callable[[ClientSession, Any], Awaitable[None]]] = {
    Ack: ClientSession._on_ack,
    SendBatch: send_batch,
    FetchDevices: fetch_devices,
    Register: register,
    Ping: ClientSession._on_ping,
    PublishPrekeys: publish_prekeys,
    FetchBundles: fetch_bundles,
    PublishKeyPackages: _publish_key_packages,
    FetchKeyPackages: fetch_key_packages,
    FetchGroupTree: fetch_group_tree,
    GetSenderCertificate: sender_certificate,
    LinkBegin: link_begin,
    LinkFetch: link_fetch,
    LinkApprove: link_approve,
    LinkComplete: link_complete,
    RemoveDevice: remove_device,
    FetchNodeKey: fetch_node_key,
    FetchStatus: fetch_status,
    FetchHead: fetch_head,
    FetchConsistency: fetch_consistency,
    FetchLeaves: fetch_leaves,
    CreateGroup: _create_group,
    GroupSubmit: _group_submit,
    BlobCreate: blob_create,
    BlobPut: blob_put,
    BlobStatus: blob_status,
    BlobGet: blob_get,
    BlobExpire: blob_expire,
}
