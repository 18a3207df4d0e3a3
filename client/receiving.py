"""The receive path of a device: accept what the home node delivers, open each sealed envelope
(verify the sender certificate against its node's key and the sender's device list, decrypt with
the session), store it before acknowledging it, then send delivery (and read) receipts back.

A message from a device the sender's account has removed since is still delivered when its
signed device list remembers the removal and this device's node stored the message before it
(core/device_list.py ``check_listed_when_accepted``): the node no longer serves that device's
record, so it comes from the box (which carries it when the message starts a session) or from
the copy this device kept when it last used it (``sender_record/<account>/<device>``). One it
refuses (``sender_removed``: the device was removed before this device's node took the message)
is reported back to the sender's account with an ``undelivered`` receipt naming the message, so
the account's remaining devices learn that it did not arrive (the removed one cannot).

``Receiver`` does one ``receive`` on one connection that the caller (client/sdk.py) owns; the
fan-out that sends the receipts is passed in, so it exists once, next to sending, and so are the
caches the device keeps between receives (live sessions, verified sender certificates).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from sonet.core import limits
from sonet.core.address import Address, parse_address
from sonet.core.client_api import Ack, Deliver, Delivery, LinkOffer
from sonet.core.certs import SenderCertificate as VerifiedCertificate
from sonet.core.certs import CertificateCache
from sonet.core.content import CALL, GROUP_TYPING, Content, decode_content, encode_content
from sonet.core.crypto import CryptoPolicy
from sonet.core.device import DeviceRecord, verify_device_record
from sonet.core.device_list import check_listed_when_accepted, removal_time
from sonet.core.envelope import Kind
from sonet.core.errors import ProtocolError, RemoteProtocolError, VerifyError
from sonet.core.sealed_sender import unknown_reference, unseal
from sonet.core.wire import Frame

from .access import remember_contact_token
from .connection import TRANSIENT_LOOKUP_CODES, ConnectError, Connection, NodeError
from .directory import IdentityChanged, Lookup, lookup_account
from .groups.events import GroupEvent
from .groups.store import GroupMessage

if TYPE_CHECKING:
    # the group engine, KeyPackages and tree fetches (MLS, ~0.15 s of imports) are imported when
    # a Receiver is made: `sonet send` and the other commands that never receive do not load them
    from .groups.engine import GroupEngine
from .prekeys import maintain_prekeys
from .session_cache import SessionCache
from .sessions import Sessions
from .transparency import node_key
from .state import ALERT, DeviceState, InboxMessage, Profile
from .state_history import GESTURE_TYPES, READ_TYPES, content_fields
from .rich_fields import RICH_TYPES
from .deletes import after_inbox_message
from .timer import after_stored, erase_due
from .calls import after_call_message

__all__ = ["FanOut", "ReceiveResult", "Receiver", "STALLED_NODE_S"]

#: how long past the end of a bounded wait (``recv --wait``) a receive still lets the node
#: answer the frame in hand (its Ack, its lookups, the receipts after it) before giving up
STALLED_NODE_S = 30.0

#: encrypts ``content`` for every device of an account and hands the batch to the node:
#: (conn, profile, to, content, own_copy, msg_id, kind) -> (recipient devices, own devices)
FanOut = Callable[[Connection, Profile, Address, bytes, bytes | None, bytes, Kind], Awaitable[tuple[int, int]]]


@dataclass(frozen=True, kw_only=True)
class ReceiveResult:
    messages: list[InboxMessage]
    #: one line per envelope that was dropped because it failed verification
    rejected: list[str]
    #: contacts whose account identity key changed since it was trusted
    identity_changes: list[str]
    #: group messages not shown yet (client/groups/engine.py), each with its group
    group_messages: list[GroupMessage] = field(default_factory=list)
    #: membership events of groups not shown yet (client/groups/events.py)
    group_events: list[GroupEvent] = field(default_factory=list)


@dataclass
class _Inbox:
    """What one ``receive`` learns and reports."""

    lookups: dict[str, Lookup]
    texts: dict[str, list[bytes]]
    rejected: list[str]
    changed: set[str]
    #: sender device records this receive knows are kept (``sender_record/...``)
    kept_records: set[bytes]
    #: per sender account, the messages refused because their device was removed first
    undelivered: dict[str, list[bytes]]

    def __init__(self) -> None:
        self.lookups, self.texts, self.rejected, self.changed, self.kept_records = {}, {}, [], set(), set()
        self.undelivered = {}


class Receiver:
    """One ``receive`` of one device: ``run`` it on a connection, then read its ``result``."""

    def __init__(
        self,
        state: DeviceState,
        profile: Profile,
        *,
        clock: Callable[[], int],
        rng: Callable[[int], bytes],
        policy: CryptoPolicy,
        deliver: FanOut,
        sessions: SessionCache | None = None,
        certificates: CertificateCache | None = None,
        groups: GroupEngine | None = None,
    ) -> None:
        self._state = state
        self._profile = profile
        self._clock = clock
        self._rng = rng
        self._policy = policy
        self._deliver = deliver
        self._sessions = Sessions(state, profile, rng, policy, sessions)
        self._certificates = certificates if certificates is not None else CertificateCache()
        self._inbox = _Inbox()
        #: processes the group items of the mailbox, in each group's order
        if groups is None:
            from .groups.engine import GroupEngine

            groups = GroupEngine(state, profile, rng=rng, clock=clock)
        self.groups = groups

    async def run(
        self, conn: Connection, *, wait: float | None, read_receipts: bool, keys: bool = True, after_drained: bool = False
    ) -> None:
        """Accept deliveries until the mailbox is drained or, with ``wait`` and nothing queued to
        show, until the next arrival (at most ``wait`` seconds); then send receipts and the group
        submissions that are due. See ``Device.receive``. ``keys``: top up prekeys and
        KeyPackages first (once per connection). ``after_drained``: an earlier run on this
        connection saw the node's Drained (it comes once), so this one ends with the first
        batch that brings something new, or after ``wait``."""
        profile, inbox = self._profile, self._inbox
        erase_due(self._state, self._clock())  # disappearing messages whose time came (client/timer.py)
        if keys:
            from .groups.keys import maintain_key_packages

            await maintain_prekeys(conn, self._state, profile, self._rng, self._clock())
            try:
                await maintain_key_packages(conn, self._state, profile, self._rng, self._clock())
            except NodeError as exc:  # others cannot add this device to groups for now: not the receive's failure
                inbox.rejected.append(f"could not publish this device's KeyPackages now: {exc}")
        # ``wait`` bounds the waits for the next frame only, never the work on one: a deadline
        # that cancelled its Ack (or a lookup) mid-send would leave a sealed record half sent,
        # and the connection could send nothing more (not the receipts after the batch either)
        # ... but a node that stops answering a lookup or an Ack (a stalled or hostile node) does
        # not keep a bounded wait going for ever: STALLED_NODE_S past its end, it is given up on
        deadline = trio.current_time() + wait if wait is not None else float("inf")
        try:
            with trio.fail_at(deadline + STALLED_NODE_S):
                timed_out = await self._take_until(conn, deadline, drained=after_drained, bounded=wait is not None)
                if conn.error is not None and not timed_out:
                    raise conn.error
                await self._after_batch(conn, read_receipts=read_receipts, keys=keys)
        except trio.TooSlowError:
            raise ConnectError(
                f"the node stopped answering: nothing for {STALLED_NODE_S:.0f} s after the wait ended", code="unreachable"
            ) from None

    async def _take_until(self, conn: Connection, deadline: float, *, drained: bool, bounded: bool) -> bool:
        """Accept deliveries until the mailbox is drained (``run`` says when that ends a bounded
        wait); True if ``deadline`` came first, False if the drain or the connection's end did."""
        mark = self._state.unshown_mark()
        while True:
            try:
                frame = await _next_frame(conn, deadline)
            except trio.EndOfChannel:  # the connection ended (conn.error says why)
                return False
            if frame is None:
                return True
            if isinstance(frame, Deliver):
                fresh = await self._accept(conn, frame)
                if drained and fresh:
                    return False
            elif not isinstance(frame, LinkOffer):  # Drained
                drained = True
                # anything queued that recv prints ends a wait, not only texts: an
                # invitation, a receipt, a reaction, a group event...
                if not bounded or self._state.has_unshown_since(mark):
                    return False

    async def take(self, conn: Connection, frames: list[Deliver], *, read_receipts: bool) -> None:
        """Accept ``frames``, which the caller took from ``conn.deliveries`` itself (a live
        session waits for them outside its lock: client/live.py), then send what ``run``
        sends after its batch."""
        for frame in frames:
            await self._accept(conn, frame)
        await self._after_batch(conn, read_receipts=read_receipts, keys=False)

    async def _after_batch(self, conn: Connection, *, read_receipts: bool, keys: bool) -> None:
        inbox = self._inbox
        # group texts too (client/groups/sent.py): one receipt per sender for both kinds
        texts = dict(inbox.texts)
        for sender, ids in self.groups.take_received().items():
            texts[sender] = texts.get(sender, []) + ids
        await self._send_receipts(conn, "delivered", texts)
        await self._send_receipts(conn, "undelivered", inbox.undelivered)
        if read_receipts:  # shown as they are read: history marks them read too
            self._state.mark_ids_read([i for ids in texts.values() for i in ids])
            await self._send_receipts(conn, "read", texts)
        await self.groups.check_members(conn, self._policy)
        if keys:  # a receive (not a group change's catching up): groups follow the account's device list
            await self.groups.follow_devices(conn, self._policy)
        await self.groups.flush(conn)

    def result(self) -> ReceiveResult:
        inbox = self._inbox
        return ReceiveResult(
            messages=self._state.unshown(), rejected=inbox.rejected + self.groups.rejected, identity_changes=sorted(inbox.changed),
            group_messages=self._state.unshown_group_messages(), group_events=self._state.unshown_group_events(),
        )  # fmt: skip

    async def _accept(self, conn: Connection, frame: Deliver) -> bool:
        inbox = self._inbox
        fresh = False
        keep: set[bytes] = set()
        for item in frame.items:
            env = item.envelope
            if env.kind == Kind.GROUP:
                from .groups.tree_fetch import prefetch_tree

                try:  # a Welcome for this device goes without its ratchet tree: fetch it first
                    await prefetch_tree(conn, self._state, self.groups, env)
                except (NodeError, ProtocolError) as exc:
                    if isinstance(exc, NodeError) and exc.code in TRANSIENT_LOOKUP_CODES:
                        keep.add(env.id)  # the hub cannot answer now: the next receive asks again
                        inbox.rejected.append(f"kept group item {env.id.hex()} for later: cannot fetch its group tree now: {exc}")
                        continue
                    inbox.rejected.append(f"could not fetch the group tree of item {env.id.hex()}: {exc}")
                if self.groups.accept(env, item.stored_at):
                    fresh = True
                else:
                    keep.add(env.id)
                continue
            if self._state.has_message(env.id) and env.kind == Kind.SEALED:
                continue  # redelivered after a lost ack: already stored
            try:
                sender, content = await self._open(conn, item)
            except (NodeError, ProtocolError) as exc:
                if exc.code in TRANSIENT_LOOKUP_CODES:
                    # the node could not answer a lookup now (or the sender's directory head
                    # is not witnessed yet): not the envelope's fault, so do not ack it; it
                    # comes again on the next connection
                    keep.add(env.id)
                    inbox.rejected.append(f"kept envelope {env.id.hex()} for later: {exc}")
                else:
                    # a definite "no" (a message that does not verify, a certificate naming
                    # a node nobody peers with): keeping it would let junk fill the mailbox
                    inbox.rejected.append(f"dropped envelope {env.id.hex()}: {exc}")
                continue
            if content.type in READ_TYPES:  # messages the user reads: receipted (not gestures)
                inbox.texts.setdefault(sender, []).append(content.id)
            fresh = True
        acked = (Kind.SEALED, Kind.GROUP)
        await conn.send(Ack(ids=tuple(i.envelope.id for i in frame.items if i.envelope.kind in acked and i.envelope.id not in keep)))
        return fresh

    async def _open(self, conn: Connection, item: Delivery) -> tuple[str, Content]:
        """Unseal one envelope, verify who sent it, decrypt it and store it (with the session
        state and any receipt) in one transaction; returns (sender, content)."""
        profile = self._profile
        unsealed = unseal(item.envelope.body, my_key=profile.hpke, my_fp=profile.identity.public.fingerprint)
        # a certificate by reference is one this device verified before: verified again below
        raw = unsealed.certificate_raw or self._sessions.held_certificate(unsealed.certificate_ref or b"")
        if raw is None:
            raise unknown_reference()
        node = self._certificates.node(raw)
        key = await node_key(conn, self._state, node, now=self._clock())
        # judged at arrival, as Signal does: a day offline must not expire them
        cert = self._certificates.verify(raw, node_key=key, node=node, now=item.stored_at)
        try:
            record = await self._sender_record(conn, cert, accepted_at=item.stored_at, boxed_record=unsealed.record_raw)
        except VerifyError as exc:
            if exc.code == "sender_removed":  # the certificate is genuine: tell its account
                self._inbox.undelivered.setdefault(cert.account, []).append(item.envelope.id)
            raise
        decrypted = self._sessions.decrypt(
            cert.account, cert.device, record, unsealed.message,
            certificate=unsealed.certificate_raw, certificate_ref=unsealed.certificate_ref,
        )  # fmt: skip
        content = decode_content(decrypted.plaintext)
        if content.type == GROUP_TYPING:  # None: for a group this device is not in (client/groups/typing.py)
            from .groups.typing import group_typing_message

            stored = group_typing_message(self._state, content, sender=cert.account, device=cert.device, received_at=item.stored_at)
        else:
            stored = _inbox_message(content, cert.account, profile.address, item.stored_at)
            if stored is None:
                raise VerifyError(f"a {content.type} message may only come from this account's own devices")
        with self._state.transaction():
            self._sessions.commit(decrypted)
            # the sender is verified now: its access token lets us write back as a contact
            remember_contact_token(self._state, cert.account, unsealed.access)
            if content.type == "receipt" and content.ids is not None and content.receipt is not None:  # decode_content: both set
                self._state.record_receipt(list(content.ids), content.receipt, item.stored_at, recipient=cert.account)
                self._state.record_group_receipt(list(content.ids), content.receipt, item.stored_at, account=cert.account, device=cert.device)
            if stored is not None:
                if stored.type == CALL:  # the call it belongs to moves on (client/calls.py); a note when it does not
                    stored = after_call_message(self._state, stored, now=self._clock())
                self._state.store_received([stored])
                if stored.type == "presence":  # only the newest one says anything (client/presence.py)
                    self._state.keep_newest_presence(cert.account)
                after_inbox_message(self._state, profile.address, stored)  # a delete erases (client/deletes.py)
                after_stored(self._state, content, conversation=stored.peer, now=self._clock())  # a timer (client/timer.py)
            if content.type == "alert":
                # kept in the inbox only to recognise a redelivery; shown as an alert
                self._state.mark_shown([content.id])
                self._state.add_alert(ALERT, f"your device {cert.device} reports: {content.text}", item.stored_at)
        return cert.account, content

    async def _sender_record(
        self, conn: Connection, cert: VerifiedCertificate, *, accepted_at: int, boxed_record: bytes | None
    ) -> DeviceRecord:
        """The sender's device record: from its signed device list, which must hold the identity
        the certificate names; or, for a device removed since, one it signed (in the box or
        kept here) if the list remembers its removal after ``accepted_at``."""
        inbox = self._inbox
        lookup = inbox.lookups.get(cert.account)
        if lookup is None:
            lookup = await lookup_account(
                conn, self._state, parse_address(cert.account), policy=self._policy, now=self._clock(), require_trusted=False
            )
            inbox.lookups[cert.account] = lookup
            contact = self._state.contact(cert.account)
            if contact and contact.changed:
                inbox.changed.add(cert.account)
        view = lookup.view
        record = view.devices.get(cert.device)
        if record is not None and cert.matches(record.identity, cert.account):
            self._keep_record(cert, record)
            return record
        fingerprint = cert.identity.fingerprint
        if fingerprint in view.device_list or removal_time(view.device_list, fingerprint) is None:
            raise VerifyError(f"sender certificate names a device {cert.account} does not list", code="certificate_mismatch")
        check_listed_when_accepted(
            view.device_list, fingerprint, accepted_at=accepted_at, published_at=lookup.checked.proven.entry.at, now=self._clock()
        )
        return self._removed_device_record(cert, boxed_record)

    def _record_key(self, cert: VerifiedCertificate) -> str:
        return f"sender_record/{cert.account}/{cert.device}"

    def _keep_record(self, cert: VerifiedCertificate, record: DeviceRecord) -> None:
        """Keep the record of a listed sender device: should the account remove the device, the
        messages it sent before still need it, and its node will not serve it any more."""
        if record.raw in self._inbox.kept_records:
            return
        key = self._record_key(cert)
        if self._state.get(key) != record.raw:
            self._state.put(key, record.raw)
        self._inbox.kept_records.add(record.raw)

    def _removed_device_record(self, cert: VerifiedCertificate, boxed: bytes | None) -> DeviceRecord:
        """The record of a removed sender device: signed by the identity the certificate names,
        for its account."""
        raw = boxed if boxed is not None else self._state.get(self._record_key(cert))
        if raw is None:
            raise VerifyError(
                f"device {cert.device} of {cert.account} was removed and this device holds no record of it", code="sender_removed"
            )
        record = verify_device_record(raw, policy=self._policy, account=cert.account)
        if not cert.matches(record.identity, cert.account):
            raise VerifyError(f"the device record of {cert.account}'s removed device is for another identity", code="certificate_mismatch")
        return record

    async def send_read(self, conn: Connection, messages: dict[str, list[bytes]]) -> None:
        """Read receipts for ``messages`` (sender account -> content ids) that the user read
        later than they were received (a live session: client/live.py)."""
        await self._send_receipts(conn, "read", messages)

    async def _send_receipts(self, conn: Connection, kind: str, messages: dict[str, list[bytes]]) -> None:
        """A receipt of ``kind`` to each sender account for its ``messages`` (content ids)."""
        profile = self._profile
        for sender, ids in messages.items():
            if sender == profile.address:
                continue
            for start in range(0, len(ids), limits.MAX_RECEIPT_IDS):
                # One id for the content and its envelopes: the receiver recognises a
                # redelivered envelope by that id (a lost ack must not look like a bad message).
                receipt_id = self._rng(limits.ENVELOPE_ID_LEN)
                content = encode_content(
                    Content(type="receipt", id=receipt_id, sent_at=self._clock(), receipt=kind, ids=tuple(ids[start : start + limits.MAX_RECEIPT_IDS]))
                )
                try:
                    await self._deliver(conn, profile, parse_address(sender), content, None, receipt_id, Kind.SEALED)
                except (IdentityChanged, NodeError, ProtocolError):
                    pass  # a receipt is a courtesy: never let it fail the receive


def _inbox_message(content: Content, sender: str, me: str, received_at: int) -> InboxMessage | None:
    if content.type == "group_state":
        raise RemoteProtocolError("a group_state message comes only in a group", code="content_malformed")
    if content.type in ("sync", "alert") and sender != me:
        return None
    if content.type == "sync":
        if content.to is None:  # decode_content refuses a sync without one
            raise RemoteProtocolError("a sync message names no recipient", code="content_malformed")
        inner = content.message()  # a text, or a reply, reaction, edit or delete (issue 17)
        return InboxMessage(id=content.id, sender=me, peer=content.to, sent_at=content.sent_at, received_at=received_at,
                            type=inner.type, fields={**content_fields(inner), "to": content.to})
    fields: dict = {}
    if content.type in ("text", "alert", *GESTURE_TYPES, "reply", "file", "timer", *RICH_TYPES):  # RICH_TYPES: client/rich_fields.py
        fields = content_fields(content)
    elif content.type == "receipt":
        fields = {"receipt": content.receipt, "ids": [i.hex() for i in content.ids or ()]}
    elif content.type == "typing":
        fields = {"typing": content.typing}
    elif content.type == "presence":  # client/presence.py
        fields = {"presence": content.presence}
    return InboxMessage(id=content.id, sender=sender, peer=sender, sent_at=content.sent_at, received_at=received_at,
                        type=content.type, fields=fields)


async def _next_frame(conn: Connection, deadline: float) -> Frame | None:
    """The next frame the node pushed; None once ``deadline`` has passed (trio.EndOfChannel when
    the connection ended). Taking from the channel is safe to cancel: nothing is lost."""
    with trio.move_on_at(deadline):
        return await conn.deliveries.receive()
    return None
