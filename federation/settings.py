"""Tunables of the federation runtime, with production defaults (node.toml ``[federation]``
sets the retry and deadline ones; tests shrink them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sonet.core import limits
from sonet.core.cost_budget import Budget
from sonet.transport.send_deadline import SEND_TIMEOUT_S

from .backoff import DEFAULT_BASE_S, DEFAULT_CAP_S, DEFAULT_FACTOR
from .ratelimit import Rate

__all__ = ["FederationSettings", "MAX_PUSHES_IN_FLIGHT"]

#: the most pushes in flight per destination a node may be configured for: each may hold
#: MAX_PUSH_BYTES in memory at both ends, and the receiver applies them one at a time anyway
MAX_PUSHES_IN_FLIGHT = 8


@dataclass(frozen=True, kw_only=True)
class FederationSettings:
    #: retries towards a peer: exponential backoff with full jitter, capped
    retry_base_s: float = DEFAULT_BASE_S
    retry_factor: float = DEFAULT_FACTOR
    retry_max_s: float = DEFAULT_CAP_S
    #: how long one request on a link (a Push, a lookup) may wait for its answer
    request_deadline_s: float = limits.PEER_REQUEST_DEADLINE_S
    #: a send on a link this node dialled that makes no progress for this long ends the link
    #: (the peer stopped reading; node.toml ``[connections] send_timeout_s``, as for the server)
    send_timeout_s: float = SEND_TIMEOUT_S
    #: per peer node: outbox items it may push. High on purpose: a relay or a busy peer moves
    #: tens of thousands of envelopes a second; this stops a flood, not normal traffic
    push_rate: Rate = field(default_factory=lambda: Rate(per_second=20_000, burst=50_000))
    #: per peer node: ephemeral envelopes (typing, presence) it may push or relay through this
    #: node, counted and in bytes (federation/ephemeral.py): a few hundred users typing at once
    ephemeral_rate: Rate = field(default_factory=lambda: Rate(per_second=200, burst=1000))
    ephemeral_bytes_rate: Rate = field(default_factory=lambda: Rate(per_second=2 * 2**20, burst=8 * 2**20))
    #: per node that answers for pushed group submissions (a SUBMIT's origin when the pusher is
    #: it or its relay, else the pusher: inbound.py ``_answerable``): SUBMITs this node takes as
    #: a group's hub. Each may be a commit the hub verifies (~1 ms, more for a large group);
    #: past it an item is refused ``rate_limited`` for now (RETRY_LATER: the pusher keeps it
    #: and pushes it again at its next expiry tick). node.toml ``[budgets] peer_group_submits_*``
    group_submit_rate: Rate = field(default_factory=lambda: Rate(per_second=100, burst=10_000))
    #: per peer node: lookups and pings
    query_rate: Rate = field(default_factory=lambda: Rate(per_second=20, burst=100))
    #: per peer node: prekey bundles (each may hand out one-time prekeys, which run out)
    bundle_rate: Rate = field(default_factory=lambda: Rate(per_second=5, burst=50))
    #: per peer node: what its lookups may cost (answers' bytes, core/cost_budget.py): far
    #: above query_rate's answers for normal traffic, it stops a peer pulling large ones
    #: (node.toml ``[budgets] peer_*``)
    lookup_budget: Budget = field(
        default_factory=lambda: Budget(requests=Rate(per_second=50, burst=500), bytes=Rate(per_second=4 * 2**20, burst=64 * 2**20))
    )
    #: per peer node and account of this node: one-time prekeys handed out (past it, bundles
    #: come without them): a few sessions a minute with each of the account's devices
    one_time_rate: Rate = field(
        default_factory=lambda: Rate(per_second=limits.MAX_DEVICES_PER_ACCOUNT / 60, burst=4 * limits.MAX_DEVICES_PER_ACCOUNT)
    )
    #: a link whose peer keeps sending after this many rate-limit refusals in a row is closed,
    #: and one that sends more pushes refused out_of_order without one in its turn between
    max_refusals: int = 50
    #: links one peer may hold open to this node at once (a peer needs one; restarts and
    #: races may briefly make two); more are closed with ``too_many_links``
    max_inbound_links: int = 4
    #: pushes an outbox worker has on their way to the next hop at once (node.toml
    #: ``[federation] pushes_in_flight``); the hop applies them in order (push_sequence.py)
    pushes_in_flight: int = 3
    #: how often expired outbox items are dropped (and relayed ones reported back)
    expire_interval_s: float = 60.0
    #: how often the peer table is re-read (``sonet-node peer add/remove`` while running) and
    #: the outbox counts for the status are refreshed
    refresh_s: float = 2.0
    #: how often each configured peer's key-directory head is fetched, checked and cosigned
    #: (also at once when a peer gossips a head this node has not cosigned)
    witness_interval_s: float = 60.0
    #: how often each direct peer is sent this node's head and the heads it witnessed
    gossip_interval_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_base_s <= self.retry_max_s or self.retry_factor < 1:
            raise ValueError("retries need 0 < retry_base_s <= retry_max_s and a factor >= 1")
        intervals = (self.expire_interval_s, self.refresh_s, self.witness_interval_s, self.gossip_interval_s)
        if min(self.request_deadline_s, self.send_timeout_s) <= 0 or min(intervals) <= 0:
            raise ValueError("deadlines and intervals must be positive")
        if not 1 <= self.pushes_in_flight <= MAX_PUSHES_IN_FLIGHT:
            raise ValueError(f"pushes_in_flight must be 1..{MAX_PUSHES_IN_FLIGHT}")
