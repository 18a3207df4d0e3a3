"""The group a ReInit or a branch leads to (RFC 9420 §11.2, §11.3) and the usage rules of
resumption PSKs (§8.4): after a merged ReInit the members start the new group (new suite, group
id, extensions) whose Welcome carries the resumption PSK of usage reinit of the old group's last
epoch; a subset of members branches a subgroup with a PSK of usage branch. A PSK of usage reinit
or branch anywhere else (a regular commit or proposal, a plain join) is refused, one of usage
application is taken in a regular commit."""

from __future__ import annotations

import random

import pytest

from sonet.core.errors import LocalProtocolError
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.extensions import Extension
from sonet.core.mls.group import ApplicationMessage, Group, StagedCommit
from sonet.core.mls.group.commit import CommitOptions, create_commit
from sonet.core.mls.group.proposals import ProposalInfo
from sonet.core.mls.framing import Sender
from sonet.core.mls.key_package import ValidationError
from sonet.core.mls.messages import Add, PreSharedKey, ReInit, Welcome, decrypt_group_secrets
from sonet.core.mls.psk import PreSharedKeyID, ResumptionPSKUsage
from tests.core.mls.test_group import Member, assert_agree, deliver, three_members

NEW_GROUP_ID = b"the group, reinitialised"


def reinit_merged(suite: int, new_suite: int, extensions: tuple[Extension, ...] = ()) -> tuple[random.Random, list[Member]]:
    rng, alice, bob, carol = three_members(suite)
    proposal = ReInit(NEW_GROUP_ID, 1, new_suite, extensions)
    staged, commit, _ = bob.g.commit(rng.randbytes, proposals=[proposal])
    deliver(bob, staged, commit, [alice, carol])
    assert not alice.g.active and not bob.g.active and not carol.g.active
    return rng, [alice, bob, carol]


def successor(member: Member, suite: int, rng: random.Random) -> Member:
    """The same client (credential) with a KeyPackage of ``suite``; its old group goes along."""
    new = Member.new(cipher_suite(suite), member.name, rng)
    new.group = member.group
    return new


@pytest.mark.parametrize(("suite", "new_suite"), [(1, 0x004D), (0x004D, 1), (1, 1)])
def test_the_members_start_the_group_a_reinit_leads_to(suite: int, new_suite: int) -> None:
    extensions = (Extension(0xFF00, b"new rules"),)
    rng, old = reinit_merged(suite, new_suite, extensions)
    alice, bob, carol = (successor(m, new_suite, rng) for m in old)
    last_epoch = bob.g.epoch
    new, welcome = alice.g.reinit(
        alice.key_package.leaf_node, signature_priv=alice.signature_priv, encryption_priv=alice.encryption_priv,
        key_packages=[bob.key_package, carol.key_package], rng=rng.randbytes,
    )  # fmt: skip
    assert welcome is not None
    joined = [
        m.g.join_reinit(welcome, m.key_package, init_priv=m.init_priv, encryption_priv=m.encryption_priv, signature_priv=m.signature_priv)
        for m in (bob, carol)
    ]  # fmt: skip
    alice.group, bob.group, carol.group = new, *joined
    assert new.cs.id == new_suite and new.group_id == NEW_GROUP_ID and new.epoch == 1
    assert new.context.extensions == extensions
    assert_agree([alice, bob, carol])
    # the PSK that binds the two groups is the old group's last epoch's, of usage reinit
    (psk_id,) = welcome_psks(bob, welcome)
    assert (psk_id.usage, psk_id.psk_group_id, psk_id.psk_epoch) == (ResumptionPSKUsage.REINIT, old[0].g.group_id, last_epoch)
    # and the new group lives on
    data = carol.g.encrypt(b"in the new group", rng.randbytes).to_bytes()
    assert alice.g.process(data) == ApplicationMessage(2, b"in the new group", b"")
    staged, commit, _ = bob.g.commit(rng.randbytes)
    deliver(bob, staged, commit, [alice, carol])
    assert_agree([alice, bob, carol])


def welcome_psks(member: Member, welcome: Welcome) -> list[PreSharedKeyID]:
    secrets = decrypt_group_secrets(member.cs, welcome, member.key_package.ref(member.cs), member.init_priv)
    return list(secrets.psks)


def test_a_reinit_welcome_is_checked_against_the_reinit() -> None:
    rng, old = reinit_merged(1, 1)
    alice, bob, carol = (successor(m, 1, rng) for m in old)
    keys = {"signature_priv": alice.signature_priv, "encryption_priv": alice.encryption_priv}

    def join(member: Member, welcome: object, how: str = "join_reinit") -> Group:
        kwargs = {"init_priv": member.init_priv, "encryption_priv": member.encryption_priv, "signature_priv": member.signature_priv}
        return getattr(member.g, how)(welcome, member.key_package, **kwargs)  # type: ignore[no-any-return]

    # a Welcome into another group than the ReInit named
    _, wrong = alice.g._resume(
        ResumptionPSKUsage.REINIT, alice.cs, b"another group", (), alice.key_package.leaf_node, keys["signature_priv"],
        keys["encryption_priv"], [bob.key_package], rng.randbytes, True,
    )  # fmt: skip
    with pytest.raises(ValidationError, match="not the one the ReInit named"):
        join(bob, wrong)
    # a plain join of a reinit Welcome, and join_reinit of a Welcome without the reinit PSK
    _, good = alice.g.reinit(alice.key_package.leaf_node, key_packages=[bob.key_package], rng=rng.randbytes, **keys)
    with pytest.raises(ValidationError, match="usage reinit: join it through the old group"):
        bob.join(good)
    plain_group = Member.new(alice.cs, b"alice", rng)
    plain_group.create(rng)
    _, _, plain = plain_group.g.commit(rng.randbytes, proposals=[Add(bob.key_package)])
    with pytest.raises(ValidationError, match="without the resumption PSK of usage reinit"):
        join(bob, plain)
    # only after a ReInit was merged, and not on a group that goes on
    rng2, a2, b2, c2 = three_members(1, seed=7)
    with pytest.raises(LocalProtocolError, match="not reinitialised"):
        a2.g.reinit(a2.key_package.leaf_node, signature_priv=a2.signature_priv, encryption_priv=a2.encryption_priv,
                    key_packages=[], rng=rng2.randbytes)  # fmt: skip
    with pytest.raises(LocalProtocolError, match="not reinitialised"):
        join(b2, good)
    # the genuine Welcome still works
    assert join(bob, good).epoch == 1


@pytest.mark.parametrize(("version", "suite", "reason"), [(1, 0x0B0B, "cipher suite 2827"), (2, 1, "protocol version 2")])
def test_a_reinit_to_a_suite_or_version_we_do_not_have_is_our_error(version: int, suite: int, reason: str) -> None:
    rng, alice, bob, carol = three_members(1)
    staged, commit, _ = bob.g.commit(rng.randbytes, proposals=[ReInit(NEW_GROUP_ID, version, suite)])
    deliver(bob, staged, commit, [alice, carol])
    with pytest.raises(LocalProtocolError, match=reason):
        alice.g.reinit(alice.key_package.leaf_node, signature_priv=alice.signature_priv, encryption_priv=alice.encryption_priv,
                       key_packages=[], rng=rng.randbytes)  # fmt: skip


def test_a_subset_of_members_branches_a_subgroup() -> None:
    rng, alice0, bob0, carol = three_members(1)
    alice, bob = successor(alice0, 1, rng), successor(bob0, 1, rng)
    sub, welcome = alice.g.branch(
        b"alice and bob", alice.key_package.leaf_node, signature_priv=alice.signature_priv,
        encryption_priv=alice.encryption_priv, key_packages=[bob.key_package], rng=rng.randbytes,
    )  # fmt: skip
    assert welcome is not None
    bob_sub = bob.g.join_branch(
        welcome, bob.key_package, init_priv=bob.init_priv, encryption_priv=bob.encryption_priv, signature_priv=bob.signature_priv
    )
    assert sub.epoch == bob_sub.epoch == 1 and sub.epoch_authenticator == bob_sub.epoch_authenticator
    (psk_id,) = welcome_psks(bob, welcome)
    assert (psk_id.usage, psk_id.psk_group_id, psk_id.psk_epoch) == (ResumptionPSKUsage.BRANCH, carol.g.group_id, carol.g.epoch)
    # the old group goes on, carol in it
    staged, commit, _ = carol.g.commit(rng.randbytes)
    deliver(carol, staged, commit, [alice0, bob0])
    assert_agree([alice0, bob0, carol])

    # refusals: a branch member who is not a member; a Welcome that adds one; a plain join
    dave = Member.new(alice.cs, b"dave", rng)
    with pytest.raises(LocalProtocolError, match="not a member of this group"):
        alice.g.branch(b"sub", alice.key_package.leaf_node, signature_priv=alice.signature_priv,
                       encryption_priv=alice.encryption_priv, key_packages=[dave.key_package], rng=rng.randbytes)  # fmt: skip
    bob2 = successor(bob0, 1, rng)
    _, sneaky = alice.g._resume(
        ResumptionPSKUsage.BRANCH, alice.cs, b"sub", (), alice.key_package.leaf_node, alice.signature_priv,
        alice.encryption_priv, [bob2.key_package, dave.key_package], rng.randbytes, True,
    )  # fmt: skip
    with pytest.raises(ValidationError, match="is not a member of the group it branches from"):
        bob2.g.join_branch(sneaky, bob2.key_package, init_priv=bob2.init_priv, encryption_priv=bob2.encryption_priv,
                           signature_priv=bob2.signature_priv)  # fmt: skip
    bob3 = successor(bob0, 1, rng)
    _, fine = alice.g.branch(b"sub", alice.key_package.leaf_node, signature_priv=alice.signature_priv,
                             encryption_priv=alice.encryption_priv, key_packages=[bob3.key_package], rng=rng.randbytes)  # fmt: skip
    assert fine is not None
    with pytest.raises(ValidationError, match="usage branch: join it through the old group"):
        bob3.join(fine)
    with pytest.raises(LocalProtocolError, match="not reinitialised"):
        bob3.g.join_reinit(fine, bob3.key_package, init_priv=bob3.init_priv, encryption_priv=bob3.encryption_priv,
                           signature_priv=bob3.signature_priv)  # fmt: skip


@pytest.mark.parametrize("usage", [ResumptionPSKUsage.REINIT, ResumptionPSKUsage.BRANCH])
def test_reinit_and_branch_psks_are_refused_in_a_regular_commit_or_proposal(usage: ResumptionPSKUsage) -> None:
    rng, alice, bob, carol = three_members(1)
    psk = PreSharedKey(PreSharedKeyID.resumption(usage, alice.g.group_id, alice.g.epoch, rng.randbytes(32)))
    with pytest.raises(LocalProtocolError, match=f"usage {usage.name.lower()} in a regular commit"):
        alice.g.commit(rng.randbytes, proposals=[psk])
    proposal = alice.g.propose(psk, rng.randbytes)
    with pytest.raises(ValidationError, match=f"usage {usage.name.lower()} in a regular commit"):
        bob.g.process(proposal.to_bytes())
    # a commit that carries one anyway (made as only the first commit of a new group may be)
    state = alice.g._state
    options = CommitOptions(resumption_usage=usage)
    created = create_commit(
        alice.cs, state, 0, alice.signature_priv, [ProposalInfo(psk, Sender.member(0))], alice.g._psk, options, rng.randbytes
    )
    message = alice.g._protect(created.content, rng.randbytes)
    before = (bob.g.epoch, bob.g.epoch_authenticator)
    with pytest.raises(ValidationError, match=f"usage {usage.name.lower()} in a regular commit"):
        bob.g.process(message.to_bytes())
    assert (bob.g.epoch, bob.g.epoch_authenticator) == before


def test_an_application_resumption_psk_is_taken_in_a_regular_commit() -> None:
    rng, alice, bob, carol = three_members(1)
    psk = PreSharedKey(PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, alice.g.group_id, 1, rng.randbytes(32)))
    staged, commit, _ = alice.g.commit(rng.randbytes, proposals=[psk])
    assert staged.psks == (psk.psk,)
    deliver(alice, staged, commit, [bob, carol])
    assert_agree([alice, bob, carol])
