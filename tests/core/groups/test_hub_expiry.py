"""Timed group items at the hub (core/groups/hub.py, core/groups/expiry.py; docs/groups.md
"Disappearing messages on nodes"): only an application message may expire, its expiry is the
one its sender authenticated, and every ORDERED copy names the last item before it that does not
expire and the latest expiry since, so devices know which missing items they may skip."""

from __future__ import annotations

import dataclasses

import pytest

from sonet.core.groups.expiry import expiry_aad, read_expiry_aad
from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core.mls.group import ApplicationMessage
from sonet.core.groups.state import GroupExtension, group_context_extensions
from sonet.core.mls.messages import GroupContextExtensions, Remove
from sonet.core.wire import decode_struct, encode_struct

from .devices import Device, Scenario, submit
from .test_hub import ALICE, BOB, CAROL, assert_refused, by, copies

T = 1_900_000_000_000


@pytest.fixture
def group() -> Scenario:
    scenario = Scenario(Device.new(ALICE))
    scenario.add(scenario.devices[0], Device.new(BOB), Device.new(CAROL))
    return scenario


def timed(group: Scenario, device: Device, text: bytes, expires: int | None) -> GroupItem:
    message = device.g.encrypt(text, device.rng.randbytes, authenticated_data=expiry_aad(expires))
    return dataclasses.replace(submit(message, epoch=device.g.epoch, ref=group.ref()), expires=expires or 0)


def test_the_expiry_codec_round_trips_and_refuses_anything_else() -> None:
    assert read_expiry_aad(b"") is None and expiry_aad(None) == b""
    assert read_expiry_aad(expiry_aad(T)) == T
    for bad in (b"\x00", expiry_aad(T) + b"\x00", b"\xa1aeX" * 3, b"x" * 100):
        with pytest.raises(ValueError, match="authenticated data"):
            read_expiry_aad(bad)
    for bad_time in (0, -1, 2**63):
        with pytest.raises(ValueError):
            expiry_aad(bad_time)


def test_copies_name_the_floor_and_the_latest_expiry_of_the_timed_items_before(group: Scenario) -> None:
    bob, carol = by(group, BOB), by(group, CAROL)  # seq 1 was the commit that added them
    plain = copies(group.hub.order(timed(group, carol, b"plain", None)))["beta"]  # seq 2
    first = copies(group.hub.order(timed(group, carol, b"one", T + 5000)))["beta"]  # seq 3
    second = copies(group.hub.order(timed(group, bob, b"two", T + 9000)))["beta"]  # seq 4
    third = copies(group.hub.order(timed(group, carol, b"three", T + 7000)))["beta"]  # seq 5
    after = copies(group.hub.order(timed(group, bob, b"after", None)))["beta"]  # seq 6
    last = copies(group.hub.order(timed(group, bob, b"last", T + 1)))["beta"]  # seq 7
    assert [(i.seq, i.expires, i.floor, i.gap_expires) for i in (plain, first, second, third, after, last)] == [
        (2, 0, 1, 0), (3, T + 5000, 2, 0), (4, T + 9000, 2, T + 5000), (5, T + 7000, 2, T + 9000),
        (6, 0, 2, T + 9000), (7, T + 1, 6, 0),
    ]  # fmt: skip
    assert (group.hub.floor, group.hub.gap_expires) == (6, T + 1)
    for item in (first, second, third, after):  # each survives the wire, checked
        assert decode_struct(GroupItem, encode_struct(item)) == item
    read = by(group, ALICE).g.process(first.message)
    assert isinstance(read, ApplicationMessage) and read_expiry_aad(read.authenticated_data) == T + 5000


def test_a_commit_or_proposal_with_an_expiry_is_refused_timed_change(group: Scenario) -> None:
    alice, bob = by(group, ALICE), by(group, BOB)
    _, commit = group.commit(alice)
    assert_refused(group.hub, dataclasses.replace(commit, expires=T), "timed_change")
    staged, in_aad = group.commit(alice, authenticated_data=expiry_aad(T))
    assert_refused(group.hub, in_aad, "timed_change")  # an expiry in the commit itself
    leave = bob.g.propose(Remove(bob.g.leaf_index), bob.rng.randbytes, authenticated_data=expiry_aad(T))
    assert_refused(group.hub, dataclasses.replace(submit(leave, epoch=1, ref=group.ref()), expires=T), "timed_change")
    assert_refused(group.hub, submit(leave, epoch=1, ref=group.ref()), "timed_change")
    assert copies(group.hub.order(commit))["beta"].floor == 1  # the plain commit still goes


def test_an_expiry_other_than_the_senders_is_invalid(group: Scenario) -> None:
    carol = by(group, CAROL)
    item = timed(group, carol, b"x", T)
    assert_refused(group.hub, dataclasses.replace(item, expires=T + 1), "invalid")  # a node moved it
    assert_refused(group.hub, dataclasses.replace(item, expires=0), "invalid")  # or took it off
    untimed = timed(group, carol, b"y", None)
    assert_refused(group.hub, dataclasses.replace(untimed, expires=T), "invalid")  # or put one on
    bad = carol.g.encrypt(b"z", carol.rng.randbytes, authenticated_data=b"not an expiry")
    assert_refused(group.hub, submit(bad, epoch=1, ref=group.ref()), "invalid")
    assert copies(group.hub.order(item))["gamma"].expires == T


def test_a_hand_over_starts_the_new_hub_at_the_hand_over_commit_as_floor(group: Scenario) -> None:
    carol = by(group, CAROL)
    copies(group.hub.order(timed(group, carol, b"t", T)))
    assert (group.hub.seq, group.hub.floor, group.hub.gap_expires) == (2, 1, T)
    alice = by(group, ALICE)
    _, item = group.commit(alice, proposals=[GroupContextExtensions(group_context_extensions(GroupExtension("beta", (ALICE,))))])
    outcome = group.hub.order(item)
    assert outcome.code == "ok" and outcome.handover is not None
    assert copies(outcome)["beta"].gap_expires == T  # the hand-over commit's copy, after the timed item
    adopted = HubGroup.adopt(node="beta", item=outcome.handover[1])
    assert (adopted.seq, adopted.floor, adopted.gap_expires) == (3, 3, 0)  # the commit does not expire


@pytest.mark.parametrize(
    "field, value",
    [("expires", -1), ("floor", 5), ("floor", 9), ("gap_expires", 7)],
)
def test_malformed_expiry_fields_are_refused(field: str, value: int) -> None:
    ordered = GroupItem(
        kind=ItemKind.ORDERED, ref=bytes(16), group=bytes(16), epoch=1, seq=5, message=b"m", welcome=b"", members=(),
        outcome="", hub="alpha", floor=4,
    )  # fmt: skip
    ordered.check()
    with pytest.raises((ValueError, TypeError)):
        dataclasses.replace(ordered, **{field: value}).check()
    verdict = GroupItem(kind=ItemKind.VERDICT, ref=bytes(16), group=bytes(16), epoch=1, seq=0, message=b"", welcome=b"", members=(),
                        outcome="invalid", hub="", expires=T)  # fmt: skip
    with pytest.raises(ValueError, match="does not expire"):
        verdict.check()
