"""Proposals in a commit (RFC 9420 §12.1-§12.3): who proposed what, the validity of each
proposal and of the whole list, and applying the list to a copy of the tree.

Committer and receiver run the same ``check_proposal_list`` and ``apply_proposals``: a commit we
would refuse to process is a commit we refuse to make. Application order is §12.3's:
GroupContextExtensions, then Updates, Removes, Adds; PSKs and ReInit carry no tree change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..extensions import (
    DEFAULT_EXTENSION_TYPES,
    DEFAULT_PROPOSAL_TYPES,
    ExtensionType,
    RequiredCapabilities,
    find_extension,
)
from ..extensions.extension import Extension
from ..framing import Sender, SenderType
from ..key_package import KeyPackage, LeafNode, LeafNodeSource, ValidationError, check_key_package, check_leaf_node
from ..key_package.validation import LeafSummary
from ..key_package.key_package import MLS10
from ..messages import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalType,
    ReInit,
    Remove,
    Update,
)
from ..psk import PreSharedKeyID, PSKType, ResumptionPSKUsage
from ..tree import RatchetTree

if TYPE_CHECKING:
    from ..crypto import CipherSuite
    from ..key_schedule import GroupContext

__all__ = [
    "ProposalInfo",
    "AppliedProposals",
    "PSKLookup",
    "required_capabilities",
    "leaf_supports_extensions",
    "path_required",
    "check_proposal_list",
    "apply_proposals",
]

#: the PSK value of a PreSharedKeyID, or None when this member does not have it
PSKLookup = Callable[[PreSharedKeyID], "bytes | None"]

#: proposal types a commit may carry without an UpdatePath (§17.4 "Path Required" = N)
_PATH_OPTIONAL = frozenset({ProposalType.ADD, ProposalType.PSK, ProposalType.REINIT})


@dataclass(frozen=True, slots=True)
class ProposalInfo:
    """A proposal as a commit covers it: its sender (the committer for one sent by value) and
    its ProposalRef when it came by reference."""

    proposal: Proposal
    sender: Sender
    ref: bytes | None = None


@dataclass
class AppliedProposals:
    """What a proposal list did to a copy of the tree and to the group context."""

    tree: RatchetTree
    extensions: tuple[Extension, ...]
    #: (leaf index, KeyPackage) of each member added, in proposal order
    added: list[tuple[int, KeyPackage]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    #: leaf index -> ProposalRef of the Update applied to it
    updated: dict[int, bytes] = field(default_factory=dict)
    psks: list[PreSharedKeyID] = field(default_factory=list)
    reinit: ReInit | None = None


def required_capabilities(extensions: Sequence[Extension]) -> RequiredCapabilities | None:
    found = find_extension(extensions, ExtensionType.REQUIRED_CAPABILITIES)
    return None if found is None else RequiredCapabilities.from_bytes(found.extension_data)


def path_required(proposals: Sequence[ProposalInfo]) -> bool:
    """§12.4: a commit without proposals, or with any whose type requires a path, needs one."""
    return not proposals or any(p.proposal.proposal_type not in _PATH_OPTIONAL for p in proposals)


def leaf_supports_extensions(leaf: LeafNode, extensions: Sequence[Extension]) -> bool:
    return all(e.extension_type in DEFAULT_EXTENSION_TYPES or e.extension_type in leaf.capabilities.extensions for e in extensions)


def _check_psk(
    cs: CipherSuite, psk: PreSharedKeyID, context: GroupContext, lookup: PSKLookup, resumption_usage: ResumptionPSKUsage
) -> None:
    if len(psk.psk_nonce) != cs.nh:
        raise ValidationError(f"PSK nonce of {len(psk.psk_nonce)} bytes, the suite needs {cs.nh}")
    if psk.psktype == PSKType.RESUMPTION:
        # §8.4: reinit and branch PSKs only start the group a ReInit or a branch leads to
        if psk.usage not in (ResumptionPSKUsage.APPLICATION, resumption_usage):
            raise ValidationError(
                f"a resumption PSK of usage {psk.usage.name.lower()} in a regular commit"
                " (only the Welcome of a reinitialised or branched group carries one)"
            )
        if psk.psk_group_id == context.group_id and psk.psk_epoch >= context.epoch + 1:
            raise ValidationError(f"a resumption PSK of epoch {psk.psk_epoch}, which is not a past epoch")
    if lookup(psk) is None:
        raise ValidationError(f"the pre-shared key {psk!r} is unknown to this member")


def check_proposal_list(
    cs: CipherSuite,
    tree: RatchetTree,
    context: GroupContext,
    proposals: Sequence[ProposalInfo],
    committer: int,
    psk_lookup: PSKLookup,
    *,
    now: int | None = None,
    external: bool = False,
    resumption_usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION,
) -> None:
    """§12.2 for a member's commit (``committer`` its leaf index) on ``tree`` and ``context`` of
    the current epoch: each proposal valid (§12.1) and the list consistent. ValidationError
    naming the broken rule. ``external``: an external commit (committer -1), whose own rules
    (§12.4.3.2) ``external.check_external_proposals`` checks; ``resumption_usage``: the one
    usage besides application a resumption PSK may have (the first commit of a new group).

    A new leaf is checked against a summary of the members' leaves (the tree's, kept up to
    date), not a list: an Add against the members that stay and the Adds before it, an Update
    against the members that stay less the leaf it replaces; each costs O(1) in the group size."""
    touched: set[int] = set()
    added_keys: set[bytes] = set()  # the signature keys of the Adds before this one
    psk_ids: set[PreSharedKeyID] = set()
    removed = {p.proposal.removed for p in proposals if isinstance(p.proposal, Remove)}
    staying = tree.leaf_summary()  # the tree's own: copied before it changes
    if removed:
        staying = staying.copy()
        for gone in filter(None, map(tree.leaf, removed)):  # a Remove of a non-member is refused below
            staying.remove(gone)
    with_added: LeafSummary | None = None  # staying and the Adds so far, from the first Add on
    gce = [p.proposal for p in proposals if isinstance(p.proposal, GroupContextExtensions)]
    if len(gce) > 1:
        raise ValidationError("a commit with more than one GroupContextExtensions proposal")
    new_extensions = gce[0].extensions if gce else context.extensions
    required = required_capabilities(new_extensions)

    def staying_leaves() -> Iterator[tuple[int, LeafNode]]:
        return ((i, leaf) for i, leaf in tree.leaves() if i not in removed)

    for info in proposals:
        proposal, sender = info.proposal, info.sender
        if sender.sender_type is SenderType.MEMBER and tree.leaf(sender.index) is None:
            raise ValidationError(f"a proposal from leaf {sender.index}, which is not a member")
        if isinstance(proposal, Add):
            kp = proposal.key_package
            if kp.leaf_node.signature_key in added_keys:
                raise ValidationError("two Add proposals for the same client")
            if with_added is None:
                with_added = staying.copy()
            check_key_package(cs, kp, others=with_added, required=required, now=now)
            if not leaf_supports_extensions(kp.leaf_node, new_extensions):
                raise ValidationError("an added member does not support the group's extensions")
            added_keys.add(kp.leaf_node.signature_key)
            with_added.add(kp.leaf_node)
        elif isinstance(proposal, Update):
            if sender.sender_type is not SenderType.MEMBER:
                raise ValidationError("an Update proposal from a sender that is not a member")
            if sender.index == committer:
                raise ValidationError("a commit with an Update proposal of the committer (it updates by its path)")
            if sender.index in touched:
                raise ValidationError(f"two Update/Remove proposals for leaf {sender.index}")
            touched.add(sender.index)
            current = tree.leaf(sender.index)
            assert current is not None
            check_leaf_node(
                cs, proposal.leaf_node, source=LeafNodeSource.UPDATE, group_id=context.group_id, leaf_index=sender.index,
                others=staying, replacing=None if sender.index in removed else current, required=required, now=now,
            )  # fmt: skip
            if proposal.leaf_node.encryption_key == current.encryption_key:
                raise ValidationError("an Update proposal that keeps the leaf's encryption key")
        elif isinstance(proposal, Remove):
            if tree.leaf(proposal.removed) is None:
                raise ValidationError(f"a Remove proposal for leaf {proposal.removed}, which is not a member")
            if proposal.removed == committer:
                raise ValidationError("a commit that removes the committer")
            if proposal.removed in touched:
                raise ValidationError(f"two Update/Remove proposals for leaf {proposal.removed}")
            touched.add(proposal.removed)
        elif isinstance(proposal, PreSharedKey):
            if proposal.psk in psk_ids:
                raise ValidationError("two PreSharedKey proposals for the same PSK")
            psk_ids.add(proposal.psk)
            _check_psk(cs, proposal.psk, context, psk_lookup, resumption_usage)
        elif isinstance(proposal, GroupContextExtensions):
            for i, leaf in staying_leaves():
                if not leaf_supports_extensions(leaf, proposal.extensions):
                    raise ValidationError(f"leaf {i} does not support the proposed group context extensions")
                if required is not None and (missing := required.missing_in(leaf.capabilities)) is not None:
                    raise ValidationError(f"leaf {i} does not support the proposed required {missing}")
        elif isinstance(proposal, ReInit):
            if len(proposals) != 1:
                raise ValidationError("a ReInit proposal together with other proposals")
            if proposal.version < MLS10:
                raise ValidationError(f"a ReInit to protocol version {proposal.version}, older than the group's")
        elif isinstance(proposal, ExternalInit):
            if not external:
                raise ValidationError("an ExternalInit proposal in a member's commit")
        else:  # a proposal type RFC 9420 does not define: every member that stays must support it
            if proposal.proposal_type not in DEFAULT_PROPOSAL_TYPES:
                for i, leaf in staying_leaves():
                    if proposal.proposal_type not in leaf.capabilities.proposals:
                        raise ValidationError(f"leaf {i} does not support proposal type {proposal.proposal_type}")
    _check_new_leaves_distinct(
        [p.proposal.key_package.leaf_node for p in proposals if isinstance(p.proposal, Add)],
        [p.proposal.leaf_node for p in proposals if isinstance(p.proposal, Update)],
    )


def _check_new_leaves_distinct(added: Sequence[LeafNode], updated: Sequence[LeafNode]) -> None:
    """The leaves one commit brings (Adds and Updates) must not share a key among themselves
    (§7.3: keys are unique in the tree). Each was checked against the members it joins; an
    Update's new leaf was not against the Adds, nor against the other Updates' new leaves."""
    new = [*added, *updated]
    for what, keys in (("an encryption key", [leaf.encryption_key for leaf in new]), ("a signature key", [leaf.signature_key for leaf in added])):
        if len(set(keys)) != len(keys):
            raise ValidationError(f"two leaves of one commit share {what}")
    added_signatures = {leaf.signature_key for leaf in added}
    if any(leaf.signature_key in added_signatures for leaf in updated):
        raise ValidationError("two leaves of one commit share a signature key")


def apply_proposals(
    tree: RatchetTree, extensions: tuple[Extension, ...], proposals: Sequence[ProposalInfo]
) -> AppliedProposals:
    """Apply a checked proposal list to a copy of ``tree`` (§12.3); ``extensions`` are the
    current group context's."""
    applied = AppliedProposals(tree.copy(), extensions)
    for info in proposals:
        if isinstance(info.proposal, GroupContextExtensions):
            applied.extensions = info.proposal.extensions
    for info in proposals:
        if isinstance(info.proposal, Update):
            applied.tree.update_leaf(info.sender.index, info.proposal.leaf_node)
            applied.updated[info.sender.index] = info.ref or b""
    for info in proposals:
        if isinstance(info.proposal, Remove):
            applied.tree.remove_leaf(info.proposal.removed)
            applied.removed.append(info.proposal.removed)
    adds = [info.proposal.key_package for info in proposals if isinstance(info.proposal, Add)]
    # in one batch: each parent above the new leaves is rewritten once, not once per Add
    applied.added = list(zip(applied.tree.add_leaves(kp.leaf_node for kp in adds), adds))
    for info in proposals:
        if isinstance(info.proposal, PreSharedKey):
            applied.psks.append(info.proposal.psk)
        elif isinstance(info.proposal, ReInit):
            applied.reinit = info.proposal
    return applied
