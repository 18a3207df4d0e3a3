"""The group rules (core/groups/policy.py) over commits that real members make, seen through a
PublicGroup as the hub sees them, and a few PublicCommits changed by hand where no honest
member's code would make them."""

from __future__ import annotations

import dataclasses

import pytest

from sonet.core.groups.credential import leaf_member, make_credential
from sonet.core.groups.policy import PolicyError, check_commit, check_proposal
from sonet.core.groups.state import GroupExtension, group_context_extensions, group_extension
from sonet.core.mls.framing import MLSMessage
from sonet.core.mls.key_package import Credential
from sonet.core.mls.group.public import PublicCommit, PublicEpoch, PublicGroup
from sonet.core.mls.messages import Add, GroupContextExtensions, PreSharedKey, ReInit, Remove
from sonet.core.mls.psk import PreSharedKeyID

from .devices import Device, Scenario

ALICE, BOB, CAROL = "alice@alpha", "bob@beta", "carol@gamma"


@pytest.fixture
def group() -> Scenario:
    """alice@alpha (the admin) with bob@beta and carol@gamma, at epoch 1."""
    scenario = Scenario(Device.new(ALICE))
    scenario.add(scenario.devices[0], Device.new(BOB), Device.new(CAROL))
    return scenario


def observer(device: Device) -> PublicGroup:
    info = device.g.group_info(with_ratchet_tree=False, external_pub=False)
    return PublicGroup.from_group_info(info, device.g.ratchet_tree_bytes())


def check(device: Device, message: MLSMessage, public: PublicGroup | None = None) -> PublicCommit:
    """The commit checked by MLS as the hub does, then by the rules (PolicyError if refused)."""
    public = public or observer(device)
    before = group_extension(public.context)
    members = {i: leaf_member(leaf) for i, leaf in public.members()}
    commit = public.process(message)
    assert isinstance(commit, PublicCommit)
    after = before if commit.extensions is None else GroupExtension.from_extension(next(e for e in commit.extensions if e.extension_type == 0xF5A0))
    check_commit(before=before, members=members, commit=commit, after=after)
    return commit


def by(scenario: Scenario, account: str) -> Device:
    return next(d for d in scenario.devices if d.account == account)


def commit(device: Device, **kwargs: object) -> MLSMessage:
    return device.g.commit(device.rng.randbytes, **kwargs)[1]  # type: ignore[arg-type]


def test_an_admin_adds_and_removes_other_accounts(group: Scenario) -> None:
    alice = by(group, ALICE)
    check(alice, commit(alice, proposals=[Add(Device.new("dan@gamma").key_package)]))
    check(alice, commit(alice, proposals=[Remove(by(group, CAROL).g.leaf_index)]))


def test_a_member_adds_and_removes_only_its_own_devices(group: Scenario) -> None:
    bob = by(group, BOB)
    check(bob, commit(bob, proposals=[Add(Device.new(BOB, 2).key_package)]))
    with pytest.raises(PolicyError, match="only an admin adds devices of another account") as exc:
        check(bob, commit(bob, proposals=[Add(Device.new("dan@gamma").key_package)]))
    assert exc.value.code == "not_allowed"
    with pytest.raises(PolicyError, match="only an admin removes"):
        check(bob, commit(bob, proposals=[Remove(by(group, CAROL).g.leaf_index)]))


def test_any_member_commits_a_pending_self_removal(group: Scenario) -> None:
    bob, carol = by(group, BOB), by(group, CAROL)
    public = observer(carol)
    leave = bob.g.propose(Remove(bob.g.leaf_index), bob.rng.randbytes)
    public.process(leave)
    carol.g.process(leave)
    commit_ = check(carol, commit(carol), public)
    assert [i for i, _ in commit_.removed] == [bob.g.leaf_index]


def test_only_an_admin_changes_the_settings(group: Scenario) -> None:
    alice, bob = by(group, ALICE), by(group, BOB)
    promoted = group_context_extensions(GroupExtension("alpha", (ALICE, BOB)))
    with pytest.raises(PolicyError, match="only an admin changes"):
        check(bob, commit(bob, proposals=[GroupContextExtensions(promoted)]))
    check(alice, commit(alice, proposals=[GroupContextExtensions(promoted)]))


def test_the_last_admin_cannot_leave_unless_it_names_another_first(group: Scenario) -> None:
    alice, bob = by(group, ALICE), by(group, BOB)
    public = observer(bob)
    leave = alice.g.propose(Remove(alice.g.leaf_index), alice.rng.randbytes)
    public.process(leave)
    bob.g.process(leave)
    with pytest.raises(PolicyError, match="last admin"):
        check(bob, commit(bob), public)


def test_a_new_hub_is_a_members_node(group: Scenario) -> None:
    alice = by(group, ALICE)
    elsewhere = group_context_extensions(GroupExtension("delta", (ALICE,)))
    with pytest.raises(PolicyError, match="not the node of a member"):
        check(alice, commit(alice, proposals=[GroupContextExtensions(elsewhere)]))
    check(alice, commit(alice, proposals=[GroupContextExtensions(group_context_extensions(GroupExtension("beta", (ALICE,))))]))


def test_settings_without_the_required_extension_are_refused(group: Scenario) -> None:
    alice = by(group, ALICE)
    only_ext = (GroupExtension("alpha", (ALICE,)).to_extension(),)
    with pytest.raises(PolicyError, match="keep requiring"):
        check(alice, commit(alice, proposals=[GroupContextExtensions(only_ext)]))


def test_a_device_is_in_the_group_once(group: Scenario) -> None:
    alice = by(group, ALICE)
    again = Device.new(BOB, seed=1)  # bob's device 1 with another KeyPackage
    with pytest.raises(PolicyError, match="twice"):
        check(alice, commit(alice, proposals=[Add(again.key_package)]))


def test_an_update_cannot_make_a_leaf_another_device(group: Scenario) -> None:
    bob = by(group, BOB)
    forged = make_credential(account=CAROL, device=1, fingerprint=bob.identity.public.fingerprint, identity=bob.identity, signature_key=bob.signature_pub)

    leaf = bob.g.tree.leaf(bob.g.leaf_index)
    assert leaf is not None
    update = bob.g.propose_update(bob.rng.randbytes, leaf=leaf.with_changes(credential=Credential.basic(forged.to_identity())))
    public = observer(bob)
    proposal = public.process(update)
    members = {i: leaf_member(lf) for i, lf in public.members()}
    with pytest.raises(PolicyError, match="cannot become another device"):
        check_proposal(extension=group_extension(public.context), members=members, proposal=proposal.proposal, proposer=proposal.sender)  # type: ignore[union-attr]


def _empty_commit(device: Device) -> tuple[PublicGroup, PublicCommit, dict]:  # type: ignore[type-arg]
    public = observer(device)
    members = {i: leaf_member(leaf) for i, leaf in public.members()}
    made = public.process(commit(device))
    assert isinstance(made, PublicCommit)
    return public, made, members


def test_a_path_leaf_that_names_another_device_is_refused(group: Scenario) -> None:
    bob, carol = by(group, BOB), by(group, CAROL)
    _, made, members = _empty_commit(bob)
    tree = made.staged.tree.copy()
    tree.update_leaf(bob.g.leaf_index, carol.key_package.leaf_node)  # hand-made: no member's code does this
    changed = dataclasses.replace(made, staged=PublicEpoch(made.staged.context, tree, made.staged.interim_transcript_hash))
    ext = group_extension(made.staged.context)
    with pytest.raises(PolicyError, match="cannot become another device"):
        check_commit(before=ext, members=members, commit=changed, after=ext)
    check_commit(before=ext, members=members, commit=made, after=ext)


@pytest.mark.parametrize(
    "proposal",
    [
        PreSharedKey(PreSharedKeyID.external(b"id", b"n" * 32)),
        ReInit(b"g" * 16, 1, 0x004D, ()),
    ],
)
def test_proposal_types_sonet_does_not_use_are_refused(group: Scenario, proposal: object) -> None:
    alice = by(group, ALICE)
    _, made, members = _empty_commit(alice)
    ext = group_extension(made.staged.context)
    changed = dataclasses.replace(made, proposals=((proposal, alice.g.leaf_index),))
    with pytest.raises(PolicyError, match="no proposals of type"):
        check_commit(before=ext, members=members, commit=changed, after=ext)


def test_a_committer_that_is_not_a_member_is_refused(group: Scenario) -> None:
    alice = by(group, ALICE)
    _, made, members = _empty_commit(alice)
    ext = group_extension(made.staged.context)
    with pytest.raises(PolicyError, match="not a member"):
        check_commit(before=ext, members={i: m for i, m in members.items() if i != alice.g.leaf_index}, commit=made, after=ext)


def test_settings_changed_without_a_proposal_are_refused(group: Scenario) -> None:
    alice = by(group, ALICE)
    _, made, members = _empty_commit(alice)
    ext = group_extension(made.staged.context)
    with pytest.raises(PolicyError, match="only by a GroupContextExtensions"):
        check_commit(before=ext, members=members, commit=made, after=GroupExtension("alpha", (ALICE, BOB)))
