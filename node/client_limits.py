"""Per-device rate limits on the ``/client`` API (abuse control).

``ClientLimits.check(session, frame)`` runs before every request handler. Token buckets
(federation/ratelimit.py) are keyed by the device key's fingerprint, so they hold for
registered and unregistered devices alike and survive reconnecting; time comes from
``ctx.clock_ms()``. What is limited:

- every request, per connection (a cheap cap on anything not limited more specifically);
- stored envelopes of a ``SendBatch`` per device, and ephemeral ones (typing, presence) apart;
- prekey bundles handed out by ``FetchBundles`` per device: this is what stops one device from
  draining another account's one-time prekeys (each bundle takes one of them);
- ``LinkBegin``: a few per connection, and the slots opened by unregistered connections on the
  whole node, so that new keys (which cost nothing) cannot fill ``limits.MAX_LINK_SLOTS``.

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
from dataclasses import dataclass

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.client_api import FetchBundles, LinkBegin, SendBatch
from sonet.core.envelope import Kind
from sonet.core.errors import RemoteProtocolError
from sonet.core.wire import Frame
from sonet.federation.ratelimit import Bucket, Limiter, Rate

from .client_checks import RequestError
from .client_context import Session

__all__ = [
    "ClientLimits",
    "REQUESTS",
    "ENVELOPES",
    "EPHEMERAL",
    "BUNDLES",
    "LINK_SLOTS",
    "LINK_BEGINS_PER_CONNECTION",
    "REFUSALS_BEFORE_DISCONNECT",
]

log = logging.getLogger("sonet.node.client")

#: requests per connection, of any kind: a send is a device lookup and a batch, so this stays
#: above twice ENVELOPES (a bot sending one message per batch at full speed is not refused)
REQUESTS = Rate(per_second=500, burst=1000)
#: stored envelopes per device: a 256-envelope batch to a large group passes several times over
ENVELOPES = Rate(per_second=200, burst=1000)
#: ephemeral envelopes per device: typing indicators to a group (a full batch twice), not a flood
EPHEMERAL = Rate(per_second=50, burst=2 * limits.MAX_ENVELOPES_PER_FRAME)
#: bundles per device: 20 a minute after a burst of 150 (a new device meeting its contacts)
BUNDLES = Rate(per_second=20 / 60, burst=150)
#: link slots opened by unregistered connections, node-wide: 30 a minute, so slots (which live
#: limits.LINK_SLOT_TTL_MS) stay far below limits.MAX_LINK_SLOTS
LINK_SLOTS = Rate(per_second=30 / 60, burst=60)
#: LinkBegin requests on one connection (a device needs one)
LINK_BEGINS_PER_CONNECTION = 3
#: refused requests in a row before the connection is closed
REFUSALS_BEFORE_DISCONNECT = 50

_AGAIN = "try again in a moment"


@dataclass(slots=True)
class _Connection:
    requests: Bucket
    link_begins: int = 0
    refused: int = 0


class ClientLimits:
    """The limits of one node; one instance shared by all its ``/client`` connections."""

    def __init__(
        self,
        *,
        requests: Rate = REQUESTS,
        envelopes: Rate = ENVELOPES,
        ephemeral: Rate = EPHEMERAL,
        bundles: Rate = BUNDLES,
        link_slots: Rate = LINK_SLOTS,
        link_begins_per_connection: int = LINK_BEGINS_PER_CONNECTION,
        refusals_before_disconnect: int = REFUSALS_BEFORE_DISCONNECT,
    ) -> None:
        self._requests = requests
        self._envelopes = Limiter(envelopes)
        self._ephemeral = Limiter(ephemeral)
        self._bundles = Limiter(bundles)
        self._link_slots = link_slots
        self._link_bucket: Bucket | None = None
        self._link_begins = link_begins_per_connection
        self._refusals = refusals_before_disconnect
        # Per-connection state ends with the connection: no sweep needed.
        self._connections: weakref.WeakKeyDictionary[Session, _Connection] = weakref.WeakKeyDictionary()

    async def check(self, session: Session, frame: Frame) -> None:
        """Refuse ``frame`` (RequestError) if it is over a limit; close the connection
        (RemoteProtocolError) if its requests keep being refused."""
        now = session.ctx.clock_ms()
        conn = self._connections.get(session)
        if conn is None:
            conn = self._connections[session] = _Connection(requests=Bucket(self._requests, now))
        refusal = await self._refusal(session, conn, frame, now)
        if refusal is None:
            conn.refused = 0
            return
        conn.refused += 1
        if conn.refused == 1:
            who = f"{session.mailbox[0]} device {session.mailbox[1]}" if session.mailbox else "an unregistered device"
            log.info("rate limiting %s: %s", who, refusal)
        if conn.refused > self._refusals:
            raise RemoteProtocolError(
                f"more than {self._refusals} requests in a row were over the rate limit", code="rate_limited"
            )
        raise RequestError("rate_limited", refusal)

    async def _refusal(self, session: Session, conn: _Connection, frame: Frame, now: int) -> str | None:
        """Why ``frame`` is over a limit (spending its tokens if it is not), or None."""
        if not conn.requests.take(now):
            return f"too many requests on this connection; {_AGAIN}"
        device = session.peer.fingerprint
        if isinstance(frame, SendBatch):
            ephemeral = sum(1 for env in frame.envelopes if env.kind == Kind.EPHEMERAL)
            stored = len(frame.envelopes) - ephemeral
            if stored and not self._envelopes.allow(device, now, stored):
                return f"too many messages from this device; {_AGAIN}"
            if ephemeral and not self._ephemeral.allow(device, now, ephemeral):
                return f"too many typing or presence updates from this device; {_AGAIN}"
        elif isinstance(frame, FetchBundles):
            if not self._bundles.allow(device, now, await _bundle_cost(session, frame)):
                return f"too many prekey bundles fetched by this device; {_AGAIN}"
        elif isinstance(frame, LinkBegin):
            conn.link_begins += 1
            if conn.link_begins > self._link_begins:
                return "too many link attempts on this connection; reconnect to begin again"
            if session.mailbox is None:  # a registered device is refused by the handler anyway
                if self._link_bucket is None:
                    self._link_bucket = Bucket(self._link_slots, now)
                if not self._link_bucket.take(now):
                    return f"too many devices are starting to link on this node; {_AGAIN}"
        return None


async def _bundle_cost(session: Session, req: FetchBundles) -> int:
    """One token per bundle the request can hand out."""
    if req.devices:
        # An account has at most this many devices: asking for more is refused by the handler.
        return min(len(set(req.devices)), limits.MAX_DEVICES_PER_ACCOUNT)
    ctx = session.ctx
    try:
        address = parse_address(req.account, remote=True)
    except RemoteProtocolError:
        return 1  # the handler refuses it before handing anything out
    if address.node != ctx.name:
        # Another node's account: its device count is not known here without asking that node.
        return limits.MAX_DEVICES_PER_ACCOUNT
    return max(1, len(await ctx.store.devices(str(address))))
