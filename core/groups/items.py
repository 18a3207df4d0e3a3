"""Group items: what travels between nodes for a group and what a member device finds in its
mailbox (docs/groups.md, "Group items").

One struct for every kind keeps the routing code one path; ``check`` says which fields each kind
uses and refuses anything else. Sizes are bounded here, before anything is stored or forwarded.
"""

from __future__ import annotations

import enum

from .. import limits
from ..address import parse_address, validate_node_name
from ..errors import ProtocolError
from ..wire import Struct, struct

__all__ = [
    "ItemKind",
    "GroupItem",
    "GroupMember",
    "GROUP_ID_LEN",
    "REF_LEN",
    "MAX_GROUP_MESSAGE_BYTES",
    "MAX_GROUP_WELCOME_BYTES",
    "MAX_NODE_MEMBERS",
    "MAX_GROUP_DEVICES",
    "MAX_ADDS_PER_COMMIT",
    "MAX_GROUP_ITEM_BYTES",
    "MAX_HANDOVER_BYTES",
    "HANDOVER_PART_BYTES",
    "MAX_HANDOVER_STATE_BYTES",
    "MAX_HANDOVER_PARTS",
    "handover_ref",
    "handover_part",
    "item_size",
    "GROUP_REFUSALS",
    "group_hex",
]

#: a group id: 16 random bytes chosen by the creating device
GROUP_ID_LEN = 16
#: a submission's name: 16 random bytes chosen by the submitting device
REF_LEN = 16
# Sizes measured in suite 0x004D (docs/groups.md "Sizes"): a KeyPackage is ~2.8 KB (two X-Wing
# public keys), an Add by value in a commit the same, a Welcome ~1.2 KB per added device (its
# ratchet tree goes by reference: core/groups/trees.py), an UpdatePath ~1.18 KB per device it
# encrypts to (the first commit with a path after many adds encrypts to nearly every device).

#: the leaves (devices) of one group; the hub refuses a commit that would make more
#: (``too_large``). It bounds the largest commit: a path to 1,999 others is ~2.36 MB
MAX_GROUP_DEVICES = 2000
#: how many devices a device adds in one commit (more are added by further commits): 64 Adds
#: are ~180 KB of commit and ~78 KB of Welcome, so even with a path to every other device the
#: commit stays under MAX_GROUP_MESSAGE_BYTES
MAX_ADDS_PER_COMMIT = 64
#: an MLSMessage (commit, proposal, application message) in one item
MAX_GROUP_MESSAGE_BYTES = 2560 * 1024
#: a Welcome in one item (without the ratchet tree: ~100 added devices)
MAX_GROUP_WELCOME_BYTES = 160 * 1024
#: one encoded item, all fields: the body of its Kind.GROUP envelope
MAX_GROUP_ITEM_BYTES = limits.MAX_GROUP_ITEM_BYTES
#: the member devices of one node named in one ORDERED commit item
MAX_NODE_MEMBERS = 2048
#: what an item's fields other than message, Welcome and members take at most, encoded
_ITEM_OVERHEAD = 1024
#: a HANDOVER item's message when it carries the whole hub state (16 zero bytes of ref: the
#: former encoding, still taken); hubs send the state in parts (below)
MAX_HANDOVER_BYTES = MAX_GROUP_ITEM_BYTES - _ITEM_OVERHEAD
#: a larger state goes in parts of at most this many bytes, each its own HANDOVER item (named
#: by its ref: ``handover_ref``); the new hub adopts the group once it holds every part
HANDOVER_PART_BYTES = 1024 * 1024
#: the whole hub state of a hand-over (a filled 2,000-device state is ~5.6 MB; the hub refuses
#: a hand-over of a larger one: ``too_large``)
MAX_HANDOVER_STATE_BYTES = 12 * 1024 * 1024
#: the parts of one hand-over: ceil(MAX_HANDOVER_STATE_BYTES / HANDOVER_PART_BYTES)
MAX_HANDOVER_PARTS = -(-MAX_HANDOVER_STATE_BYTES // HANDOVER_PART_BYTES)

#: refusal codes of a VERDICT, with what the submitting user is told
GROUP_REFUSALS = {
    "stale_epoch": "the group moved on to a newer epoch first; the device redoes it on top",
    "not_member": "the sender is not a member of the group",
    "not_allowed": "the group's rules do not allow this change",
    "invalid": "the hub refused the message as malformed or not verifying",
    "unknown_group": "the hub does not host this group",
    "too_large": "the message is too large for a group item",
    "timed_change": "only application messages may expire: a commit, proposal or Welcome never does",
}


class ItemKind(enum.IntEnum):
    #: submitter's home node -> hub: one group message of a device
    SUBMIT = 1
    #: hub -> each participating node -> member mailboxes: one accepted message, in order
    ORDERED = 2
    #: hub -> submitter's home node -> the submitting device: a refusal
    VERDICT = 3
    #: old hub -> new hub: the group's public state after a hand-over commit
    HANDOVER = 4


@struct
class GroupMember(Struct):
    """A member device of one node: ``device`` of ``account``."""

    account: str
    device: int

    def key(self) -> tuple[str, int]:
        return (self.account, self.device)


@struct
class GroupItem(Struct):
    kind: int
    #: the submission's ref (SUBMIT, ORDERED, VERDICT); HANDOVER: which part of the state it
    #: carries (``handover_ref``; 16 zero bytes: the whole state in this one item)
    ref: bytes
    group: bytes
    #: SUBMIT/ORDERED: the epoch of ``message``; VERDICT: the group's current epoch at the hub
    epoch: int
    #: ORDERED: the position in the group's order, from 1; HANDOVER: the last position the
    #: old hub gave; else 0
    seq: int
    #: SUBMIT/ORDERED: an MLSMessage; HANDOVER: the hub state (core/groups/hub.py); else empty
    message: bytes
    #: SUBMIT/ORDERED: the Welcome of a commit that adds members, else empty
    welcome: bytes
    #: ORDERED commit: the receiving node's member devices after it, sorted by (account,
    #: device) and unique; else empty
    members: tuple[GroupMember, ...]
    #: VERDICT: a code of GROUP_REFUSALS; else empty
    outcome: str
    #: ORDERED: the hub that orders the NEXT item of the group (the one that ordered this one,
    #: except in the copies of a hand-over commit, which name the new hub); HANDOVER: the new
    #: hub; else empty
    hub: str
    #: SUBMIT/ORDERED: when the item expires (ms), the expiry its application message carries
    #: in its authenticated data (core/groups/expiry.py); 0: it does not expire. Every node
    #: drops it then; else 0
    expires: int = 0
    #: ORDERED: the last sequence number before this one whose item does not expire (0: none);
    #: items after it and before this one are all timed (docs/groups.md "Disappearing messages
    #: on nodes"); else 0
    floor: int = 0
    #: ORDERED: the latest expiry of the items after ``floor`` and before this one (0: there are
    #: none, or nothing may be skipped): once it has passed, a device may skip those it never
    #: got; else 0
    gap_expires: int = 0

    def check(self) -> None:
        if self.kind not in ItemKind._value2member_map_:
            raise ValueError(f"unknown group item kind {self.kind}")
        kind = ItemKind(self.kind)
        if len(self.ref) != REF_LEN or len(self.group) != GROUP_ID_LEN:
            raise ValueError(f"a group item's ref and group are {REF_LEN} bytes")
        if not 0 <= self.epoch < 2**63 or not 0 <= self.seq < 2**63:
            raise ValueError("epoch or sequence number out of range")
        if len(self.message) > (MAX_GROUP_MESSAGE_BYTES if kind != ItemKind.HANDOVER else MAX_HANDOVER_BYTES):
            raise ValueError("group message too large")
        if kind == ItemKind.HANDOVER:
            handover_part(self)  # a valid part name, a part within its bound
        if self.size() > MAX_GROUP_ITEM_BYTES:
            raise ValueError("group item too large")
        if len(self.welcome) > MAX_GROUP_WELCOME_BYTES:
            raise ValueError("group Welcome too large")
        if len(self.members) > MAX_NODE_MEMBERS:
            raise ValueError(f"more than {MAX_NODE_MEMBERS} member devices of one node")
        wants_message = kind in (ItemKind.SUBMIT, ItemKind.ORDERED, ItemKind.HANDOVER)
        if bool(self.message) != wants_message:
            raise ValueError(f"a {kind.name} item {'needs' if wants_message else 'has no'} message")
        if self.welcome and kind not in (ItemKind.SUBMIT, ItemKind.ORDERED):
            raise ValueError(f"a {kind.name} item has no Welcome")
        if self.members and kind != ItemKind.ORDERED:
            raise ValueError(f"a {kind.name} item names no members")
        if (kind == ItemKind.ORDERED or kind == ItemKind.HANDOVER) != (self.seq > 0):
            raise ValueError("only ORDERED and HANDOVER items have a sequence number")
        if (kind == ItemKind.VERDICT) != bool(self.outcome):
            raise ValueError("a VERDICT item and only it has an outcome")
        if self.outcome and self.outcome not in GROUP_REFUSALS:
            raise ValueError(f"unknown group refusal {self.outcome!r}")
        if (kind in (ItemKind.ORDERED, ItemKind.HANDOVER)) != bool(self.hub):
            raise ValueError("ORDERED and HANDOVER items and only they name a hub")
        if not (0 <= self.expires < 2**63 and 0 <= self.floor < 2**63 and 0 <= self.gap_expires < 2**63):
            raise ValueError("an expiry or floor out of range")
        if self.expires and kind not in (ItemKind.SUBMIT, ItemKind.ORDERED):
            raise ValueError(f"a {kind.name} item does not expire")
        if (self.floor or self.gap_expires) and kind != ItemKind.ORDERED:
            raise ValueError(f"a {kind.name} item names no floor")
        if kind == ItemKind.ORDERED and (self.floor >= self.seq or (self.gap_expires and self.floor >= self.seq - 1)):
            raise ValueError("an ORDERED item's floor is before it, and only items between have an expiry")
        try:
            if self.hub:
                validate_node_name(self.hub, remote=True)
            previous: tuple[str, int] | None = None
            for member in self.members:
                parse_address(member.account, remote=True)
                if not 0 < member.device < 2**31:
                    raise ValueError("device id out of range")
                if previous is not None and not previous < member.key():
                    raise ValueError("members must be sorted and unique")
                previous = member.key()
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None


    def size(self) -> int:
        """At least the encoded size (msgpack), without encoding: the caps are checked on it."""
        return item_size(self.message, self.welcome, self.members)


def handover_ref(part: int, parts: int) -> bytes:
    """The ref of part ``part`` (from 1) of a hand-over in ``parts`` parts."""
    if not 1 <= part <= parts <= MAX_HANDOVER_PARTS:
        raise ValueError(f"a hand-over has 1 to {MAX_HANDOVER_PARTS} parts, part {part} of {parts} is not one")
    return bytes(REF_LEN - 4) + part.to_bytes(2, "big") + parts.to_bytes(2, "big")


def handover_part(item: GroupItem) -> tuple[int, int]:
    """(part, parts) of a HANDOVER item; (1, 1) for a whole state (zero ref); ValueError for a
    ref that names no part, or a part larger than HANDOVER_PART_BYTES."""
    if item.ref == bytes(REF_LEN):
        return 1, 1
    part, parts = int.from_bytes(item.ref[-4:-2], "big"), int.from_bytes(item.ref[-2:], "big")
    if not 1 <= part <= parts <= MAX_HANDOVER_PARTS or item.ref != handover_ref(part, parts):
        raise ValueError("a HANDOVER item's ref names no part of a hand-over")
    if len(item.message) > HANDOVER_PART_BYTES:
        raise ValueError(f"a part of a hand-over is at most {HANDOVER_PART_BYTES} bytes")
    return part, parts


def item_size(message: bytes, welcome: bytes, members: tuple[GroupMember, ...]) -> int:
    """``GroupItem.size`` of an item with these parts."""
    return len(message) + len(welcome) + sum(len(m.account.encode()) + 16 for m in members) + _ITEM_OVERHEAD


def group_hex(group: bytes) -> str:
    """A group id as users see it: 32 lower-case hex digits."""
    return group.hex()
