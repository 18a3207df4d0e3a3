"""What a device does: register or link, send, receive, manage devices, verify contacts.

All end-to-end cryptography happens here and in core/: PQXDH + Double Ratchet sessions per
device pair (client/sessions.py), sealed sender with certificates from the home node, fan-out
to every device of the recipient and to this account's other devices. Time and randomness are
injected; every operation opens one authenticated connection and closes it before returning.
``Device`` is the entry point; the receive path lives in client/receiving.py and the delivery
status of sent messages in client/delivery.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from sonet.core import limits
from sonet.core.address import Address, parse_address
from sonet.core.client_api import (
    Accepted,
    Bundles,
    DeviceMismatch,
    DeviceRemoved,
    FetchBundles,
    GetSenderCertificate,
    LinkApprove,
    LinkBegin,
    LinkComplete,
    LinkFetch,
    LinkOffer,
    LinkPending,
    LinkSlot,
    Register,
    Registered,
    RemoveDevice,
    SendBatch,
    SenderCertificate,
)
from sonet.core.certs import CertificateCache, verify_certificate
from sonet.core.call import CallSignal, CallTimeouts
from sonet.core.cards import ContactCard, Event, Location
from sonet.core.content import CONTACT, EVENT, LOCATION, POLL, Content, encode_content
from sonet.core.crypto import CryptoMode, CryptoPolicy, HpkePrivateKey, HpkePublicKey, SigningKey
from sonet.core.crypto.dh import X25519KeyPair
from sonet.core.device import make_device_record
from sonet.core.device_list import next_device_list, sign_device_list, verify_device_list
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.errors import LocalProtocolError, ProtocolError, VerifyError
from sonet.core.invite import parse_invite
from sonet.core.poll import Poll, Tally
from sonet.core.provisioning import Provisioning, check_commitment, make_link_code, open_provisioning, parse_link_code, seal_provisioning
from sonet.core.safety import qr_payload, safety_number
from sonet.core.sealed_sender import seal

from .access import own_token, remember_own_token, tokens_for
from .connection import ConnectError, Connection, NodeError, connect
from .crypto_modes import check_minimum_for_keys, check_requested, key_policy, note_node_minimum, save_device_minimum
from .delivery import refresh_sent
from .directory import AccountView, Lookup, fetch_account, lookup_account
from .groups.waiting import send_waiting_group_messages
from .gestures import GestureResult, Gestures, waiting_content
from .calls import NO_MEDIA_SDP, Calls
from .state_call import KeptCall
from .polls import Polls, PostResult
from .attachments import Attachments, FileSendResult, Progress, Say
from .live import LiveSession, lent_connection, open_live_session
from .monitor import APPROVED_DEVICE, APPROVED_VERSION, check_own_account, start_audit
from .pending import PendingFull, expire_pending, not_behind_waiting, send_pending, waits
from .pending_registration import (
    DISCARD_HINT,
    PendingRegistration,
    clear_pending_registration,
    has_pending_registration,
    load_pending_registration,
    save_pending_registration,
)
from .prekeys import FirstPrekeys, first_prekeys, maintain_prekeys, save_first_prekeys
from .presence import PresenceResult, PresenceSetting, last_presence, presence_setting, presence_targets, send_presence, set_presence
from .receiving import Receiver, ReceiveResult
from .replies import expect_reply
from .session_cache import SessionCache
from .sessions import Sessions
from .timer import TimerResult, after_stored, erase_due, set_timer, timed
from .state import DeviceState, PendingSend, Profile, SentMessage, StateError
from .transparency import UNWITNESSED_TRIES, check_bundles

# groups and MLS (~0.15 s of imports) are imported where a group is used: a 1:1 command never loads them
if TYPE_CHECKING:
    from .groups.api import GroupInfoView, Groups, GroupSendResult, GroupView
    from sonet.core.attachment import FileRef
    from .groups.engine import GroupEngine
    from .groups.typing import GroupTypingResult

__all__ = [
    "Device", "SendResult", "ReceiveResult", "DeviceInfo", "SafetyNumber", "Lookup", "SentMessage", "GroupView", "GroupInfoView",
    "GroupSendResult", "GestureResult", "now_ms",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    # the group views this module exports, imported when first asked for (see above)
    if name in ("GroupView", "GroupInfoView", "GroupSendResult"):
        from .groups import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

RATCHET_MESSAGE = 1
#: refresh the sender certificate when less than this is left
CERT_REFRESH_MS = 3600 * 1000
MAX_SEND_ATTEMPTS = 3
#: the self-check on connect asks twice while the own head is not witnessed (right after a
#: change it is within moments); it does not hold every command while a witness is down
MONITOR_TRIES = 2
#: seconds between the tries of a Register / LinkComplete whose answer was lost (the node may be
#: restarting); the request is idempotent for the device, so trying again is always safe
ANSWER_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _lost_while_sending(to: str) -> str:
    """What a text's sender is told when the connection ended after the text went to the node:
    its answer never came, so neither this device nor the sender knows whether it took it."""
    return f"the connection ended while the message was being sent: it may or may not reach {to}, and `sonet sent` does not list it; sending it again may deliver it twice"


@dataclass(frozen=True, kw_only=True)
class SendResult:
    id: bytes
    recipient: str
    devices: int  # recipient devices
    own_devices: int  # this account's other devices that got a copy
    accepted_by: str  # the home node, which durably holds it now
    #: "accepted" when the home node is the recipient's node too, else "sent" (see ``sent``);
    #: "pending" when it waits on this device (the recipient's keys could not be fetched now:
    #: ``code``/``message`` say why; client/pending.py), and then ``accepted_by`` is ""
    state: str
    code: str = ""
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class DeviceInfo:
    device: int
    fingerprint: str
    created: int
    this_device: bool


@dataclass(frozen=True, kw_only=True)
class SafetyNumber:
    address: str
    number: str
    qr: str
    changed: bool


@dataclass(frozen=True, kw_only=True)
class _Target:
    address: str
    device: int
    view: AccountView
    content: bytes


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
        #: overrides the key policy that follows from the device's minimum (client/crypto_modes.py)
        self._explicit_policy = policy
        # kept between messages: live ratchet states and verified sender certificates
        self._live_sessions = SessionCache()
        self._certificates = CertificateCache()
        #: why the last connection's self-monitoring could not finish (None: it did)
        self.monitor_error: Exception | None = None
        #: a line per waiting text that connecting sent, failed or gave up (client/pending.py)
        self.notices: list[str] = []
        #: what the mailbox fetch of the last ``sent`` found (its warnings are the caller's to show)
        self.last_receive: ReceiveResult | None = None
        #: told (one line) when a connection waits a second or more for the node's handshake
        #: share of this address (client/connection.py); the CLI prints it on stderr
        self.say_waiting: Callable[[str], object] | None = None
        #: pauses before each new try of a registration whose answer was lost
        self.answer_retry_delays: tuple[float, ...] = ANSWER_RETRY_DELAYS_S
        #: seconds a group change waits for the hub's order before it is reported "queued"
        #: (None: client/groups/api.py's SETTLE_S)
        self.group_settle_s: float | None = None
        erase_due(state, clock())  # disappearing messages whose time came while it was closed

    @property
    def _policy(self) -> CryptoPolicy:
        """What this device accepts as the keys of nodes and accounts: from its minimum."""
        return self._explicit_policy or key_policy(self.state)

    @_policy.setter
    def _policy(self, policy: CryptoPolicy) -> None:
        self._explicit_policy = policy

    # Connections ------------------------------------------------------------------------

    @asynccontextmanager
    async def _connect(self, profile: Profile, *, strict: bool = False) -> AsyncIterator[Connection]:
        """A connection to the home node, after checking the account's own directory entries
        (client/monitor.py). A check that cannot finish (the newest head is not witnessed yet,
        a witness is down, a proof does not verify) does not stop the command: what it found is
        kept, and why it could not finish is in ``monitor_error`` (raised with ``strict``).
        In an operation of a live session (client/live.py), its connection, checked when it
        connected (or its ConnectError while it is down)."""
        lent = lent_connection(self)
        if isinstance(lent, ConnectError):
            raise ConnectError(str(lent))
        if lent is not None:
            yield lent
            return
        async with connect(
            profile.node_url, identity=profile.identity, node_fingerprint=profile.node_fingerprint, policy=self._policy, waiting=self.say_waiting
        ) as conn:
            if conn.welcome.account is None:
                # The node does not know this device (it says why in an ErrorFrame that a busy
                # machine may lose with the close): say it from the Welcome, which always comes.
                raise NodeError("device_removed", "this device was removed from its account")
            note_node_minimum(self.state, conn.welcome.node, conn.welcome.minimum_crypto_mode)
            self.monitor_error = None
            try:
                await check_own_account(
                    conn, self.state, profile, policy=self._policy, now=self._clock(), tell=self._tell,
                    tries=UNWITNESSED_TRIES if strict else MONITOR_TRIES,
                )
            except (NodeError, ProtocolError) as exc:
                if strict:
                    raise
                self.monitor_error = exc
            await self._send_waiting(conn, profile)
            self.notices += await send_waiting_group_messages(conn, self.state, profile, rng=self._rng, clock=self._clock)
            yield conn

    def _new_device_keys(self, mode: CryptoMode) -> tuple[SigningKey, bytes | None, HpkePrivateKey]:
        identity = SigningKey.generate(mode, self._rng)
        identity_dh = self._rng(32) if mode.uses_classical else None
        return identity, identity_dh, HpkePrivateKey.generate(mode, self._rng)

    def _record(self, account: str, identity: SigningKey, identity_dh: bytes | None, hpke: HpkePrivateKey) -> bytes:
        return make_device_record(
            account=account,
            identity=identity,
            hpke=hpke.public,
            created=self._clock(),
            identity_dh=X25519KeyPair(identity_dh).public if identity_dh else None,
        )

    def _ensure_unregistered(self) -> None:
        if self.state.registered():
            raise StateError(f"{self.state.home} already holds {self.state.profile().address}; use another --home")

    # Registration and linking -------------------------------------------------------------

    async def register(
        self, address: str, node_url: str, invite: str, *, mode: CryptoMode = CryptoMode.HYBRID, minimum: CryptoMode | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Profile:
        """Create ``address`` with this device, its keys of ``mode``; ``minimum`` (default:
        ``mode``) is the lowest crypto mode this device will ever run a session in. The request
        and its keys are saved before it is sent (client/pending_registration.py): if the
        connection drops before the node's answer, the same request is sent again on a new
        connection (``say`` is told each time); if this process stops, the next ``register``
        (or :meth:`resume_registration`) sends it again. The node completes the same
        registration. When this home holds such an interrupted registration of ``address`` on
        ``node_url``, it is completed (``invite``, ``mode`` and ``minimum`` are not used)."""
        minimum = minimum or mode
        check_minimum_for_keys(mode, minimum)
        self._ensure_unregistered()
        addr = parse_address(address)
        if load_pending_registration(self.state) is not None:
            return await self.resume_registration(say=say, kind="register", address=str(addr), node_url=node_url)
        fingerprint, secret = parse_invite(invite)
        identity, identity_dh, hpke = self._new_device_keys(mode)
        account_key = SigningKey.generate(mode, self._rng)
        record = self._record(str(addr), identity, identity_dh, hpke)
        device_list = sign_device_list(account_key, account=str(addr), version=1, devices={identity.public.fingerprint}, now=self._clock())
        first = first_prekeys(identity, mode, self._rng)
        pending = PendingRegistration(
            kind="register", address=str(addr), node_url=node_url, node_fingerprint=fingerprint, mode=mode, minimum=minimum,
            identity=identity, identity_dh=identity_dh, hpke=hpke, account_key=account_key, prekeys=first,
            request=Register(
                request=0, user=addr.user, invite=secret, record=record,
                account_identity=account_key.public.to_bytes(), device_list=device_list, keys=first.keys,
            ),
        )
        save_pending_registration(self.state, pending)  # durable before anything is sent
        return await self._complete(pending, say, resumed=False)

    async def resume_registration(
        self, *, say: Callable[[str], None] | None = None, kind: str | None = None, address: str | None = None, node_url: str | None = None,
    ) -> Profile:
        """Complete the registration or link this home saved before sending it (its process
        stopped before the node's answer was saved): the same request, with the same keys,
        which the node answers as it answered the first, or runs now. ``kind``, ``address``
        and ``node_url``, when given, must be the pending one's (else a StateError says which
        one is pending and how to discard it)."""
        self._ensure_unregistered()
        pending = load_pending_registration(self.state)
        if pending is None:
            raise StateError(f"no interrupted registration or link in {self.state.home}")
        asked = (kind, address, node_url)
        if any(want is not None and want != have for want, have in zip(asked, (pending.kind, pending.address, pending.node_url))):
            raise StateError(self._pending_elsewhere(pending))
        if say is not None:
            say(f"completing an interrupted {pending.what} of {pending.address} on {pending.node_url}: sending the same request "
                "with the same keys again")
        return await self._complete(pending, say, resumed=True)

    def discard_pending_registration(self) -> str | None:
        """Delete the pending registration or link and its keys (never used by an account, see
        client/pending_registration.py); what was discarded, or None when nothing was pending."""
        if not has_pending_registration(self.state):
            return None
        try:
            pending = load_pending_registration(self.state)
            what = f"the interrupted {pending.what} of {pending.address} on {pending.node_url}" if pending else None
        except StateError:
            what = "an unreadable interrupted registration"
        clear_pending_registration(self.state)
        return what

    def _pending_elsewhere(self, pending: PendingRegistration) -> str:
        complete = "`sonet register`" if pending.kind == "register" else f"`sonet link begin --node {pending.node_url}`"
        return (
            f"{self.state.home} holds an interrupted {pending.what} of {pending.address} on {pending.node_url}: {complete} "
            f"(or any other command) completes it; {DISCARD_HINT}"
        )

    async def _complete(
        self, pending: PendingRegistration, say: Callable[[str], None] | None, *, resumed: bool, first_conn: Connection | None = None,
    ) -> Profile:
        """Send ``pending``'s request (again, when ``resumed``), then save the profile in place
        of the pending record and note where the audit of the account begins."""
        node = parse_address(pending.address).node

        def check_node(conn: Connection) -> None:
            if pending.kind == "register" and conn.welcome.node != node:
                raise LocalProtocolError(f"the node at {pending.node_url} is {conn.welcome.node}, not {node}", code="wrong_identity")

        async with self._registering(pending, check_node, say, resumed=resumed, first_conn=first_conn) as (conn, reply):
            if reply.account != pending.address:
                raise VerifyError(f"the node made this device one of {reply.account}, not of {pending.address}", code="wrong_account")
            profile = Profile(
                address=reply.account, device_id=reply.device, node_url=pending.node_url, node_fingerprint=pending.node_fingerprint,
                mode=pending.mode, identity=pending.identity, identity_dh=pending.identity_dh, hpke=pending.hpke,
                account_key=pending.account_key,
            )
            self._save_new_profile(conn, profile, pending.minimum, pending.prekeys)
            await self._start_audit(conn, profile, pending.request.device_list, say)
            if pending.kind == "link":  # so the account's other devices can add it to its groups at once
                from .groups.keys import maintain_key_packages

                try:
                    await maintain_key_packages(conn, self.state, profile, self._rng, self._clock())
                except (NodeError, ConnectError) as exc:  # the device is linked: this can wait
                    self.notices.append(f"could not publish this device's group keys yet (the first receive does): {exc}")
        return profile

    @asynccontextmanager
    async def _registering(
        self, pending: PendingRegistration, check_node: Callable[[Connection], None], say: Callable[[str], None] | None,
        *, resumed: bool, first_conn: Connection | None = None,
    ) -> AsyncIterator[tuple[Connection, Registered]]:
        """Send ``pending``'s request (on ``first_conn``, else on a new connection) and yield
        the connection with the node's Registered. When the connection drops after the request
        went out, the answer is lost but the node may have committed: connect again with the
        same device key and send the same request, which the node answers as it answered (or
        would have answered) the first — at most ``len(answer_retry_delays)`` more tries.

        The pending record is deleted only when the node cannot have committed the request:
        this process sent it once, not ``resumed``, and the node refused it or was never
        reached. Otherwise it stays, for the next command to complete (or the user to discard)."""
        delays = self.answer_retry_delays
        what = type(pending.request).__name__
        sent = False
        for attempt in range(len(delays) + 1):
            if attempt:
                if say is not None:
                    why = "the connection to the node dropped before its answer" if attempt == 1 else "the node could not be reached"
                    say(f"{why} to {what}; sending the same request again in {delays[attempt - 1]:g} s (try {attempt + 1} of {len(delays) + 1})")
                await trio.sleep(delays[attempt - 1])
            stack = AsyncExitStack()
            try:
                if attempt == 0 and first_conn is not None:
                    conn = first_conn
                else:
                    conn = await stack.enter_async_context(
                        connect(
                            pending.node_url, identity=pending.identity, node_fingerprint=pending.node_fingerprint, policy=self._policy,
                            waiting=self.say_waiting,
                        )
                    )
                check_node(conn)
                sent = True
                reply = await conn.request(pending.build)
            except ConnectError as exc:
                await stack.aclose()
                if sent:
                    continue
                if not resumed:  # nothing went out: the node is simply not there
                    clear_pending_registration(self.state)
                    raise
                raise ConnectError(f"{exc}; the interrupted {pending.what} of {pending.address} stays on this device: "
                                   "run the command again once the node is reachable") from None
            except NodeError as exc:
                await stack.aclose()
                if attempt == 0 and not resumed:  # the only request this key sent, refused
                    clear_pending_registration(self.state)
                    raise
                raise self._refused(pending, exc) from None
            except BaseException:
                await stack.aclose()
                if not sent and not resumed:
                    clear_pending_registration(self.state)
                raise
            async with stack:
                yield conn, expect_reply(reply, Registered)
            return
        again = "`sonet register`" if pending.kind == "register" else f"`sonet link begin --node {pending.node_url}`"
        raise ConnectError(
            f"the node's answer to {what} was lost and the node could not be reached again ({len(delays) + 1} tries); "
            f"this device keeps the request and its keys: {again} (or any other command) sends it again and completes "
            f"the same {pending.what}"
        )

    def _refused(self, pending: PendingRegistration, exc: NodeError) -> NodeError:
        """The node's refusal of a request sent again (after a lost answer, or by a later
        process): what it means for the pending record, which stays."""
        if exc.code == "link_unknown":
            return NodeError(
                "link_unknown",
                f"the node never completed the link to {pending.address} and no longer holds its link slot (the node restarted, "
                f"the link expired, or the connection that began it ended): run `sonet link begin --node {pending.node_url}` "
                "again (it discards this link and begins a new one)",
            )
        return NodeError(
            exc.code,
            f"the node refused the interrupted {pending.what} of {pending.address}: {exc}. Running the command again "
            f"retries it (if the node only asked to wait); {DISCARD_HINT}",
        )

    async def _start_audit(self, conn: Connection, profile: Profile, device_list: bytes, say: Callable[[str], None] | None) -> None:
        """Note where this new device's audit of its account begins (client/monitor.py); if the
        connection drops first (the node may have stopped right after answering), on a new
        connection, with the same pauses as a lost answer."""
        delays = self.answer_retry_delays
        for attempt in range(len(delays) + 1):
            if attempt:
                if say is not None:
                    say(f"the connection dropped after the node registered this device; connecting again to finish setting it up "
                        f"in {delays[attempt - 1]:g} s (try {attempt + 1} of {len(delays) + 1})")
                await trio.sleep(delays[attempt - 1])
            try:
                if attempt == 0:
                    await start_audit(conn, self.state, profile, device_list)
                else:
                    async with connect(
                        profile.node_url, identity=profile.identity, node_fingerprint=profile.node_fingerprint, policy=self._policy,
                        waiting=self.say_waiting,
                    ) as again:
                        await start_audit(again, self.state, profile, device_list)
                return
            except ConnectError:
                continue
        raise ConnectError(
            f"{profile.address} device {profile.device_id} is registered and saved on this device, but the node could not be "
            "reached again to finish setting it up; the next command does"
        )

    def _save_new_profile(self, conn: Connection, profile: Profile, minimum: CryptoMode, first: FirstPrekeys) -> None:
        """The profile, minimum, first prekeys' secrets, the account's identity and this
        device's own key as trusted, in one transaction that also deletes the pending record:
        a process stopping at any point leaves one or the other."""
        with self.state.transaction():
            self.state.save_profile(profile)
            save_device_minimum(self.state, minimum)
            note_node_minimum(self.state, conn.welcome.node, conn.welcome.minimum_crypto_mode)
            save_first_prekeys(self.state, first, self._clock())
            self.state.see_identity(profile.address, profile.account_key.public.to_bytes(), self._clock())
            self.state.approve(APPROVED_DEVICE, profile.identity.public.fingerprint)
            clear_pending_registration(self.state)

    async def link_begin(
        self, node_url: str, show_code: Callable[[str], None], *, mode: CryptoMode = CryptoMode.HYBRID, minimum: CryptoMode | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Profile:
        """Become a new device of an existing account: show a code, wait for an existing
        device to approve it (`link approve CODE`), then register with the node (the request
        saved before it is sent and sent again after a lost answer, as for :meth:`register`).
        ``mode``, ``minimum`` and ``say`` as for :meth:`register`. When this home holds an
        interrupted link through ``node_url``, it is completed; if the node never completed it
        and its slot is gone, it is discarded and a new link begins."""
        minimum = minimum or mode
        check_minimum_for_keys(mode, minimum)
        self._ensure_unregistered()
        if load_pending_registration(self.state) is not None:
            try:
                return await self.resume_registration(say=say, kind="link", node_url=node_url)
            except NodeError as exc:
                if exc.code != "link_unknown":
                    raise
            clear_pending_registration(self.state)  # the node has no device with its key: never used
            if say is not None:
                say("the node never completed the interrupted link (its slot is gone): discarded it, beginning a new link")
        identity, identity_dh, hpke = self._new_device_keys(mode)
        ephemeral = HpkePrivateKey.generate(CryptoMode.HYBRID, self._rng)
        # The node is not pinned yet: the code's commitment protects the provisioning, and the
        # fingerprint inside the provisioning payload is checked against this connection below.
        async with connect(node_url, identity=identity, node_fingerprint=None, policy=self._policy, waiting=self.say_waiting) as conn:
            slot_reply = await conn.request(lambda n: LinkBegin(request=n, ephemeral=ephemeral.public.to_bytes()))
            slot_reply = expect_reply(slot_reply, LinkSlot)
            show_code(make_link_code(slot_reply.slot, ephemeral.public.to_bytes()))
            offer: LinkOffer | None = None
            with trio.move_on_after(max(0.0, (slot_reply.expires - self._clock()) / 1000)):
                offer = await _next_offer(conn)
            if offer is None:
                raise LocalProtocolError("the link code expired before an existing device approved it; run `link begin` again", code="link_unknown")
            payload = open_provisioning(offer.provisioning, key=ephemeral, slot=slot_reply.slot)
            if conn.node_key.fingerprint != payload.node_fingerprint:
                raise VerifyError("the node this device connected to is not the account's node", code="wrong_identity")
            account_key = SigningKey.from_private_bytes(payload.account_key)
            current = verify_device_list(offer.device_list, account_key=account_key.public, account=payload.account)
            if current.account != offer.account or current.version != payload.device_list_version:
                # the approving device sealed the version it saw: an older list (one that still
                # names a removed device) served by the node is refused
                raise VerifyError("the node offered another device list than the approving device saw", code="stale_device_list")
            device_list = next_device_list(account_key, current, devices=set(current.devices) | {identity.public.fingerprint}, now=self._clock())
            record = self._record(payload.account, identity, identity_dh, hpke)
            first = first_prekeys(identity, mode, self._rng)
            pending = PendingRegistration(
                kind="link", address=payload.account, node_url=node_url, node_fingerprint=payload.node_fingerprint, mode=mode,
                minimum=minimum, identity=identity, identity_dh=identity_dh, hpke=hpke, account_key=account_key, prekeys=first,
                request=LinkComplete(request=0, slot=slot_reply.slot, record=record, device_list=device_list, keys=first.keys),
            )
            save_pending_registration(self.state, pending)  # durable before anything is sent
            return await self._complete(pending, say, resumed=False, first_conn=conn)

    async def link_approve(self, code: str) -> None:
        profile = self.state.profile()
        slot, commitment = parse_link_code(code)
        async with self._connect(profile) as conn:
            pending = await conn.request(lambda n: LinkFetch(request=n, slot=slot))
            pending = expect_reply(pending, LinkPending)
            if not check_commitment(commitment, pending.ephemeral):
                raise VerifyError("the new device's key does not match the code; do not link it", code="link_code_mismatch")
            own = await fetch_account(conn, self.state, parse_address(profile.address), policy=self._policy, now=self._clock())
            # the new device signs the next version, adding itself: self-monitoring expects it
            self.state.approve(APPROVED_VERSION, str(own.device_list.version + 1))
            sealed = seal_provisioning(
                Provisioning(
                    account=profile.address,
                    account_key=profile.account_key.private_bytes(),
                    node_url=profile.node_url,
                    node_fingerprint=profile.node_fingerprint,
                    device_list_version=own.device_list.version,
                ),
                to=HpkePublicKey.from_bytes(pending.ephemeral),
                slot=slot,
                commitment=commitment,
            )
            await conn.request(lambda n: LinkApprove(request=n, slot=slot, provisioning=sealed))

    # Devices ----------------------------------------------------------------------------

    async def devices(self) -> list[DeviceInfo]:
        profile = self.state.profile()
        async with self._connect(profile) as conn:
            own = await fetch_account(conn, self.state, parse_address(profile.address), policy=self._policy, now=self._clock())
        return [
            DeviceInfo(device=d, fingerprint=r.fingerprint, created=r.created, this_device=d == profile.device_id)
            for d, r in sorted(own.devices.items())
        ]

    async def check(self) -> None:
        """Check the account's own key-directory entries now (client/monitor.py)."""
        async with self._connect(self.state.profile(), strict=True):
            pass

    async def remove_device(self, device_id: int) -> None:
        profile = self.state.profile()
        async with self._connect(profile) as conn:
            own = await fetch_account(conn, self.state, parse_address(profile.address), policy=self._policy, now=self._clock())
            if device_id not in own.devices:
                raise LocalProtocolError(f"{profile.address} has no device {device_id} (`sonet devices` lists them)", code="unknown_device")
            remaining = set(own.device_list.devices) - {own.devices[device_id].fingerprint}
            # the list remembers the removal: messages the device sent before still arrive
            device_list = next_device_list(profile.account_key, own.device_list, devices=remaining, now=self._clock())
            reply = await conn.request(lambda n: RemoveDevice(request=n, device=device_id, device_list=device_list))
            expect_reply(reply, DeviceRemoved)
            # and from the account's groups (client/groups/own_devices.py)
            listed = verify_device_list(device_list, account_key=profile.account_key.public, account=profile.address)
            self.notices += await self._groups().follow_devices(conn, profile, listed)
        self.state.drop_sessions(profile.address, keep=set(own.devices) - {device_id})

    # Verification -----------------------------------------------------------------------

    async def safety_number(self, address: str) -> SafetyNumber:
        profile = self.state.profile()
        peer = parse_address(address)
        async with self._connect(profile) as conn:
            view = await fetch_account(conn, self.state, peer, policy=self._policy, now=self._clock(), require_trusted=False)
        contact = self.state.contact(str(peer))
        mine = profile.account_key.public
        return SafetyNumber(
            address=str(peer),
            number=safety_number(profile.address, mine, str(peer), view.identity),
            qr=qr_payload(profile.address, mine, str(peer), view.identity),
            changed=bool(contact and contact.changed),
        )

    async def lookup(self, address: str) -> Lookup:
        account = parse_address(address)  # a typo is refused before connecting
        async with self._connect(self.state.profile()) as conn:
            return await lookup_account(conn, self.state, account, policy=self._policy, now=self._clock(), require_trusted=False)

    def trust(self, address: str) -> bool:
        return self.state.trust_seen_identity(str(parse_address(address)))

    # Sending ----------------------------------------------------------------------------

    async def send_text(self, recipient: str, text: str, *, mode: CryptoMode | None = None, keep_offline: bool = False) -> SendResult:
        """``mode``: the crypto mode of any session this send starts (default: the one both
        devices' keys allow); never below this device's minimum or its node's.
        ``keep_offline``: when the home node cannot be reached (or the connection drops while
        sending), keep the text on this device with its id (state "pending", code "offline"),
        sent by itself once the node is back (a live session does: client/live.py)."""
        profile = self.state.profile()
        if mode is not None:
            check_requested(self.state, profile.mode, mode)
        to = parse_address(recipient)
        if not text:
            raise LocalProtocolError("refusing to send an empty message", code="bad_input")
        if len(text.encode()) > limits.MAX_TEXT_LEN:
            raise LocalProtocolError(f"message is longer than {limits.MAX_TEXT_LEN} bytes (UTF-8)", code="bad_input")
        now = self._clock()
        msg_id = self._rng(limits.ENVELOPE_ID_LEN)
        sending = False  # from here on the node may have taken it
        try:
            async with self._connect(profile) as conn:  # which first sends the texts that wait
                home = conn.welcome.node
                await maintain_prekeys(conn, self.state, profile, self._rng, now)
                # after an earlier text to them that still waits, in the order they were written
                waiting = self.state.pending_reason(str(to))
                if waiting is not None and mode is not None:  # it would go out in the default mode
                    raise not_behind_waiting(str(to), mode.value, waiting)
                if waiting is None:
                    sending = True
                    try:
                        counts = await self._send_text_now(conn, profile, to, msg_id, now, text, mode=mode)
                    except (NodeError, ProtocolError) as exc:
                        if not waits(exc) or mode is not None:  # waiting texts go out in the default mode
                            raise
                        waiting = (exc.code, str(exc))
        except ConnectError as exc:
            if not keep_offline or mode is not None:  # what became of the text, in the same line
                raise ConnectError(f"{exc}; {_lost_while_sending(str(to)) if sending else 'nothing was sent'}", code=exc.code) from None
            # the same id: if the node took it before the connection dropped, it keeps one copy
            waiting = ("offline", f"the home node cannot be reached now ({exc})")
        if waiting is not None:
            return self._keep_waiting(msg_id, to, text, now, *waiting)
        if counts == (0, 0):  # a note to self from the account's only device: nothing was sent
            raise LocalProtocolError(
                f"nothing sent: this is the only device of {to}, and a note to self goes to your other devices "
                "(link one with `sonet link begin`)",
                code="no_other_device",
            )
        state = "accepted" if to.node == home else "sent"
        self.state.record_sent(msg_id, str(to), now, counts[0], state=state, text=text)
        return SendResult(id=msg_id, recipient=str(to), devices=counts[0], own_devices=counts[1], accepted_by=home, state=state)

    async def _send_text_now(
        self, conn: Connection, profile: Profile, to: Address, msg_id: bytes, written: int, text: str, *, mode: CryptoMode | None = None
    ) -> tuple[int, int]:
        """Encrypt ``text`` (written at ``written``) for ``to`` and the account's other devices
        and hand it to the node: (recipient devices, own devices)."""
        return await self._send_content_now(conn, profile, to, Content.make_text(id=msg_id, sent_at=written, text=text), mode=mode)

    async def _send_content_now(
        self, conn: Connection, profile: Profile, to: Address, content: Content, *, mode: CryptoMode | None = None
    ) -> tuple[int, int]:
        """``_send_text_now`` of any message one writes (a text, reply, reaction, edit or
        delete: client/gestures.py), with its sync copy for the account's other devices. While
        the conversation's timer is on it carries its expiry, and so do its envelopes
        (client/timer.py)."""
        content = timed(self.state, str(to), content)
        if content.expires is not None:  # noted first: erased at its time even if the send fails
            after_stored(self.state, content, conversation=str(to), now=self._clock())  # (past it: now; the node refuses it)
        to_them, to_me = encode_content(content), encode_content(Content.make_sync_of(content, to=str(to)))
        counts = await self._deliver(
            conn, profile, to, to_them, to_me, content.id, Kind.SEALED, mode=mode, share_access=True, expires=content.expires
        )
        if content.expires is None:  # a timer takes effect here once it went
            after_stored(self.state, content, conversation=str(to), now=self._clock())
        return counts

    def _keep_waiting(self, msg_id: bytes, to: Address, text: str, now: int, code: str, message: str) -> SendResult:
        """Keep a text whose recipient's keys cannot be fetched now, to send it later."""
        try:
            self.state.add_pending(msg_id, str(to), text, created=now, code=code, message=message)
        except PendingFull as exc:
            raise LocalProtocolError(f"not sent: {message}; nor kept to send later: {exc}", code="pending_full") from None
        return SendResult(
            id=msg_id, recipient=str(to), devices=0, own_devices=0, accepted_by="", state="pending", code=code, message=message
        )

    async def _send_waiting(self, conn: Connection, profile: Profile) -> None:
        """Send the texts that wait on this device (client/pending.py), oldest first."""
        if not self.state.pending_count():
            return

        async def send_one(entry: PendingSend) -> tuple[int, str]:
            to = parse_address(entry.recipient)
            if entry.kind == "text":
                devices, _own = await self._send_text_now(conn, profile, to, entry.id, entry.created, entry.text)
            else:  # a reply, reaction, edit or delete (client/gestures.py)
                devices, _own = await self._send_content_now(conn, profile, to, waiting_content(entry))
            return devices, "accepted" if to.node == conn.welcome.node else "sent"

        self.notices += await send_pending(self.state, send_one, self._clock())

    async def sent(self, limit: int = 20, *, say: Callable[[str], None] | None = None) -> list[SentMessage]:
        """The ``limit`` most recent sent texts, newest first, after fetching this device's
        mailbox (the recipients' delivery and read receipts arrive there; the messages are kept
        for the next ``receive``, in ``last_receive`` meanwhile) and asking the home node where
        those still on their way to another node are now (client/delivery.py: paced to the
        node's budget past 10,000 of them; ``say``: a line when that takes a while)."""
        profile = self.state.profile()
        # what waited too long shows as failed even when the node cannot be reached now
        self.notices += expire_pending(self.state, self._clock())
        receiver = self._receiver(profile)
        async with self._connect(profile) as conn:
            await receiver.run(conn, wait=None, read_receipts=False)
            self.last_receive = receiver.result()
            return await refresh_sent(self.state, lambda: nullcontext(conn), limit, now=self._clock(), say=say)

    async def send_typing(self, recipient: str, *, started: bool = True) -> None:
        profile = self.state.profile()
        to = parse_address(recipient)
        now = self._clock()
        msg_id = self._rng(limits.ENVELOPE_ID_LEN)
        content = encode_content(Content(type="typing", id=msg_id, sent_at=now, typing="started" if started else "stopped"))
        async with self._connect(profile) as conn:
            await self._deliver(conn, profile, to, content, None, msg_id, Kind.EPHEMERAL)

    # Presence (client/presence.py): opt-in, off by default --------------------------------

    def set_presence(self, on: bool, *, to: Sequence[str] = ()) -> PresenceSetting:
        """Share this account's presence with ``to`` (or every 1:1 contact), or with nobody."""
        return set_presence(self.state, on=on, to=to)

    def presence(self) -> PresenceSetting:
        return presence_setting(self.state)

    async def send_presence(self, *, online: bool = True) -> PresenceResult | None:
        """Tell the allowed contacts this account is online (or offline now); None, and nothing
        sent, while presence is off. A live session does this by itself (client/live.py)."""
        if not presence_targets(self.state):
            return None
        profile = self.state.profile()
        async with self._connect(profile) as conn:
            return await send_presence(conn, self.state, profile, online=online, rng=self._rng, clock=self._clock, deliver=self._deliver)

    def last_presence(self, account: str) -> tuple[str, int] | None:
        """("online" | "offline", when) of ``account`` as this device last heard it."""
        return last_presence(self.state, str(parse_address(account)), now=self._clock())

    async def _deliver(
        self, conn: Connection, profile: Profile, to: Address, content: bytes, own_copy: bytes | None, msg_id: bytes, kind: Kind,
        *, mode: CryptoMode | None = None, share_access: bool = False, expires: int | None = None,
    ) -> tuple[int, int]:
        """Encrypt for every device of ``to`` (and this account's other devices when
        ``own_copy``) and hand the batch to the node; retries when the node reports that the
        device lists were stale. ``share_access``: the boxes carry this account's access token
        (client/access.py), for messages the user writes, never for automatic ones. ``expires``:
        the envelopes' expiry (a disappearing message's), else the default TTL's."""
        sessions = Sessions(self.state, profile, self._rng, self._policy, self._live_sessions, mode=mode)
        me = parse_address(profile.address)
        for _attempt in range(MAX_SEND_ATTEMPTS):
            now = self._clock()
            them = await fetch_account(conn, self.state, to, policy=self._policy, now=now)
            targets = [_Target(address=str(to), device=d, view=them, content=content) for d in sorted(them.devices)]
            if own_copy is not None and to != me:
                own = await fetch_account(conn, self.state, me, policy=self._policy, now=now)
                targets += [_Target(address=str(me), device=d, view=own, content=own_copy) for d in sorted(own.devices) if d != profile.device_id]
            elif to == me:
                targets = [t for t in targets if t.device != profile.device_id]
            if not targets:
                return 0, 0
            reply = await self._send(conn, profile, sessions, targets, msg_id, kind, share_access=share_access, expires=expires)
            if isinstance(reply, Accepted):
                return sum(t.address == str(to) for t in targets), sum(t.address != str(to) for t in targets)
            reply = expect_reply(reply, DeviceMismatch)
            if reply.account not in {t.address for t in targets}:
                raise LocalProtocolError("the node reported stale devices for an account this message was not for")
            # Our view was stale: forget sessions with removed devices and look again.
            current = them if reply.account == str(to) else await fetch_account(conn, self.state, parse_address(reply.account), policy=self._policy, now=now)
            self.state.drop_sessions(reply.account, keep=set(current.devices) - set(reply.extra))
        raise LocalProtocolError("the recipient's devices kept changing; try again", code="devices_changing")

    async def _send(
        self, conn: Connection, profile: Profile, sessions: Sessions, targets: list[_Target], msg_id: bytes, kind: Kind,
        *, share_access: bool = False, expires: int | None = None,
    ) -> Accepted | DeviceMismatch:
        """Encrypt and seal for each target and hand the batch to the node."""
        await self._establish(conn, sessions, targets)
        certificate = await self._certificate(conn, profile)
        own_record = self._own_record(profile)
        shared = own_token(self.state) if share_access and kind == Kind.SEALED else None
        now = self._clock()
        lifetime = now + limits.DEFAULT_ENVELOPE_TTL_MS if expires is None else min(expires, now + limits.DEFAULT_ENVELOPE_TTL_MS)
        envelopes = []
        for t in targets:
            record = t.view.devices[t.device]
            # state committed first; our certificate by reference once that device holds it
            message, ref = sessions.encrypt_sealed(t.address, t.device, t.content, certificate)
            body = seal(certificate=None if ref else certificate, certificate_ref=ref, message=message, msg_type=RATCHET_MESSAGE,
                        to_key=record.hpke, recipient_fp=record.fingerprint, sender_record=own_record, sender_access=shared)
            envelopes.append(
                Envelope(v=ENVELOPE_VERSION, id=msg_id, to=t.address, device=t.device,
                         expires=lifetime, kind=kind, body=body)
            )
        access = tokens_for(self.state, {t.address for t in targets})  # recipients' nodes: we are a contact
        reply = await conn.request(lambda n: SendBatch(request=n, envelopes=tuple(envelopes), access=access))
        reply = expect_reply(reply, Accepted, DeviceMismatch)
        return reply

    async def _tell(self, conn: Connection, own: AccountView, text: str) -> None:
        """Send a self-monitoring alert to this account's other devices in ``own``."""
        profile = self.state.profile()
        msg_id = self._rng(limits.ENVELOPE_ID_LEN)
        content = encode_content(Content(type="alert", id=msg_id, sent_at=self._clock(), text=text))
        targets = [_Target(address=own.address, device=d, view=own, content=content) for d in sorted(own.devices)]
        await self._send(conn, profile, Sessions(self.state, profile, self._rng, self._policy, self._live_sessions), targets, msg_id, Kind.SEALED)

    async def _establish(self, conn: Connection, sessions: Sessions, targets: list[_Target]) -> None:
        missing: dict[str, list[_Target]] = {}
        for t in targets:
            if not sessions.usable(t.address, t.device):
                missing.setdefault(t.address, []).append(t)
        for address, group in missing.items():
            reply = await conn.request(lambda n: FetchBundles(request=n, account=address, devices=tuple(t.device for t in group)))
            reply = expect_reply(reply, Bundles)
            await check_bundles(conn, self.state, reply, account=address, identity=group[0].view.identity, policy=self._policy, now=self._clock())
            views = {t.device: t.view for t in group}
            for bundle in reply.bundles:
                if bundle.device in views:
                    sessions.establish(address, views[bundle.device].devices[bundle.device], bundle)

    def _own_record(self, profile: Profile) -> bytes:
        """This device's signed record, made once: a box that starts a session carries it, so
        the message still verifies if this device is removed before the recipient fetches it."""
        raw = self.state.get("own_record")
        if raw is None:
            raw = self._record(profile.address, profile.identity, profile.identity_dh, profile.hpke)
            self.state.put("own_record", raw)
        return raw

    async def _certificate(self, conn: Connection, profile: Profile) -> bytes:
        now = self._clock()
        cached = self.state.get("sender_certificate")
        if cached is not None and self.state.get_int("sender_certificate_expires") - now > CERT_REFRESH_MS:
            return cached
        reply = await conn.request(lambda n: GetSenderCertificate(request=n))
        reply = expect_reply(reply, SenderCertificate)
        cert = verify_certificate(reply.certificate, node_key=conn.node_key, node=conn.welcome.node, now=now)
        if not cert.matches(profile.identity.public, profile.address):
            raise VerifyError("the node issued a sender certificate for someone else")
        with self.state.transaction():
            self.state.put("sender_certificate", reply.certificate)
            self.state.put_int("sender_certificate_expires", cert.expires)
            remember_own_token(self.state, reply.access)
        return reply.certificate

    # Receiving --------------------------------------------------------------------------

    async def receive(self, *, wait: float | None = None, read_receipts: bool = False) -> ReceiveResult:
        """Fetch what is queued; with ``wait``, if nothing was queued, wait up to that many
        seconds for the next arrival. Messages are stored before they are acknowledged, then
        delivery receipts (and read receipts on request) go back to their senders."""
        profile = self.state.profile()
        receiver = self._receiver(profile)
        async with self._connect(profile) as conn:
            await receiver.run(conn, wait=wait, read_receipts=read_receipts)
        return receiver.result()

    def live(self, *, read_receipts: bool = False) -> AbstractAsyncContextManager[LiveSession]:
        """One long-lived connection to the home node (client/live.py): deliveries as they are
        pushed, stored then acknowledged, reconnecting with backoff; sends go through it, and
        are kept on the device while the node is down. ``read_receipts`` as for ``receive``."""
        return open_live_session(self, read_receipts=read_receipts)

    def _receiver(self, profile: Profile, groups: GroupEngine | None = None) -> Receiver:
        return Receiver(
            self.state, profile, clock=self._clock, rng=self._rng, policy=self._policy, deliver=self._deliver,
            sessions=self._live_sessions, certificates=self._certificates, groups=groups,
        )  # fmt: skip

    # Attachments (client/attachments.py) -------------------------------------------------

    async def send_file(
        self, recipient: str, path: str | os.PathLike[str], text: str = "", *, progress: Progress | None = None, voice_ms: int | None = None,
        say: Say | None = None, mode: CryptoMode | None = None,
    ) -> FileSendResult:
        """Encrypt ``path``, upload it to the home node (resuming an upload of it that stopped) and
        send ``recipient`` a file message with ``text`` as its caption; ``voice_ms``: it is a
        voice note of that length. ``progress`` is called with (bytes the node holds, bytes in all)
        as the upload goes; ``say`` with one line when the home node goes away and the upload
        waits for it; ``mode``: as for :meth:`send_text` (refused before anything is uploaded)."""
        return await Attachments(self).send_file(recipient, Path(path), text=text, progress=progress, voice_ms=voice_ms, say=say, mode=mode)

    async def group_send_file(
        self, group: str, path: str | os.PathLike[str], text: str = "", *, progress: Progress | None = None, voice_ms: int | None = None,
        say: Say | None = None,
    ) -> FileSendResult:
        return await Attachments(self).group_send_file(group, Path(path), text=text, progress=progress, voice_ms=voice_ms, say=say)

    def file_of(self, message_id: bytes) -> FileRef:
        """The file message ``message_id`` holds (its name, size, media type...), refused as
        :meth:`download` refuses it (``unknown_message``, ``not_a_file``)."""
        return Attachments(self).file_of(message_id)

    async def download(
        self, message_id: bytes, out_dir: str | os.PathLike[str] = ".", *, progress: Progress | None = None, say: Say | None = None
    ) -> Path:
        """Download, check and decrypt the file of message ``message_id`` into ``out_dir`` (resuming
        a download of it that stopped); the path it was saved as. ``say``: as for :meth:`send_file`."""
        return await Attachments(self).download(message_id, Path(out_dir), progress=progress, say=say)

    async def save_thumbnail(self, message_id: bytes, out_dir: str | os.PathLike[str] = ".") -> Path:
        """Save the thumbnail an image's file message carries (client/thumbnails.py) into
        ``out_dir``, nothing downloaded; the path it was saved as."""
        return await Attachments(self).save_thumbnail(message_id, Path(out_dir))

    # Replies, reactions, edits, deletes (client/gestures.py) ---------------------------

    async def reply(self, message_id: bytes, text: str) -> GestureResult:
        """Reply to (quote) message ``message_id`` in its conversation, 1:1 or group."""
        return await Gestures(self).reply(message_id, text)

    async def react(self, message_id: bytes, emoji: str, *, remove: bool = False) -> GestureResult:
        """Add (or with ``remove`` take back) one emoji on a message."""
        return await Gestures(self).react(message_id, emoji, remove=remove)

    async def edit(self, message_id: bytes, text: str) -> GestureResult:
        """New text for one of this account's own messages (every version is kept)."""
        return await Gestures(self).edit(message_id, text)

    async def set_timer(self, address: str, timer: int) -> TimerResult:
        """Set the disappearing-message timer (ms; 0: off) of the conversation with ``address``,
        for both sides (client/timer.py)."""
        return await set_timer(self, address, timer)

    async def delete(self, message_id: bytes, *, everyone: bool = False) -> GestureResult:
        """Delete a message on this device only; ``everyone``: one of this account's own, for
        every device of the conversation, within 48 hours of it."""
        return await Gestures(self).delete(message_id, everyone=everyone)

    # Polls, locations, contact cards, events, call signals (client/polls.py) -------------

    async def send_poll(self, conversation: str, question: str, options: Sequence[str], *, multiple: bool = False) -> PostResult:
        """Ask ``conversation`` (an address, or a group's id or name) a question of 2..10 options."""
        polls = Polls(self)
        return await polls.post(conversation, polls.new_content(POLL, poll=Poll(question=question, options=tuple(options), multiple=multiple)))

    async def vote(self, poll_id: bytes, option: str, *, remove: bool = False) -> GestureResult:
        """Vote for (or with ``remove`` take back) ``option`` of a poll: its number from 1, or its text."""
        return await Polls(self).vote(poll_id, option, remove=remove)

    async def close_poll(self, poll_id: bytes) -> tuple[GestureResult, Poll, Tally]:
        """Close one of this account's polls; its result as this device counts it."""
        return await Polls(self).close(poll_id)

    def poll_result(self, poll_id: bytes) -> tuple[Poll, Tally]:
        """A poll and its result from the votes this device holds (the same on every device holding them)."""
        return Polls(self).result(poll_id)

    async def send_location(self, conversation: str, location: Location) -> PostResult:
        polls = Polls(self)
        return await polls.post(conversation, polls.new_content(LOCATION, location=location))

    async def send_contact(self, conversation: str, card: ContactCard) -> PostResult:
        polls = Polls(self)
        return await polls.post(conversation, polls.new_content(CONTACT, contact=card))

    async def send_event(self, conversation: str, event: Event) -> PostResult:
        polls = Polls(self)
        return await polls.post(conversation, polls.new_content(EVENT, event=event))

    async def send_call_signal(self, address: str, signal: CallSignal, *, timeouts: CallTimeouts = CallTimeouts()) -> int:
        """Send one call signal (core/call.py: the application runs the call's state machine) to
        every device of ``address``; how many it went to."""
        return await Polls(self).call_signal(address, signal, timeouts=timeouts)

    # Calls on this device's state (client/calls.py: no media engine; SDP and candidates are opaque text)

    async def call(self, address: str, sdp: str = NO_MEDIA_SDP) -> KeptCall:
        """Call ``address`` (an offer with ``sdp``); the call as this device keeps it (its id: ``.call.id``)."""
        return await Calls(self).start(address, sdp)

    async def answer_call(self, call_id: bytes, sdp: str = NO_MEDIA_SDP) -> KeptCall:
        return await Calls(self).answer(call_id, sdp)

    async def send_call_candidate(self, call_id: bytes, candidate: str) -> KeptCall:
        return await Calls(self).ice(call_id, candidate)

    async def hang_up(self, call_id: bytes) -> KeptCall:
        return await Calls(self).hangup(call_id)

    async def reject_call(self, call_id: bytes) -> KeptCall:
        return await Calls(self).reject(call_id)

    def calls(self, *, limit: int = 20) -> list[KeptCall]:
        """The newest calls this device knows, newest first, ring timeouts applied."""
        return Calls(self).list(limit=limit)

    # Groups (client/groups/api.py) ------------------------------------------------------

    def _groups(self) -> Groups:
        from .groups.api import Groups

        groups = Groups(
            self.state, clock=self._clock, rng=self._rng, policy=lambda: self._policy, connect=self._connect, receiver=self._receiver,
        )  # fmt: skip
        if self.group_settle_s is not None:
            groups.settle_s = self.group_settle_s
        return groups

    async def group_create(self, name: str, members: list[str]) -> GroupView:
        """A new group named ``name`` (on this device) hosted by the home node, with every
        device of this account and of ``members``."""
        return await self._groups().create(name, members)

    async def group_add(self, group: str, members: list[str]) -> GroupView:
        """Add every device of ``members`` (``group``: its id or its name here)."""
        return await self._groups().add(group, members)

    async def group_remove(self, group: str, member: str) -> GroupView:
        return await self._groups().remove(group, member)

    async def group_leave(self, group: str) -> bool:
        """Leave ``group``; True when this account was its only member (it is closed here)."""
        return await self._groups().leave(group)

    async def group_admin(self, group: str, member: str) -> GroupView:
        return await self._groups().admin(group, member)

    async def group_hub(self, group: str, node: str) -> GroupView:
        return await self._groups().hub(group, node)

    async def group_set(self, group: str, *, name: str | None = None, topic: str | None = None) -> GroupView:
        """Rename the group or set its topic (admins only): a ``group_state`` message to all."""
        return await self._groups().set_state(group, name=name, topic=topic)

    async def group_send(self, group: str, text: str) -> GroupSendResult:
        return await self._groups().send(group, text)

    async def groups(self) -> list[GroupView]:
        """The groups of this device as it knows them now (``receive`` brings them up to date)."""
        return self._groups().groups()

    async def group_info(self, group: str) -> GroupInfoView:
        return self._groups().info(group)

    async def group_typing(self, group: str, *, started: bool = True) -> GroupTypingResult:
        """Tell the group's members on the home node that you are typing (ephemeral, never
        stored; client/groups/typing.py)."""
        from .groups.typing import send_group_typing

        profile = self.state.profile()
        record = self._groups().find(group)
        async with self._connect(profile) as conn:
            return await send_group_typing(
                conn, self.state, profile, record, started=started, rng=self._rng, clock=self._clock, deliver=self._deliver
            )


async def _next_offer(conn: Connection) -> LinkOffer:
    async for frame in conn.deliveries:
        if isinstance(frame, LinkOffer):
            return frame
    raise conn.error or LocalProtocolError("the node closed the connection before the link was approved")

