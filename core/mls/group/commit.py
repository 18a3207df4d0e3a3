"""Making a commit and checking a received one (RFC 9420 §12.4, §12.4.1, §12.4.2).

Both sides reach the next epoch through the same steps: the proposals checked and applied to a
copy of the tree, the UpdatePath (made, or merged and decrypted), the provisional GroupContext
the path is encrypted under (new epoch, tree hash and extensions, the old confirmed transcript
hash), the confirmed transcript hash of the signed commit, the epoch secrets from the old
init_secret, the commit secret and the PSKs, and the confirmation tag. The result is a
``StagedCommit``; nothing of the group changes until it is merged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ...errors import LocalProtocolError
from ..framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    Sender,
    SenderType,
    WireFormat,
    confirmation_tag,
    confirmed_transcript_hash,
    interim_transcript_hash,
    sign_content,
    verify_confirmation_tag,
)
from ..key_package import LeafNodeSource, ValidationError, check_leaf_node
from ..key_schedule import EpochSecrets, GroupContext, derive_epoch_secrets
from ..messages import Commit, ProposalOrRef, ProposalRef, Remove, Update, Welcome
from ..psk import ResumptionPSKUsage
from ..secret_tree import SecretTree
from ..tree import RatchetTree, TreeKEMPrivate, create_update_path, decrypt_update_path, merge_update_path
from .proposals import AppliedProposals, ProposalInfo, PSKLookup, apply_proposals, check_proposal_list, path_required, required_capabilities
from .state import EpochState, QueuedProposal, StagedCommit, prune_private
from .welcome import make_welcome, resolve_psks

if TYPE_CHECKING:
    from ...crypto.modes import Rng
    from ..crypto import CipherSuite

__all__ = [
    "CommitOptions",
    "CreatedCommit",
    "ReceivedCommit",
    "check_received_commit",
    "create_commit",
    "merge_committer_path",
    "next_context",
    "next_state",
    "provisional_context",
    "select_pending",
    "stage_received_commit",
]


@dataclass(frozen=True, slots=True)
class CommitOptions:
    #: None: a path exactly when the proposals require one (or there are none)
    path: bool | None = None
    wire_format: WireFormat = WireFormat.PUBLIC_MESSAGE
    #: put the ratchet tree in the Welcome's GroupInfo (else new members need it some other way)
    ratchet_tree_in_welcome: bool = True
    authenticated_data: bytes = b""
    #: the resumption PSK usage allowed besides application: reinit or branch only in the
    #: commit that starts a reinitialised or branched group (§11.2, §11.3)
    resumption_usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION


@dataclass(frozen=True, slots=True)
class CreatedCommit:
    staged: StagedCommit
    content: AuthenticatedContent
    welcome: Welcome | None


def provisional_context(before: GroupContext, applied: AppliedProposals, tree_hash: bytes) -> GroupContext:
    """The GroupContext an UpdatePath is encrypted under: the new epoch, tree hash and
    extensions with the old confirmed transcript hash (§12.4.1)."""
    return replace(before, epoch=before.epoch + 1, tree_hash=tree_hash, extensions=applied.extensions)


def next_context(cs: CipherSuite, before: GroupContext, applied: AppliedProposals, confirmed: bytes) -> GroupContext:
    """The GroupContext of the epoch a commit starts: the tree (path merged) and extensions after
    it, ``confirmed`` its confirmed transcript hash."""
    return GroupContext(cs.id, before.group_id, before.epoch + 1, applied.tree.root_tree_hash(), confirmed, applied.extensions)


def next_state(
    cs: CipherSuite,
    before: GroupContext,
    init_secret: bytes,
    applied: AppliedProposals,
    confirmed: bytes,
    commit_secret: bytes | None,
    psk_lookup: PSKLookup,
    private: TreeKEMPrivate,
) -> tuple[EpochState, EpochSecrets]:
    """The epoch after ``before``: its context, the secrets from ``init_secret`` (the old
    epoch's, or an external commit's), the commit secret and the PSKs, and the confirmation
    tag over ``confirmed``. The state keeps only the secrets the epoch needs (§9.2); the full
    set comes back beside it for a Welcome, to be dropped once that is made."""
    context = next_context(cs, before, applied, confirmed)
    secrets = derive_epoch_secrets(cs, init_secret, commit_secret, resolve_psks(cs, applied.psks, psk_lookup), context)
    tag = confirmation_tag(cs, secrets.confirmation_key, confirmed)
    state = EpochState(
        context=context,
        tree=applied.tree,
        secrets=secrets.retained(),
        secret_tree=SecretTree(cs, secrets.encryption_secret, applied.tree.n_leaves),
        interim_transcript_hash=interim_transcript_hash(cs, confirmed, tag),
        private=private,
        confirmation_tag=tag,
    )
    return state, secrets


def select_pending(
    cs: CipherSuite,
    base: EpochState,
    pending: Sequence[QueuedProposal],
    by_value: Sequence[ProposalInfo],
    me: int,
    psk_lookup: PSKLookup,
    now: int | None,
) -> list[ProposalInfo]:
    """The received proposals a commit of ours covers: all that are valid together with the ones
    we send by value, in the order received, leaving out our own Updates (our path updates our
    leaf) and, where proposals touch the same leaf, all but a Remove or else the latest Update."""
    candidates = [
        ProposalInfo(q.proposal, q.sender, q.ref)
        for q in pending
        if not (isinstance(q.proposal, Update) and q.sender == Sender.member(me))
    ]
    by_leaf: dict[int, int] = {}  # leaf -> position of the one proposal kept for it
    for position, info in enumerate(candidates):
        if isinstance(info.proposal, Remove):
            by_leaf[info.proposal.removed] = position
        elif isinstance(info.proposal, Update):
            previous = by_leaf.get(info.sender.index)
            if previous is None or not isinstance(candidates[previous].proposal, Remove):
                by_leaf[info.sender.index] = position
    keep = {i for i, info in enumerate(candidates) if not isinstance(info.proposal, (Update, Remove))} | set(by_leaf.values())
    kept = [info for position, info in enumerate(candidates) if position in keep]
    try:  # the usual case, all valid together: one check, not one per proposal
        check_proposal_list(cs, base.tree, base.context, [*kept, *by_value], me, psk_lookup, now=now)
        return kept
    except ValidationError:
        pass
    chosen: list[ProposalInfo] = []
    for position, info in enumerate(candidates):
        if position not in keep:
            continue
        try:
            check_proposal_list(cs, base.tree, base.context, [*chosen, info, *by_value], me, psk_lookup, now=now)
        except ValidationError:
            continue  # an invalid proposal is left out of the commit (§12.2)
        chosen.append(info)
    return chosen


def create_commit(
    cs: CipherSuite,
    base: EpochState,
    me: int,
    signature_priv: bytes,
    proposals: Sequence[ProposalInfo],
    psk_lookup: PSKLookup,
    options: CommitOptions,
    rng: Rng,
    *,
    now: int | None = None,
) -> CreatedCommit:
    """Our commit of ``proposals`` (by reference where they have a ref, in that order) on
    ``base``. A list that breaks §12.2 is our mistake: LocalProtocolError."""
    try:
        check_proposal_list(cs, base.tree, base.context, proposals, me, psk_lookup, now=now, resumption_usage=options.resumption_usage)
        applied = apply_proposals(base.tree, base.context.extensions, proposals)
    except ValidationError as exc:
        raise LocalProtocolError(f"MLS: cannot commit these proposals: {str(exc).removeprefix('MLS: ')}") from None
    with_path = path_required(proposals) if options.path is None else options.path
    if path_required(proposals) and not with_path:
        raise LocalProtocolError("MLS: these proposals need a commit with a path")
    commit_secret: bytes | None = None
    path_secrets: dict[int, bytes] = {}
    path = None
    if with_path:
        leaf = applied.tree.leaf(me)
        assert leaf is not None
        created = create_update_path(
            applied.tree, me, leaf, signature_priv, base.context.group_id,
            lambda tree_hash: provisional_context(base.context, applied, tree_hash).to_bytes(),
            rng, exclude=[i for i, _ in applied.added],
        )  # fmt: skip
        commit_secret, path_secrets, path, private = created.commit_secret, created.path_secrets, created.update_path, created.private
    else:
        private = prune_private(cs, base.private, applied.tree)
    items: list[ProposalOrRef] = [ProposalRef(p.ref) if p.ref is not None else p.proposal for p in proposals]
    commit = Commit(tuple(items), path)
    content = FramedContent(
        base.context.group_id, base.epoch, Sender.member(me), options.authenticated_data, ContentType.COMMIT, commit.to_bytes()
    )
    # The confirmed transcript hash covers the signature, not the tag: sign, hash, then add the tag.
    unsigned_tag = sign_content(cs, signature_priv, options.wire_format, content, base.context, confirmation_tag=b"")
    confirmed = confirmed_transcript_hash(cs, base.interim_transcript_hash, unsigned_tag)
    state, secrets = next_state(cs, base.context, base.secrets.init_secret, applied, confirmed, commit_secret, psk_lookup, private)
    context, tag = state.context, state.confirmation_tag
    auth = replace(unsigned_tag, auth=FramedContentAuthData(unsigned_tag.auth.signature, tag))
    welcome = None
    if applied.added:
        welcome = make_welcome(
            cs, context=context, tree=applied.tree, secrets=secrets, confirmation_tag=tag, signer=me,
            signature_priv=signature_priv, added=applied.added, path_secrets=path_secrets, psks=applied.psks,
            with_ratchet_tree=options.ratchet_tree_in_welcome, rng=rng,
        )  # fmt: skip
    staged = StagedCommit(
        base, me, state, tuple(applied.added), tuple(applied.removed), tuple(applied.updated), tuple(applied.psks), applied.reinit
    )
    return CreatedCommit(staged, auth, welcome)


def _resolve(commit: Commit, committer: int, pending: dict[bytes, QueuedProposal]) -> list[ProposalInfo]:
    infos = []
    seen: set[bytes] = set()
    for item in commit.proposals:
        if isinstance(item, ProposalRef):
            if item.ref in seen:
                raise ValidationError("a commit that names one proposal twice")
            seen.add(item.ref)
            queued = pending.get(item.ref)
            if queued is None:
                raise ValidationError(f"a commit names proposal {item.ref.hex()[:16]}, which this member has not received")
            infos.append(ProposalInfo(queued.proposal, queued.sender, item.ref))
        else:
            infos.append(ProposalInfo(item, Sender.member(committer)))
    return infos


@dataclass(frozen=True, slots=True)
class ReceivedCommit:
    """A member's commit checked as far as the epoch's public state allows (§12.4.2): its
    proposals resolved, valid together and applied to a copy of the tree, the path there when
    they require one. ``merge_committer_path`` then puts the path into ``applied.tree``."""

    committer: int
    commit: Commit
    #: the proposals in commit order, those by reference resolved from the pending ones
    proposals: tuple[ProposalInfo, ...]
    applied: AppliedProposals


def check_received_commit(
    cs: CipherSuite,
    tree: RatchetTree,
    context: GroupContext,
    auth: AuthenticatedContent,
    pending: dict[bytes, QueuedProposal],
    psk_lookup: PSKLookup,
    *,
    now: int | None = None,
) -> ReceivedCommit:
    """The first half of processing a member's commit (framing already checked against
    ``context``), shared by members (``stage_received_commit``) and the delivery service's
    public view (``PublicGroup``): ValidationError for a rule broken."""
    sender = auth.content.sender
    assert sender.sender_type is SenderType.MEMBER  # framing lets only members and new members commit
    committer = sender.index
    commit = auth.content.commit()
    proposals = _resolve(commit, committer, pending)
    check_proposal_list(cs, tree, context, proposals, committer, psk_lookup, now=now)
    applied = apply_proposals(tree, context.extensions, proposals)
    if path_required(proposals) and commit.path is None:
        raise ValidationError("a commit without the UpdatePath its proposals require")
    return ReceivedCommit(committer, commit, tuple(proposals), applied)


def merge_committer_path(
    cs: CipherSuite, tree: RatchetTree, context: GroupContext, received: ReceivedCommit, *, now: int | None = None
) -> None:
    """Put the commit's UpdatePath (if any) into ``received.applied.tree``: the committer's new
    leaf valid (§7.3) with a new encryption key, the path's node keys of the suite, its parent
    hash matching, no key of it anywhere else in the tree (``merge_update_path``). ``tree`` and
    ``context`` are the epoch's, before the commit."""
    path, committer, applied = received.commit.path, received.committer, received.applied
    if path is None:
        return
    old_leaf = tree.leaf(committer)
    assert old_leaf is not None
    # the committer neither updates nor removes itself (check_proposal_list): its old leaf is in applied.tree
    check_leaf_node(
        cs, path.leaf_node, source=LeafNodeSource.COMMIT, group_id=context.group_id, leaf_index=committer,
        others=applied.tree.leaf_summary(), replacing=old_leaf, required=required_capabilities(applied.extensions), now=now,
    )  # fmt: skip
    if path.leaf_node.encryption_key == old_leaf.encryption_key:
        raise ValidationError("a commit's path keeps the committer's leaf encryption key")
    merge_update_path(applied.tree, committer, path)


def stage_received_commit(
    cs: CipherSuite,
    base: EpochState,
    auth: AuthenticatedContent,
    pending: dict[bytes, QueuedProposal],
    own_updates: dict[bytes, bytes],
    psk_lookup: PSKLookup,
    *,
    now: int | None = None,
) -> StagedCommit:
    """The StagedCommit of a commit another member sent (its framing already unprotected and
    checked against ``base``): ValidationError, VerifyError or DecryptError for anything wrong."""
    received = check_received_commit(cs, base.tree, base.context, auth, pending, psk_lookup, now=now)
    committer, commit, applied = received.committer, received.commit, received.applied
    me = base.private.leaf_index
    removes_us = me in applied.removed
    own_update = None
    private = base.private
    if me in applied.updated:
        own_update = own_updates.get(applied.updated[me])
        if own_update is None:
            raise ValidationError("a commit applies an Update of our leaf we did not propose")
        private = TreeKEMPrivate(me, {**private.keys, 2 * me: own_update})
    if not removes_us:
        private = prune_private(cs, private, applied.tree)
    commit_secret = None
    merge_committer_path(cs, base.tree, base.context, received, now=now)
    if commit.path is not None and not removes_us:
        context = provisional_context(base.context, applied, applied.tree.root_tree_hash()).to_bytes()
        received_path = decrypt_update_path(applied.tree, committer, commit.path, private, context, exclude=[i for i, _ in applied.added])
        commit_secret, private = received_path.commit_secret, received_path.private
    confirmed = confirmed_transcript_hash(cs, base.interim_transcript_hash, auth)
    tag = auth.auth.confirmation_tag
    assert tag is not None  # framing reads a tag for every commit
    state = None
    if not removes_us:
        state, _ = next_state(cs, base.context, base.secrets.init_secret, applied, confirmed, commit_secret, psk_lookup, private)
        verify_confirmation_tag(cs, state.secrets.confirmation_key, confirmed, tag)
    return StagedCommit(
        base, committer, state, tuple(applied.added), tuple(applied.removed), tuple(applied.updated), tuple(applied.psks),
        applied.reinit, own_update,
    )  # fmt: skip
