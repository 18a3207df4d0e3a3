"""Per-actor rate limits on the ``/client`` API (abuse control; fair shares).

``ClientLimits.check(session, frame)`` runs before every request handler. Every bucket is keyed
by the actor that spends it, never one bucket everyone shares: the device key's fingerprint
(they hold for registered and unregistered devices alike and survive reconnecting), the device
and the account it asks about, the connection, or the address a connection comes from. Token
buckets: core/ratelimit.py; time comes from ``ctx.clock_ms()``. What is limited:

- every request, per connection (a cheap cap on anything not limited more specifically), and
  the same again per device key over all its connections, and per source address over the
  connections without an account: per connection only, one device (or one address's eight
  connections without an account) sent ~6,000 Pings a second and took a whole core;
- stored envelopes of a ``SendBatch`` per device, and ephemeral ones (typing, presence) apart;
- lookups this node makes at another node on a device's behalf, per device: the peer limits this
  node as a whole (federation/inbound.py), so without this one device could spend that budget
  for all of this node's users. Charged when a lookup actually goes out to a peer
  (``charging_lookups`` around each handler; federation/lookup_charge.py): a device list the
  node has cached or a stored node key costs nothing;
- bytes of attachments this node fetches from other nodes on a device's behalf (``BlobGet`` of
  another node's blob), per device: a byte budget (``admit_blob`` takes a whole chunk's
  worth before the fetch, ``settle_blob`` gives back what the answer did not use: the
  chunks a device asks at once cannot overdraw it), so one device downloading large files cannot
  spend what the other node grants this whole node, nor this node's link, for all its users;
  and bytes of this node's own attachments it serves a device, the same way (a budget of its
  own, larger): one device downloading a blob again and again on its 8 connections took a
  whole core (~340 MiB/s, sealed for its channel) from every other device;
- prekey bundles handed out by ``FetchBundles`` per device, and per (device, account asked
  about); and the one-time prekeys in them per (asking account, account asked about): past
  that allowance (``one_time_allowed``) bundles come without one-time prekeys, which sessions
  do not need (PQXDH then uses the signed and last-resort prekeys). This is what stops one
  device, or one account with many new devices, from draining another account's one-time keys;
- MLS KeyPackages handed out by ``FetchKeyPackages`` the same way, in buckets of their own
  (adding many members to a group is not a burst of new sessions): per device, per (device,
  account asked about), and the one-time ones per (asking account, account asked about), past
  which only last-resort KeyPackages are handed out;
- group submissions (``GroupSubmit``: each is ordered and fanned out by a hub) and new groups
  (``CreateGroup``: each is hosted here), per device and per account (an account's many
  devices share one bucket); node.toml ``[budgets]`` sets them;
- ids in ``Ack`` and ``FetchStatus`` per device: a frame carries up to 4096 (1024) of them and
  each is looked up in the store, so counted per frame one device's 8 connections could keep
  the node's CPU busy (~220 full frames a second took a whole core);
- writes to the attachment store (``BlobCreate``, ``BlobPut``, ``BlobExpire``: each fsyncs a file
  on the node, however few bytes it carries), per device and per account, far above an upload
  in 1 MiB chunks; a device sending 1-byte chunks on its eight connections had the node fsync
  some 1,500 times a second;
- ``LinkBegin``: a few per connection, and per source address (an IPv6 address's /64) of
  unregistered connections; the slots themselves are shared fairly between addresses by
  node/linking.py;
- ``Register`` / ``LinkComplete`` that pass the cheap checks (``admit_registration``, called by
  the handler right before the signature checks of the new device's prekeys): a few per
  connection, and per source address in count and in signature checks (a cost budget,
  core/cost_budget.py): on an open node anyone may send them before having an account.

A request over a limit is refused with ``RequestError("rate_limited", ...)``: the device gets an
ErrorFrame for that request and the connection stays open. A connection whose requests keep
being refused (more than ``refusals_before_disconnect`` in a row) is closed with
``RemoteProtocolError(code="rate_limited")``; so is one whose ``Ack`` (which has no request
number to answer) is over the limit. A refused request may already have spent tokens of the
broader buckets checked before the one that refused it.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.blob_api import BLOB_CHUNK_BYTES, BlobCreate, BlobExpire, BlobPut
from sonet.core.client_api import Ack, CreateGroup, FetchBundles, FetchKeyPackages, FetchStatus, GroupSubmit, LinkBegin, SendBatch
from sonet.core.cost_budget import VERIFY_COST, Budget, CostBudget, OverBudget
from sonet.core.envelope import Kind
from sonet.core.errors import RemoteProtocolError
from sonet.core.wire import Frame
from sonet.federation.errors import FederationError
from sonet.federation.lookup_charge import charging_lookups as _charging
from sonet.federation.ratelimit import Bucket, Limiter, Rate
from sonet.transport import events
from sonet.transport.log_summary import LogSummary

from .client_checks import RequestError
from .client_context import Session

__all__ = [
    "ClientLimits",
    "REQUESTS",
    "DEVICE_REQUESTS",
    "ACCOUNT_REQUESTS",
    "UNREGISTERED_REQUESTS_PER_ADDRESS",
    "ENVELOPES",
    "EPHEMERAL",
    "LOOKUPS",
    "REMOTE_BLOB_BYTES",
    "LOCAL_BLOB_BYTES",
    "LOCAL_BLOB_BYTES_PER_ACCOUNT",
    "BUNDLES",
    "BUNDLES_PER_ACCOUNT",
    "ONE_TIME_PER_ACCOUNT",
    "KEY_PACKAGES",
    "KEY_PACKAGES_PER_ACCOUNT",
    "GROUP_SUBMITS",
    "GROUP_SUBMITS_PER_ACCOUNT",
    "GROUP_CREATES",
    "GROUP_CREATES_PER_ACCOUNT",
    "ACK_IDS",
    "STATUS_IDS",
    "BLOB_WRITES",
    "BLOB_WRITES_PER_ACCOUNT",
    "LINK_BEGINS_PER_ADDRESS",
    "LINK_BEGINS_PER_CONNECTION",
    "REFUSALS_BEFORE_DISCONNECT",
    "REGISTRATIONS_PER_ADDRESS",
    "REGISTRATION_CHECKS_PER_ADDRESS",
    "REGISTRATIONS_PER_CONNECTION",
]

log = logging.getLogger("sonet.node.client")

_HOUR_S = 3600
# The defaults; node.toml [budgets] sets LOOKUPS and the REGISTRATIONS ones (node/budget_settings.py).
#: requests per connection, of any kind: a send is a device lookup and a batch, so this stays
#: above twice ENVELOPES (a bot sending one message per batch at full speed is not refused)
REQUESTS = Rate(per_second=500, burst=1000)
#: requests per device key, over all its connections (each has the rate above too); an Ack of
#: what the connection delivered is not counted here (the mail that came paid for it)
DEVICE_REQUESTS = Rate(per_second=500, burst=1000)
#: ... per account, all its devices together (up to 16): two devices at full speed
ACCOUNT_REQUESTS = Rate(per_second=1000, burst=2000)
#: requests of connections without an account per source address: registering or linking
#: takes a few requests a device
UNREGISTERED_REQUESTS_PER_ADDRESS = Rate(per_second=500, burst=1000)
#: stored envelopes per device: a 256-envelope batch to a large group passes several times over
ENVELOPES = Rate(per_second=200, burst=1000)
#: ephemeral envelopes per device: typing indicators to a group (a full batch twice), not a flood
EPHEMERAL = Rate(per_second=50, burst=2 * limits.MAX_ENVELOPES_PER_FRAME)
#: lookups at other nodes per device: a share of what a peer grants this whole node
#: (FederationSettings.query_rate: 20 a second after 100), so that one device leaves most of
#: it to the others; enough for a device that starts up checking heads and meets new contacts,
#: and for one that receives every second (each receive checks the senders' heads: at 2 a
#: second a device polling for messages from other nodes was refused its own lookups and
#: its messages waited past the fault harness's drain)
LOOKUPS = Rate(per_second=5, burst=100)
#: bytes of other nodes' attachments fetched per device: a few large files at once (256 MiB),
#: then 16 MiB a second (about half of what one federated download reaches: docs/performance.md)
REMOTE_BLOB_BYTES = Rate(per_second=16 * 1024 * 1024, burst=256 * 1024 * 1024)
#: bytes of this node's attachments served per device: five of the largest files at once, then
#: 64 MiB a second (about a fifth of what one core seals for the channel)
LOCAL_BLOB_BYTES = Rate(per_second=64 * 1024 * 1024, burst=512 * 1024 * 1024)
#: ... per account, all its devices together: two devices' worth
LOCAL_BLOB_BYTES_PER_ACCOUNT = Rate(per_second=128 * 1024 * 1024, burst=1024 * 1024 * 1024)
#: bundles per device: 20 a minute after a burst of 150 (a new device meeting its contacts)
BUNDLES = Rate(per_second=20 / 60, burst=150)
#: bundles per (device, account asked about): every device of the account twice, then as many
#: an hour (sessions that break now and then are re-established)
BUNDLES_PER_ACCOUNT = Rate(per_second=limits.MAX_DEVICES_PER_ACCOUNT / _HOUR_S, burst=2 * limits.MAX_DEVICES_PER_ACCOUNT)
#: one-time prekeys per (asking account, account asked about): three devices of the asking
#: account meeting every device of the other; past it bundles come without one-time prekeys
ONE_TIME_PER_ACCOUNT = Rate(
    per_second=limits.MAX_DEVICES_PER_ACCOUNT / _HOUR_S, burst=3 * limits.MAX_DEVICES_PER_ACCOUNT
)
#: KeyPackages per device: creating a group of a few hundred member devices at once, then one
#: a second (one-time ones: ONE_TIME_PER_ACCOUNT)
KEY_PACKAGES = Rate(per_second=1, burst=500)
#: KeyPackages per (device, account asked about): every group created with or added to needs
#: the account's devices' KeyPackages again, so four groups naming it at once, then one a
#: minute. Another node's account costs MAX_DEVICES_PER_ACCOUNT (its device count is not known
#: before asking): at BUNDLES_PER_ACCOUNT's rate a device could name a contact on another node
#: in two groups an hour. Draining its one-time KeyPackages is bounded by ONE_TIME_PER_ACCOUNT.
KEY_PACKAGES_PER_ACCOUNT = Rate(per_second=limits.MAX_DEVICES_PER_ACCOUNT / 60, burst=4 * limits.MAX_DEVICES_PER_ACCOUNT)
#: group submissions per device: a lively group chat with its commits, about one a second on
#: average after a burst of 300 (each is ordered by a hub and copied to every member node)
GROUP_SUBMITS = Rate(per_second=1, burst=300)
#: ... per account, all its devices together
GROUP_SUBMITS_PER_ACCOUNT = Rate(per_second=2, burst=600)
#: new groups per device: 20, then 20 an hour (each is hosted by this node until handed over)
GROUP_CREATES = Rate(per_second=20 / _HOUR_S, burst=20)
#: ... per account, all its devices together
GROUP_CREATES_PER_ACCOUNT = Rate(per_second=40 / _HOUR_S, burst=40)
#: acknowledged ids per device that its connection did not deliver (those it did are free):
#: what a device reconnecting acknowledges of an earlier connection's deliveries, a full
#: mailbox and its group items (30,000), at once (an id costs the node ~1 us)
ACK_IDS = Rate(per_second=5000, burst=40_000)
#: ids whose delivery status a device asks: `sonet sent` asks those of its open messages
STATUS_IDS = Rate(per_second=500, burst=10_000)
#: attachment writes per device: 100 a second after a burst of 500 (an upload in 1 MiB chunks
#: goes at ~36 MiB/s: docs/performance.md), and per account, all its devices together
BLOB_WRITES = Rate(per_second=100, burst=500)
BLOB_WRITES_PER_ACCOUNT = Rate(per_second=200, burst=1000)
#: LinkBegin requests of unregistered connections per source address: a burst for a family
#: behind one address, then one a second (link slots are shared fairly by node/linking.py)
LINK_BEGINS_PER_ADDRESS = Rate(per_second=1, burst=30)
#: LinkBegin requests on one connection (a device needs one)
LINK_BEGINS_PER_CONNECTION = 3
#: refused requests in a row before the connection is closed
REFUSALS_BEFORE_DISCONNECT = 50
#: registrations (Register, LinkComplete) per source address that reach the signature checks,
#: and those checks: a family or office behind one address registering many devices at once,
#: then one a second; ~130 checks each (a device's 60 + 60 first prekeys and its records)
REGISTRATIONS_PER_ADDRESS = Rate(per_second=1, burst=60)
REGISTRATION_CHECKS_PER_ADDRESS = Rate(per_second=130, burst=60 * 130)
#: registration attempts on one connection that reach the signature checks (a device needs one;
#: a name that is taken is refused before them)
REGISTRATIONS_PER_CONNECTION = 3

_AGAIN = "try again in a moment"

#: refusals are counted in one line per 10 s (the busiest device named): a device that keeps
#: going past a limit starts a new run of refusals with each token that comes back, and wrote
#: a line each time (~80 a second from one device's tiny BlobPuts)
refusals_summary = LogSummary(log, what="requests refused over a device's rate limit")


@dataclass(slots=True)
class _Connection:
    requests: Bucket
    link_begins: int = 0
    registrations: int = 0
    refused: int = 0


class ClientLimits:
    """The limits of one node; one instance shared by all its ``/client`` connections."""

    def __init__(
        self,
        *,
        requests: Rate = REQUESTS,
        device_requests: Rate = DEVICE_REQUESTS,
        account_requests: Rate = ACCOUNT_REQUESTS,
        unregistered_requests_per_address: Rate = UNREGISTERED_REQUESTS_PER_ADDRESS,
        envelopes: Rate = ENVELOPES,
        ephemeral: Rate = EPHEMERAL,
        lookups: Rate = LOOKUPS,
        remote_blob_bytes: Rate = REMOTE_BLOB_BYTES,
        local_blob_bytes: Rate = LOCAL_BLOB_BYTES,
        local_blob_bytes_per_account: Rate = LOCAL_BLOB_BYTES_PER_ACCOUNT,
        bundles: Rate = BUNDLES,
        bundles_per_account: Rate = BUNDLES_PER_ACCOUNT,
        one_time_per_account: Rate = ONE_TIME_PER_ACCOUNT,
        key_packages: Rate = KEY_PACKAGES,
        key_packages_per_account: Rate = KEY_PACKAGES_PER_ACCOUNT,
        group_submits: Rate = GROUP_SUBMITS,
        group_submits_per_account: Rate = GROUP_SUBMITS_PER_ACCOUNT,
        group_creates: Rate = GROUP_CREATES,
        group_creates_per_account: Rate = GROUP_CREATES_PER_ACCOUNT,
        ack_ids: Rate = ACK_IDS,
        status_ids: Rate = STATUS_IDS,
        blob_writes: Rate = BLOB_WRITES,
        blob_writes_per_account: Rate = BLOB_WRITES_PER_ACCOUNT,
        link_begins_per_address: Rate = LINK_BEGINS_PER_ADDRESS,
        link_begins_per_connection: int = LINK_BEGINS_PER_CONNECTION,
        refusals_before_disconnect: int = REFUSALS_BEFORE_DISCONNECT,
        registrations_per_address: Rate = REGISTRATIONS_PER_ADDRESS,
        registration_checks_per_address: Rate = REGISTRATION_CHECKS_PER_ADDRESS,
        registrations_per_connection: int = REGISTRATIONS_PER_CONNECTION,
    ) -> None:
        self._requests = requests
        self._device_requests = Limiter(device_requests)
        self._account_requests = Limiter(account_requests)
        self._address_requests = Limiter(unregistered_requests_per_address)
        self._envelopes = Limiter(envelopes)
        self._ephemeral = Limiter(ephemeral)
        self._lookups = Limiter(lookups)
        # bytes only: the requests are bounded per connection (a chunk is one request)
        self._remote_blob_bytes = CostBudget(Budget(requests=Rate(per_second=1e9, burst=1e9), bytes=remote_blob_bytes))
        self._local_blob_bytes = CostBudget(Budget(requests=Rate(per_second=1e9, burst=1e9), bytes=local_blob_bytes))
        self._local_blob_bytes_per_account = CostBudget(Budget(requests=Rate(per_second=1e9, burst=1e9), bytes=local_blob_bytes_per_account))
        self._bundles = Limiter(bundles)
        self._bundles_per_account = Limiter(bundles_per_account)
        self._one_time = Limiter(one_time_per_account)
        self._key_packages = Limiter(key_packages)
        self._key_packages_per_account = Limiter(key_packages_per_account)
        self._one_time_key_packages = Limiter(one_time_per_account)
        self._group_submits = Limiter(group_submits)
        self._group_submits_per_account = Limiter(group_submits_per_account)
        self._group_creates = Limiter(group_creates)
        self._group_creates_per_account = Limiter(group_creates_per_account)
        self._ack_ids = Limiter(ack_ids)
        self._status_ids = Limiter(status_ids)
        self._blob_writes = Limiter(blob_writes)
        self._blob_writes_per_account = Limiter(blob_writes_per_account)
        self._link_begins_per_address = Limiter(link_begins_per_address)
        self._link_begins = link_begins_per_connection
        self._refusals = refusals_before_disconnect
        # one budget per address: registrations (requests) and their signature checks (bytes,
        # VERIFY_COST each), so the retry time is exact for both
        self._registrations_per_address = CostBudget(
            Budget(
                requests=registrations_per_address,
                bytes=Rate(
                    per_second=registration_checks_per_address.per_second * VERIFY_COST,
                    burst=registration_checks_per_address.burst * VERIFY_COST,
                ),
            )
        )
        self._registrations = registrations_per_connection
        # Per-connection state ends with the connection: no sweep needed.
        self._connections: weakref.WeakKeyDictionary[Session, _Connection] = weakref.WeakKeyDictionary()

    async def check(self, session: Session, frame: Frame) -> None:
        """Refuse ``frame`` (RequestError) if it is over a limit; close the connection
        (RemoteProtocolError) if its requests keep being refused."""
        now = session.ctx.clock_ms()
        conn = self._connection(session, now)
        refusal = await self._refusal(session, conn, frame, now)
        if refusal is None:
            conn.refused = 0
            return
        conn.refused += 1
        events.emit("rate_limited", actor=_actor(session), limit="device_requests")
        if conn.refused == 1:
            who = f"{session.mailbox[0]} device {session.mailbox[1]}" if session.mailbox else f"a device at {session.source}"
            refusals_summary.count(type(frame).__name__, who)
        if conn.refused > self._refusals:
            raise RemoteProtocolError(
                f"more than {self._refusals} requests in a row were over the rate limit", code="rate_limited"
            )
        raise RequestError("rate_limited", refusal)

    def _connection(self, session: Session, now: int) -> _Connection:
        conn = self._connections.get(session)
        if conn is None:
            conn = self._connections[session] = _Connection(requests=Bucket(self._requests, now))
        return conn

    def admit_registration(self, session: Session, checks: int) -> None:
        """A Register / LinkComplete of this connection passed the cheap checks and is about to
        make the node check ``checks`` signatures: RequestError ``rate_limited`` (nothing
        checked) past the connection's attempts or its address's budget."""
        now = session.ctx.clock_ms()
        conn = self._connection(session, now)
        conn.registrations += 1
        if conn.registrations > self._registrations:
            events.emit("rate_limited", actor=session.source, limit="registrations_per_connection")
            raise RequestError("rate_limited", "too many registration attempts on this connection; reconnect to try again")
        try:
            self._registrations_per_address.admit(session.source, now, upfront=checks * VERIFY_COST)
        except OverBudget as exc:
            events.emit("rate_limited", actor=session.source, limit="registrations_per_address")
            seconds = -(-exc.retry_after_ms // 100) / 10
            raise RequestError(
                "rate_limited", f"too many registrations from this address; try again in {seconds:.1f} s"
            ) from None

    def charging_lookups(self, session: Session) -> AbstractContextManager[None]:
        """Around a request's handler: each lookup it makes at another node takes one of the
        device's lookup tokens as it goes out (over the budget it is not sent, and the request
        is answered ``rate_limited``)."""
        device = session.peer.fingerprint

        def charge(node: str) -> None:
            if not self._lookups.allow(device, session.ctx.clock_ms()):
                events.emit("rate_limited", actor=_actor(session), limit="device_lookups")
                raise FederationError("rate_limited", f"too many lookups at other nodes from this device; {_AGAIN}")

        return _charging(charge)

    def admit_blob(self, session: Session, *, local: bool) -> None:
        """A ``BlobGet`` is about to be answered (``local``: from this node's blobs) or sent on
        to another node: a whole chunk's worth of the device's budget of those bytes is taken
        (``settle_blob`` gives back what was not used), or RequestError ``rate_limited``
        (nothing read or fetched) while that much is not there."""
        budget = self._local_blob_bytes if local else self._remote_blob_bytes
        now = session.ctx.clock_ms()
        account = session.mailbox[0] if session.mailbox is not None else None
        try:
            budget.admit(session.peer.fingerprint, now, upfront=BLOB_CHUNK_BYTES)
            if local and account is not None:
                try:
                    self._local_blob_bytes_per_account.admit(account, now, upfront=BLOB_CHUNK_BYTES)
                except OverBudget:
                    budget.charge(session.peer.fingerprint, now, -BLOB_CHUNK_BYTES)  # not served: given back
                    raise
        except OverBudget as exc:
            events.emit("rate_limited", actor=_actor(session), limit="device_local_blob_bytes" if local else "device_remote_blob_bytes")
            seconds = -(-exc.retry_after_ms // 100) / 10
            where = "this node" if local else "other nodes"
            raise RequestError("rate_limited", f"this device fetched too many bytes of files from {where}; try again in {seconds:.1f} s") from None

    def settle_blob(self, session: Session, nbytes: int, *, local: bool) -> None:
        """An admitted ``BlobGet`` got ``nbytes`` (0 when it failed): the rest of its chunk's
        worth goes back to the device's budget."""
        budget = self._local_blob_bytes if local else self._remote_blob_bytes
        now = session.ctx.clock_ms()
        budget.charge(session.peer.fingerprint, now, nbytes - BLOB_CHUNK_BYTES)
        if local and session.mailbox is not None:
            self._local_blob_bytes_per_account.charge(session.mailbox[0], now, nbytes - BLOB_CHUNK_BYTES)

    def one_time_allowed(self, session: Session, account: str, count: int, *, key_packages: bool = False) -> bool:
        """Whether bundles (``key_packages``: KeyPackages) for ``count`` devices of ``account``
        that ``session``'s account asks for may carry one-time prekeys (be one-time
        KeyPackages), spending its allowance if so. Past the allowance the handler hands out
        bundles without them (last-resort KeyPackages): nothing is refused."""
        asker = session.mailbox[0] if session.mailbox else session.peer.fingerprint
        limiter = self._one_time_key_packages if key_packages else self._one_time
        bucket_cost = min(max(1, count), limiter.rate.burst)
        return limiter.allow((asker, account), session.ctx.clock_ms(), bucket_cost)

    async def _refusal(self, session: Session, conn: _Connection, frame: Frame, now: int) -> str | None:
        """Why ``frame`` is over a limit (spending its tokens if it is not), or None."""
        if not conn.requests.take(now):
            return f"too many requests on this connection; {_AGAIN}"
        device = session.peer.fingerprint
        # an Ack of what this connection delivered is the delivery's own end, paid for by the
        # mail that came: only the ids it did not deliver (made up, or of an earlier connection)
        # are charged, and one only of delivered ids is never refused for the device's or
        # account's other traffic (a refused Ack closes its connection)
        delivered = session.delivered_here(frame.ids) if isinstance(frame, Ack) else 0
        if not (isinstance(frame, Ack) and delivered and delivered == len(frame.ids)):
            if not self._device_requests.allow(device, now):
                return f"too many requests from this device; {_AGAIN}"
            if session.mailbox is not None and not self._account_requests.allow(session.mailbox[0], now):
                return f"too many requests from the devices of {session.mailbox[0]}; {_AGAIN}"
        if session.mailbox is None and not self._address_requests.allow(session.source, now):
            return f"too many requests from this address without an account; {_AGAIN}"
        if isinstance(frame, SendBatch):
            ephemeral = sum(1 for env in frame.envelopes if env.kind == Kind.EPHEMERAL)
            stored = len(frame.envelopes) - ephemeral
            if stored and not self._envelopes.allow(device, now, stored):
                return f"too many messages from this device; {_AGAIN}"
            if ephemeral and not self._ephemeral.allow(device, now, ephemeral):
                return f"too many typing or presence updates from this device; {_AGAIN}"
        if isinstance(frame, FetchBundles):
            cost, account = await _bundle_cost(session, frame)
            if not self._bundles.allow(device, now, cost):
                return f"too many prekey bundles fetched by this device; {_AGAIN}"
            if account is not None and not self._bundles_per_account.allow(
                (device, account), now, min(cost, self._bundles_per_account.rate.burst)
            ):
                return f"too many prekey bundles of {account} fetched by this device; {_AGAIN}"
        elif isinstance(frame, FetchKeyPackages):
            cost, account = await _bundle_cost(session, frame)
            if not self._key_packages.allow(device, now, min(cost, self._key_packages.rate.burst)):
                return f"too many KeyPackages fetched by this device; {_AGAIN}"
            if account is not None and not self._key_packages_per_account.allow(
                (device, account), now, min(cost, self._key_packages_per_account.rate.burst)
            ):
                return f"too many KeyPackages of {account} fetched by this device; {_AGAIN}"
        elif isinstance(frame, (GroupSubmit, CreateGroup)) and session.mailbox is not None:
            # (an unregistered device is refused by the handler)
            submit = isinstance(frame, GroupSubmit)
            per_device, per_account = (
                (self._group_submits, self._group_submits_per_account) if submit else (self._group_creates, self._group_creates_per_account)
            )
            what = "group messages" if submit else "new groups"
            if not per_device.allow(device, now):
                return f"too many {what} from this device; {_AGAIN}"
            if not per_account.allow(session.mailbox[0], now):
                return f"too many {what} from the devices of {session.mailbox[0]}; {_AGAIN}"
        elif isinstance(frame, (Ack, FetchStatus)):
            limiter = self._ack_ids if isinstance(frame, Ack) else self._status_ids
            charged = len(frame.ids) - delivered
            if charged > 0 and not limiter.allow(device, now, min(charged, limiter.rate.burst)):
                what = "acknowledgements" if isinstance(frame, Ack) else "delivery status requests"
                return f"too many {what} from this device; {_AGAIN}"
        elif isinstance(frame, (BlobCreate, BlobPut, BlobExpire)) and session.mailbox is not None:
            # (an unregistered device is refused by the handler)
            if not self._blob_writes.allow(device, now):
                return f"too many attachment writes from this device; {_AGAIN}"
            if not self._blob_writes_per_account.allow(session.mailbox[0], now):
                return f"too many attachment writes from the devices of {session.mailbox[0]}; {_AGAIN}"
        elif isinstance(frame, LinkBegin):
            conn.link_begins += 1
            if conn.link_begins > self._link_begins:
                return "too many link attempts on this connection; reconnect to begin again"
            if session.mailbox is None:  # a registered device is refused by the handler anyway
                if not self._link_begins_per_address.allow(session.source, now):
                    return f"too many devices are starting to link from this address; {_AGAIN}"
        return None


async def _bundle_cost(session: Session, req: FetchBundles | FetchKeyPackages) -> tuple[int, str | None]:
    """One token per bundle (KeyPackage) the request can hand out, and the (normalised) account
    asked about (None: a bad address, refused by the handler)."""
    ctx = session.ctx
    try:
        address = parse_address(req.account, remote=True)
    except RemoteProtocolError:
        return 1, None  # the handler refuses it before handing anything out
    if isinstance(req, FetchBundles) and req.devices:
        # An account has at most this many devices: asking for more is refused by the handler.
        return min(len(set(req.devices)), limits.MAX_DEVICES_PER_ACCOUNT), str(address)
    if address.node != ctx.name:
        # Another node's account: its device count is not known here without asking that node.
        return limits.MAX_DEVICES_PER_ACCOUNT, str(address)
    return max(1, len(await ctx.store.devices(str(address)))), str(address)


def _actor(session: Session) -> str:
    """Who a rate-limit event is about, for the audit log: the account, else the source address."""
    return session.mailbox[0] if session.mailbox else session.source
