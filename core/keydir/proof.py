"""Checking what a node's directory says about an account, and who witnessed it.

A lookup answer carries a :class:`~core.client_api.DirectoryProof`: the account's leaf, its
index, the RFC 9162 inclusion path and the node's signed head with cosignatures.
:func:`verify_directory_proof` is the one way to turn it into a trusted :class:`ProvenEntry`;
:func:`witnesses` counts the peers that vouched for the head. Consistency with heads accepted
earlier is the caller's business (it alone knows them): core/keydir/merkle.py
``verify_consistency``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..address import parse_address, validate_node_name
from ..client_api import DirectoryProof
from ..crypto import VerifyKey
from ..errors import LocalProtocolError, RemoteProtocolError, VerifyError
from .entry import DirectoryEntry, decode_entry
from .head import TreeHead, decode_cosignature, verify_cosignature, verify_head
from .merkle import leaf_hash, verify_inclusion

__all__ = ["ProvenEntry", "verify_directory_proof", "witnesses"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ProvenEntry:
    """``entry`` is leaf ``index`` of the tree that ``head`` (verified) signs."""

    entry: DirectoryEntry
    index: int
    head: TreeHead


def verify_directory_proof(proof: DirectoryProof, *, node: str, node_key: VerifyKey, account: str) -> ProvenEntry:
    """Check that ``proof`` shows a leaf of ``account`` included in a head that ``node`` signed
    with ``node_key``. Cosignatures are not looked at here (see :func:`witnesses`)."""
    address = parse_address(account)
    if address.node != validate_node_name(node):
        raise LocalProtocolError(f"{address} is not in the directory of {node}")
    head = verify_head(proof.head.head, node_key=node_key, node=node)
    if type(proof.leaf) is not bytes:
        raise VerifyError("directory leaf must be bytes", code="bad_inclusion_proof")
    verify_inclusion(leaf_hash=leaf_hash(proof.leaf), index=proof.index, size=head.size, proof=proof.path, root=head.root)
    entry = decode_entry(proof.leaf)
    if entry.account != str(address):
        raise VerifyError(f"directory answered with an entry of {entry.account}, not {address}", code="wrong_account")
    if entry.prev >= proof.index:
        raise VerifyError("directory entry names a later leaf as its previous one", code="directory_malformed")
    return ProvenEntry(entry=entry, index=proof.index, head=head)


def witnesses(cosignatures: Iterable[bytes], *, head: TreeHead, keys: Mapping[str, VerifyKey]) -> list[str]:
    """Names of the distinct witnesses (never ``head.node`` itself) whose cosignature of
    ``head`` verifies with their key in ``keys``. Cosignatures by unknown witnesses, forged or
    for another tree are skipped, never an error: a head is judged by the quorum it reaches."""
    found: list[str] = []
    for raw in cosignatures:
        try:
            witness = decode_cosignature(raw).witness
            key = keys.get(witness)
            if witness in found or witness == head.node or key is None:
                continue
            verify_cosignature(raw, witness_key=key, head=head)
        except RemoteProtocolError:
            continue
        found.append(witness)
    return found
