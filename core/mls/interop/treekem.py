"""Kind ``treekem``: each member's private state (leaf key and path secrets) matches the tree;
each vector UpdatePath merges parent-hash valid, gives ``tree_hash_after``, and decrypts for
every other member to the listed path secret and commit secret; then an UpdatePath we create
from the same sender decrypts for every other member to our commit secret.

Creating a path needs randomness: here it comes from a counter hashed with the case's data
(core has no random source; the interop check only needs distinct, reproducible values)."""

from __future__ import annotations

from typing import Any

from ..crypto import CipherSuite, cipher_suite
from ..key_schedule.group_context import GroupContext
from ..messages.update_path import UpdatePath
from ..tree import RatchetTree, TreeKEMPrivate, create_update_path, decrypt_update_path, merge_update_path
from .expect import VectorMismatch, expect_equal, hex_field

__all__ = ["check"]


def _reproducible_rng(cs: CipherSuite, seed: bytes):  # type: ignore[no-untyped-def]
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            counter += 1
            out += cs.hash(seed + counter.to_bytes(8, "big"))
        return out[:n]

    return rng


def check(case: dict[str, Any]) -> None:
    cs = cipher_suite(case["cipher_suite"])
    group_id = hex_field(case, "group_id")
    tree = RatchetTree.from_bytes(cs, hex_field(case, "ratchet_tree"))

    def context_for(tree_hash: bytes) -> bytes:
        return GroupContext(cs.id, group_id, case["epoch"], tree_hash, hex_field(case, "confirmed_transcript_hash")).to_bytes()

    privates: dict[int, TreeKEMPrivate] = {}
    signature_privs: dict[int, bytes] = {}
    for entry in case["leaves_private"]:
        secrets = {item["node"]: bytes.fromhex(item["path_secret"]) for item in entry["path_secrets"]}
        private = TreeKEMPrivate.from_secrets(cs, entry["index"], bytes.fromhex(entry["encryption_priv"]), secrets)
        private.check_against(tree)
        privates[entry["index"]] = private
        signature_privs[entry["index"]] = bytes.fromhex(entry["signature_priv"])
    members = [index for index, _ in tree.leaves()]
    expect_equal("members with a private state", sorted(privates), members)

    for number, entry in enumerate(case["update_paths"]):
        sender = entry["sender"]
        path = UpdatePath.from_bytes(hex_field(entry, "update_path"))
        merged = tree.copy()
        merge_update_path(merged, sender, path)
        if not path.leaf_node.verify_signature(cs, group_id, sender):
            raise VectorMismatch(f"update path {number}: the leaf node's signature does not verify")
        expect_equal(f"update path {number}: tree hash after", merged.root_tree_hash(), hex_field(entry, "tree_hash_after"))
        context = context_for(merged.root_tree_hash())
        for j in members:
            if j == sender:
                continue
            received = decrypt_update_path(merged, sender, path, privates[j], context)
            expect_equal(f"update path {number}: path secret of leaf {j}", received.path_secret.hex(), entry["path_secrets"][j])
            expect_equal(f"update path {number}: commit secret at leaf {j}", received.commit_secret, hex_field(entry, "commit_secret"))

        leaf = tree.leaf(sender)
        assert leaf is not None
        staged = tree.copy()
        rng = _reproducible_rng(cs, group_id + sender.to_bytes(4, "big"))
        created = create_update_path(staged, sender, leaf, signature_privs[sender], group_id, context_for, rng)
        ours = tree.copy()
        merge_update_path(ours, sender, created.update_path)
        expect_equal(f"update path {number}: our path's merged tree hash", ours.root_tree_hash(), staged.root_tree_hash())
        context = context_for(ours.root_tree_hash())
        for j in members:
            if j != sender:
                received = decrypt_update_path(ours, sender, created.update_path, privates[j], context)
                expect_equal(f"update path {number}: our commit secret at leaf {j}", received.commit_secret, created.commit_secret)
