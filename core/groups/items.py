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
    "GROUP_REFUSALS",
    "group_hex",
]

#: a group id: 16 random bytes chosen by the creating device
GROUP_ID_LEN = 16
#: a submission's name: 16 random bytes chosen by the submitting device
REF_LEN = 16
#: an MLSMessage (commit, proposal, application message) in one item; a commit adding many
#: members is bigger than a text: it carries their KeyPackages
MAX_GROUP_MESSAGE_BYTES = 192 * 1024
#: a Welcome in one item (ratchet tree included while groups are small; docs/groups.md "Not yet")
MAX_GROUP_WELCOME_BYTES = limits.MAX_ENVELOPE_BODY - MAX_GROUP_MESSAGE_BYTES - 8 * 1024
#: the member devices of one node named in one ORDERED commit item
MAX_NODE_MEMBERS = 2048

#: refusal codes of a VERDICT, with what the submitting user is told
GROUP_REFUSALS = {
    "stale_epoch": "the group moved on to a newer epoch first; the device redoes it on top",
    "not_member": "the sender is not a member of the group",
    "not_allowed": "the group's rules do not allow this change (admins only)",
    "invalid": "the hub refused the message as malformed or not verifying",
    "unknown_group": "the hub does not host this group",
    "too_large": "the message is too large for a group item",
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
    #: the submission's ref (SUBMIT, ORDERED, VERDICT); 16 zero bytes for HANDOVER
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

    def check(self) -> None:
        if self.kind not in ItemKind._value2member_map_:
            raise ValueError(f"unknown group item kind {self.kind}")
        kind = ItemKind(self.kind)
        if len(self.ref) != REF_LEN or len(self.group) != GROUP_ID_LEN:
            raise ValueError(f"a group item's ref and group are {REF_LEN} bytes")
        if not 0 <= self.epoch < 2**63 or not 0 <= self.seq < 2**63:
            raise ValueError("epoch or sequence number out of range")
        if len(self.message) > (MAX_GROUP_MESSAGE_BYTES if kind != ItemKind.HANDOVER else limits.MAX_ENVELOPE_BODY):
            raise ValueError("group message too large")
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


def group_hex(group: bytes) -> str:
    """A group id as users see it: 32 lower-case hex digits."""
    return group.hex()
