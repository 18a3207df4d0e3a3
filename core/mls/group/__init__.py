"""The MLS group state machine of RFC 9420 §11-§12, §14: creating a group, proposals, staged
commits (made or received) and their merge, Welcome and joining, external commits and the
GroupInfo they start from, the group a ReInit or a branch leads to, application messages; and
the delivery service's view of a group, without its secrets (``PublicGroup``)."""

from .group import MAX_PENDING_PROPOSALS, PADDING_BLOCK, RESUMPTION_PSK_EPOCHS, Group
from .public import PublicCommit, PublicEpoch, PublicGroup, PublicProposal
from .proposals import ProposalInfo, apply_proposals, check_proposal_list, path_required
from .state import ApplicationMessage, EpochState, QueuedProposal, StagedCommit

__all__ = [
    "ApplicationMessage",
    "EpochState",
    "Group",
    "MAX_PENDING_PROPOSALS",
    "PADDING_BLOCK",
    "ProposalInfo",
    "PublicCommit",
    "PublicEpoch",
    "PublicGroup",
    "PublicProposal",
    "QueuedProposal",
    "RESUMPTION_PSK_EPOCHS",
    "StagedCommit",
    "apply_proposals",
    "check_proposal_list",
    "path_required",
]
