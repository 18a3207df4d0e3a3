"""TreeKEM (core/mls/tree/treekem.py) against the IETF treekem vectors of every suite (theirs
decrypt for every member, ours too), and received UpdatePaths that must be refused: a
ciphertext meant for another node, a missing or extra node or ciphertext, a wrong parent hash,
a wrong group context; newly added leaves get no ciphertext."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from sonet.core.errors import DecryptError
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.interop import treekem
from sonet.core.mls.key_package import ValidationError
from sonet.core.mls.key_schedule import GroupContext
from sonet.core.mls.messages import UpdatePath
from sonet.core.mls.tree import RatchetTree, TreeKEMPrivate, create_update_path, decrypt_update_path, merge_update_path
from tests import vectors


def cases() -> list[dict[str, Any]]:
    loaded = vectors.load_json("mls/treekem.json")
    assert isinstance(loaded, list) and loaded
    return loaded


def test_every_treekem_vector_passes_for_every_suite() -> None:
    found = cases()
    assert {c["cipher_suite"] for c in found} == set(range(1, 8))
    for case in found:
        treekem.check(case)


class Group:
    """One treekem vector case as a group: its tree, members' private states, a sender's path."""

    def __init__(self, case: dict[str, Any], path_number: int = 0) -> None:
        self.case = case
        self.cs = cipher_suite(case["cipher_suite"])
        self.group_id = bytes.fromhex(case["group_id"])
        self.tree = RatchetTree.from_bytes(self.cs, bytes.fromhex(case["ratchet_tree"]))
        self.privates = {
            e["index"]: TreeKEMPrivate.from_secrets(
                self.cs,
                e["index"],
                bytes.fromhex(e["encryption_priv"]),
                {s["node"]: bytes.fromhex(s["path_secret"]) for s in e["path_secrets"]},
            )
            for e in case["leaves_private"]
        }
        self.signature_privs = {e["index"]: bytes.fromhex(e["signature_priv"]) for e in case["leaves_private"]}
        entry = case["update_paths"][path_number]
        self.sender = entry["sender"]
        self.path = UpdatePath.from_bytes(bytes.fromhex(entry["update_path"]))

    def context_for(self, tree_hash: bytes) -> bytes:
        c = self.case
        return GroupContext(self.cs.id, self.group_id, c["epoch"], tree_hash, bytes.fromhex(c["confirmed_transcript_hash"])).to_bytes()

    def receive(self, path: UpdatePath, receiver: int, *, exclude: tuple[int, ...] = (), tree: RatchetTree | None = None) -> bytes:
        merged = (tree or self.tree).copy()
        merge_update_path(merged, self.sender, path)
        received = decrypt_update_path(
            merged, self.sender, path, self.privates[receiver], self.context_for(merged.root_tree_hash()), exclude=exclude
        )
        return received.commit_secret

    def receivers(self) -> list[int]:
        return [j for j, _ in self.tree.leaves() if j != self.sender]


def a_group(predicate: Any = lambda group: True) -> Group:
    """The first (case, update path) of the vectors whose group satisfies ``predicate``."""
    for case in cases():
        for number in range(len(case["update_paths"])):
            group = Group(case, number)
            if len(group.receivers()) >= 3 and predicate(group):
                return group
    raise AssertionError("no such treekem case")


def shared_node(group: Group) -> int | None:
    """The position of a path node whose path secret is encrypted to two or more nodes."""
    return next((i for i, n in enumerate(group.path.nodes) if len(n.encrypted_path_secret) >= 2), None)


def with_node(path: UpdatePath, index: int, **changes: Any) -> UpdatePath:
    nodes = list(path.nodes)
    nodes[index] = replace(nodes[index], **changes)
    return replace(path, nodes=tuple(nodes))


def reads(group: Group, leaf: int) -> int | None:
    """The position in the sender's path of the node whose ciphertexts ``leaf`` reads."""
    mine = set(group.tree.direct_path(2 * leaf))
    return next((i for i, (p, _) in enumerate(group.tree.filtered_direct_path(group.sender)) if p in mine), None)


def test_a_ciphertext_meant_for_another_node_is_refused() -> None:
    group = a_group(lambda g: shared_node(g) is not None)
    position = shared_node(group)
    assert position is not None
    node = group.path.nodes[position]
    swapped = with_node(group.path, position, encrypted_path_secret=tuple(reversed(node.encrypted_path_secret)))
    readers = [j for j in group.receivers() if reads(group, j) == position]
    assert len(readers) >= 2
    for j in readers:
        assert group.receive(group.path, j)  # the real path decrypts
        with pytest.raises(DecryptError):
            group.receive(swapped, j)


def test_a_ciphertext_too_many_or_too_few_is_refused() -> None:
    group = a_group()
    for j in group.receivers():
        position = reads(group, j)
        node = group.path.nodes[position]
        extra = with_node(group.path, position, encrypted_path_secret=node.encrypted_path_secret * 2)
        fewer = with_node(group.path, position, encrypted_path_secret=node.encrypted_path_secret[1:])
        for tampered in (extra, fewer):
            with pytest.raises(ValidationError, match="ciphertexts for"):
                group.receive(tampered, j)


def test_a_path_with_a_node_missing_is_refused() -> None:
    group = a_group()
    short = replace(group.path, nodes=group.path.nodes[:-1])
    with pytest.raises(ValidationError, match="filtered direct path"):
        merge_update_path(group.tree.copy(), group.sender, short)


def test_a_wrong_public_key_or_parent_hash_is_refused() -> None:
    group = a_group()
    _, other_pub = group.cs.derive_key_pair(b"\x07" * 32)
    with pytest.raises(ValidationError, match="parent hash"):
        merge_update_path(group.tree.copy(), group.sender, with_node(group.path, 0, encryption_key=other_pub))
    bad_leaf = replace(group.path, leaf_node=replace(group.path.leaf_node, parent_hash=b"\x00" * group.cs.nh))
    with pytest.raises(ValidationError, match="parent hash"):
        merge_update_path(group.tree.copy(), group.sender, bad_leaf)


def test_a_wrong_group_context_does_not_decrypt() -> None:
    group = a_group()
    merged = group.tree.copy()
    merge_update_path(merged, group.sender, group.path)
    wrong = group.context_for(b"\x00" * group.cs.nh)
    with pytest.raises(DecryptError):
        decrypt_update_path(merged, group.sender, group.path, group.privates[group.receivers()[0]], wrong)


def test_a_private_state_that_does_not_match_the_tree_is_refused() -> None:
    group = a_group()
    private = group.privates[group.receivers()[0]]
    tampered = TreeKEMPrivate(private.leaf_index, dict(private.keys))
    some_parent = next(n for n in tampered.keys if n % 2 == 1) if any(n % 2 for n in tampered.keys) else None
    target = some_parent if some_parent is not None else 2 * private.leaf_index
    tampered.keys[target] = group.cs.derive_key_pair(b"\x09" * 32)[0]
    with pytest.raises(ValidationError, match=f"node {target}"):
        tampered.check_against(group.tree)


def has_inner_blank(group: Group) -> bool:
    """The first blank leaf is left of the last member and other members read the path node it
    would read: an Add fills it, and the path must leave it out."""
    blanks = group.tree.blank_leaves()
    if not blanks or blanks[0] > max(i for i, _ in group.tree.leaves()):
        return False
    position = reads(group, blanks[0])
    return position is not None and any(reads(group, j) == position for j in group.receivers())


def test_newly_added_leaves_get_no_ciphertext() -> None:
    group = a_group(has_inner_blank)
    cs = group.cs
    rng = random.Random(5).randbytes
    tree = group.tree.copy()
    sender_leaf = tree.leaf(group.sender)
    assert sender_leaf is not None
    _, new_pub = cs.hpke_key_pair(rng)
    new_index = tree.add_leaf(replace(sender_leaf, encryption_key=new_pub, signature_key=b"new" + sender_leaf.signature_key))
    assert new_index == group.tree.blank_leaves()[0]
    staged = tree.copy()
    sig = group.signature_privs[group.sender]
    created = create_update_path(staged, group.sender, sender_leaf, sig, group.group_id, group.context_for, rng, exclude=(new_index,))
    counted = [len(n.encrypted_path_secret) for n in created.update_path.nodes]
    expected = [len([r for r in tree.resolution(s) if r != 2 * new_index]) for _, s in tree.filtered_direct_path(group.sender)]
    assert counted == expected
    sharing = [j for j in group.receivers() if reads(group, j) == reads(group, new_index)]
    assert sharing
    for j in group.receivers():
        assert group.receive(created.update_path, j, exclude=(new_index,), tree=tree) == created.commit_secret
    # a receiver that does not exclude the new leaf counts one recipient too many
    for j in sharing:
        with pytest.raises(ValidationError, match="ciphertexts for"):
            group.receive(created.update_path, j, tree=tree)
    # the Welcome gives the new member the path secret of its common ancestor with the sender
    assert set(created.path_secrets) == {p for p, _ in tree.filtered_direct_path(group.sender)}


def test_our_path_gives_every_member_the_same_commit_secret_and_tree() -> None:
    group = a_group()
    staged = group.tree.copy()
    sender_leaf = group.tree.leaf(group.sender)
    assert sender_leaf is not None
    created = create_update_path(staged, group.sender, sender_leaf, group.signature_privs[group.sender], group.group_id, group.context_for, random.Random(1).randbytes)
    assert created.update_path.leaf_node.verify_signature(group.cs, group.group_id, group.sender)
    created.private.check_against(staged)
    for j in group.receivers():
        merged = group.tree.copy()
        merge_update_path(merged, group.sender, created.update_path)
        assert merged == staged
        received = decrypt_update_path(merged, group.sender, created.update_path, group.privates[j], group.context_for(merged.root_tree_hash()))
        assert received.commit_secret == created.commit_secret
        received.private.check_against(merged)
