"""What federation keeps in the node's store: outbox items, delivery tracking, peer keys.

Plain records, no I/O. The store (node/store/) persists them; federation/ decides what goes in.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Tracking", "OutboundItem", "QueuedItem", "StatusUpdate", "DeliveryRow", "DELIVERY_STATES"]

#: the states of an envelope sent to another node, as its sender sees them
DELIVERY_STATES = ("queued", "accepted", "failed")


@dataclass(frozen=True, kw_only=True, slots=True)
class Tracking:
    """Who on this node sent an envelope to another node, so that its state can be told."""

    sender_account: str
    sender_device: int
    id: bytes  # the envelope id
    account: str  # the recipient account (on another node)
    device: int  # the recipient device


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboundItem:
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


@dataclass(frozen=True, kw_only=True, slots=True)
class QueuedItem:
    seq: int  # strictly increasing per node: the outbox order
    dest: str
    key: bytes
    expires: int
    data: bytes
    queued_at: int


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusUpdate:
    """A new state for the delivery row (id, account, device) of envelopes this node sent.

    Applied only to rows in state "queued" (a final state never changes); no row, no effect."""

    id: bytes
    account: str
    device: int
    state: str  # "accepted" or "failed"
    code: str  # "" when accepted, else a refusal code (core.federation_api.REFUSALS)
    at: int


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryRow:
    sender_account: str
    sender_device: int
    id: bytes
    account: str
    device: int
    dest: str  # the recipient's node
    state: str  # one of DELIVERY_STATES
    code: str
    updated_at: int
    expires: int
