"""What a member holds in one epoch (RFC 9420 §8, §9, §11), and what processing gives back.

An ``EpochState`` is replaced whole at each commit, never changed in place: a commit is staged as
the next ``EpochState`` and the group switches to it on merge, so a refused or discarded commit
leaves nothing behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..framing import Sender
from ..key_package import KeyPackage
from ..key_schedule import GroupContext, RetainedEpochSecrets
from ..messages import Proposal, ReInit
from ..psk import PreSharedKeyID
from ..secret_tree import SecretTree
from ..tree import RatchetTree, TreeKEMPrivate

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["EpochState", "StagedCommit", "QueuedProposal", "ApplicationMessage", "prune_private"]


@dataclass(frozen=True, eq=False, repr=False)
class EpochState:
    context: GroupContext
    tree: RatchetTree
    #: what the epoch needs of its secrets: not the encryption, joiner and welcome secrets,
    #: which are used up once the secret tree and any Welcome are made (§9.2)
    secrets: RetainedEpochSecrets
    #: the senders' ratchets of the epoch (they move as messages are sent and received)
    secret_tree: SecretTree
    interim_transcript_hash: bytes
    #: our leaf's HPKE private key and those of the parent nodes whose path secret we know
    private: TreeKEMPrivate
    #: the epoch's confirmation tag (a GroupInfo of this epoch carries it)
    confirmation_tag: bytes

    @property
    def epoch(self) -> int:
        return self.context.epoch

    def __repr__(self) -> str:  # never show key material
        return f"EpochState(epoch={self.context.epoch}, {self.tree!r}, <secret>)"


@dataclass(frozen=True, eq=False, repr=False)
class StagedCommit:
    """A commit checked against the epoch it was made in, not yet applied: ``Group.merge``
    switches to ``state``; dropping it changes nothing."""

    #: the EpochState this commit was made on (merge refuses it on any other)
    base: EpochState
    committer: int
    #: the next epoch; None when the commit removes us (merging it ends our membership)
    state: EpochState | None
    added: tuple[tuple[int, KeyPackage], ...] = ()
    removed: tuple[int, ...] = ()
    updated: tuple[int, ...] = ()
    psks: tuple[PreSharedKeyID, ...] = ()
    reinit: ReInit | None = None
    #: our new leaf private key when the commit applied an Update we proposed
    own_update: bytes | None = field(default=None)
    #: an external commit: ``committer`` is the leaf it added for its sender (§12.4.3.2)
    external: bool = False

    @property
    def epoch(self) -> int:
        """The epoch the commit starts."""
        return self.base.epoch + 1

    @property
    def removes_us(self) -> bool:
        return self.state is None

    def __repr__(self) -> str:
        return f"StagedCommit(epoch {self.base.epoch} -> {self.epoch}, by leaf {self.committer})"


@dataclass(frozen=True, slots=True)
class QueuedProposal:
    """A proposal received (or sent) in this epoch, kept until a commit covers it by reference."""

    ref: bytes
    proposal: Proposal
    sender: Sender


@dataclass(frozen=True, slots=True)
class ApplicationMessage:
    sender: int  # leaf index
    data: bytes
    authenticated_data: bytes


def prune_private(cs: CipherSuite, private: TreeKEMPrivate, tree: RatchetTree) -> TreeKEMPrivate:
    """``private`` without the keys of nodes that ``tree`` blanked or gave another key."""
    keys = {}
    for index, priv in private.keys.items():
        node = tree.node(index) if index < tree.width else None
        if node is not None and cs.hpke_private_key(priv).public.raw == node.encryption_key:
            keys[index] = priv
    return TreeKEMPrivate(private.leaf_index, keys)
