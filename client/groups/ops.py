"""The changes a device makes to a group, each described by a small map (an "op") so that it can
be made again on top of a newer epoch when another member's commit came first (docs/groups.md,
"Ordering on the device"): the device keeps the op with its outstanding submission and calls
:func:`make` again on the group as it is then.

Ops: ``add`` {key_packages: [KeyPackage MLSMessages]} (devices already in the group are left
out), ``remove`` {account} (every leaf of it but this device's own), ``remove_devices`` {account,
devices} (those devices' leaves, client/groups/own_devices.py), ``admin`` {account} (made an admin), ``hub``
{node} (the group moves there), ``leave`` {} (a Remove proposal of this device's own leaf),
``send`` {content} (an application message: encoded core/content.py Content), ``commit`` {}
(the pending proposals: what a member does when another one proposed to leave).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sonet.core.errors import LocalProtocolError
from sonet.core.content import decode_content
from sonet.core.groups.credential import leaf_member
from sonet.core.groups.expiry import expiry_aad
from sonet.core.groups.state import EXTENSION_TYPE, GroupExtension, group_extension
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.group import Group
from sonet.core.mls.key_package import KeyPackage
from sonet.core.mls.messages import Add, GroupContextExtensions, Proposal, Remove

__all__ = ["Made", "make", "member_devices", "NothingToDo"]


class NothingToDo(LocalProtocolError):
    """The change is already made (by another member's commit, or it never was needed)."""

    code = "nothing_to_do"


@dataclass(frozen=True, kw_only=True)
class Made:
    #: "commit", "proposal" or "message"
    kind: str
    epoch: int
    message: bytes = field(repr=False)
    welcome: bytes = field(repr=False)
    #: the group state once the hub orders it (a commit or proposal), else None
    after: bytes | None = field(repr=False)
    #: the group state to keep now (an application message used a ratchet key), else None
    now: bytes | None = field(repr=False)


def member_devices(group: Group) -> dict[tuple[str, int], int]:
    """(account, device) -> leaf index of every member."""
    return {(c.account, c.device): index for index, leaf in group.members() for c in (leaf_member(leaf),)}


def _extensions_with(group: Group, ext: GroupExtension) -> tuple:
    return tuple(ext.to_extension() if e.extension_type == EXTENSION_TYPE else e for e in group.context.extensions)


def make(group: Group, op: dict, rng: Callable[[int], bytes]) -> Made:
    """Make ``op`` on ``group`` (which it changes: pass a copy of the stored state)."""
    kind = op["op"]
    epoch = group.epoch
    if kind == "send":
        # a timed message's expiry in the clear for the nodes, authenticated for the members
        aad = expiry_aad(decode_content(op["content"]).expires)
        message = group.encrypt(op["content"], rng, authenticated_data=aad)
        return Made(kind="message", epoch=epoch, message=message.to_bytes(), welcome=b"", after=None, now=group.to_bytes())
    if kind == "leave":
        message = group.propose(Remove(group.leaf_index), rng)
        return Made(kind="proposal", epoch=epoch, message=message.to_bytes(), welcome=b"", after=group.to_bytes(), now=None)
    proposals: list[Proposal] = []
    current = group_extension(group.context)
    if kind == "add":
        present = member_devices(group)
        seen: set[tuple[str, int]] = set()
        for raw in op["key_packages"]:
            body = MLSMessage.from_bytes(raw).body
            assert isinstance(body, KeyPackage)  # checked when it was fetched (client/groups/members.py)
            who = leaf_member(body.leaf_node)
            if (who.account, who.device) not in present and (who.account, who.device) not in seen:
                seen.add((who.account, who.device))
                proposals.append(Add(body))
    elif kind == "remove":  # never this device's own leaf: a committer cannot remove itself (it leaves)
        proposals = [
            Remove(index) for (account, _device), index in sorted(member_devices(group).items())
            if account == op["account"] and index != group.leaf_index
        ]  # fmt: skip
    elif kind == "remove_devices":  # the account's own devices its device list no longer names
        proposals = [
            Remove(index) for (account, device), index in sorted(member_devices(group).items())
            if account == op["account"] and device in op["devices"] and index != group.leaf_index
        ]  # fmt: skip
    elif kind == "admin":
        if op["account"] not in current.admins:
            admins = tuple(sorted({*current.admins, op["account"]}))
            proposals = [GroupContextExtensions(_extensions_with(group, GroupExtension(current.hub, admins)))]
    elif kind == "commit":  # the pending proposals (members' self-removals)
        if not group.pending_proposals():
            raise NothingToDo("no pending proposals to commit")
    elif kind == "hub":
        if op["node"] != current.hub:
            proposals = [GroupContextExtensions(_extensions_with(group, GroupExtension(op["node"], current.admins)))]
    else:
        raise LocalProtocolError(f"unknown group change {kind!r}")
    if not proposals and kind != "commit":
        raise NothingToDo("nothing to change: the group is already so")
    # the Welcome goes without the ratchet tree (~1.5 KB per member device): joiners fetch it
    # from the hub (client/groups/tree_fetch.py)
    staged, message, welcome = group.commit(rng, proposals=proposals, ratchet_tree_in_welcome=False)
    group.merge(staged)
    welcome_bytes = MLSMessage(WireFormat.WELCOME, welcome).to_bytes() if welcome is not None else b""
    return Made(kind="commit", epoch=epoch, message=message.to_bytes(), welcome=welcome_bytes, after=group.to_bytes(), now=None)
