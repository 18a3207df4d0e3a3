"""TreeKEM (RFC 9420 §7.4-7.6): a committer's UpdatePath and its processing by the others.

Creating: a fresh leaf key pair; path secrets up the committer's filtered direct path
(``path_secret[n] = DeriveSecret(path_secret[n-1], "path")``), node key pairs
``DeriveKeyPair(DeriveSecret(path_secret, "node"))``, parent hashes, the signed commit leaf, and
each path secret encrypted with EncryptWithLabel("UpdatePathNode", GroupContext) to every node of
the copath child's resolution except the leaves the same commit adds. The commit secret is the
path secret after the root's.

Processing: merge the path's public keys into the tree (checking the node count, that each key
is a key of the suite found nowhere else in the merged tree, and the leaf's parent hash), then decrypt the one ciphertext meant for a node we hold the key of, derive the
path secrets above it, and check they give the public keys the path announced.

The GroupContext binds the new tree hash, so both sides take it as a function of that hash.
Both functions change ``tree`` in place: callers stage a ``copy()``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ...errors import DecryptError, RemoteProtocolError
from ..key_package.errors import ValidationError
from ..key_package.leaf_node import LeafNode, LeafNodeSource
from ..messages.update_path import HPKECiphertext, UpdatePath, UpdatePathNode
from ..tree_math import direct_path, leaf_to_node
from .nodes import ParentNode
from .parent_hash import set_path_parent_hashes
from .ratchet_tree import RatchetTree

if TYPE_CHECKING:
    from ...crypto.modes import Rng
    from ..crypto import CipherSuite

__all__ = [
    "TreeKEMPrivate",
    "CreatedPath",
    "ReceivedPath",
    "check_path_ciphertext_counts",
    "create_update_path",
    "merge_update_path",
    "decrypt_update_path",
]

UPDATE_PATH_LABEL = b"UpdatePathNode"

#: the encoded GroupContext of the new epoch for a given new tree hash
ContextFor = Callable[[bytes], bytes]


def _next_path_secret(cs: CipherSuite, path_secret: bytes) -> bytes:
    return cs.derive_secret(path_secret, b"path")


def _node_key_pair(cs: CipherSuite, path_secret: bytes) -> tuple[bytes, bytes]:
    return cs.derive_key_pair(cs.derive_secret(path_secret, b"node"))


@dataclass
class TreeKEMPrivate:
    """A member's private keys in the tree: node index -> serialised HPKE private key (its leaf
    at ``2 * leaf_index`` and the parent nodes whose path secret it knows)."""

    leaf_index: int
    keys: dict[int, bytes] = field(default_factory=dict, repr=False)  # private keys: never shown

    @classmethod
    def from_secrets(cls, cs: CipherSuite, leaf_index: int, leaf_priv: bytes, path_secrets: dict[int, bytes]) -> TreeKEMPrivate:
        keys = {leaf_to_node(leaf_index): leaf_priv}
        for node, secret in path_secrets.items():
            keys[node] = _node_key_pair(cs, secret)[0]
        return cls(leaf_index, keys)

    def check_against(self, tree: RatchetTree) -> None:
        """Every key held belongs to a non-blank node of ``tree`` with the matching public key."""
        for index, priv in self.keys.items():
            node = tree.node(index) if index < tree.width else None
            if node is None:
                raise ValidationError(f"a private key is held for node {index}, which is blank")
            if tree.cs.hpke_private_key(priv).public.raw != node.encryption_key:
                raise ValidationError(f"the private key held for node {index} does not match its public key")


@dataclass(frozen=True)
class CreatedPath:
    update_path: UpdatePath
    commit_secret: bytes = field(repr=False)
    #: node index -> path secret, for each node of the filtered direct path (a Welcome gives a new
    #: member the one of its lowest common ancestor with the committer)
    path_secrets: dict[int, bytes] = field(repr=False)
    private: TreeKEMPrivate


@dataclass(frozen=True)
class ReceivedPath:
    #: the path secret decrypted (at the lowest node of the path above the receiver)
    path_secret: bytes = field(repr=False)
    commit_secret: bytes = field(repr=False)
    private: TreeKEMPrivate


def _recipients(tree: RatchetTree, copath_child: int, exclude: Collection[int]) -> list[int]:
    """The resolution of ``copath_child`` without the leaves the commit adds."""
    excluded = {leaf_to_node(leaf) for leaf in exclude}
    return [n for n in tree.resolution(copath_child) if n not in excluded]


def _check_ciphertext_count(
    tree: RatchetTree, node: int, copath_child: int, path_node: UpdatePathNode, exclude: Collection[int]
) -> list[int]:
    """The recipients of ``path_node`` (at ``node``), each of which must have one ciphertext."""
    recipients = _recipients(tree, copath_child, exclude)
    count = len(path_node.encrypted_path_secret)
    if count != len(recipients):
        raise ValidationError(f"UpdatePath node {node} has {count} ciphertexts for {len(recipients)} recipients")
    return recipients


def check_path_ciphertext_counts(tree: RatchetTree, sender: int, path: UpdatePath, *, exclude: Collection[int] = ()) -> None:
    """Every node of ``path`` (merged into ``tree``) has one ciphertext per recipient: what an
    observer without keys can check of the ciphertexts (each member decrypts only its own)."""
    for (p, s), path_node in zip(tree.filtered_direct_path(sender), path.nodes, strict=True):
        _check_ciphertext_count(tree, p, s, path_node, exclude)


def _set_path_keys(tree: RatchetTree, leaf_index: int, public_keys: list[bytes]) -> list[tuple[int, int]]:
    """Blank the leaf's direct path, then give each node of its filtered direct path its new
    key (no unmerged leaves); the filtered direct path."""
    filtered = tree.filtered_direct_path(leaf_index)
    if len(public_keys) != len(filtered):
        raise ValidationError(f"UpdatePath has {len(public_keys)} nodes, the sender's filtered direct path {len(filtered)}")
    for p in direct_path(leaf_to_node(leaf_index), tree.n_leaves):
        if tree.node(p) is not None:
            tree.set_node(p, None)
    for (p, _), key in zip(filtered, public_keys):
        tree.set_node(p, ParentNode(key))
    return filtered


def create_update_path(
    tree: RatchetTree,
    leaf_index: int,
    leaf: LeafNode,
    signature_priv: bytes,
    group_id: bytes,
    context_for: ContextFor,
    rng: Rng,
    *,
    exclude: Collection[int] = (),
) -> CreatedPath:
    """The UpdatePath of member ``leaf_index`` committing on ``tree`` (proposals already applied;
    ``exclude`` lists the leaves they added). ``leaf`` gives the new leaf's credential,
    capabilities, signature key and extensions."""
    cs = tree.cs
    leaf_priv, leaf_pub = cs.hpke_key_pair(rng)
    filtered = tree.filtered_direct_path(leaf_index)
    secrets = [rng(cs.nh)]
    for _ in filtered:
        secrets.append(_next_path_secret(cs, secrets[-1]))
    key_pairs = [_node_key_pair(cs, s) for s in secrets[: len(filtered)]]
    _set_path_keys(tree, leaf_index, [pub for _, pub in key_pairs])
    parent_hash = set_path_parent_hashes(tree, leaf_index)
    new_leaf = replace(
        leaf, encryption_key=leaf_pub, leaf_node_source=LeafNodeSource.COMMIT, lifetime=None, parent_hash=parent_hash
    ).signed(cs, signature_priv, group_id, leaf_index)
    tree.set_node(leaf_to_node(leaf_index), new_leaf)
    context = context_for(tree.root_tree_hash())
    nodes = []
    for (p, s), secret, (_, pub) in zip(filtered, secrets, key_pairs):
        ciphertexts = []
        for recipient in _recipients(tree, s, exclude):
            node = tree.node(recipient)
            assert node is not None
            kem_output, ciphertext = cs.encrypt_with_label(node.encryption_key, UPDATE_PATH_LABEL, context, secret, rng)
            ciphertexts.append(HPKECiphertext(kem_output, ciphertext))
        nodes.append(UpdatePathNode(pub, tuple(ciphertexts)))
    keys = {leaf_to_node(leaf_index): leaf_priv} | {p: priv for (p, _), (priv, _) in zip(filtered, key_pairs)}
    return CreatedPath(
        UpdatePath(new_leaf, tuple(nodes)),
        secrets[-1],
        {p: secret for (p, _), secret in zip(filtered, secrets)},
        TreeKEMPrivate(leaf_index, keys),
    )


def merge_update_path(tree: RatchetTree, sender: int, path: UpdatePath) -> None:
    """Put the path's public keys and leaf into ``tree`` (proposals already applied), refusing
    a path of the wrong length, with a node key that is not a key of the suite's KEM, whose
    leaf's parent hash does not match the merged tree, or with a public key that appears in
    another node of the merged tree (§12.4.2: a key shared by two nodes would let the holder of
    one decrypt what is sent to the other). The leaf's own validity (§7.3: signature with the
    group id and ``sender``, capabilities, a key of the suite) is the caller's check_leaf_node,
    which knows the group's rules."""
    if tree.leaf(sender) is None:
        raise ValidationError(f"UpdatePath from leaf {sender}, which is not a member")
    if path.leaf_node.leaf_node_source != LeafNodeSource.COMMIT:
        raise ValidationError("UpdatePath leaf node is not a commit leaf")
    node_keys = [node.encryption_key for node in path.nodes]
    for key in node_keys:
        try:
            tree.cs.hpke_public_key(key)
        except RemoteProtocolError as e:
            raise ValidationError(f"an UpdatePath node key is not a public key of the cipher suite's KEM ({e})") from None
    _set_path_keys(tree, sender, node_keys)
    if set_path_parent_hashes(tree, sender) != path.leaf_node.parent_hash:
        raise ValidationError("UpdatePath leaf node's parent hash does not match the path")
    tree.set_node(leaf_to_node(sender), path.leaf_node)
    for key in [path.leaf_node.encryption_key, *node_keys]:
        if tree.key_count(key) != 1:
            raise ValidationError("an UpdatePath public key appears in another node of the tree")


def decrypt_update_path(
    tree: RatchetTree,
    sender: int,
    path: UpdatePath,
    private: TreeKEMPrivate,
    context: bytes,
    *,
    exclude: Collection[int] = (),
) -> ReceivedPath:
    """Decrypt the path secret meant for ``private``'s member from ``path`` (already merged
    into ``tree``; ``context`` the encoded GroupContext with the merged tree's hash) and derive
    the commit secret. ``exclude``: the leaves the commit adds (they hold no ciphertext)."""
    cs = tree.cs
    me = leaf_to_node(private.leaf_index)
    filtered = tree.filtered_direct_path(sender)
    if len(filtered) != len(path.nodes):
        raise ValidationError(f"UpdatePath has {len(path.nodes)} nodes, the sender's filtered direct path {len(filtered)}")
    mine = set(direct_path(me, tree.n_leaves))
    for position, (p, s) in enumerate(filtered):
        if p in mine:
            break
    else:
        raise ValidationError(f"leaf {private.leaf_index} is not below the sender's filtered direct path")
    recipients = _check_ciphertext_count(tree, p, s, path.nodes[position], exclude)
    ciphertexts = path.nodes[position].encrypted_path_secret
    for slot, recipient in enumerate(recipients):
        if recipient in private.keys:
            break
    else:
        raise ValidationError(f"leaf {private.leaf_index} holds no key for a recipient of UpdatePath node {p}")
    ciphertext = ciphertexts[slot]
    try:
        secret = cs.decrypt_with_label(private.keys[recipient], UPDATE_PATH_LABEL, context, ciphertext.kem_output, ciphertext.ciphertext)
    except DecryptError:
        raise DecryptError("the UpdatePath ciphertext for this member does not decrypt") from None
    first = secret
    replaced = set(direct_path(leaf_to_node(sender), tree.n_leaves))
    keys = {n: k for n, k in private.keys.items() if n not in replaced}
    for (q, _), node in zip(filtered[position:], path.nodes[position:]):
        priv, pub = _node_key_pair(cs, secret)
        if pub != node.encryption_key:
            raise ValidationError(f"the path secret of node {q} does not give the public key the UpdatePath announced")
        keys[q] = priv
        secret = _next_path_secret(cs, secret)
    return ReceivedPath(first, secret, TreeKEMPrivate(private.leaf_index, keys))
