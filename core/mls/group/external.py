"""External commits (RFC 9420 §12.4.3.2) and external initialisation (§8.3).

A non-member that has a GroupInfo with the external_pub extension joins without a Welcome: it
encapsulates to external_pub (HPKE SetupBaseS, info "") and exports the init_secret of the new
epoch from that context (``Export("MLS 1.0 external init secret", KDF.Nh)``), sends the
kem_output in an ExternalInit proposal, and commits with a path from the leaf it adds for itself
(the leftmost blank one, as an Add would), as a PublicMessage of sender ``new_member_commit``
signed with that leaf's key. Members decapsulate kem_output with the private key derived from
their external_secret; a wrong kem_output gives another init_secret, which the confirmation tag
then refuses.

What such a commit may carry (§12.4.3.2): exactly one ExternalInit, at most one Remove (the
joiner's own old leaf: a resync), any PreSharedKey proposals, all by value, and a path. A Remove
must name a leaf whose credential is the joiner's, so only a member's own rejoin can remove
someone (which identities match is the application's to widen; equal credentials is the
default here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ...errors import DecryptError, LocalProtocolError
from ..extensions import ExtensionType, ExternalPub, find_extension
from ..framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    Sender,
    WireFormat,
    confirmed_transcript_hash,
    interim_transcript_hash,
    sign_content,
    verify_confirmation_tag,
)
from ..key_package import LeafNode, LeafNodeSource, ValidationError, check_leaf_node
from ..key_schedule import external_key_pair
from ..messages import Commit, ExternalInit, GroupInfo, PreSharedKey, Proposal, ProposalRef, ProposalType, Remove
from ..psk import PreSharedKeyID
from ..tree import RatchetTree, create_update_path, decrypt_update_path, merge_update_path
from .commit import next_state, provisional_context
from .proposals import (
    AppliedProposals,
    ProposalInfo,
    PSKLookup,
    apply_proposals,
    check_proposal_list,
    leaf_supports_extensions,
    required_capabilities,
)
from .state import EpochState, StagedCommit, prune_private

if TYPE_CHECKING:
    from ...crypto.modes import Rng
    from ..crypto import CipherSuite

__all__ = [
    "EXTERNAL_INIT_LABEL",
    "check_external_proposals",
    "create_external_commit",
    "external_init",
    "external_init_secret",
    "stage_external_commit",
]

#: the HPKE exporter context of the external init secret (§8.3)
EXTERNAL_INIT_LABEL = b"MLS 1.0 external init secret"

_ALLOWED = frozenset({ProposalType.EXTERNAL_INIT, ProposalType.REMOVE, ProposalType.PSK})


def external_init(cs: CipherSuite, external_pub: bytes, rng: Rng) -> tuple[bytes, bytes]:
    """The joiner's side of §8.3: (kem_output, init_secret) for the group's ``external_pub``."""
    kem_output, context = cs.hpke.setup_sender(external_pub, b"", rng=rng)
    return kem_output, context.export(EXTERNAL_INIT_LABEL, cs.nh)


def external_init_secret(cs: CipherSuite, external_secret: bytes, kem_output: bytes) -> bytes:
    """The members' side of §8.3: the init_secret an ExternalInit's ``kem_output`` carries
    (DecryptError when it is not a valid encapsulation)."""
    priv, _ = external_key_pair(cs, external_secret)
    try:
        context = cs.hpke.setup_receiver(kem_output, priv, b"")
    except DecryptError:
        raise DecryptError("MLS: the ExternalInit's kem_output does not decapsulate with the group's external key") from None
    return context.export(EXTERNAL_INIT_LABEL, cs.nh)


def _type_name(proposal: Proposal) -> str:
    t = proposal.proposal_type
    return ProposalType(t).name.lower() if t in ProposalType._value2member_map_ else f"type {t}"


def check_external_proposals(commit: Commit) -> tuple[list[ProposalInfo], ExternalInit]:
    """The structural rules of §12.4.3.2 for an external commit: its proposals (all by value, of
    the allowed types, exactly one ExternalInit, at most one Remove) and its path."""
    if commit.path is None:
        raise ValidationError("an external commit without a path")
    infos: list[ProposalInfo] = []
    for item in commit.proposals:
        if isinstance(item, ProposalRef):
            raise ValidationError("an external commit names a proposal by reference (it may carry proposals by value only)")
        if item.proposal_type not in _ALLOWED:
            raise ValidationError(
                f"an external commit with a {_type_name(item)} proposal (only external_init, remove and psk are allowed)"
            )
        infos.append(ProposalInfo(item, Sender.new_member_commit()))
    inits = [info.proposal for info in infos if isinstance(info.proposal, ExternalInit)]
    if len(inits) != 1:
        raise ValidationError(f"an external commit with {len(inits)} ExternalInit proposals, not exactly one")
    if sum(isinstance(info.proposal, Remove) for info in infos) > 1:
        raise ValidationError("an external commit with more than one Remove proposal")
    return infos, inits[0]


def _check_resync(tree: RatchetTree, removed: Sequence[int], joiner: LeafNode) -> None:
    for index in removed:
        old = tree.leaf(index)
        assert old is not None  # check_proposal_list refused a Remove of a blank leaf
        if old.credential != joiner.credential:
            raise ValidationError(f"an external commit removes leaf {index}, whose credential is not the joiner's")


def _check_joiner_leaf(cs: CipherSuite, group_id: bytes, applied: AppliedProposals, joiner: int, leaf: LeafNode, now: int | None) -> None:
    check_leaf_node(
        cs, leaf, source=LeafNodeSource.COMMIT, group_id=group_id, leaf_index=joiner, others=applied.tree.leaf_summary(),
        replacing=applied.tree.leaf(joiner), required=required_capabilities(applied.extensions), now=now,
    )  # fmt: skip
    if not leaf_supports_extensions(leaf, applied.extensions):
        raise ValidationError("the joiner does not support the group's extensions")


def create_external_commit(
    cs: CipherSuite,
    info: GroupInfo,
    tree: RatchetTree,
    leaf: LeafNode,
    signature_priv: bytes,
    *,
    resync: int | None,
    psks: Sequence[PreSharedKeyID],
    psk_lookup: PSKLookup,
    authenticated_data: bytes,
    rng: Rng,
    now: int | None,
) -> tuple[EpochState, AuthenticatedContent]:
    """The joiner's external commit on the epoch of ``info`` (checked, with its ``tree``): the
    epoch it starts, with our leaf, and the signed content to send as a PublicMessage.
    ``resync`` removes our old leaf. What we could not send is a LocalProtocolError."""
    context = info.group_context
    found = find_extension(info.extensions, ExtensionType.EXTERNAL_PUB)
    if found is None:
        raise LocalProtocolError("MLS: the GroupInfo has no external_pub: the group takes no external commits")
    kem_output, init_secret = external_init(cs, ExternalPub.from_bytes(found.extension_data).external_pub, rng)
    proposals: list[Proposal] = [ExternalInit(kem_output)]
    if resync is not None:
        proposals.append(Remove(resync))
    proposals.extend(PreSharedKey(psk) for psk in psks)
    infos = [ProposalInfo(p, Sender.new_member_commit()) for p in proposals]
    try:
        check_proposal_list(cs, tree, context, infos, -1, psk_lookup, now=now, external=True)
        _check_resync(tree, [resync] if resync is not None else [], leaf)
        applied = apply_proposals(tree, context.extensions, infos)
        me = applied.tree.add_leaf(leaf)
        created = create_update_path(
            applied.tree, me, leaf, signature_priv, context.group_id,
            lambda tree_hash: provisional_context(context, applied, tree_hash).to_bytes(), rng,
        )  # fmt: skip
        _check_joiner_leaf(cs, context.group_id, applied, me, created.update_path.leaf_node, now)
    except ValidationError as exc:
        raise LocalProtocolError(f"MLS: cannot join by external commit: {str(exc).removeprefix('MLS: ')}") from None
    commit = Commit(tuple(proposals), created.update_path)
    content = FramedContent(
        context.group_id, context.epoch, Sender.new_member_commit(), authenticated_data, ContentType.COMMIT, commit.to_bytes()
    )
    unsigned_tag = sign_content(cs, signature_priv, WireFormat.PUBLIC_MESSAGE, content, context, confirmation_tag=b"")
    interim = interim_transcript_hash(cs, context.confirmed_transcript_hash, info.confirmation_tag)
    confirmed = confirmed_transcript_hash(cs, interim, unsigned_tag)
    state, _ = next_state(cs, context, init_secret, applied, confirmed, created.commit_secret, psk_lookup, created.private)
    return state, replace(unsigned_tag, auth=FramedContentAuthData(unsigned_tag.auth.signature, state.confirmation_tag))


def stage_external_commit(
    cs: CipherSuite, base: EpochState, auth: AuthenticatedContent, psk_lookup: PSKLookup, *, now: int | None = None
) -> StagedCommit:
    """The StagedCommit of a received external commit (framing and signature, by the path's
    leaf key, already checked against ``base``): ValidationError, VerifyError or DecryptError."""
    commit = auth.content.commit()
    infos, init = check_external_proposals(commit)
    path = commit.path
    assert path is not None
    group_id = base.context.group_id
    check_proposal_list(cs, base.tree, base.context, infos, -1, psk_lookup, now=now, external=True)
    applied = apply_proposals(base.tree, base.context.extensions, infos)
    _check_resync(base.tree, applied.removed, path.leaf_node)
    joiner = applied.tree.add_leaf(path.leaf_node)
    _check_joiner_leaf(cs, group_id, applied, joiner, path.leaf_node, now)
    merge_update_path(applied.tree, joiner, path)
    me = base.private.leaf_index
    state = None
    if me not in applied.removed:
        private = prune_private(cs, base.private, applied.tree)
        context = provisional_context(base.context, applied, applied.tree.root_tree_hash()).to_bytes()
        received = decrypt_update_path(applied.tree, joiner, path, private, context)
        init_secret = external_init_secret(cs, base.secrets.external_secret, init.kem_output)
        confirmed = confirmed_transcript_hash(cs, base.interim_transcript_hash, auth)
        state, _ = next_state(cs, base.context, init_secret, applied, confirmed, received.commit_secret, psk_lookup, received.private)
        tag = auth.auth.confirmation_tag
        assert tag is not None  # framing reads a tag for every commit
        verify_confirmation_tag(cs, state.secrets.confirmation_key, confirmed, tag)
    return StagedCommit(
        base, joiner, state, removed=tuple(applied.removed), psks=tuple(applied.psks), external=True
    )
