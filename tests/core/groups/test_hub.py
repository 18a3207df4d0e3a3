"""The hub (core/groups/hub.py) end to end: real core/mls members on devices of accounts on the
nodes alpha, beta and gamma submit commits, proposals and application messages as SUBMIT items;
the hub orders them, fans out one copy per node, refuses what it must without changing, and
hands the group over to another node."""

from __future__ import annotations

import dataclasses

import pytest

from sonet.core.errors import RemoteProtocolError
from sonet.core.groups.hub import HubGroup, HubOutcome
from sonet.core.groups.items import GROUP_REFUSALS, GroupItem, GroupMember, ItemKind, MAX_GROUP_MESSAGE_BYTES
from sonet.core.groups.state import GroupExtension, group_context_extensions
from sonet.core.mls.group import ApplicationMessage, QueuedProposal, StagedCommit
from sonet.core.mls.messages import Add, GroupContextExtensions, Remove
from sonet.core.wire import decode_struct, encode_struct

from .devices import GROUP_ID, Device, Scenario, submit

ALICE, BOB, CAROL = "alice@alpha", "bob@beta", "carol@gamma"


@pytest.fixture
def group() -> Scenario:
    """alice@alpha (creator, admin, hub alpha) has added bob@beta and carol@gamma: epoch 1, seq 1."""
    scenario = Scenario(Device.new(ALICE))
    scenario.add(scenario.devices[0], Device.new(BOB), Device.new(CAROL))
    return scenario


def by(scenario: Scenario, account: str, device: int = 1) -> Device:
    return next(d for d in scenario.devices if (d.account, d.device) == (account, device))


def copies(outcome: HubOutcome) -> dict[str, GroupItem]:
    assert outcome.code == "ok", outcome.code
    return dict(outcome.ordered)


def devices_of(item: GroupItem) -> list[tuple[str, int]]:
    return [m.key() for m in item.members]


def assert_refused(hub: HubGroup, item: GroupItem, code: str) -> None:
    """Refused with ``code``, and nothing changed."""
    assert code in GROUP_REFUSALS
    state, seq, epoch = hub.to_bytes(), hub.seq, hub.epoch
    outcome = hub.order(item)
    assert (outcome.code, outcome.epoch, outcome.ordered, outcome.handover) == (code, epoch, (), None)
    assert (hub.seq, hub.epoch, hub.to_bytes()) == (seq, epoch, state)


# ---- creating --------------------------------------------------------------------------------


def test_a_new_group_is_one_member_at_epoch_0_hosted_by_its_creators_node() -> None:
    scenario = Scenario(Device.new(ALICE))
    hub = scenario.hub
    assert (hub.group, hub.epoch, hub.seq, hub.hub, hub.moved_to, hub.nodes()) == (GROUP_ID, 0, 0, "alpha", None, ("alpha",))


def _created(creator: Device, **kwargs: object) -> tuple[bytes, bytes]:
    return creator.create(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "case",
    ["other node", "other group id", "other admins", "hub elsewhere", "tampered info", "tree of another group", "epoch 1"],
)
def test_create_refuses_what_is_not_a_new_group_of_this_node(case: str) -> None:
    alice = Device.new(ALICE)
    node, group = "alpha", GROUP_ID
    if case == "other admins":
        info, tree = _created(alice, admins=(ALICE, BOB))
    elif case == "hub elsewhere":
        info, tree = _created(alice, hub="beta")
    else:
        info, tree = _created(alice)
    if case == "other node":
        node = "beta"
    elif case == "other group id":
        group = bytes(16)
    elif case == "tampered info":
        info = info[:-1] + bytes([info[-1] ^ 1])
    elif case == "tree of another group":
        tree = _created(Device.new(ALICE, seed=9))[1]
    elif case == "epoch 1":
        staged, _, _ = alice.g.commit(alice.rng.randbytes)
        alice.g.merge(staged)
        from sonet.core.mls.framing import MLSMessage, WireFormat

        info = MLSMessage(WireFormat.GROUP_INFO, alice.g.group_info(with_ratchet_tree=False, external_pub=False)).to_bytes()
        tree = alice.g.ratchet_tree_bytes()
    with pytest.raises(RemoteProtocolError) as exc:
        HubGroup.create(node=node, group=group, group_info=info, ratchet_tree=tree)
    assert exc.value.code == "invalid" and "\n" not in str(exc.value)


# ---- ordering and fan-out --------------------------------------------------------------------


def test_adding_members_fans_out_to_every_node_with_its_devices_after(group: Scenario) -> None:
    # the fixture's add was seq 1; do another: alice adds dan@gamma
    alice, dan = by(group, ALICE), Device.new("dan@gamma")
    staged, item = group.commit(alice, proposals=[Add(dan.key_package)])
    outcome = group.hub.order(item)
    sent = copies(outcome)
    assert sorted(sent) == ["alpha", "beta", "gamma"] and outcome.epoch == 2 and group.hub.seq == 2
    assert devices_of(sent["alpha"]) == [(ALICE, 1)]
    assert devices_of(sent["beta"]) == [(BOB, 1)]
    assert devices_of(sent["gamma"]) == [(CAROL, 1), ("dan@gamma", 1)]
    for copy in sent.values():
        assert (copy.kind, copy.ref, copy.group, copy.epoch, copy.seq, copy.hub) == (ItemKind.ORDERED, item.ref, GROUP_ID, 1, 2, "alpha")
        assert (copy.message, copy.welcome, copy.outcome) == (item.message, item.welcome, "")
        assert decode_struct(GroupItem, encode_struct(copy)) == copy  # it travels as it is
    group.apply_commit(alice, staged, sent["gamma"], [dan])
    assert dan.g.epoch == 2 and dan.g.epoch_authenticator == alice.g.epoch_authenticator


def test_the_first_fan_out_went_from_one_node_to_three(group: Scenario) -> None:
    assert group.hub.nodes() == ("alpha", "beta", "gamma") and (group.hub.seq, group.hub.epoch) == (1, 1)


def test_application_messages_fan_out_to_the_current_nodes_in_sequence(group: Scenario) -> None:
    carol, bob = by(group, CAROL), by(group, BOB)
    first = submit(carol.g.encrypt(b"hello", carol.rng.randbytes), epoch=1, ref=group.ref())
    second = submit(bob.g.encrypt(b"hi", bob.rng.randbytes), epoch=1, ref=group.ref())
    one, two = copies(group.hub.order(first)), copies(group.hub.order(second))
    assert sorted(one) == ["alpha", "beta", "gamma"]
    assert {c.seq for c in one.values()} == {2} and {c.seq for c in two.values()} == {3}
    assert all(c.members == () for c in (*one.values(), *two.values()))
    read = by(group, ALICE).g.process(one["alpha"].message)
    assert isinstance(read, ApplicationMessage) and read.data == b"hello"


def test_the_second_commit_of_an_epoch_is_stale(group: Scenario) -> None:
    bob, carol = by(group, BOB), by(group, CAROL)
    staged_b, from_bob = group.commit(bob)
    _, from_carol = group.commit(carol)
    copies(group.hub.order(from_bob))
    assert_refused(group.hub, from_carol, "stale_epoch")
    group.apply_commit(bob, staged_b, from_bob)
    assert all(d.g.epoch == 2 for d in group.members())


def test_an_application_message_of_an_older_epoch_is_stale(group: Scenario) -> None:
    alice, carol = by(group, ALICE), by(group, CAROL)
    late = submit(carol.g.encrypt(b"too late", carol.rng.randbytes), epoch=1, ref=group.ref())
    staged, item = group.commit(alice)
    copies(group.hub.order(item))
    group.apply_commit(alice, staged, item)
    assert_refused(group.hub, late, "stale_epoch")
    fresh = submit(carol.g.encrypt(b"again", carol.rng.randbytes), epoch=2, ref=group.ref())
    assert copies(group.hub.order(fresh))["gamma"].epoch == 2


def test_a_member_that_is_not_an_admin_cannot_add_another_account(group: Scenario) -> None:
    bob = by(group, BOB)
    _, item = group.commit(bob, proposals=[Add(Device.new("dan@gamma").key_package)])
    assert_refused(group.hub, item, "not_allowed")


def test_a_member_adds_its_own_new_device(group: Scenario) -> None:
    bob, bob2 = by(group, BOB), Device.new(BOB, 2)
    staged, item = group.commit(bob, proposals=[Add(bob2.key_package)])
    sent = copies(group.hub.order(item))
    assert devices_of(sent["beta"]) == [(BOB, 1), (BOB, 2)]
    group.apply_commit(bob, staged, item, [bob2])
    assert bob2.g.epoch == 2


def test_a_proposal_is_ordered_and_a_self_removal_commit_is_allowed(group: Scenario) -> None:
    bob, carol = by(group, BOB), by(group, CAROL)
    leave = submit(bob.g.propose(Remove(bob.g.leaf_index), bob.rng.randbytes), epoch=1, ref=group.ref())
    sent = copies(group.hub.order(leave))
    assert sorted(sent) == ["alpha", "beta", "gamma"] and all(c.members == () for c in sent.values())
    for device in (by(group, ALICE), carol):
        assert isinstance(device.g.process(sent["alpha"].message), QueuedProposal)
    staged, item = group.commit(carol)  # carol is no admin: she commits bob's own leaving
    sent = copies(group.hub.order(item))
    assert sorted(sent) == ["alpha", "beta", "gamma"]  # bob's node hears of his removal
    assert sent["beta"].members == () and devices_of(sent["gamma"]) == [(CAROL, 1)]
    group.apply_commit(carol, staged, item)
    assert not bob.g.active and group.hub.nodes() == ("alpha", "gamma")
    # the next message goes to the nodes still in the group only
    after = submit(carol.g.encrypt(b"bye bob", carol.rng.randbytes), epoch=2, ref=group.ref())
    assert sorted(copies(group.hub.order(after))) == ["alpha", "gamma"]


def test_a_non_admin_proposal_to_add_another_account_is_refused_and_not_kept(group: Scenario) -> None:
    bob, alice = by(group, BOB), by(group, ALICE)
    dan = Device.new("dan@gamma")
    proposal = submit(bob.g.propose(Add(dan.key_package), bob.rng.randbytes), epoch=1, ref=group.ref())
    assert_refused(group.hub, proposal, "not_allowed")
    assert group.hub.public.pending_proposals() == []
    # an admin's own proposal of the same is ordered
    copies(group.hub.order(submit(alice.g.propose(Add(dan.key_package), alice.rng.randbytes), epoch=1, ref=group.ref())))


def test_the_admin_removes_another_account_whose_node_still_hears_of_it(group: Scenario) -> None:
    alice, carol = by(group, ALICE), by(group, CAROL)
    staged, item = group.commit(alice, proposals=[Remove(carol.g.leaf_index)])
    sent = copies(group.hub.order(item))
    assert sorted(sent) == ["alpha", "beta", "gamma"] and sent["gamma"].members == ()
    group.apply_commit(alice, staged, item)
    assert not carol.g.active and group.hub.nodes() == ("alpha", "beta")


# ---- refusals --------------------------------------------------------------------------------


def _valid_commit(group: Scenario) -> GroupItem:
    return group.commit(by(group, BOB))[1]


def test_a_sender_that_is_not_a_member_is_refused(group: Scenario) -> None:
    from sonet.core.mls.framing import MLSMessage, PublicMessage, Sender

    message = MLSMessage.from_bytes(_valid_commit(group).message)
    body = message.body
    assert isinstance(body, PublicMessage)
    for sender in (Sender.member(7), Sender.new_member_commit()):
        content = dataclasses.replace(body.content, sender=sender)
        forged = dataclasses.replace(message, body=dataclasses.replace(body, content=content, membership_tag=b"t" * 32 if sender.is_member else None))
        assert_refused(group.hub, submit(forged, epoch=1), "not_member")


@pytest.mark.parametrize("case", ["garbage", "truncated", "trailing", "tampered", "wrong epoch field", "future epoch", "other group", "welcome without adds", "no welcome for adds", "other welcome", "not a submit", "key package"])
def test_malformed_or_tampered_messages_are_invalid(group: Scenario, case: str) -> None:
    bob = by(group, BOB)
    item = _valid_commit(group)
    if case == "garbage":
        item = dataclasses.replace(item, message=b"\x00\x01garbage")
    elif case == "truncated":
        item = dataclasses.replace(item, message=item.message[:-5])
    elif case == "trailing":
        item = dataclasses.replace(item, message=item.message + b"\x00")
    elif case == "tampered":
        middle = len(item.message) // 2
        item = dataclasses.replace(item, message=item.message[:middle] + bytes([item.message[middle] ^ 0x40]) + item.message[middle + 1 :])
    elif case == "wrong epoch field":
        item = dataclasses.replace(item, epoch=0)
    elif case == "future epoch":
        app = bob.g.encrypt(b"x", bob.rng.randbytes)
        from sonet.core.mls.framing import MLSMessage

        body = app.body
        item = submit(MLSMessage(app.wire_format, dataclasses.replace(body, epoch=5)), epoch=5)  # type: ignore[type-var]
    elif case == "other group":
        item = dataclasses.replace(item, group=bytes(16))
        assert_refused(group.hub, item, "unknown_group")
        return
    elif case == "welcome without adds":
        item = dataclasses.replace(item, welcome=_adding(group)[1].welcome)
    elif case == "no welcome for adds":
        item = dataclasses.replace(_adding(group)[1], welcome=b"")
    elif case == "other welcome":
        other = _adding(group, seed=5)[1]
        item = dataclasses.replace(_adding(group)[1], welcome=other.welcome)
    elif case == "not a submit":
        item = dataclasses.replace(item, kind=ItemKind.VERDICT, message=b"", welcome=b"", outcome="invalid")
    elif case == "key package":
        from sonet.core.mls.framing import MLSMessage, WireFormat

        item = submit(MLSMessage(WireFormat.KEY_PACKAGE, Device.new("eve@beta").key_package), epoch=1)
    assert_refused(group.hub, item, "invalid")


def _adding(group: Scenario, seed: int = 0) -> tuple[StagedCommit, GroupItem]:
    alice = by(group, ALICE)
    return group.commit(alice, proposals=[Add(Device.new("dan@gamma", seed=seed).key_package)])


def test_an_application_message_with_a_welcome_or_as_another_content_type_is_invalid(group: Scenario) -> None:
    carol = by(group, CAROL)
    app = submit(carol.g.encrypt(b"x", carol.rng.randbytes), epoch=1, ref=group.ref())
    assert_refused(group.hub, dataclasses.replace(app, welcome=_adding(group)[1].welcome), "invalid")
    from sonet.core.mls.framing import ContentType, WireFormat

    private_commit = carol.g.commit(carol.rng.randbytes, wire_format=WireFormat.PRIVATE_MESSAGE)[1]
    assert private_commit.body.content_type is ContentType.COMMIT  # type: ignore[union-attr]
    assert_refused(group.hub, submit(private_commit, epoch=1), "invalid")


def test_oversized_parts_are_too_large(group: Scenario) -> None:
    item = _valid_commit(group)
    assert_refused(group.hub, dataclasses.replace(item, message=bytes(MAX_GROUP_MESSAGE_BYTES + 1)), "too_large")


def test_a_refused_item_leaves_the_group_usable(group: Scenario) -> None:
    item = _valid_commit(group)
    assert_refused(group.hub, dataclasses.replace(item, message=item.message[:-1]), "invalid")
    copies(group.hub.order(item))
    assert group.hub.seq == 2


# ---- hand-over and persistence ---------------------------------------------------------------


def test_hand_over_to_a_members_node_continues_the_sequence_there(group: Scenario) -> None:
    alice, carol = by(group, ALICE), by(group, CAROL)
    move = group_context_extensions(GroupExtension("beta", (ALICE,)))
    staged, item = group.commit(alice, proposals=[GroupContextExtensions(move)])
    outcome = group.hub.order(item)
    sent = copies(outcome)
    # each copy names the hub of the next item: member nodes take later items from beta only
    assert sorted(sent) == ["alpha", "beta", "gamma"] and all(c.hub == "beta" and c.seq == 2 for c in sent.values())
    assert outcome.handover is not None
    to, (handover,) = outcome.handover  # a small state: one part
    assert to == "beta" and group.hub.moved_to == "beta"
    assert (handover.kind, handover.group, handover.seq, handover.hub, handover.epoch) == (ItemKind.HANDOVER, GROUP_ID, 2, "beta", 2)
    handover = decode_struct(GroupItem, encode_struct(handover))
    group.apply_commit(alice, staged, item)
    # the old hub orders nothing more
    app = submit(carol.g.encrypt(b"after the move", carol.rng.randbytes), epoch=2, ref=group.ref())
    assert_refused(group.hub, app, "unknown_group")
    with pytest.raises(RemoteProtocolError) as exc:
        HubGroup.adopt(node="gamma", item=handover)
    assert exc.value.code == "invalid"
    new = HubGroup.adopt(node="beta", item=handover)
    assert (new.hub, new.moved_to, new.seq, new.epoch, new.nodes()) == ("beta", None, 2, 2, ("alpha", "beta", "gamma"))
    sent = copies(new.order(app))
    assert all(c.seq == 3 and c.hub == "beta" for c in sent.values())


def test_a_hand_over_item_that_does_not_match_its_state_is_refused(group: Scenario) -> None:
    alice = by(group, ALICE)
    move = group_context_extensions(GroupExtension("beta", (ALICE,)))
    _, item = group.commit(alice, proposals=[GroupContextExtensions(move)])
    outcome = group.hub.order(item)
    assert outcome.handover is not None
    (handover,) = outcome.handover[1]
    for bad in (
        dataclasses.replace(handover, seq=7),
        dataclasses.replace(handover, group=bytes(16)),
        dataclasses.replace(handover, message=handover.message[:-1]),
        dataclasses.replace(handover, kind=ItemKind.ORDERED),
    ):
        with pytest.raises(RemoteProtocolError) as exc:
            HubGroup.adopt(node="beta", item=bad)
        assert exc.value.code == "invalid"


def test_a_non_admin_cannot_move_the_hub(group: Scenario) -> None:
    bob = by(group, BOB)
    move = group_context_extensions(GroupExtension("beta", (ALICE,)))
    _, item = group.commit(bob, proposals=[GroupContextExtensions(move)])
    assert_refused(group.hub, item, "not_allowed")


def test_the_state_round_trips_and_keeps_ordering_the_same(group: Scenario) -> None:
    carol = by(group, CAROL)
    restored = HubGroup.from_bytes(group.hub.to_bytes())
    assert (restored.group, restored.epoch, restored.seq, restored.hub, restored.moved_to) == (GROUP_ID, 1, 1, "alpha", None)
    assert restored.to_bytes() == group.hub.to_bytes() and restored.members() == group.hub.members()
    _, item = group.commit(by(group, ALICE))
    assert group.hub.order(item) == restored.order(item)
    app = submit(carol.g.encrypt(b"x", carol.rng.randbytes), epoch=1, ref=group.ref())
    assert restored.order(app).code == group.hub.order(app).code == "stale_epoch"


def test_malformed_states_are_refused(group: Scenario) -> None:
    data = group.hub.to_bytes()
    from sonet.core import canonical

    fields = canonical.loads(data, max_bytes=len(data))
    for bad in (
        data[:-1],
        data + b"\x00",
        b"",
        canonical.dumps({**fields, "v": 2}),
        canonical.dumps({**fields, "seq": -1}),
        canonical.dumps({**fields, "hub": "Not A Node"}),
        canonical.dumps({**fields, "public": fields["public"][:-1]}),
    ):
        with pytest.raises(RemoteProtocolError) as exc:
            HubGroup.from_bytes(bad)
        assert exc.value.code == "group_malformed" and "\n" not in str(exc.value)


def test_members_of_a_node_are_listed_sorted(group: Scenario) -> None:
    # the hub lists each node's devices sorted by (account, device), as GroupItem.check wants
    alice = by(group, ALICE)
    zed, amy = Device.new("zed@beta"), Device.new("amy@beta", 3)
    _, item = group.commit(alice, proposals=[Add(zed.key_package), Add(amy.key_package)])
    sent = copies(group.hub.order(item))
    assert sent["beta"].members == (GroupMember(account="amy@beta", device=3), GroupMember(account=BOB, device=1), GroupMember(account="zed@beta", device=1))
