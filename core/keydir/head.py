"""Signed tree heads and witness cosignatures (ARCHITECTURE §7).

A node signs the state of its directory log with its node key, under ``sonet-tree-head-v1``:
``head = CBOR{"body": CBOR{"v": 1, "node", "size", "root", "at"}, "sig"}``. A peer that checked
the head is consistent with the last one it cosigned (a witness) signs, with its own node key
under ``sonet-tree-cosignature-v1``,
``cosignature = CBOR{"body": CBOR{"v": 1, "witness", "node", "size", "root", "at"}, "sig"}``
where ``at`` is the time of cosigning: a cosignature vouches for the tree (node, size, root),
not for the head's own timestamp, so it stays valid for a head the node re-signs later.

Only ``verify_head`` / ``verify_cosignature`` yield trusted objects; ``decode_head`` /
``decode_cosignature`` check structure only (to display, or to learn whose key to fetch).
Failures: ``VerifyError`` (``head_forged``, ``head_mismatch``, ``cosignature_forged``,
``cosignature_mismatch``); malformed input ``RemoteProtocolError`` (``directory_malformed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import canonical, limits
from ..address import validate_node_name
from ..crypto import SigningKey, VerifyKey
from ..errors import LocalProtocolError, RemoteProtocolError, VerifyError
from ..signed import sign_body, split_signed
from .entry import malformed
from .merkle import EMPTY_ROOT, HASH_LEN

__all__ = [
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
]

TREE_HEAD_LABEL = b"sonet-tree-head-v1"
COSIGNATURE_LABEL = b"sonet-tree-cosignature-v1"
_VERSION = 1
_HEAD = {"v": int, "node": str, "size": int, "root": bytes, "at": int}
_COSIGNATURE = {"v": int, "witness": str, "node": str, "size": int, "root": bytes, "at": int}
_INT_MAX = 2**63 - 1


@dataclass(frozen=True, kw_only=True, slots=True)
class TreeHead:
    """Node ``node`` says its directory had ``size`` leaves with root ``root`` at time ``at``."""

    node: str
    size: int
    root: bytes
    at: int
    raw: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Cosignature:
    """Witness ``witness`` vouched at time ``at`` that it saw ``node``'s tree (size, root)."""

    witness: str
    node: str
    size: int
    root: bytes
    at: int
    raw: bytes = field(repr=False)


def _tree_error(size: object, root: object, at: object) -> str | None:
    """What is wrong with a (size, root, time) triple, if anything."""
    if type(size) is not int or not 0 <= size <= _INT_MAX:
        return "tree size out of range"
    if type(root) is not bytes or len(root) != HASH_LEN:
        return f"a tree root is {HASH_LEN} bytes"
    if size == 0 and root != EMPTY_ROOT:
        return "the empty tree has another root"
    if type(at) is not int or not 0 <= at <= _INT_MAX:
        return "time out of range"
    return None


def _local_tree(size: int, root: bytes, at: int) -> None:
    problem = _tree_error(size, root, at)
    if problem:
        raise LocalProtocolError(f"tree head: {problem}")


def _decode(raw: bytes, fields: dict[str, type], *, max_bytes: int, what: str) -> tuple[bytes, bytes, dict[str, Any]]:
    """Structure only: (body bytes, signature, body) with node names and the tree checked."""
    if type(raw) is not bytes or len(raw) > max_bytes:
        raise malformed(f"a {what} is bytes of at most {max_bytes}")
    try:
        body_raw, sig = split_signed(raw, max_bytes=max_bytes)
        body = canonical.loads_map(body_raw, fields, max_bytes=max_bytes)
        for name in (body[k] for k in ("witness", "node") if k in fields):
            if validate_node_name(name, remote=True) != name:
                raise RemoteProtocolError(f"node name {name!r} is not in normal form")
    except RemoteProtocolError as exc:
        raise malformed(f"{what}: {exc}") from None
    if body["v"] != _VERSION:
        raise malformed(f"{what}: unsupported version {body['v']}")
    problem = _tree_error(body["size"], body["root"], body["at"])
    if problem:
        raise malformed(f"{what}: {problem}")
    return body_raw, sig, body


def sign_head(node_key: SigningKey, *, node: str, size: int, root: bytes, at: int) -> bytes:
    """The node's signature over its tree of ``size`` leaves with root ``root``, at ``at``."""
    node = validate_node_name(node)
    _local_tree(size, root, at)
    return sign_body(node_key, TREE_HEAD_LABEL, {"v": _VERSION, "node": node, "size": size, "root": root, "at": at})


def decode_head(raw: bytes) -> TreeHead:
    """The head's fields, NOT trusted: the signature is not checked."""
    body = _decode(raw, _HEAD, max_bytes=limits.MAX_TREE_HEAD_BYTES, what="tree head")[2]
    return TreeHead(node=body["node"], size=body["size"], root=body["root"], at=body["at"], raw=raw)


def verify_head(raw: bytes, *, node_key: VerifyKey, node: str) -> TreeHead:
    """Check structure, the signature by ``node_key`` and that the head is ``node``'s."""
    body_raw, sig, body = _decode(raw, _HEAD, max_bytes=limits.MAX_TREE_HEAD_BYTES, what="tree head")
    try:
        node_key.verify(TREE_HEAD_LABEL, body_raw, sig, remember=True)
    except VerifyError:
        raise VerifyError("tree head signature does not verify", code="head_forged") from None
    expected = validate_node_name(node)
    if body["node"] != expected:
        raise VerifyError(f"tree head is of {body['node']}, expected {expected}", code="head_mismatch")
    return TreeHead(node=expected, size=body["size"], root=body["root"], at=body["at"], raw=raw)


def cosign(witness_key: SigningKey, *, witness: str, head: TreeHead, now: int) -> bytes:
    """Witness ``witness`` vouches for ``head``'s tree (call only after checking consistency
    with the last head of that node it cosigned)."""
    witness = validate_node_name(witness)
    if witness == head.node:
        raise LocalProtocolError("a node cannot witness its own tree head")
    _local_tree(head.size, head.root, now)
    fields = {"v": _VERSION, "witness": witness, "node": head.node, "size": head.size, "root": head.root, "at": now}
    return sign_body(witness_key, COSIGNATURE_LABEL, fields)


def _cosignature(body: dict[str, Any], raw: bytes) -> Cosignature:
    if body["witness"] == body["node"]:
        raise malformed("cosignature: a node cannot witness its own tree head")
    return Cosignature(
        witness=body["witness"], node=body["node"], size=body["size"], root=body["root"], at=body["at"], raw=raw
    )


def decode_cosignature(raw: bytes) -> Cosignature:
    """The cosignature's fields, NOT trusted: the signature is not checked."""
    body = _decode(raw, _COSIGNATURE, max_bytes=limits.MAX_COSIGNATURE_BYTES, what="cosignature")[2]
    return _cosignature(body, raw)


def verify_cosignature(raw: bytes, *, witness_key: VerifyKey, head: TreeHead) -> Cosignature:
    """Check structure, the signature by ``witness_key`` (the key of the witness the
    cosignature names) and that it vouches for ``head``'s node, size and root."""
    body_raw, sig, body = _decode(raw, _COSIGNATURE, max_bytes=limits.MAX_COSIGNATURE_BYTES, what="cosignature")
    cosignature = _cosignature(body, raw)
    try:
        witness_key.verify(COSIGNATURE_LABEL, body_raw, sig, remember=True)
    except VerifyError:
        raise VerifyError("cosignature does not verify", code="cosignature_forged") from None
    if (cosignature.node, cosignature.size, cosignature.root) != (head.node, head.size, head.root):
        raise VerifyError(
            f"cosignature is for {cosignature.node}'s tree of size {cosignature.size}, not this head",
            code="cosignature_mismatch",
        )
    return cosignature
