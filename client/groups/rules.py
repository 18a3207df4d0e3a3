"""The group's rules on the device (core/groups/policy.py, docs/groups.md "Rules"): every member
checks each commit and proposal the hub ordered, as the hub did, before it applies it.

The rules need the group's public view (who proposed what, which leaves a commit adds and
removes, the group context extensions before and after): the device keeps a ``PublicGroup``
next to its ``Group`` (both sealed in the group's record) and runs every PublicMessage through
it first. A PrivateMessage (an application message) is not a change: nothing to check.
"""

from __future__ import annotations

from sonet.core.groups.credential import leaf_member
from sonet.core.groups.policy import check_commit, check_proposal
from sonet.core.groups.state import extension_in, group_extension
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.group import Group, PublicCommit, PublicGroup, PublicProposal

__all__ = ["public_view", "check_message"]


def public_view(group: Group) -> bytes:
    """The public view of ``group``'s current epoch, with no pending proposals (right after a
    commit, a join or the creation)."""
    info = group.group_info(with_ratchet_tree=False, external_pub=False)
    return PublicGroup.from_group_info(info, group.ratchet_tree_bytes()).to_bytes()


def check_message(public: PublicGroup, message: bytes) -> PublicCommit | PublicProposal | None:
    """Check ``message`` (an ordered group message) against MLS's public checks and the group's
    rules: the staged PublicCommit (merge it with the Group's), the PublicProposal (kept in
    ``public``), or None for an application message. ProtocolError (PolicyError, ValidationError,
    ...) when it breaks one."""
    parsed = MLSMessage.from_bytes(message)
    if parsed.wire_format != WireFormat.PUBLIC_MESSAGE:
        return None
    before = group_extension(public.context)
    members = {index: leaf_member(leaf) for index, leaf in public.members()}
    result = public.process(parsed)
    if isinstance(result, PublicCommit):
        after = extension_in(result.extensions) if result.extensions is not None else before
        check_commit(before=before, members=members, commit=result, after=after)
    else:
        check_proposal(extension=before, members=members, proposal=result.proposal, proposer=result.sender)
    return result
