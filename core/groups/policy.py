"""The rules of a Sonet group (docs/groups.md, "Rules"), enforced by the hub and by every member.

MLS decides whether a commit is well formed; these rules decide whether its sender may make it.
The actor of a proposal is its proposer (so any member may commit another member's pending
self-removal), and the actor of a commit's own change (its path leaf) is the committer:

- Add or Remove a leaf of another account, or change the group context extensions: only a device
  of an admin account. Add or Remove a leaf of one's own account: any member.
- Update (and a commit's path leaf) keeps the leaf's account, device and fingerprint.
- No PreSharedKey, ReInit, ExternalInit or unknown proposals: Sonet groups use none.
- After the commit each device is in the group once, at least one admin is still a member
  (while anyone is), and a new hub is a node of a member. A commit that moves the hub adds no
  one (the hub keeps an adding commit's tree for its joiners; the new hub would have none).

Beyond the agreed API: ``check_proposal`` (the rules for one proposal, which the hub applies to
a proposal before keeping it pending: ``PublicGroup.process`` keeps what it checked).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..address import parse_address
from ..errors import RemoteProtocolError
from ..mls.extensions import ExtensionType, RequiredCapabilities, find_extension
from ..mls.group.public import PublicCommit
from ..mls.key_package import LeafNode
from ..mls.messages import Add, GroupContextExtensions, Proposal, Remove, Update
from .credential import MemberCredential, leaf_member
from .state import EXTENSION_TYPE, GroupExtension, extension_in

__all__ = ["PolicyError", "check_proposal", "check_commit", "member_nodes"]


class PolicyError(RemoteProtocolError):
    """A change the group's rules do not allow."""

    code = "not_allowed"


def check_proposal(*, extension: GroupExtension, members: Mapping[int, MemberCredential], proposal: Proposal, proposer: int) -> None:
    """Whether the member at leaf ``proposer`` may make ``proposal`` in a group whose sonet_group
    extension is ``extension``; PolicyError if not, ``group_malformed`` for a leaf credential or
    extension that does not decode."""
    actor = _member(members, proposer)
    admin = extension.is_admin(actor.account)
    if isinstance(proposal, Add):
        added = leaf_member(proposal.key_package.leaf_node)
        if added.account != actor.account and not admin:
            raise PolicyError(f"only an admin adds devices of another account ({added.account})")
    elif isinstance(proposal, Remove):
        removed = members.get(proposal.removed)
        if removed is not None and removed.account != actor.account and not admin:
            raise PolicyError(f"only an admin removes devices of another account ({removed.account})")
    elif isinstance(proposal, Update):
        _same_device(actor, proposal.leaf_node)
    elif isinstance(proposal, GroupContextExtensions):
        if not admin:
            raise PolicyError("only an admin changes the group's settings (admins, hub)")
        extension_in(proposal.extensions)  # a valid sonet_group stays
        required = find_extension(proposal.extensions, ExtensionType.REQUIRED_CAPABILITIES)
        if required is None or EXTENSION_TYPE not in RequiredCapabilities.from_bytes(required.extension_data).extension_types:
            raise PolicyError("the group must keep requiring the sonet_group extension")
    else:
        raise PolicyError(f"Sonet groups take no proposals of type {proposal.proposal_type}")


def check_commit(*, before: GroupExtension, members: Mapping[int, MemberCredential], commit: PublicCommit, after: GroupExtension) -> None:
    """Whether ``commit`` (checked by MLS, not merged) is allowed in a group whose members before
    it are ``members`` (leaf index -> credential) and whose sonet_group extension goes from
    ``before`` to ``after``; PolicyError if not."""
    committer = _member(members, commit.sender)
    for proposal, proposer in commit.proposals:
        check_proposal(extension=before, members=members, proposal=proposal, proposer=proposer)
    if after != before and not any(isinstance(p, GroupContextExtensions) for p, _ in commit.proposals):
        raise PolicyError("the group's settings change only by a GroupContextExtensions proposal")
    path_leaf = commit.staged.tree.leaf(commit.sender)
    if path_leaf is not None:
        _same_device(committer, path_leaf)
    remaining = dict(members)
    for index, _ in commit.removed:
        remaining.pop(index, None)
    for index, leaf in commit.added:
        remaining[index] = leaf_member(leaf)
    devices = {(c.account, c.device) for c in remaining.values()}
    if len(devices) != len(remaining):
        raise PolicyError("a device would be in the group twice")
    accounts = {c.account for c in remaining.values()}
    if accounts and not accounts & set(after.admins):
        raise PolicyError("the last admin cannot leave while other members stay: name another admin first")
    if after.hub != before.hub and after.hub not in member_nodes(remaining):
        raise PolicyError(f"the new hub {after.hub} is not the node of a member")
    if after.hub != before.hub and commit.added:  # its joiners would ask the new hub for its tree
        raise PolicyError("a commit that adds devices cannot move the hub: move the hub in a commit of its own")


def member_nodes(members: Mapping[int, MemberCredential]) -> set[str]:
    """The nodes of the members' accounts (the participating nodes)."""
    return {parse_address(c.account).node for c in members.values()}


def _member(members: Mapping[int, MemberCredential], index: int) -> MemberCredential:
    member = members.get(index)
    if member is None:
        raise PolicyError(f"leaf {index} is not a member")
    return member


def _same_device(member: MemberCredential, leaf: LeafNode) -> None:
    """A leaf's new version (Update, commit path) names the same device and identity key."""
    new = leaf_member(leaf)
    if (new.account, new.device, new.fingerprint) != (member.account, member.device, member.fingerprint):
        raise PolicyError(f"a leaf of device {member.device} of {member.account} cannot become another device's")
