"""The MLS message structures of RFC 9420 (encodings only; processing lives elsewhere):
proposals (§12.1) and ProposalOrRef, Commit (§12.4), UpdatePath (§7.6), Welcome, GroupSecrets
and EncryptedGroupSecrets (§12.4.3), GroupInfo (§12.4.3)."""

from .commit import Commit
from .group_info import GroupInfo
from .proposal import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    ProposalRef,
    ProposalType,
    ReInit,
    Remove,
    UnknownProposal,
    Update,
    read_proposal,
    read_proposal_or_ref,
    write_proposal_or_ref,
)
from .update_path import HPKECiphertext, UpdatePath, UpdatePathNode
from .welcome import (
    EncryptedGroupSecrets,
    GroupSecrets,
    PathSecret,
    Welcome,
    decrypt_group_info,
    decrypt_group_secrets,
    encrypt_group_info,
    encrypt_group_secrets,
)

__all__ = [
    "Add",
    "Commit",
    "EncryptedGroupSecrets",
    "ExternalInit",
    "GroupContextExtensions",
    "GroupInfo",
    "GroupSecrets",
    "HPKECiphertext",
    "PathSecret",
    "PreSharedKey",
    "Proposal",
    "ProposalOrRef",
    "ProposalRef",
    "ProposalType",
    "ReInit",
    "Remove",
    "UnknownProposal",
    "Update",
    "UpdatePath",
    "UpdatePathNode",
    "Welcome",
    "decrypt_group_info",
    "decrypt_group_secrets",
    "encrypt_group_info",
    "encrypt_group_secrets",
    "read_proposal",
    "read_proposal_or_ref",
    "write_proposal_or_ref",
]
