"""Checking a commit's proposals scales with the commit, not with commit x group (core/mls/group/
proposals.py, key_package/validation.py): each new leaf is checked against the tree's summary
of the members' leaves (``LeafSummary``), which the tree keeps up to date, so a commit of N Adds
costs O(N). The work is counted (Python lines and calls run, by ``sys.settrace``), not timed.
The same rules still hold: duplicate keys and unsupported credential types are refused, among
Adds, against members, and for an Update against the members other than the leaf it replaces."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

import pytest

from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.extensions import Capabilities, Lifetime
from sonet.core.mls.framing import Sender
from sonet.core.mls.group.proposals import ProposalInfo, apply_proposals, check_proposal_list
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode, LeafNodeSource, ValidationError, check_leaf_node
from sonet.core.mls.key_package.validation import LeafSummary
from sonet.core.mls.key_schedule import GroupContext
from sonet.core.mls.messages import Add, Remove, Update
from sonet.core.mls.tree import RatchetTree

CS = cipher_suite(1)
GROUP_ID = b"scale"
BASIC, X509 = 1, 2


@dataclass
class Client:
    key_package: KeyPackage
    signature_priv: bytes

    @property
    def leaf(self) -> LeafNode:
        return self.key_package.leaf_node


def client(rng: random.Random, *, credential_type: int = BASIC, credentials: tuple[int, ...] = (BASIC,),
           signature: tuple[bytes, bytes] | None = None, encryption_key: bytes | None = None) -> Client:  # fmt: skip
    sig_priv, sig_pub = signature or CS.signature_key_pair(rng.randbytes)
    enc_pub = encryption_key or CS.hpke_key_pair(rng.randbytes)[1]
    init_pub = CS.hpke_key_pair(rng.randbytes)[1]
    credential = Credential.basic(rng.randbytes(8)) if credential_type == BASIC else Credential.x509((b"der",))
    leaf = LeafNode(
        enc_pub, sig_pub, credential, Capabilities(cipher_suites=(CS.id,), credentials=credentials), LeafNodeSource.KEY_PACKAGE,
        Lifetime(0, 2**64 - 1),
    ).signed(CS, sig_priv)
    return Client(KeyPackage(CS.id, init_pub, leaf).signed(CS, sig_priv), sig_priv)


def group_of(members: Sequence[Client]) -> tuple[RatchetTree, GroupContext]:
    tree = RatchetTree.with_one_leaf(CS, members[0].leaf)
    tree.add_leaves(m.leaf for m in members[1:])
    return tree, GroupContext(CS.id, GROUP_ID, 3, tree.root_tree_hash(), b"\0" * CS.nh)


def adds(clients: Sequence[Client]) -> list[ProposalInfo]:
    return [ProposalInfo(Add(c.key_package), Sender.member(0)) for c in clients]


def check(tree: RatchetTree, context: GroupContext, proposals: Sequence[ProposalInfo], committer: int = 0) -> None:
    check_proposal_list(CS, tree, context, proposals, committer, lambda _: None)


def counted_work(run: Callable[[], object]) -> int:
    """Python lines and calls executed by ``run`` (C work, signatures included, is not counted:
    it is the same per Add in both forms)."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        return local

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        return local

    sys.settrace(on_call)
    try:
        run()
    finally:
        sys.settrace(None)
    return count


@pytest.fixture(scope="module")
def clients() -> list[Client]:
    rng = random.Random(15)
    return [client(rng) for _ in range(2_000 + 8)]


def test_a_commit_of_n_adds_is_checked_and_applied_in_work_linear_in_n(clients: list[Client]) -> None:
    tree, context = group_of(clients[:8])
    small, large = adds(clients[8:508]), adds(clients[8:2_008])
    check_small = counted_work(lambda: check(tree, context, small))
    check_large = counted_work(lambda: check(tree, context, large))
    # 4x the Adds: ~4x the work (a check against every member and earlier Add each would be ~16x)
    assert 3.5 < check_large / check_small < 4.5, (check_small, check_large)
    apply_small = counted_work(lambda: apply_proposals(tree, context.extensions, small))
    apply_large = counted_work(lambda: apply_proposals(tree, context.extensions, large))
    assert 3.5 < apply_large / apply_small < 5.5, (apply_small, apply_large)  # O(N log N): each new leaf's direct path
    applied = apply_proposals(tree, context.extensions, large)
    assert [i for i, _ in applied.added] == list(range(8, 2_008))
    assert applied.tree.leaf_summary() == LeafSummary.of(leaf for _, leaf in applied.tree.leaves())


def test_a_check_against_a_large_group_costs_what_one_against_a_small_one_does(clients: list[Client]) -> None:
    """The members are summarised by the tree, not scanned per Add or per check."""
    newcomers = adds(clients[:20])
    small_tree, small_context = group_of(clients[20:28])
    large_tree, large_context = group_of(clients[20:2_008])
    small = counted_work(lambda: check(small_tree, small_context, newcomers))
    large = counted_work(lambda: check(large_tree, large_context, newcomers))
    assert large < 1.2 * small, (small, large)


def test_two_adds_of_one_signature_key_are_refused() -> None:
    rng = random.Random(1)
    members = [client(rng) for _ in range(3)]
    tree, context = group_of(members)
    first = client(rng)
    twin = client(rng, signature=(first.signature_priv, first.leaf.signature_key))
    check(tree, context, adds([first, client(rng)]))
    with pytest.raises(ValidationError, match="two Add proposals for the same client"):
        check(tree, context, adds([first, client(rng), twin]))


def test_an_add_with_a_members_or_an_earlier_adds_key_is_refused() -> None:
    rng = random.Random(2)
    members = [client(rng) for _ in range(3)]
    tree, context = group_of(members)
    member_encryption = client(rng, encryption_key=members[2].leaf.encryption_key)
    with pytest.raises(ValidationError, match="encryption key is a member's already"):
        check(tree, context, adds([client(rng), member_encryption]))
    member_signature = client(rng, signature=(members[1].signature_priv, members[1].leaf.signature_key))
    with pytest.raises(ValidationError, match="signature key is a member's already"):
        check(tree, context, adds([member_signature]))
    first = client(rng)
    with pytest.raises(ValidationError, match="encryption key is a member's already"):
        check(tree, context, adds([first, client(rng, encryption_key=first.leaf.encryption_key)]))
    # a member removed by the same commit no longer holds its keys
    check(tree, context, [ProposalInfo(Remove(2), Sender.member(0)), *adds([member_encryption])])


def test_credential_types_must_be_supported_both_ways_by_the_group() -> None:
    rng = random.Random(3)
    members = [client(rng, credentials=(BASIC, X509)) for _ in range(3)]
    members.append(client(rng, credential_type=X509, credentials=(BASIC, X509)))
    tree, context = group_of(members)
    check(tree, context, adds([client(rng, credentials=(BASIC, X509))]))
    with pytest.raises(ValidationError, match="leaf node does not support credential type 2 of a member"):
        check(tree, context, adds([client(rng)]))  # basic only, and a member is x509
    # once the x509 member is removed, nobody uses type 2: a basic-only leaf is fine
    check(tree, context, [ProposalInfo(Remove(3), Sender.member(0)), *adds([client(rng)])])

    basic_only = [client(rng) for _ in range(3)]
    tree, context = group_of(basic_only)
    x509_newcomer = client(rng, credential_type=X509, credentials=(BASIC, X509))
    with pytest.raises(ValidationError, match="a member does not support the leaf node's credential type 2"):
        check(tree, context, adds([x509_newcomer]))
    # nor an earlier Add of the same commit
    tree, context = group_of([client(rng, credentials=(BASIC, X509)) for _ in range(2)])
    with pytest.raises(ValidationError, match="a member does not support the leaf node's credential type 2"):
        check(tree, context, adds([client(rng), x509_newcomer]))


def update_of(member: Client, leaf_index: int, rng: random.Random, **changes: Any) -> ProposalInfo:
    base = member.leaf
    leaf = LeafNode(
        changes.get("encryption_key", CS.hpke_key_pair(rng.randbytes)[1]), base.signature_key, changes.get("credential", base.credential),
        changes.get("capabilities", base.capabilities), LeafNodeSource.UPDATE,
    ).signed(CS, member.signature_priv, GROUP_ID, leaf_index)  # fmt: skip
    return ProposalInfo(Update(leaf), Sender.member(leaf_index), b"ref %d" % leaf_index)


def test_an_update_is_checked_against_the_other_members() -> None:
    """The leaf an Update replaces does not count (it keeps its signature key, and may drop a
    credential type only it used), every other member does."""
    rng = random.Random(4)
    members = [client(rng, credentials=(BASIC, X509)) for _ in range(3)]
    members.append(client(rng, credential_type=X509, credentials=(BASIC, X509)))
    tree, context = group_of(members)
    check(tree, context, [update_of(members[1], 1, rng)])
    with pytest.raises(ValidationError, match="encryption key is a member's already"):
        check(tree, context, [update_of(members[1], 1, rng, encryption_key=members[2].leaf.encryption_key)])
    with pytest.raises(ValidationError, match="does not support credential type 2 of a member"):
        check(tree, context, [update_of(members[1], 1, rng, capabilities=Capabilities(credentials=(BASIC,)))])
    # the only x509 member turning basic: its old leaf's type 2 no longer counts
    basic_only = Capabilities(credentials=(BASIC,))
    check(tree, context, [update_of(members[3], 3, rng, credential=Credential.basic(b"now basic"), capabilities=basic_only)])
    with pytest.raises(ValidationError, match="does not support credential type 2 of a member"):
        check(tree, context, [update_of(members[2], 2, rng, credential=Credential.basic(b"b"), capabilities=basic_only)])


def test_the_trees_leaf_summary_follows_every_change_and_copy() -> None:
    rng = random.Random(5)
    members = [client(rng, credentials=(BASIC, X509)) for _ in range(6)]
    tree, _ = group_of(members[:4])
    original = tree.copy()

    def scanned(t: RatchetTree) -> LeafSummary:
        return LeafSummary.of(leaf for _, leaf in t.leaves())

    tree.add_leaves(m.leaf for m in members[4:])
    tree.update_leaf(1, client(rng, credential_type=X509, credentials=(X509, BASIC, X509)).leaf)
    assert tree.leaf_summary() == scanned(tree) and tree.leaf_summary().supporting[X509] == 6
    for leaf_index in (5, 4, 3):  # the last Removes truncate the tree
        tree.remove_leaf(leaf_index)
        assert tree.leaf_summary() == scanned(tree)
    assert tree.n_leaves == 4 and tree.leaf_summary().members == 3
    assert original.leaf_summary() == scanned(original) and original.leaf_summary().members == 4
    assert RatchetTree.from_bytes(CS, tree.to_bytes()).leaf_summary() == tree.leaf_summary()


def test_a_commit_paths_leaf_is_checked_against_the_members_but_its_old_leaf() -> None:
    """The call shape of a received commit's path leaf (group/commit.py) and of an external
    joiner's: the tree's summary, less the leaf replaced."""
    rng = random.Random(6)
    members = [client(rng) for _ in range(4)]
    tree, _ = group_of(members)

    def path_leaf(encryption_key: bytes) -> LeafNode:
        old = members[1].leaf
        return LeafNode(
            encryption_key, old.signature_key, old.credential, old.capabilities, LeafNodeSource.COMMIT, parent_hash=b"\1" * CS.nh
        ).signed(CS, members[1].signature_priv, GROUP_ID, 1)

    def check_path(leaf: LeafNode) -> None:
        check_leaf_node(
            CS, leaf, source=LeafNodeSource.COMMIT, group_id=GROUP_ID, leaf_index=1, others=tree.leaf_summary(), replacing=tree.leaf(1)
        )

    check_path(path_leaf(CS.hpke_key_pair(rng.randbytes)[1]))  # its own signature key: not a clash
    with pytest.raises(ValidationError, match="encryption key is a member's already"):
        check_path(path_leaf(members[3].leaf.encryption_key))
    with pytest.raises(ValidationError, match="signature key is a member's already"):
        check_leaf_node(CS, path_leaf(CS.hpke_key_pair(rng.randbytes)[1]), source=LeafNodeSource.COMMIT, group_id=GROUP_ID,
                        leaf_index=1, others=tree.leaf_summary())  # fmt: skip  (without replacing, its old leaf counts)


def test_the_new_leaves_of_one_commit_do_not_share_keys() -> None:
    """An Update's new leaf against the same commit's Adds and the other Updates (§7.3: every
    key unique in the tree the commit makes)."""
    rng = random.Random(6)
    members = [client(rng) for _ in range(4)]
    tree, context = group_of(members)
    newcomer = client(rng)
    with pytest.raises(ValidationError, match="two leaves of one commit share an encryption key"):
        check(tree, context, [update_of(members[1], 1, rng, encryption_key=newcomer.leaf.encryption_key), *adds([newcomer])])
    shared = CS.hpke_key_pair(rng.randbytes)[1]
    with pytest.raises(ValidationError, match="two leaves of one commit share an encryption key"):
        check(tree, context, [update_of(members[1], 1, rng, encryption_key=shared), update_of(members[2], 2, rng, encryption_key=shared)])
    check(tree, context, [update_of(members[1], 1, rng), update_of(members[2], 2, rng), *adds([newcomer])])


def test_a_commit_over_many_pending_proposals_checks_the_list_once_when_all_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A member may leave up to MAX_PENDING_PROPOSALS proposals for the next committer: picking
    the valid ones one by one re-checked a growing list each time (200 pending Adds: 6 s)."""
    import copy

    from sonet.core.mls.group.proposals import check_proposal_list as real

    from .test_group import Member, three_members

    _rng, alice, bob, _carol = three_members(1, seed=5)
    rng = random.Random(7)
    proposer = copy.deepcopy(bob.g)
    for message in [proposer.propose(Add(Member.new(bob.cs, b"n%d" % i, rng).key_package), rng.randbytes) for i in range(40)]:
        alice.g.process(message)
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> None:
        calls.append(len(args[3]))
        real(*args, **kwargs)

    monkeypatch.setattr("sonet.core.mls.group.commit.check_proposal_list", counting)
    staged, _message, welcome = alice.g.commit(rng.randbytes)
    assert len(staged.added) == 40 and welcome is not None
    assert calls == [40] or calls == [40, 40], calls  # the whole list at once (and the final check), not 40 growing ones


def test_a_remembered_good_signature_does_not_vouch_for_another() -> None:
    rng = random.Random(8)
    signer = client(rng)
    leaf = signer.leaf
    assert leaf.verify_signature(CS)
    assert leaf.verify_signature(CS)  # remembered
    forged = replace(leaf, signature=bytes([leaf.signature[0] ^ 1]) + leaf.signature[1:])
    assert not forged.verify_signature(CS)
    other_content = replace(leaf, credential=Credential.basic(b"someone else"))
    assert not other_content.verify_signature(CS)
