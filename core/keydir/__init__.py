"""Key transparency (ARCHITECTURE §7): the RFC 9162 Merkle log of a node's key directory,
its entries, signed tree heads, witness cosignatures and lookup proofs. Pure: no I/O, no clock.
"""

from .entry import DirectoryEntry, decode_entry, encode_entry
from .head import (
    COSIGNATURE_LABEL,
    TREE_HEAD_LABEL,
    Cosignature,
    TreeHead,
    cosign,
    decode_cosignature,
    decode_head,
    sign_head,
    verify_cosignature,
    verify_head,
)
from .merkle import (
    EMPTY_ROOT,
    CompactRange,
    HASH_LEN,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from .proof import ProvenEntry, verify_directory_proof, witnesses

__all__ = [
    "HASH_LEN",
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "MerkleTree",
    "CompactRange",
    "verify_inclusion",
    "verify_consistency",
    "DirectoryEntry",
    "encode_entry",
    "decode_entry",
    "TREE_HEAD_LABEL",
    "COSIGNATURE_LABEL",
    "TreeHead",
    "sign_head",
    "verify_head",
    "decode_head",
    "Cosignature",
    "cosign",
    "verify_cosignature",
    "decode_cosignature",
    "ProvenEntry",
    "verify_directory_proof",
    "witnesses",
]
