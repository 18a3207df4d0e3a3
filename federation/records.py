"""What federation keeps in the node's store: outbox items, delivery tracking, peer keys, and
what it witnessed of other nodes' key directories; envelopes peers push for local mailboxes,
and the mailbox quota they are taken under.

Plain records, no I/O. The store (node/store/) persists them; federation/ decides what goes in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from sonet.core.groups.items import GroupItem

__all__ = ["GroupReceived", "GroupEffects", "NewEnvelope", "Quota", "STORED_ROW_OVERHEAD", "BUDGET_CODES", "Tracking", "OutboundItem", "QueuedItem", "StatusUpdate", "DeliveryRow", "WitnessRow", "SplitRow", "DELIVERY_STATES"]

#: the states of an envelope sent to another node, as its sender sees them
DELIVERY_STATES = ("queued", "accepted", "failed")

# The records made once per envelope relayed (NewEnvelope, Tracking, OutboundItem, QueuedItem,
# StatusUpdate, DeliveryRow; MailboxItem in node/store/base.py) are msgspec structs: frozen and
# built in C, ~0.08 us each against ~1 us for a frozen dataclass's __init__ (~2.3 us with
# defaults). A changed copy: msgspec.structs.replace (dataclasses.replace does not take them).


class NewEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """An envelope addressed to one device mailbox."""

    account: str
    device_id: int
    id: bytes  # 16 bytes, chosen by the sender; unique per mailbox
    expires: int
    kind: int
    body: bytes


@dataclass(kw_only=True, slots=True)
class GroupEffects:
    """What taking one group item did beyond its own outcome, for after the commit: the
    (account, device) mailboxes that got items, the destinations with new outbox items."""

    mailboxes: set[tuple[str, int]] = field(default_factory=set)
    dests: set[str] = field(default_factory=set)


@dataclass(frozen=True, kw_only=True, slots=True)
class GroupReceived:
    """A group item (core/groups/items.py) a peer pushed for this node ``node``: the store
    orders, delivers or forwards it in the push's transaction (node/store/sqlite_groups.py),
    with ``ttl_ms`` this node's envelope TTL, and fills ``effects``."""

    item: GroupItem
    #: the Transit's origin: where a VERDICT for a SUBMIT goes
    origin: str
    node: str
    ttl_ms: int
    #: the node that answers for a pushed SUBMIT (federation/inbound.py sets it for every
    #: pushed item): ``origin`` when the link peer is it or its relay, else the link peer; what
    #: ordering it stores here counts towards its relay budget, and ``origin`` must be a member's
    #: node. None: an item handed over in-process (tests, the loopback), taken on its
    #: origin's word, charged to no one
    charged: str | None = None
    effects: GroupEffects = field(default_factory=GroupEffects)


@dataclass(frozen=True, kw_only=True, slots=True)
class Quota:
    """How much the node stores, per actor. ``max_envelopes``/``max_bytes``: one recipient
    device mailbox (unexpired envelopes, body bytes). The stored-bytes budgets below count
    what is stored right now (body bytes plus ``STORED_ROW_OVERHEAD`` per row), None for no
    such limit: what one local sending device / account has stored and not yet delivered
    (in local mailboxes and outboxes), what one destination node's outbox holds, what this
    node holds as a relay for one origin node. ``reserve_bytes``: free disk that new messages
    never take (acknowledgements, deletes and restarts need it); ``max_store_bytes``: the
    database's size that new messages never take it past. ``group_envelopes``/``group_bytes``:
    one device mailbox's group items (``Kind.GROUP``), counted apart from the quota above (None:
    twice it; node/group_budgets.py)."""

    max_envelopes: int
    max_bytes: int
    group_envelopes: int | None = None
    group_bytes: int | None = None
    sender_device_bytes: int | None = None
    sender_account_bytes: int | None = None
    outbox_bytes: int | None = None
    relay_origin_bytes: int | None = None
    reserve_bytes: int = 0
    max_store_bytes: int | None = None


#: what a stored row costs beyond its body in the stored-bytes budgets (keys, index entries):
#: a flood of tiny envelopes is charged for the disk it takes
STORED_ROW_OVERHEAD = 256

#: the refusals of a store over a budget of ``Quota`` (or in its disk reserve): "not now", never
#: final -- the sender keeps what it sent and tries again later
BUDGET_CODES = ("sender_full", "outbox_full", "relay_full", "disk_full")


class Tracking(msgspec.Struct, frozen=True, kw_only=True):
    """Who on this node sent an envelope to another node, so that its state can be told."""

    sender_account: str
    sender_device: int
    id: bytes  # the envelope id
    account: str  # the recipient account (on another node)
    device: int  # the recipient device


class OutboundItem(msgspec.Struct, frozen=True, kw_only=True):
    """An item for the outbox of node ``dest`` (its final destination, not the next hop)."""

    dest: str
    #: deduplication key, unique per destination: an item whose (dest, key) is queued, or was
    #: handed on and has not expired, is not queued again
    key: bytes
    expires: int  # ms since the epoch
    #: the encoded core.federation_api.Transit, opaque to the store
    data: bytes
    #: set only for envelopes this node's own devices send: creates a "queued" delivery row
    tracking: Tracking | None = None
    #: set only for items this node relays, or queues at a group's hub for another node's
    #: submission: the node they came from, whose relay budget they use
    origin: str | None = None


class QueuedItem(msgspec.Struct, frozen=True, kw_only=True):
    seq: int  # strictly increasing per node: the outbox order
    dest: str
    key: bytes
    expires: int
    data: bytes
    queued_at: int


class StatusUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A new state for the delivery row of envelope ``id`` to ``device`` of ``account``'s node
    (rows are matched by id, node and device: they do not name the account).

    Applied only to rows in state "queued" (a final state never changes); no row, no effect."""

    id: bytes
    account: str
    device: int
    state: str  # "accepted" or "failed"
    code: str  # "" when accepted, else a refusal code (core.federation_api.REFUSALS)
    at: int


class DeliveryRow(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one envelope a device of this node sent to a device of another node.
    It names the recipient's node and device number but not the recipient account: the node
    keeps no record of whom its users write to (the envelope id is the sender's to match)."""

    sender_account: str
    sender_device: int
    id: bytes
    device: int
    dest: str  # the recipient's node
    state: str  # one of DELIVERY_STATES
    code: str
    updated_at: int
    expires: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WitnessRow:
    """The last head of another node's directory that this node cosigned (the store keeps it)."""

    node: str
    size: int
    root: bytes
    head: bytes  # that node's signed head
    at: int  # when this node cosigned it


@dataclass(frozen=True, kw_only=True, slots=True)
class SplitRow:
    """Evidence that ``node`` showed two views of its directory that cannot both be true."""

    node: str
    #: "fork" (two signed heads of one size with different roots) or "inconsistent" (a
    #: consistency proof received between two signed heads that does not verify)
    kind: str
    first: bytes  # a signed head of ``node`` (the one held before)
    second: bytes  # the signed head that contradicts it
    source: str  # where ``second`` came from: "witness", "gossip:<peer>", "lookup"
    detected_at: int
