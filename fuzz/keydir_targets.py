"""Targets for the key directory (core/keydir): leaves, signed heads, cosignatures, lookup
proofs, RFC 9162 inclusion and consistency proofs, and the compact ranges of ``Leaves``.

Proof verifiers take several arguments; their targets read a msgpack array of them, typed as
the frames that carry them deliver (ints, 32-byte hashes as bytes, lists of hashes).
"""

from __future__ import annotations

import msgpack

from sonet.core.client_api import DirectoryProof, Leaves
from sonet.core.errors import RemoteProtocolError
from sonet.core.keydir import (
    CompactRange,
    Cosignature,
    DirectoryEntry,
    ProvenEntry,
    TreeHead,
    decode_cosignature,
    decode_entry,
    decode_head,
    leaf_hash,
    verify_consistency,
    verify_cosignature,
    verify_directory_proof,
    verify_head,
    verify_inclusion,
    witnesses,
)
from sonet.core.wire import decode_frame, decode_struct, encode_frame, encode_struct

from . import material as m
from .target import Finding, Target, Unusable, register, unpack_args

__all__: list[str] = []

_MALFORMED = "directory_malformed"


def _head(data: bytes) -> TreeHead:
    claimed = decode_head(data)
    head = verify_head(data, node_key=m.node_key().public, node=m.NODE)
    if (claimed.node, claimed.size, claimed.root, claimed.at) != (head.node, head.size, head.root, head.at):
        raise Finding("decode_head and verify_head disagree about one head")
    return head


def _cosignature(data: bytes) -> Cosignature:
    head = decode_head(m.directory().head)
    decode_cosignature(data)
    cosignature = verify_cosignature(data, witness_key=m.witness_key().public, head=head)
    # Whatever verifies one by one also counts as a witness, and nothing else ever raises.
    if witnesses([data, data], head=head, keys={m.WITNESS: m.witness_key().public}) != [m.WITNESS]:
        raise Finding("a verified cosignature does not count as one witness")
    return cosignature


def _witness_count(data: bytes) -> list[str]:
    """``witnesses`` skips bad cosignatures: it never raises."""
    head = decode_head(m.directory().head)
    return witnesses([data], head=head, keys={m.WITNESS: m.witness_key().public, m.NODE: m.node_key().public})


def _proof(data: bytes) -> ProvenEntry:
    proof = decode_struct(DirectoryProof, data)
    return verify_directory_proof(proof, node=m.NODE, node_key=m.node_key().public, account=m.ACCOUNT)


def _inclusion(data: bytes) -> bool:
    leaf, index, size, proof, root = unpack_args(data, bytes, int, int, (list, bytes), bytes)
    verify_inclusion(leaf_hash=leaf, index=index, size=size, proof=proof, root=root)
    return True


def _consistency(data: bytes) -> bool:
    first, second, first_root, second_root, proof = unpack_args(data, int, int, bytes, bytes, (list, bytes))
    verify_consistency(first=first, second=second, first_root=first_root, second_root=second_root, proof=proof)
    return True


def _leaves(data: bytes) -> bytes:
    """What a monitoring device does with a Leaves answer (client/monitor.py): the compact
    range of the tree before ``start``, the leaves appended, the new root."""
    answer = decode_frame(data)
    if not isinstance(answer, Leaves):
        raise Unusable()
    tree = CompactRange(answer.start, answer.frontier)
    for leaf in answer.leaves:
        tree.append(leaf_hash(leaf))
    return tree.root()


def _inclusion_seeds() -> list[bytes]:
    d = m.directory()
    return [
        msgpack.packb([leaf_hash(d.leaves[i]), i, size, d.tree.inclusion_proof(i, size), d.tree.root(size)])
        for size in (1, 4, 7)
        for i in {0, size // 2, size - 1}
    ]


def _consistency_seeds() -> list[bytes]:
    t = m.directory().tree
    return [
        msgpack.packb([a, b, t.root(a), t.root(b), t.consistency_proof(a, b)]) for a, b in [(1, 7), (3, 7), (4, 6), (5, 5)]
    ]


def _leaves_seeds() -> list[bytes]:
    d = m.directory()
    return [
        encode_frame(Leaves(request=1, start=start, frontier=tuple(d.tree.frontier(start)), leaves=d.leaves[start:]))
        for start in (0, 3, 4, 6)
    ]


for target in [
    Target(
        name="directory-entry",
        summary="core/keydir decode_entry: one leaf of a directory log",
        decode=decode_entry,
        errors=(RemoteProtocolError,),
        codes=frozenset({_MALFORMED}),
        returns=DirectoryEntry,
        seeds=lambda: m.directory().leaves,
        codec="cbor",
    ),
    Target(
        name="tree-head",
        summary="core/keydir decode_head and verify_head: a signed tree head",
        decode=_head,
        errors=(RemoteProtocolError,),
        codes=frozenset({_MALFORMED, "head_forged", "head_mismatch"}),
        returns=TreeHead,
        seeds=lambda: [m.directory().head],
        codec="cbor",
    ),
    Target(
        name="cosignature",
        summary="core/keydir decode_cosignature, verify_cosignature and witnesses",
        decode=_cosignature,
        errors=(RemoteProtocolError,),
        codes=frozenset({_MALFORMED, "cosignature_forged", "cosignature_mismatch"}),
        returns=Cosignature,
        seeds=lambda: [m.directory().cosignature],
        codec="cbor",
    ),
    Target(
        name="witnesses",
        summary="core/keydir witnesses: counts good cosignatures, never raises",
        decode=_witness_count,
        errors=(),
        returns=list,
        seeds=lambda: [m.directory().cosignature, m.directory().head],
        codec="cbor",
    ),
    Target(
        name="directory-proof",
        summary="core/keydir verify_directory_proof of a DirectoryProof struct (Devices, Bundles)",
        decode=_proof,
        errors=(RemoteProtocolError,),
        codes=frozenset({"bad_input", _MALFORMED, "head_forged", "head_mismatch", "bad_inclusion_proof", "wrong_account"}),
        returns=ProvenEntry,
        seeds=lambda: [encode_struct(m.directory().proof)],
        codec="msgpack",
    ),
    Target(
        name="inclusion",
        summary="core/keydir verify_inclusion: [leaf hash, index, size, proof, root]",
        decode=_inclusion,
        errors=(RemoteProtocolError,),
        codes=frozenset({"bad_inclusion_proof"}),
        seeds=_inclusion_seeds,
        codec="msgpack",
    ),
    Target(
        name="consistency",
        summary="core/keydir verify_consistency: [first, second, first root, second root, proof]",
        decode=_consistency,
        errors=(RemoteProtocolError,),
        codes=frozenset({"bad_consistency_proof"}),
        seeds=_consistency_seeds,
        codec="msgpack",
    ),
    Target(
        name="compact-range",
        summary="core/keydir CompactRange from a Leaves answer: frontier, appended leaves, root",
        decode=_leaves,
        # a bad frame, or a frontier that does not fit its size (client/monitor.py catches it)
        errors=(RemoteProtocolError, ValueError),
        returns=bytes,
        seeds=_leaves_seeds,
        codec="msgpack",
    ),
]:
    register(target)
