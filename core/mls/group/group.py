"""An MLS group as one member sees it (RFC 9420 §11-§12, §14), sans-I/O.

``Group`` holds the current ``EpochState``, our leaf index and signature key, the proposals
received in this epoch (by ProposalRef), the private keys of Updates we proposed, the external
PSKs we were given and the resumption PSKs of the last ``RESUMPTION_PSK_EPOCHS`` epochs.

Everything that changes the epoch is staged: ``commit`` gives a ``StagedCommit`` with the
message to send, ``process`` gives one for a received commit, and only ``merge`` switches to it.
What ``process`` refuses (one ``Refusal``: mls_invalid, verify_failed, decrypt_failed,
mls_generation, mls_malformed) changes nothing but, for a PrivateMessage that decrypted and
verified, the use of its ratchet key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING

from ...errors import LocalProtocolError
from ..extensions import Extension, ExtensionType, ExternalSenders, find_extension
from ..framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    SenderType,
    SignatureKeyLookup,
    WireFormat,
    confirmation_tag,
    decrypt_sender_data,
    interim_transcript_hash,
    protect_private,
    protect_public,
    sign_content,
    unprotect_private,
    unprotect_public,
)
from ..framing.private_message import REUSE_GUARD_BYTES
from ..key_package import KeyPackage, LeafNode, LeafNodeSource, ValidationError, check_leaf_node
from ..key_schedule import GroupContext, derive_epoch_secrets, mls_exporter
from ..messages import Add, GroupInfo, PreSharedKey, Proposal, ReInit, Update, Welcome
from ..psk import PreSharedKeyID, PSKType, ResumptionPSKUsage
from ..secret_tree import GenerationError, SecretTree
from ..tree import RatchetTree, TreeKEMPrivate
from .commit import CommitOptions, create_commit, select_pending, stage_received_commit
from .external import create_external_commit, stage_external_commit
from .proposals import ProposalInfo, PSKLookup, check_proposal_list, required_capabilities
from .resumption import check_branch_members, check_reinit_group, reinit_suite, resumption_lookup
from .state import ApplicationMessage, EpochState, QueuedProposal, StagedCommit
from .welcome import JoinedState, join_welcome, make_group_info, verify_group_info

if TYPE_CHECKING:
    from ...crypto.modes import Rng
    from ..crypto import CipherSuite

__all__ = ["Group", "RESUMPTION_PSK_EPOCHS", "MAX_PENDING_PROPOSALS", "PADDING_BLOCK"]

#: resumption PSKs of this many past epochs are kept (for PreSharedKey proposals naming them)
RESUMPTION_PSK_EPOCHS = 8
#: proposals received in one epoch and kept for a commit to reference; more are refused
MAX_PENDING_PROPOSALS = 1024
#: application data is padded with zeros to a multiple of this many bytes (hides exact lengths)
PADDING_BLOCK = 32


class Group:
    __slots__ = ("cs", "_state", "_signature_priv", "_pending", "_own_updates", "_resumption", "external_psks", "_removed", "_reinit")

    def __init__(
        self,
        cs: CipherSuite,
        state: EpochState,
        signature_priv: bytes,
        *,
        external_psks: MutableMapping[bytes, bytes] | None = None,
    ) -> None:
        self.cs = cs
        self._state = state
        self._signature_priv = signature_priv
        self._pending: dict[bytes, QueuedProposal] = {}
        self._own_updates: dict[bytes, bytes] = {}  # ProposalRef -> the new leaf's HPKE private key
        self._resumption: OrderedDict[int, bytes] = OrderedDict()
        self._remember_resumption()
        #: psk_id -> psk of the external PSKs this member has (the application fills it)
        self.external_psks: MutableMapping[bytes, bytes] = external_psks if external_psks is not None else {}
        self._removed = False
        self._reinit: ReInit | None = None

    # ---- creating and joining ----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        cs: CipherSuite,
        group_id: bytes,
        leaf: LeafNode,
        *,
        signature_priv: bytes,
        encryption_priv: bytes,
        rng: Rng,
        extensions: Sequence[Extension] = (),
        external_psks: MutableMapping[bytes, bytes] | None = None,
    ) -> Group:
        """A new group of one member, ``leaf`` (a key_package leaf whose keys we hold), at epoch 0 (§11)."""
        check_leaf_node(cs, leaf, source=LeafNodeSource.KEY_PACKAGE, required=required_capabilities(tuple(extensions)))
        if cs.signature_public_key(signature_priv) != leaf.signature_key:
            raise LocalProtocolError("MLS: the signature private key is not the leaf's")
        tree = RatchetTree.with_one_leaf(cs, leaf)
        context = GroupContext(cs.id, group_id, 0, tree.root_tree_hash(), b"", tuple(extensions))
        secrets = derive_epoch_secrets(cs, rng(cs.nh), None, None, context)
        # §8.2: epoch 0's interim transcript hash comes from the confirmation tag of an empty
        # confirmed transcript hash
        tag = confirmation_tag(cs, secrets.confirmation_key, b"")
        private = TreeKEMPrivate.from_secrets(cs, 0, encryption_priv, {})
        private.check_against(tree)
        state = EpochState(
            context, tree, secrets.retained(), SecretTree(cs, secrets.encryption_secret, 1), interim_transcript_hash(cs, b"", tag), private, tag
        )
        return cls(cs, state, signature_priv, external_psks=external_psks)

    @classmethod
    def join(
        cls,
        cs: CipherSuite,
        welcome: Welcome | MLSMessage,
        key_package: KeyPackage,
        *,
        init_priv: bytes,
        encryption_priv: bytes,
        signature_priv: bytes,
        ratchet_tree: RatchetTree | bytes | None = None,
        external_psks: MutableMapping[bytes, bytes] | None = None,
    ) -> Group:
        """Join by Welcome (§12.4.3.1) with the KeyPackage it was made for and its private keys;
        ``ratchet_tree`` (a tree or its encoding) when the Welcome carries none. A Welcome into
        the group a ReInit or a branch leads to is joined through the old group
        (``join_reinit``, ``join_branch``)."""
        psks = external_psks if external_psks is not None else {}
        joined = _join(
            cs, welcome, key_package, init_priv, encryption_priv, signature_priv, ratchet_tree,
            ResumptionPSKUsage.APPLICATION, _external_lookup(psks),
        )  # fmt: skip
        return cls(cs, joined.state, signature_priv, external_psks=psks)

    @classmethod
    def join_external(
        cls,
        cs: CipherSuite,
        group_info: GroupInfo | MLSMessage | bytes,
        leaf: LeafNode,
        *,
        signature_priv: bytes,
        rng: Rng,
        ratchet_tree: RatchetTree | bytes | None = None,
        resync: int | None = None,
        psks: Sequence[PreSharedKeyID] = (),
        external_psks: MutableMapping[bytes, bytes] | None = None,
        authenticated_data: bytes = b"",
        now: int | None = None,
    ) -> tuple[Group, MLSMessage]:
        """Join by external commit (§12.4.3.2) from a GroupInfo with external_pub (see
        ``group_info``): ``leaf`` (e.g. our KeyPackage's) gives our credential, capabilities,
        signature key and extensions, the encryption key is made fresh; ``resync`` is the leaf
        index of our old leaf to remove (a rejoin), ``psks`` PSKs to inject. Returns the group at
        the new epoch and the commit (a PublicMessage) to send; if the group does not take it
        (another commit came first), drop the Group and try again with a newer GroupInfo."""
        if isinstance(group_info, bytes):
            group_info = MLSMessage.from_bytes(group_info)
        if isinstance(group_info, MLSMessage):
            if not isinstance(group_info.body, GroupInfo):
                raise ValidationError(f"an MLSMessage of wire format {group_info.wire_format.name.lower()} where a GroupInfo was expected")
            group_info = group_info.body
        if isinstance(ratchet_tree, bytes):
            ratchet_tree = RatchetTree.from_bytes(cs, ratchet_tree)
        if cs.signature_public_key(signature_priv) != leaf.signature_key:
            raise LocalProtocolError("MLS: the signature private key is not the leaf's")
        tree = verify_group_info(cs, group_info, ratchet_tree)
        known = external_psks if external_psks is not None else {}
        state, auth = create_external_commit(
            cs, group_info, tree, leaf, signature_priv, resync=resync, psks=psks, psk_lookup=_external_lookup(known),
            authenticated_data=authenticated_data, rng=rng, now=now,
        )  # fmt: skip
        message = MLSMessage(WireFormat.PUBLIC_MESSAGE, protect_public(cs, auth, group_info.group_context, None))
        return cls(cs, state, signature_priv, external_psks=known), message

    # ---- saving and loading (group/persist.py) -------------------------------------------------

    def to_bytes(self) -> bytes:
        """Everything this member holds of the group, every secret included (seal it), for
        ``from_bytes``; not the external PSKs, and no StagedCommit (commit again after a load)."""
        from .persist import encode_group  # persist reads Group: imported when used

        return encode_group(self)

    @classmethod
    def from_bytes(cls, data: bytes, *, external_psks: MutableMapping[bytes, bytes] | None = None) -> Group:
        """The group ``to_bytes`` saved (``DecodeError`` for anything else: truncated, trailing
        bytes, another format version, a state that contradicts itself)."""
        from .persist import decode_group

        return decode_group(data, external_psks=external_psks)

    # ---- what the group is now ---------------------------------------------------------------

    @property
    def group_id(self) -> bytes:
        return self._state.context.group_id

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def context(self) -> GroupContext:
        return self._state.context

    @property
    def tree(self) -> RatchetTree:
        """The ratchet tree (do not change it: ``copy()`` it to experiment)."""
        return self._state.tree

    @property
    def leaf_index(self) -> int:
        return self._state.private.leaf_index

    @property
    def epoch_authenticator(self) -> bytes:
        return self._state.secrets.epoch_authenticator

    @property
    def active(self) -> bool:
        """False once a commit that removed us, or a ReInit, was merged."""
        return not self._removed and self._reinit is None

    def members(self) -> list[tuple[int, LeafNode]]:
        return list(self._state.tree.leaves())

    def pending_proposals(self) -> list[QueuedProposal]:
        return list(self._pending.values())

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        """MLS-Exporter of the current epoch (§8.5)."""
        return mls_exporter(self.cs, self._state.secrets.exporter_secret, label, context, length)

    def ratchet_tree_bytes(self) -> bytes:
        return self._state.tree.to_bytes()

    def group_info(self, *, with_ratchet_tree: bool = True, external_pub: bool = True) -> GroupInfo:
        """The signed GroupInfo of the current epoch (§12.4.3) for joiners by external commit:
        with the external_pub extension (the public key of the epoch's external_secret, §8.3)
        and, unless they get it some other way, the ratchet tree. Send it as
        ``MLSMessage(WireFormat.GROUP_INFO, ...)``."""
        self._require_active()
        state = self._state
        return make_group_info(
            self.cs, context=state.context, tree=state.tree, confirmation_tag=state.confirmation_tag, signer=self.leaf_index,
            signature_priv=self._signature_priv, with_ratchet_tree=with_ratchet_tree,
            external_secret=state.secrets.external_secret if external_pub else None,
        )  # fmt: skip

    # ---- proposals ---------------------------------------------------------------------------

    def propose(
        self, proposal: Proposal, rng: Rng, *, wire_format: WireFormat = WireFormat.PUBLIC_MESSAGE, authenticated_data: bytes = b""
    ) -> MLSMessage:
        """A proposal of ours to send; it is kept as pending, so our next commit covers it."""
        self._require_active()
        if isinstance(proposal, Update):
            raise LocalProtocolError("MLS: use propose_update to propose an Update of our leaf")
        auth = self._sign(ContentType.PROPOSAL, proposal.to_bytes(), wire_format, authenticated_data)
        self._queue(auth, proposal)
        return self._protect(auth, rng)

    def propose_update(
        self, rng: Rng, *, leaf: LeafNode | None = None, wire_format: WireFormat = WireFormat.PUBLIC_MESSAGE
    ) -> MLSMessage:
        """An Update of our leaf with a fresh encryption key (``leaf`` gives other changes: its
        credential, capabilities, extensions); its private key waits for the commit."""
        self._require_active()
        current = self._state.tree.leaf(self.leaf_index)
        assert current is not None
        priv, pub = self.cs.hpke_key_pair(rng)
        template = leaf if leaf is not None else current
        new_leaf = template.with_changes(
            encryption_key=pub, leaf_node_source=LeafNodeSource.UPDATE, lifetime=None, parent_hash=b""
        ).signed(self.cs, self._signature_priv, self.group_id, self.leaf_index)
        proposal = Update(new_leaf)
        auth = self._sign(ContentType.PROPOSAL, proposal.to_bytes(), wire_format, b"")
        ref = self._queue(auth, proposal)
        self._own_updates[ref] = priv
        return self._protect(auth, rng)

    def _queue(self, auth: AuthenticatedContent, proposal: Proposal) -> bytes:
        if len(self._pending) >= MAX_PENDING_PROPOSALS:
            raise ValidationError(f"more than {MAX_PENDING_PROPOSALS} proposals in one epoch")
        ref = self.cs.make_proposal_ref(auth.to_bytes())
        self._pending[ref] = QueuedProposal(ref, proposal, auth.content.sender)
        return ref

    # ---- commits -----------------------------------------------------------------------------

    def commit(
        self,
        rng: Rng,
        *,
        proposals: Sequence[Proposal] = (),
        include_pending: bool = True,
        path: bool | None = None,
        wire_format: WireFormat = WireFormat.PUBLIC_MESSAGE,
        ratchet_tree_in_welcome: bool = True,
        authenticated_data: bytes = b"",
        now: int | None = None,
    ) -> tuple[StagedCommit, MLSMessage, Welcome | None]:
        """Commit the pending proposals (by reference, invalid ones left out) and ``proposals``
        (by value). Returns the StagedCommit to ``merge`` once the message is accepted, the
        commit message to send and the Welcome for added members. ``path`` None: an UpdatePath
        exactly when required (always when there is nothing to commit); ``now`` (seconds since the
        epoch) checks added KeyPackages' lifetimes."""
        self._require_active()
        me = self.leaf_index
        by_value = [ProposalInfo(p, Sender.member(me)) for p in proposals]
        chosen = select_pending(self.cs, self._state, list(self._pending.values()), by_value, me, self._psk, now) if include_pending else []
        options = CommitOptions(path, wire_format, ratchet_tree_in_welcome, authenticated_data)
        created = create_commit(self.cs, self._state, me, self._signature_priv, [*chosen, *by_value], self._psk, options, rng, now=now)
        return created.staged, self._protect(created.content, rng), created.welcome

    def merge(self, staged: StagedCommit) -> None:
        """Move to the epoch ``staged`` starts (ours or one ``process`` gave): only on the epoch
        it was made on."""
        if staged.base is not self._state:
            raise LocalProtocolError(f"MLS: {staged!r} was not made on this group's current epoch {self.epoch}")
        self._pending.clear()
        self._own_updates.clear()
        if staged.state is None:
            self._removed = True
            return
        self._state = staged.state
        self._reinit = staged.reinit
        self._remember_resumption()

    # ---- the group a ReInit or a branch leads to (§11.2, §11.3) -------------------------------

    def reinit(
        self,
        leaf: LeafNode,
        *,
        signature_priv: bytes,
        encryption_priv: bytes,
        key_packages: Sequence[KeyPackage],
        rng: Rng,
        ratchet_tree_in_welcome: bool = True,
    ) -> tuple[Group, Welcome | None]:
        """After a ReInit was merged: the new group it describes (group id, cipher suite,
        extensions), made by us with ``leaf`` (a key_package leaf of the new suite whose keys we
        hold) and the members of ``key_packages`` added in its first commit, with the resumption
        PSK of usage reinit of this group's last epoch. Returns the new group at epoch 1 and the
        Welcome for the others (they call ``join_reinit`` on their old group)."""
        reinit = self._ended_by_reinit()
        cs = reinit_suite(reinit)
        return self._resume(
            ResumptionPSKUsage.REINIT, cs, reinit.group_id, reinit.extensions, leaf, signature_priv, encryption_priv,
            key_packages, rng, ratchet_tree_in_welcome,
        )  # fmt: skip

    def join_reinit(
        self,
        welcome: Welcome | MLSMessage,
        key_package: KeyPackage,
        *,
        init_priv: bytes,
        encryption_priv: bytes,
        signature_priv: bytes,
        ratchet_tree: RatchetTree | bytes | None = None,
    ) -> Group:
        """Join the group our merged ReInit leads to: its Welcome must carry exactly one
        resumption PSK of usage reinit, of this group's last epoch, start epoch 1, and describe
        the group the ReInit named (group id, version, cipher suite, extensions)."""
        reinit = self._ended_by_reinit()
        cs = reinit_suite(reinit)
        joined = _join(
            cs, welcome, key_package, init_priv, encryption_priv, signature_priv, ratchet_tree,
            ResumptionPSKUsage.REINIT, self._resumption_lookup(ResumptionPSKUsage.REINIT),
        )  # fmt: skip
        check_reinit_group(joined.state.context, reinit)
        return Group(cs, joined.state, signature_priv, external_psks=self.external_psks)

    def branch(
        self,
        group_id: bytes,
        leaf: LeafNode,
        *,
        signature_priv: bytes,
        encryption_priv: bytes,
        key_packages: Sequence[KeyPackage],
        rng: Rng,
        extensions: Sequence[Extension] = (),
        ratchet_tree_in_welcome: bool = True,
    ) -> tuple[Group, Welcome | None]:
        """A subgroup of this group's members (§11.3): a new group ``group_id`` of the same
        suite, made by us with ``leaf`` and the members of ``key_packages`` (each a current
        member's credential) added in its first commit, with the resumption PSK of usage branch
        of the current epoch. Returns it at epoch 1 and the Welcome (the others call
        ``join_branch``)."""
        self._require_active()
        try:
            check_branch_members(enumerate([leaf, *(kp.leaf_node for kp in key_packages)]), self._members())
        except ValidationError:
            raise LocalProtocolError("MLS: a member of the branch is not a member of this group") from None
        return self._resume(
            ResumptionPSKUsage.BRANCH, self.cs, group_id, tuple(extensions), leaf, signature_priv, encryption_priv,
            key_packages, rng, ratchet_tree_in_welcome,
        )  # fmt: skip

    def join_branch(
        self,
        welcome: Welcome | MLSMessage,
        key_package: KeyPackage,
        *,
        init_priv: bytes,
        encryption_priv: bytes,
        signature_priv: bytes,
        ratchet_tree: RatchetTree | bytes | None = None,
    ) -> Group:
        """Join a subgroup branched from this group: its Welcome must carry exactly one
        resumption PSK of usage branch of one of this group's recent epochs, start epoch 1, be of
        this group's suite, and every member of it must be a member of this group (same
        credential)."""
        self._require_active()
        joined = _join(
            self.cs, welcome, key_package, init_priv, encryption_priv, signature_priv, ratchet_tree,
            ResumptionPSKUsage.BRANCH, self._resumption_lookup(ResumptionPSKUsage.BRANCH),
        )  # fmt: skip
        check_branch_members(joined.state.tree.leaves(), self._members())
        return Group(self.cs, joined.state, signature_priv, external_psks=self.external_psks)

    def _ended_by_reinit(self) -> ReInit:
        if self._removed:
            raise LocalProtocolError("MLS: this member was removed from the group")
        if not isinstance(self._reinit, ReInit):
            raise LocalProtocolError("MLS: the group was not reinitialised (merge the commit of a ReInit first)")
        return self._reinit

    def _resumption_lookup(self, usage: ResumptionPSKUsage) -> PSKLookup:
        return resumption_lookup(usage, self.group_id, self.epoch, self._resumption, self.external_psks)

    def _members(self) -> list[LeafNode]:
        return [leaf for _, leaf in self._state.tree.leaves()]

    def _resume(
        self,
        usage: ResumptionPSKUsage,
        cs: CipherSuite,
        group_id: bytes,
        extensions: tuple[Extension, ...],
        leaf: LeafNode,
        signature_priv: bytes,
        encryption_priv: bytes,
        key_packages: Sequence[KeyPackage],
        rng: Rng,
        ratchet_tree_in_welcome: bool,
    ) -> tuple[Group, Welcome | None]:
        """A new group whose first commit adds ``key_packages`` and injects this group's
        resumption PSK of ``usage`` (of the current epoch)."""
        psk_id = PreSharedKeyID.resumption(usage, self.group_id, self.epoch, rng(cs.nh))
        new = Group.create(
            cs, group_id, leaf, signature_priv=signature_priv, encryption_priv=encryption_priv, rng=rng, extensions=extensions,
            external_psks=self.external_psks,
        )  # fmt: skip
        resumption_psk = self._state.secrets.resumption_psk

        def lookup(wanted: PreSharedKeyID) -> bytes | None:
            return resumption_psk if wanted == psk_id else new._psk(wanted)

        proposals: list[Proposal] = [*(Add(kp) for kp in key_packages), PreSharedKey(psk_id)]
        options = CommitOptions(ratchet_tree_in_welcome=ratchet_tree_in_welcome, resumption_usage=usage)
        created = create_commit(
            cs, new._state, 0, signature_priv, [ProposalInfo(p, Sender.member(0)) for p in proposals], lookup, options, rng
        )
        new.merge(created.staged)
        return new, created.welcome

    # ---- receiving ---------------------------------------------------------------------------

    def process(self, message: MLSMessage | bytes, *, now: int | None = None) -> ApplicationMessage | QueuedProposal | StagedCommit:
        """A received PublicMessage or PrivateMessage of this group and epoch: application data,
        a proposal (kept for the commit that references it) or a StagedCommit to merge."""
        self._require_active()
        if isinstance(message, bytes):
            message = MLSMessage.from_bytes(message)
        state = self._state
        cs = self.cs
        body = message.body
        if isinstance(body, PublicMessage):
            auth = unprotect_public(cs, body, state.context, state.secrets.membership_key, self._signature_key(body))
            if auth.content.sender == Sender.member(self.leaf_index):
                raise _own_message(auth.content.content_type)
        elif isinstance(body, PrivateMessage):
            try:
                auth = unprotect_private(
                    cs, body, state.context, state.secret_tree, state.secrets.sender_data_secret, self._signature_key(body)
                )
            except GenerationError:
                # We used up our own generations sending it: our own message coming back is
                # told by its sender data, not left as "generation used already".
                if decrypt_sender_data(cs, body, state.secrets.sender_data_secret).leaf_index == self.leaf_index:
                    raise _own_message(body.content_type) from None
                raise
        else:
            raise ValidationError(f"a {message.wire_format.name.lower()} is not a message to process in a group")
        content = auth.content
        if content.content_type is ContentType.APPLICATION:
            return ApplicationMessage(content.sender.index, content.body, content.authenticated_data)
        if content.content_type is ContentType.PROPOSAL:
            proposal = content.proposal()
            info = ProposalInfo(proposal, content.sender)
            check_proposal_list(cs, state.tree, state.context, [info], -1, self._psk, now=now)
            ref = self._queue(auth, proposal)
            return self._pending[ref]
        if content.sender.sender_type is SenderType.NEW_MEMBER_COMMIT:
            return stage_external_commit(cs, state, auth, self._psk, now=now)
        return stage_received_commit(cs, state, auth, self._pending, self._own_updates, self._psk, now=now)

    # ---- application messages ----------------------------------------------------------------

    def encrypt(self, data: bytes, rng: Rng, *, authenticated_data: bytes = b"") -> MLSMessage:
        """Application data as a PrivateMessage of the current epoch, zero-padded to a multiple
        of ``PADDING_BLOCK`` bytes."""
        self._require_active()
        auth = self._sign(ContentType.APPLICATION, data, WireFormat.PRIVATE_MESSAGE, authenticated_data)
        return self._protect(auth, rng, padding=-len(data) % PADDING_BLOCK)

    # ---- helpers -----------------------------------------------------------------------------

    def _require_active(self) -> None:
        if self._removed:
            raise LocalProtocolError("MLS: this member was removed from the group")
        if self._reinit is not None:
            raise LocalProtocolError("MLS: the group was reinitialised; continue in the new group")

    def _sign(self, content_type: ContentType, body: bytes, wire_format: WireFormat, authenticated_data: bytes) -> AuthenticatedContent:
        state = self._state
        content = FramedContent(state.context.group_id, state.epoch, Sender.member(self.leaf_index), authenticated_data, content_type, body)
        return sign_content(self.cs, self._signature_priv, wire_format, content, state.context)

    def _protect(self, auth: AuthenticatedContent, rng: Rng, *, padding: int = 0) -> MLSMessage:
        state = self._state
        if auth.wire_format is WireFormat.PUBLIC_MESSAGE:
            return MLSMessage(WireFormat.PUBLIC_MESSAGE, protect_public(self.cs, auth, state.context, state.secrets.membership_key))
        sealed = protect_private(
            self.cs, auth, state.secret_tree, state.secrets.sender_data_secret, rng(REUSE_GUARD_BYTES), padding=padding
        )
        return MLSMessage(WireFormat.PRIVATE_MESSAGE, sealed)

    def _signature_key(self, body: PublicMessage | PrivateMessage) -> SignatureKeyLookup:
        """The signature key of a message's sender: a member's leaf, the group's external
        sender at that index, or the key of the KeyPackage a new member proposes to add."""

        def lookup(sender: Sender) -> bytes:
            if sender.is_member:
                leaf = self._state.tree.leaf(sender.index)
                if leaf is None:
                    raise ValidationError(f"a message from leaf {sender.index}, which is not a member")
                return leaf.signature_key
            if sender.sender_type is SenderType.EXTERNAL:
                found = find_extension(self._state.context.extensions, ExtensionType.EXTERNAL_SENDERS)
                senders = ExternalSenders.from_bytes(found.extension_data).senders if found is not None else ()
                if sender.index >= len(senders):
                    raise ValidationError(f"a message from external sender {sender.index}, which the group does not list")
                return senders[sender.index].signature_key
            if sender.sender_type is SenderType.NEW_MEMBER_PROPOSAL and isinstance(body, PublicMessage):
                proposal = body.content.proposal()  # framing allows this sender an Add only
                assert isinstance(proposal, Add)
                return proposal.key_package.leaf_node.signature_key
            if sender.sender_type is SenderType.NEW_MEMBER_COMMIT and isinstance(body, PublicMessage):
                path = body.content.commit().path  # framing allows this sender a commit only
                if path is None:
                    raise ValidationError("an external commit without a path (its leaf holds the joiner's signature key)")
                return path.leaf_node.signature_key
            raise ValidationError(f"messages from a {sender.sender_type.name.lower()} sender are not supported")

        return lookup

    def _psk(self, psk_id: PreSharedKeyID) -> bytes | None:
        if psk_id.psktype == PSKType.EXTERNAL:
            return self.external_psks.get(psk_id.psk_id)
        if psk_id.psk_group_id != self.group_id:
            return None
        return self._resumption.get(psk_id.psk_epoch)

    def _remember_resumption(self) -> None:
        self._resumption[self._state.epoch] = self._state.secrets.resumption_psk
        while len(self._resumption) > RESUMPTION_PSK_EPOCHS:
            self._resumption.popitem(last=False)

    def __repr__(self) -> str:
        return f"Group(suite {self.cs.id}, epoch {self.epoch}, leaf {self.leaf_index}, {self._state.tree!r})"


def _external_lookup(psks: MutableMapping[bytes, bytes]) -> PSKLookup:
    return lambda psk_id: psks.get(psk_id.psk_id) if psk_id.psktype == PSKType.EXTERNAL else None


def _join(
    cs: CipherSuite,
    welcome: Welcome | MLSMessage,
    key_package: KeyPackage,
    init_priv: bytes,
    encryption_priv: bytes,
    signature_priv: bytes,
    ratchet_tree: RatchetTree | bytes | None,
    usage: ResumptionPSKUsage,
    psk_lookup: PSKLookup,
) -> JoinedState:
    if isinstance(welcome, MLSMessage):
        if not isinstance(welcome.body, Welcome):
            raise ValidationError(f"an MLSMessage of wire format {welcome.wire_format.name.lower()} where a Welcome was expected")
        welcome = welcome.body
    if isinstance(ratchet_tree, bytes):
        ratchet_tree = RatchetTree.from_bytes(cs, ratchet_tree)
    joined = join_welcome(
        cs, welcome, key_package, init_priv=init_priv, encryption_priv=encryption_priv, psk_lookup=psk_lookup,
        ratchet_tree=ratchet_tree, usage=usage,
    )  # fmt: skip
    if cs.signature_public_key(signature_priv) != key_package.leaf_node.signature_key:
        raise LocalProtocolError("MLS: the signature private key is not the KeyPackage's")
    return joined


def _own_message(content_type: ContentType) -> LocalProtocolError:
    """Our own message back from the delivery service (its keys are used up on our side)."""
    if content_type is ContentType.COMMIT:
        return LocalProtocolError("MLS: our own commit comes back: merge its StagedCommit (the one commit() returned) instead of processing it")
    if content_type is ContentType.PROPOSAL:
        return LocalProtocolError("MLS: our own proposal comes back: it is pending already")
    return LocalProtocolError("MLS: our own application message comes back")
