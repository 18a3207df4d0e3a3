"""Findings of the review of the MLS foundation (core/mls/, RFC 9420), one test each.

A strict xfail is a defect still open (its reason names the rule and where the code breaks it);
a plain test guards a defect fixed in the commit that names it."""

from __future__ import annotations

import random
import struct
import tracemalloc
from dataclasses import dataclass, fields, replace
from typing import Any, get_type_hints

import pytest

from sonet.core.limits import MLS_MAX_CAPABILITY_ITEMS, MLS_MAX_TREE_LEAVES
from sonet.core.mls.codec import DecodeError, Writer
from sonet.core.mls.crypto import CipherSuite, cipher_suite
from sonet.core.mls.extensions import ApplicationId, Capabilities, Extension, ExtensionType, Lifetime, RequiredCapabilities
from sonet.core.errors import RemoteProtocolError
from sonet.core.mls.framing import ContentType, FramedContent, Sender, WireFormat, protect_private, sign_content, unprotect_private
from sonet.core.mls.key_package import (
    Credential,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    ValidationError,
    check_key_package,
    check_leaf_node,
)
from sonet.core.mls.key_schedule import GroupContext, RetainedEpochSecrets, derive_epoch_secrets, epoch_secrets_from_joiner
from sonet.core.mls.messages import GroupSecrets, PathSecret
from sonet.core.mls.secret_tree import SecretTree
from sonet.core.mls.tree import (
    ParentNode,
    RatchetTree,
    TreeKEMPrivate,
    check_unmerged_leaves,
    create_update_path,
    decrypt_update_path,
    merge_update_path,
    set_path_parent_hashes,
    verify_parent_hashes,
)
from sonet.core.mls.tree_math import level

GROUP_ID = b"review group"


@dataclass
class Member:
    leaf: LeafNode
    encryption_priv: bytes
    signature_priv: bytes


def member(cs: CipherSuite, name: bytes, rng: random.Random, extensions: tuple[Extension, ...] = ()) -> Member:
    sig_priv, sig_pub = cs.signature_key_pair(rng.randbytes)
    enc_priv, enc_pub = cs.hpke_key_pair(rng.randbytes)
    leaf = LeafNode(
        enc_pub,
        sig_pub,
        Credential.basic(name),
        Capabilities(cipher_suites=(cs.id,), credentials=(1,)),
        LeafNodeSource.KEY_PACKAGE,
        Lifetime(0, 2**64 - 1),
        extensions=extensions,
    ).signed(cs, sig_priv)
    return Member(leaf, enc_priv, sig_priv)


class FourMembers:
    """A 4-member tree of suite 1 with real keys, and leaf 0's UpdatePath over it."""

    def __init__(self) -> None:
        rng = random.Random(9420)
        self.cs = cipher_suite(1)
        self.members = [member(self.cs, b"m%d" % i, rng) for i in range(4)]
        self.tree = RatchetTree.with_one_leaf(self.cs, self.members[0].leaf)
        for m in self.members[1:]:
            self.tree.add_leaf(m.leaf)
        committed = self.tree.copy()
        self.created = create_update_path(
            committed, 0, self.members[0].leaf, self.members[0].signature_priv, GROUP_ID, self.context_for, rng.randbytes
        )
        self.path = self.created.update_path

    @staticmethod
    def context_for(tree_hash: bytes) -> bytes:
        return b"provisional group context " + tree_hash

    def receive(self, receiver: int) -> object:
        tree = self.tree.copy()
        merge_update_path(tree, 0, self.path)
        private = TreeKEMPrivate(receiver, {2 * receiver: self.members[receiver].encryption_priv})
        return decrypt_update_path(tree, 0, self.path, private, self.context_for(tree.root_tree_hash()))


# --- F1 (security): UpdatePath public keys already in the tree (fixed) ------------------------


def signed_path_with_node_keys(four: FourMembers, keys: list[bytes]) -> Any:
    """leaf 0's UpdatePath with these node keys, its leaf re-signed with their parent hash: only
    the keys can be wrong."""
    nodes = [replace(node, encryption_key=key) for node, key in zip(four.path.nodes, keys)]
    shadow = four.tree.copy()
    for p in shadow.direct_path(0):
        shadow.set_node(p, None)
    for (p, _), node in zip(shadow.filtered_direct_path(0), nodes):
        shadow.set_node(p, ParentNode(node.encryption_key))
    parent_hash = set_path_parent_hashes(shadow, 0)
    leaf = replace(four.path.leaf_node, parent_hash=parent_hash).signed(four.cs, four.members[0].signature_priv, GROUP_ID, 0)
    return replace(four.path, leaf_node=leaf, nodes=tuple(nodes))


def test_an_update_path_reusing_a_key_of_the_tree_is_refused() -> None:
    four = FourMembers()
    keys = [node.encryption_key for node in four.path.nodes]
    merge_update_path(four.tree.copy(), 0, signed_path_with_node_keys(four, keys))  # the honest path merges
    reused = four.members[1].leaf.encryption_key  # leaf 1 stays in the new tree
    for tampered_keys in ([keys[0], reused], [reused, keys[1]], [keys[0], keys[0]]):
        with pytest.raises(ValidationError, match="appears in another node"):
            merge_update_path(four.tree.copy(), 0, signed_path_with_node_keys(four, tampered_keys))


def test_an_update_path_whose_leaf_key_is_a_path_node_key_is_refused() -> None:
    four = FourMembers()
    node_key = four.path.nodes[0].encryption_key
    leaf = replace(four.path.leaf_node, encryption_key=node_key).signed(four.cs, four.members[0].signature_priv, GROUP_ID, 0)
    with pytest.raises(ValidationError, match="appears in another node"):
        merge_update_path(four.tree.copy(), 0, replace(four.path, leaf_node=leaf))


def test_an_update_path_node_key_that_is_not_a_key_of_the_suite_is_refused() -> None:
    four = FourMembers()
    keys = [node.encryption_key for node in four.path.nodes]
    with pytest.raises(ValidationError, match="not a public key"):
        merge_update_path(four.tree.copy(), 0, signed_path_with_node_keys(four, [keys[0], b"\x01" * 5]))


def test_the_tree_counts_its_keys_through_every_change() -> None:
    """key_count agrees with a scan of the nodes after adds, updates, removes (truncating),
    merged paths and copies, whether the counts were built before or after the changes."""
    four = FourMembers()
    rng = random.Random(5)

    def scanned(tree: RatchetTree, key: bytes) -> int:
        return sum(1 for x in range(tree.width) if (node := tree.node(x)) is not None and node.encryption_key == key)

    trees = [four.tree.copy(), four.tree.copy()]
    trees[0].key_count(b"")  # counts built before the changes; trees[1] builds them after
    extra = [member(four.cs, b"x%d" % i, rng) for i in range(6)]
    for tree in trees:
        merge_update_path(tree, 0, four.path)
        staged = tree.copy()
        for m in extra:
            staged.add_leaf(m.leaf)
        staged.update_leaf(2, extra[0].leaf)
        for leaf_index in (9, 8, 7, 6, 5):
            staged.remove_leaf(leaf_index)
        keys = {staged.node(x).encryption_key for x in range(staged.width) if staged.node(x) is not None}  # type: ignore[union-attr]
        keys |= {m.leaf.encryption_key for m in extra} | {node.encryption_key for node in four.path.nodes}
        for key in keys:
            assert staged.key_count(key) == scanned(staged, key)
            assert tree.key_count(key) == scanned(tree, key)  # the copy's changes left the original alone


# --- F2 (security): consumed epoch secrets kept for the whole epoch ----------------------------


def test_the_secrets_an_epoch_keeps_cannot_decrypt_a_message_already_sent() -> None:
    """Key-schedule side (fixed): EpochSecrets.retained() holds nothing that derives a message
    key again, neither as an encryption_secret nor as a joiner_secret."""
    cs = cipher_suite(1)
    rng = random.Random(7)
    sender = member(cs, b"sender", rng)
    context = GroupContext(cs.id, GROUP_ID, 1, b"\x01" * cs.nh, b"\x02" * cs.nh)
    secrets = derive_epoch_secrets(cs, rng.randbytes(cs.nh), rng.randbytes(cs.nh), None, context)
    content = FramedContent(GROUP_ID, 1, Sender.member(0), b"", ContentType.APPLICATION, b"gone once sent")
    auth = sign_content(cs, sender.signature_priv, WireFormat.PRIVATE_MESSAGE, content, context)
    ratchets = SecretTree(cs, secrets.encryption_secret, 2)
    kept = secrets.retained()  # what the epoch holds once its SecretTree (and Welcome) are made
    sent = protect_private(cs, auth, ratchets, kept.sender_data_secret, rng.randbytes(4))  # generation 0, deleted
    assert {f.name for f in fields(secrets)} - {f.name for f in fields(kept)} == {"encryption_secret", "joiner_secret", "welcome_secret"}
    for field in fields(kept):
        value = getattr(kept, field.name)
        assert value == getattr(secrets, field.name)
        for encryption_secret in (value, epoch_secrets_from_joiner(cs, value, None, context).encryption_secret):
            with pytest.raises(RemoteProtocolError):
                unprotect_private(
                    cs, sent, context, SecretTree(cs, encryption_secret, 2), kept.sender_data_secret,
                    lambda _: sender.leaf.signature_key,
                )  # fmt: skip
    assert "<secret>" in repr(kept) and secrets.exporter_secret.hex() not in repr(kept)


def test_the_group_state_holds_only_the_retained_epoch_secrets() -> None:
    """F2's group side: every member's state, after a commit that added members (so a Welcome
    was made from the full secrets), holds none of the consumed ones (§9.2)."""
    from sonet.core.mls.group.state import EpochState

    from .test_group import three_members

    assert get_type_hints(EpochState)["secrets"] is RetainedEpochSecrets
    _rng, *members = three_members(1)
    for member in members:
        kept = member.g._state.secrets
        assert isinstance(kept, RetainedEpochSecrets)
        for consumed in ("encryption_secret", "joiner_secret", "welcome_secret"):
            assert not hasattr(kept, consumed), consumed


# --- F3 (security): secrets in repr (fixed) ----------------------------------------------------


def shown(value: bytes, obj: object) -> bool:
    text = repr(obj)
    return repr(value) in text or value.hex() in text


def test_group_secrets_and_path_secret_do_not_show_their_secrets() -> None:
    joiner, path = b"\x11" * 32, b"\x22" * 32
    assert not shown(path, PathSecret(path))
    secrets = GroupSecrets(joiner, PathSecret(path))
    assert not shown(joiner, secrets) and not shown(path, secrets)


def test_treekem_private_state_and_paths_do_not_show_their_secrets() -> None:
    four = FourMembers()
    created = four.created
    hidden = [created.commit_secret, *created.path_secrets.values(), *created.private.keys.values()]
    for obj in (created, created.private):
        assert not any(shown(secret, obj) for secret in hidden), type(obj).__name__
    received = four.receive(1)
    hidden = [received.path_secret, received.commit_secret, *received.private.keys.values()]  # type: ignore[attr-defined]
    assert not any(shown(secret, received) for secret in hidden)


# --- F4 (correctness, interop): default extension types in a leaf (fixed) ----------------------


def test_a_leaf_with_an_application_id_its_capabilities_do_not_list_is_valid() -> None:
    cs = cipher_suite(1)
    app_id = Extension(ExtensionType.APPLICATION_ID, ApplicationId(b"device 7").to_bytes())
    m = member(cs, b"with app id", random.Random(3), extensions=(app_id,))
    assert ExtensionType.APPLICATION_ID not in m.leaf.capabilities.extensions
    check_leaf_node(cs, m.leaf, source=LeafNodeSource.KEY_PACKAGE)


def test_a_leaf_with_a_non_default_extension_its_capabilities_do_not_list_is_refused() -> None:
    cs = cipher_suite(1)
    unlisted = Extension(0x0A0A, b"grease")
    m = member(cs, b"with unlisted extension", random.Random(3), extensions=(unlisted,))
    with pytest.raises(ValidationError, match="extension type 2570"):
        check_leaf_node(cs, m.leaf, source=LeafNodeSource.KEY_PACKAGE)


# --- F6 (hostile input): quadratic unmerged-leaves check (fixed) -------------------------------


class CountingLeafIndex(int):
    """A leaf index in an unmerged_leaves list that counts the equality tests made against it."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        CountingLeafIndex.compared += 1
        return int(self) == other

    __hash__ = int.__hash__


def every_leaf_unmerged_everywhere(n_leaves: int) -> RatchetTree:
    """A full tree whose every parent lists every leaf below it as unmerged: consistent, so
    check_unmerged_leaves walks every entry (a hostile Welcome can carry one like it)."""
    cs = cipher_suite(1)
    nodes: list[LeafNode | ParentNode | None] = []
    for x in range(2 * n_leaves - 1):
        if x % 2 == 0:
            i = x // 2
            nodes.append(
                LeafNode(b"e%d" % i, b"s%d" % i, Credential.basic(b"x"), Capabilities(credentials=(1,)), LeafNodeSource.UPDATE)
            )
        else:
            half = (1 << level(x)) - 1
            below = range((x - half) // 2, (x + half) // 2 + 1)
            nodes.append(ParentNode(b"p%d" % x, b"", tuple(CountingLeafIndex(i) for i in below)))
    return RatchetTree(cs, nodes)


def test_checking_unmerged_leaves_costs_log_n_per_entry() -> None:
    n_leaves = 1024
    tree = every_leaf_unmerged_everywhere(n_leaves)
    entries = sum(len(parent.unmerged_leaves) for _, parent in tree.parents())
    CountingLeafIndex.compared = 0
    check_unmerged_leaves(tree)
    per_entry = CountingLeafIndex.compared / entries
    assert per_entry <= 2 * n_leaves.bit_length(), f"{per_entry:.0f} comparisons per unmerged entry"


def test_a_leaf_unmerged_above_a_parent_that_does_not_list_it_is_refused() -> None:
    tree = every_leaf_unmerged_everywhere(8)
    check_unmerged_leaves(tree)
    middle = tree.parent_node(5)  # leaves 2 and 3, below the root's left child 3 and the root 7
    assert middle is not None
    tree.set_node(5, replace(middle, unmerged_leaves=(2,)))
    with pytest.raises(ValidationError, match="leaf 3 is unmerged at a node above node 5 but not at node 5"):
        check_unmerged_leaves(tree)
    tree.set_node(5, None)  # a blank node between is no gap
    check_unmerged_leaves(tree)



# --- F7 (hostile input): quadratic Adds (fixed) -----------------------------------------------


class CountingNodes(list[LeafNode | ParentNode | None]):
    """The node array of a RatchetTree, counting the slots read."""

    reads = 0

    def __getitem__(self, index: Any) -> Any:
        CountingNodes.reads += 1
        return super().__getitem__(index)


def test_adding_a_leaf_reads_log_n_slots_of_the_tree() -> None:
    cs = cipher_suite(1)

    def leaf(i: int) -> LeafNode:
        return LeafNode(
            b"e%d" % i, b"s%d" % i, Credential.basic(b"x"), Capabilities(credentials=(1,)), LeafNodeSource.KEY_PACKAGE, Lifetime(0, 1)
        )

    tree = RatchetTree.with_one_leaf(cs, leaf(0))
    tree._nodes = CountingNodes(tree._nodes)  # noqa: SLF001 (counting the slots the tree reads)
    CountingNodes.reads = 0
    added = 1023
    for i in range(1, added + 1):
        tree.add_leaf(leaf(i))
    assert tree.n_leaves == added + 1
    per_add = CountingNodes.reads / added
    assert per_add <= 8 * (added + 1).bit_length(), f"{per_add:.0f} node slots read per Add"


def test_adds_take_the_leftmost_blank_leaf_after_removes_truncation_and_copies() -> None:
    """add_leaf and add_leaves agree with a scan for the leftmost blank leaf, and list the new
    leaves as unmerged at the non-blank parents above them, whatever came before."""
    four = FourMembers()
    rng = random.Random(8)
    extra = [member(four.cs, b"y%d" % i, rng).leaf for i in range(12)]
    tree = four.tree.copy()
    tree.remove_leaf(1)
    m0 = four.members[0]
    create_update_path(tree, 0, m0.leaf, m0.signature_priv, GROUP_ID, four.context_for, rng.randbytes)  # sets node 3 only
    one_by_one, batch = tree.copy(), tree.copy()

    def add_one_by_one(leaves: list[LeafNode]) -> list[int]:
        indices = []
        for leaf in leaves:
            blank = one_by_one.blank_leaves()
            indices.append(one_by_one.add_leaf(leaf))
            assert indices[-1] == (blank[0] if blank else one_by_one.n_leaves // 2)
        return indices

    assert add_one_by_one(extra[:8]) == batch.add_leaves(extra[:8]) == [1, 4, 5, 6, 7, 8, 9, 10]
    for t in (one_by_one, batch):
        assert t.parent_node(3) is not None and t.parent_node(3).unmerged_leaves == (1,)  # type: ignore[union-attr]
        for leaf_index in (10, 9, 8, 5):
            t.remove_leaf(leaf_index)
        assert t.n_leaves == 8
    copied = batch.copy()
    assert add_one_by_one(extra[8:]) == batch.add_leaves(extra[8:]) == copied.add_leaves(extra[8:]) == [5, 8, 9, 10]
    assert batch == one_by_one == copied and batch.root_tree_hash() == one_by_one.root_tree_hash()


# --- F8 (hostile input): quadratic original sibling tree hash (fixed) --------------------------


class CountingLeaves(frozenset[int]):
    """A set of removed leaves counting the items iterated over it."""

    iterated = 0

    def __iter__(self) -> Any:
        for leaf in super().__iter__():
            CountingLeaves.iterated += 1
            yield leaf


def test_the_original_sibling_tree_hash_is_not_quadratic() -> None:
    cs = cipher_suite(1)
    n_leaves = 1024
    nodes: list[LeafNode | ParentNode | None] = [
        LeafNode(b"e%d" % (x // 2), b"s%d" % (x // 2), Credential.basic(b"x"), Capabilities(credentials=(1,)), LeafNodeSource.UPDATE)
        if x % 2 == 0
        else None
        for x in range(2 * n_leaves - 1)
    ]
    tree = RatchetTree(cs, nodes)
    right_half = 3 * n_leaves // 2 - 1  # the root's right child
    removed = CountingLeaves(range(n_leaves // 2, n_leaves))
    CountingLeaves.iterated = 0
    unremoved = tree.original_tree_hash(right_half, frozenset(removed))
    assert unremoved != tree.tree_hash(right_half)  # the removed leaves count as blank
    CountingLeaves.iterated = 0
    tree.original_tree_hash(right_half, removed)
    assert CountingLeaves.iterated <= 4 * n_leaves * n_leaves.bit_length(), f"{CountingLeaves.iterated} leaves iterated"


def test_the_original_tree_hash_is_the_hash_before_the_adds() -> None:
    four = FourMembers()
    rng = random.Random(12)
    tree = four.tree.copy()
    tree.remove_leaf(1)
    m0 = four.members[0]
    create_update_path(tree, 0, m0.leaf, m0.signature_priv, GROUP_ID, four.context_for, rng.randbytes)  # node 3 set, leaf 1 blank
    before = {x: tree.tree_hash(x) for x in range(tree.width)}
    added = frozenset(tree.add_leaves([member(four.cs, b"z%d" % i, rng).leaf for i in range(3)]))
    assert added == {1, 4, 5} and tree.parent_node(3).unmerged_leaves == (1,)  # type: ignore[union-attr]
    for x, old_hash in before.items():
        assert tree.original_tree_hash(x, added) == old_hash, x
        assert tree.original_tree_hash(x, frozenset()) == tree.tree_hash(x)
    assert tree.original_tree_hash(3, frozenset({1})) == before[3] != tree.tree_hash(3)


# --- parent-hash validation of a sparse tree (hostile input) ----------------------------------


def test_verifying_parent_hashes_of_a_sparse_tree_reads_each_node_a_few_times() -> None:
    """Every leaf of a sparse tree used to walk up through the blank parents to the first
    non-blank one (O(n log n) reads, 2.4 s for a valid 16,384-leaf tree of blank parents)."""
    cs = cipher_suite(1)
    n_leaves = 4096
    nodes: list[LeafNode | ParentNode | None] = [
        LeafNode(b"e%d" % (x // 2), b"s%d" % (x // 2), Credential.basic(b"x"), Capabilities(credentials=(1,)),
                 LeafNodeSource.COMMIT, parent_hash=b"\x01" * 32)
        if x % 2 == 0 else None
        for x in range(2 * n_leaves - 1)
    ]  # fmt: skip
    nodes[n_leaves - 1] = ParentNode(b"root key")  # the only non-blank parent, reached by no chain
    tree = RatchetTree(cs, nodes)
    tree.root_tree_hash()  # the hashes are cached before counting
    tree._nodes = CountingNodes(tree._nodes)  # noqa: SLF001 (counting the slots the check reads)
    CountingNodes.reads = 0
    with pytest.raises(ValidationError, match=f"parent node {n_leaves - 1} is not parent-hash valid"):
        verify_parent_hashes(tree)
    assert CountingNodes.reads <= 3 * tree.width, f"{CountingNodes.reads} node slots read for {tree.width} nodes"


# --- F9 (robustness): HPKE keys that are not keys of the suite (fixed) -------------------------


def key_package_with(cs: CipherSuite, m: Member, *, init_key: bytes, encryption_key: bytes) -> KeyPackage:
    leaf = replace(m.leaf, encryption_key=encryption_key).signed(cs, m.signature_priv)
    return KeyPackage(cs.id, init_key, leaf).signed(cs, m.signature_priv)


# a P-256 suite (2) key that is an uncompressed point off the curve, and wrong lengths
NOT_KEYS = {1: [b"\x01" * 5, b"\x01" * 33, b""], 2: [b"\x04" + b"\x01" * 64, b"\x04" + b"\x00" * 64, b"\x01" * 5]}


@pytest.mark.parametrize("suite", sorted(NOT_KEYS))
def test_a_key_package_whose_hpke_keys_are_not_keys_of_the_suite_is_refused(suite: int) -> None:
    cs = cipher_suite(suite)
    rng = random.Random(11)
    m = member(cs, b"malformed keys", rng)
    good_init = cs.hpke_key_pair(rng.randbytes)[1]
    check_key_package(cs, key_package_with(cs, m, init_key=good_init, encryption_key=m.leaf.encryption_key))
    for bad in NOT_KEYS[suite]:
        with pytest.raises(ValidationError, match="init key is not a public key"):
            check_key_package(cs, key_package_with(cs, m, init_key=bad, encryption_key=m.leaf.encryption_key))
        with pytest.raises(ValidationError, match="encryption key is not a public key"):
            check_key_package(cs, key_package_with(cs, m, init_key=good_init, encryption_key=bad))
        leaf = replace(m.leaf, encryption_key=bad).signed(cs, m.signature_priv)
        with pytest.raises(ValidationError, match="encryption key is not a public key"):
            check_leaf_node(cs, leaf, source=LeafNodeSource.KEY_PACKAGE)


# --- decoder memory: integer lists (hostile input) --------------------------------------------


def u16_list(values: list[int]) -> bytes:
    w = Writer()
    w.opaque(struct.pack(f">{len(values)}H", *values))
    return w.bytes()


def capabilities_with_extensions(values: list[int]) -> bytes:
    return u16_list([1]) + u16_list([1]) + u16_list(values) + u16_list([]) + u16_list([1])


def test_a_capability_list_over_the_cap_is_refused_before_it_is_decoded() -> None:
    """A Python int costs ~18 times its 2 bytes: 8 MB of u16 values used to peak at ~150 MB."""
    at_cap = list(range(1000, 1000 + MLS_MAX_CAPABILITY_ITEMS))
    assert Capabilities.from_bytes(capabilities_with_extensions(at_cap)).extensions == tuple(at_cap)
    with pytest.raises(DecodeError, match=f"capability list of {MLS_MAX_CAPABILITY_ITEMS + 1} values is over the cap"):
        Capabilities.from_bytes(capabilities_with_extensions(at_cap + [7]))
    huge = capabilities_with_extensions([0x0A0A] * (4 * 1024 * 1024))  # 8 MB
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="over the cap"):
            Capabilities.from_bytes(huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"{peak} bytes allocated refusing an 8 MB list"
    required = RequiredCapabilities((), tuple(at_cap), ())
    assert RequiredCapabilities.from_bytes(required.to_bytes()) == required
    with pytest.raises(DecodeError, match="over the cap"):
        RequiredCapabilities.from_bytes(u16_list([]) + u16_list(at_cap + [7]) + u16_list([]))
    with pytest.raises(DecodeError, match="not a whole number of 2-byte values"):
        Capabilities.from_bytes(u16_list([1]) * 4 + b"\x03\x00\x01\x02")  # credentials: 3 bytes


def test_an_unmerged_leaves_list_over_the_largest_tree_is_refused() -> None:
    w = Writer()
    w.opaque(b"parent key")
    w.opaque(b"")
    prefix = w.bytes()
    w = Writer()
    w.vector(range(MLS_MAX_TREE_LEAVES), Writer.u32)
    assert ParentNode.from_bytes(prefix + w.bytes()).unmerged_leaves == tuple(range(MLS_MAX_TREE_LEAVES))
    w = Writer()
    w.vector(range(MLS_MAX_TREE_LEAVES + 1), Writer.u32)
    with pytest.raises(DecodeError, match=f"unmerged_leaves of {MLS_MAX_TREE_LEAVES + 1} values is over the cap"):
        ParentNode.from_bytes(prefix + w.bytes())


def test_decoded_integer_lists_share_their_int_objects() -> None:
    """Values below 2^16 decode to shared ints: a list costs its pointers, not an int per value
    (a 5 MB tree of leaves listing 5 x 256 capabilities: 95 MB decoded before, 25 MB after)."""
    first = Capabilities.from_bytes(capabilities_with_extensions([0x0A0A, 40000]))
    second = Capabilities.from_bytes(capabilities_with_extensions([40000, 0x0A0A]))
    assert first.extensions[0] is second.extensions[1] and first.extensions[1] is second.extensions[0]
