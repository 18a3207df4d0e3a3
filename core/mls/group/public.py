"""An MLS group as the delivery service sees it (RFC 9420 §4, §12.4.2): the public state of the
epoch, without any secret (no membership key, no epoch secrets, no private key).

``PublicGroup`` starts from a signed GroupInfo and the ratchet tree, checked as a joiner checks
them (signature by the signer's leaf, the whole tree, its hash). It then follows the group
through the PublicMessages its members send: a proposal is checked and kept as pending for the
epoch; a commit is checked as a member checks it, with the same code (``commit.py``:
``check_received_commit`` and ``merge_committer_path``; ``proposals.py``): the proposals by
value and by reference, valid together, the path present when required, the committer's new
leaf, the path's keys and parent hash, and one ciphertext for each recipient of each path node.
What needs the epoch's secrets cannot be checked here: the membership tag, what the path's
ciphertexts hold, the PSKs' values and the confirmation tag, whose bytes nevertheless go into
the next interim transcript hash (§8.2). So a member (only a member: it must sign) can have the
hub accept a commit that the other members then refuse, and the hub's epoch runs ahead of
theirs; the hub cannot tell, it can only order.

``process`` stages (``PublicCommit``); ``merge`` moves to the next epoch; nothing changes
before. Only members' PublicMessages are taken: a PrivateMessage cannot be read without the
secrets, and external senders and external commits are not part of Sonet's groups.

``to_bytes``/``from_bytes`` keep the whole view (context, tree, interim transcript hash,
pending proposals) in a versioned, strictly decoded format.

Beyond the agreed API: ``from_group_info`` takes ``ratchet_tree=None`` for a GroupInfo that
carries the tree, ``process`` takes ``now`` (KeyPackage and leaf lifetimes, core has no clock),
and ``PublicCommit`` carries the staged epochs (``base``, ``staged``) that ``merge`` needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import LocalProtocolError
from ..codec import DecodeError, Reader, Writer, decode_all
from ..crypto import cipher_suite
from ..extensions import Extension
from ..framing import (
    ContentType,
    MLSMessage,
    PublicMessage,
    Sender,
    SenderType,
    confirmed_transcript_hash,
    interim_transcript_hash,
    observe_public,
)
from ..key_package import LeafNode, ValidationError
from ..key_schedule import GroupContext
from ..messages import GroupInfo, Proposal, ReInit, read_proposal
from ..psk import PreSharedKeyID
from ..tree import RatchetTree, check_path_ciphertext_counts
from .commit import check_received_commit, merge_committer_path, next_context
from .group import MAX_PENDING_PROPOSALS
from .proposals import ProposalInfo, check_proposal_list
from .state import QueuedProposal
from .welcome import verify_group_info

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["PublicCommit", "PublicEpoch", "PublicGroup", "PublicProposal", "PUBLIC_GROUP_FORMAT"]

#: the version of ``PublicGroup.to_bytes``; another one is refused
PUBLIC_GROUP_FORMAT = 1


@dataclass(frozen=True, eq=False)
class PublicEpoch:
    """The public state of one epoch; replaced whole by each commit."""

    context: GroupContext
    tree: RatchetTree
    interim_transcript_hash: bytes


@dataclass(frozen=True, slots=True)
class PublicProposal:
    ref: bytes
    proposal: Proposal
    sender: int  # the proposer's leaf index


@dataclass(frozen=True)
class PublicCommit:
    """A checked commit not yet merged: ``PublicGroup.merge`` moves to ``staged``."""

    sender: int  # the committer's leaf index
    epoch: int  # the epoch it starts
    #: every proposal it applies (by value and by reference), with the proposer's leaf index
    proposals: tuple[tuple[Proposal, int], ...]
    #: the leaves it adds, with their indices
    added: tuple[tuple[int, LeafNode], ...]
    #: the leaves it removes, as they were
    removed: tuple[tuple[int, LeafNode], ...]
    #: the new group context extensions, when they change
    extensions: tuple[Extension, ...] | None
    base: PublicEpoch = field(repr=False, compare=False, kw_only=True)
    staged: PublicEpoch = field(repr=False, compare=False, kw_only=True)


def _any_psk(_: PreSharedKeyID) -> bytes:
    """The hub cannot know whether a member holds a PSK: each member checks that itself."""
    return b""


class PublicGroup:
    __slots__ = ("cs", "_state", "_pending", "_reinit")

    def __init__(self, cs: CipherSuite, state: PublicEpoch, *, reinit: bool = False) -> None:
        self.cs = cs
        self._state = state
        self._pending: dict[bytes, QueuedProposal] = {}
        #: a ReInit was committed: the group takes no more messages (§11.2)
        self._reinit = reinit

    @classmethod
    def from_group_info(
        cls, group_info: GroupInfo | MLSMessage | bytes, ratchet_tree: RatchetTree | bytes | None = None
    ) -> PublicGroup:
        """The view of the epoch a signed GroupInfo describes, once its signature by the signer's
        leaf, the whole tree (leaves, parent hashes, unmerged leaves) and the tree hash check out.
        ``ratchet_tree`` None: the GroupInfo carries it (both at once is refused)."""
        if isinstance(group_info, bytes):
            group_info = MLSMessage.from_bytes(group_info)
        if isinstance(group_info, MLSMessage):
            if not isinstance(group_info.body, GroupInfo):
                raise ValidationError(f"an MLSMessage of wire format {group_info.wire_format.name.lower()} where a GroupInfo was expected")
            group_info = group_info.body
        cs = cipher_suite(group_info.group_context.cipher_suite)
        if isinstance(ratchet_tree, bytes):
            ratchet_tree = RatchetTree.from_bytes(cs, ratchet_tree)
        tree = verify_group_info(cs, group_info, ratchet_tree)
        context = group_info.group_context
        interim = interim_transcript_hash(cs, context.confirmed_transcript_hash, group_info.confirmation_tag)
        return cls(cs, PublicEpoch(context, tree, interim))

    # ---- what the group is now ---------------------------------------------------------------

    @property
    def group_id(self) -> bytes:
        return self._state.context.group_id

    @property
    def epoch(self) -> int:
        return self._state.context.epoch

    @property
    def context(self) -> GroupContext:
        return self._state.context

    @property
    def tree(self) -> RatchetTree:
        """The ratchet tree (do not change it: ``copy()`` it to experiment)."""
        return self._state.tree

    @property
    def interim_transcript_hash(self) -> bytes:
        return self._state.interim_transcript_hash

    @property
    def reinitialised(self) -> bool:
        """A ReInit was merged: the group is over (its members continue in a new one)."""
        return self._reinit

    def members(self) -> list[tuple[int, LeafNode]]:
        return list(self._state.tree.leaves())

    def pending_proposals(self) -> list[PublicProposal]:
        return [PublicProposal(q.ref, q.proposal, q.sender.index) for q in self._pending.values()]

    # ---- receiving ---------------------------------------------------------------------------

    def process(self, message: MLSMessage | bytes, *, now: int | None = None) -> PublicProposal | PublicCommit:
        """A member's PublicMessage proposal or commit of this group and epoch, checked: a
        proposal is kept as pending, a commit is staged for ``merge``. ValidationError (or
        VerifyError for a signature, DecodeError for bytes that do not decode) otherwise."""
        if self._reinit:
            raise ValidationError("the group was reinitialised: it takes no more messages")
        if isinstance(message, bytes):
            message = MLSMessage.from_bytes(message)
        body = message.body
        if not isinstance(body, PublicMessage):
            raise ValidationError(f"a {message.wire_format.name.lower()} where the hub takes a member's PublicMessage only")
        sender = body.content.sender
        if sender.sender_type is not SenderType.MEMBER:
            raise ValidationError(f"a message from a {sender.sender_type.name.lower()} sender; the hub takes members' messages only")
        state = self._state
        auth = observe_public(self.cs, body, state.context, self._signature_key)
        content = auth.content
        if content.content_type is ContentType.PROPOSAL:
            proposal = content.proposal()
            check_proposal_list(self.cs, state.tree, state.context, [ProposalInfo(proposal, sender)], -1, _any_psk, now=now)
            if len(self._pending) >= MAX_PENDING_PROPOSALS:
                raise ValidationError(f"more than {MAX_PENDING_PROPOSALS} proposals in one epoch")
            ref = self.cs.make_proposal_ref(auth.to_bytes())
            self._pending[ref] = QueuedProposal(ref, proposal, sender)
            return PublicProposal(ref, proposal, sender.index)
        # framing lets a PublicMessage carry proposals and commits only
        received = check_received_commit(self.cs, state.tree, state.context, auth, self._pending, _any_psk, now=now)
        merge_committer_path(self.cs, state.tree, state.context, received, now=now)
        applied = received.applied
        if received.commit.path is not None:  # what the hub sees of the ciphertexts: one per recipient
            check_path_ciphertext_counts(applied.tree, received.committer, received.commit.path, exclude=[i for i, _ in applied.added])
        confirmed = confirmed_transcript_hash(self.cs, state.interim_transcript_hash, auth)
        tag = auth.auth.confirmation_tag
        assert tag is not None  # framing reads a tag for every commit
        context = next_context(self.cs, state.context, applied, confirmed)
        staged = PublicEpoch(context, applied.tree, interim_transcript_hash(self.cs, confirmed, tag))
        removed = []
        for index in applied.removed:
            leaf = state.tree.leaf(index)
            assert leaf is not None  # check_proposal_list refuses a Remove of a non-member
            removed.append((index, leaf))
        return PublicCommit(
            sender=received.committer,
            epoch=staged.context.epoch,
            proposals=tuple((p.proposal, p.sender.index) for p in received.proposals),
            added=tuple((index, kp.leaf_node) for index, kp in applied.added),
            removed=tuple(removed),
            extensions=applied.extensions if applied.extensions != state.context.extensions else None,
            base=state,
            staged=staged,
        )

    def merge(self, commit: PublicCommit) -> None:
        """Move to the epoch ``commit`` starts; only on the epoch ``process`` staged it on."""
        if commit.base is not self._state:
            raise LocalProtocolError(f"MLS: a commit staged on another epoch than this group's current epoch {self.epoch}")
        self._state = commit.staged
        self._pending.clear()
        self._reinit = any(isinstance(p, ReInit) for p, _ in commit.proposals)

    def _signature_key(self, sender: Sender) -> bytes:
        leaf = self._state.tree.leaf(sender.index)
        if leaf is None:
            raise ValidationError(f"a message from leaf {sender.index}, which is not a member")
        return leaf.signature_key

    # ---- persistence -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole view: format version, context, tree, interim transcript hash, the ReInit
        flag and the pending proposals (ref, proposer leaf, proposal), in the MLS codec."""
        state = self._state
        w = Writer()
        w.u8(PUBLIC_GROUP_FORMAT)
        state.context.write(w)
        w.opaque(state.tree.to_bytes())
        w.opaque(state.interim_transcript_hash)
        w.u8(int(self._reinit))
        w.vector(self._pending.values(), _write_pending)
        return w.bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicGroup:
        """The view ``to_bytes`` wrote. DecodeError for another format version, truncated or
        trailing bytes, a tree whose hash is not the context's, or pending proposals that do
        not fit the group (wrong ref size, a proposer that is not a member, a ref twice, too
        many)."""
        return decode_all(data, _read_public_group)

    def __repr__(self) -> str:
        return f"PublicGroup(suite {self.cs.id}, epoch {self.epoch}, {self._state.tree!r})"


def _write_pending(w: Writer, queued: QueuedProposal) -> None:
    w.opaque(queued.ref)
    w.u32(queued.sender.index)
    queued.proposal.write(w)


def _read_public_group(r: Reader) -> PublicGroup:
    version = r.u8()
    if version != PUBLIC_GROUP_FORMAT:
        raise DecodeError(f"public group state of format {version}, this code reads format {PUBLIC_GROUP_FORMAT}")
    context = GroupContext.read(r)
    cs = cipher_suite(context.cipher_suite)
    tree = RatchetTree.from_bytes(cs, r.opaque())
    if tree.root_tree_hash() != context.tree_hash:
        raise DecodeError("public group state whose tree does not match its context's tree hash")
    interim = r.opaque()
    if len(interim) != cs.nh:
        raise DecodeError(f"public group state with an interim transcript hash of {len(interim)} bytes")
    flag = r.u8()
    if flag not in (0, 1):
        raise DecodeError(f"public group state with a ReInit flag of {flag}")
    group = PublicGroup(cs, PublicEpoch(context, tree, interim), reinit=bool(flag))
    for ref, sender, proposal in r.vector(lambda item: (item.opaque(), item.u32(), read_proposal(item))):
        if len(ref) != cs.nh or ref in group._pending:
            raise DecodeError("public group state with a malformed or repeated proposal reference")
        if tree.leaf(sender) is None:
            raise DecodeError(f"public group state with a pending proposal from leaf {sender}, which is not a member")
        if len(group._pending) >= MAX_PENDING_PROPOSALS:
            raise DecodeError(f"public group state with more than {MAX_PENDING_PROPOSALS} pending proposals")
        group._pending[ref] = QueuedProposal(ref, proposal, Sender.member(sender))
    return group
