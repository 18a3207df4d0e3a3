"""A hub hand-over in parts (core/groups/handover.py, HubGroup.adopt): the state is split into
HANDOVER items that each fit one group item, put together again in any order with duplicates,
and refused when a part is missing, oversized, named twice with other bytes, of another
hand-over, or tampered with; a commit that moves the hub adds no one (policy.py)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from sonet.core.errors import RemoteProtocolError
from sonet.core.groups import handover as handover_module
from sonet.core.groups.handover import assemble, split_state
from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import (
    HANDOVER_PART_BYTES,
    MAX_GROUP_ITEM_BYTES,
    MAX_HANDOVER_BYTES,
    MAX_HANDOVER_PARTS,
    MAX_HANDOVER_STATE_BYTES,
    REF_LEN,
    GroupItem,
    ItemKind,
    handover_part,
    handover_ref,
)
from sonet.core.groups.policy import PolicyError
from sonet.core.groups.state import GroupExtension, group_context_extensions
from sonet.core.mls.messages import Add, GroupContextExtensions
from sonet.core.wire import decode_struct, encode_struct, packb

from .devices import GROUP_ID, Device, Scenario

ALICE, BOB, CAROL = "alice@alpha", "bob@beta", "carol@gamma"
#: a filled 1,500-device hub state is ~4.1 MB: more than one item could carry
BIG_STATE = os.urandom(4_100_000)


def parts_of(state: bytes, *, seq: int = 5, epoch: int = 3, hub: str = "beta") -> tuple[GroupItem, ...]:
    return split_state(group=GROUP_ID, epoch=epoch, seq=seq, hub=hub, state=state)


def refused(items: list[GroupItem], words: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        assemble(items)
    assert exc.value.code == "invalid" and words in str(exc.value)


# ---- splitting and assembling ----------------------------------------------------------------


def test_a_state_larger_than_one_item_goes_in_parts_that_each_fit_one() -> None:
    assert len(BIG_STATE) > MAX_HANDOVER_BYTES
    parts = parts_of(BIG_STATE)
    assert len(parts) == -(-len(BIG_STATE) // HANDOVER_PART_BYTES) == 4
    assert [handover_part(p) for p in parts] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len({p.ref for p in parts}) == 4  # each part its own item (the outbox keys by ref)
    for part in parts:
        encoded = encode_struct(part)
        assert len(encoded) <= MAX_GROUP_ITEM_BYTES and decode_struct(GroupItem, encoded) == part
        assert (part.kind, part.group, part.epoch, part.seq, part.hub) == (ItemKind.HANDOVER, GROUP_ID, 3, 5, "beta")
    first, state = assemble(parts)
    assert state == BIG_STATE and first.seq == 5


def test_parts_reordered_and_duplicated_assemble_to_the_same_state() -> None:
    parts = list(parts_of(BIG_STATE))
    _, state = assemble([parts[3], parts[1], parts[1], parts[0], parts[2], parts[3]])
    assert state == BIG_STATE


def test_a_missing_part_is_refused() -> None:
    parts = list(parts_of(BIG_STATE))
    refused(parts[:1] + parts[2:], "lacks part(s) 2 of 4")
    refused(parts[:3], "lacks part(s) 4 of 4")
    refused([], "without parts")


def test_a_part_named_twice_with_other_bytes_is_refused() -> None:
    parts = list(parts_of(BIG_STATE))
    forged = dataclasses.replace(parts[1], message=bytes(len(parts[1].message)))
    refused(parts + [forged], "part 2 of the hand-over came twice with different bytes")


def test_parts_of_different_hand_overs_are_refused() -> None:
    parts = list(parts_of(BIG_STATE))
    for other in (parts_of(BIG_STATE, seq=6), parts_of(BIG_STATE, epoch=4), parts_of(BIG_STATE, hub="gamma")):
        refused(parts[:2] + list(other[2:]), "different hand-overs")
    fewer = parts_of(BIG_STATE[: 3 * HANDOVER_PART_BYTES])  # three parts: another count
    refused(parts[:3] + [fewer[2]], "different hand-overs")


def test_oversized_and_misnamed_parts_are_refused() -> None:
    part = parts_of(BIG_STATE)[0]
    oversized = dataclasses.replace(part, message=os.urandom(HANDOVER_PART_BYTES + 1))
    with pytest.raises(ValueError, match="at most"):
        oversized.check()
    refused([oversized], "malformed HANDOVER item")
    for part_number, parts in ((0, 4), (5, 4), (1, MAX_HANDOVER_PARTS + 1)):
        named = dataclasses.replace(part, ref=bytes(REF_LEN - 4) + part_number.to_bytes(2, "big") + parts.to_bytes(2, "big"))
        with pytest.raises(ValueError, match="names no part"):
            named.check()
        raw = packb([named.kind, named.ref, named.group, named.epoch, named.seq, named.message, b"", [], "", named.hub, 0, 0, 0])
        with pytest.raises(RemoteProtocolError, match="names no part"):  # nor does it decode from the wire
            decode_struct(GroupItem, raw)
    with pytest.raises(ValueError, match="names no part"):
        dataclasses.replace(part, ref=b"\x01" + part.ref[1:]).check()
    with pytest.raises(ValueError):
        handover_ref(1, MAX_HANDOVER_PARTS + 1)


def test_a_whole_state_in_one_item_is_still_a_hand_over() -> None:
    """The former encoding: 16 zero bytes of ref, the state (up to MAX_HANDOVER_BYTES) in it."""
    whole = dataclasses.replace(parts_of(BIG_STATE)[0], ref=bytes(REF_LEN), message=BIG_STATE[:MAX_HANDOVER_BYTES])
    whole.check()
    assert handover_part(whole) == (1, 1)
    assert assemble([whole])[1] == BIG_STATE[:MAX_HANDOVER_BYTES]


def test_a_state_beyond_the_bound_is_not_split() -> None:
    assert MAX_HANDOVER_PARTS == -(-MAX_HANDOVER_STATE_BYTES // HANDOVER_PART_BYTES)
    assert len(parts_of(bytes(MAX_HANDOVER_STATE_BYTES))) == MAX_HANDOVER_PARTS
    for state in (b"", bytes(MAX_HANDOVER_STATE_BYTES + 1)):
        with pytest.raises(ValueError, match="hand-over state"):
            parts_of(state)


# ---- HubGroup: a real group's hand-over in parts ---------------------------------------------


@pytest.fixture
def group() -> Scenario:
    """alice@alpha (creator, admin, hub alpha) has added bob@beta and carol@gamma."""
    scenario = Scenario(Device.new(ALICE))
    scenario.add(scenario.devices[0], Device.new(BOB), Device.new(CAROL))
    return scenario


def move_to_beta(group: Scenario, monkeypatch: pytest.MonkeyPatch) -> tuple[GroupItem, ...]:
    """alice moves the hub to beta; the HANDOVER parts (1 KiB each: several for this group)."""
    monkeypatch.setattr(handover_module, "HANDOVER_PART_BYTES", 1024)
    alice = group.devices[0]
    move = group_context_extensions(GroupExtension("beta", (ALICE,)))
    staged, item = group.commit(alice, proposals=[GroupContextExtensions(move)])
    outcome = group.hub.order(item)
    assert outcome.code == "ok" and outcome.handover is not None
    to, parts = outcome.handover
    assert to == "beta" and len(parts) > 2
    assert all((p.seq, p.epoch, p.hub) == (group.hub.seq, group.hub.epoch, "beta") for p in parts)
    group.apply_commit(alice, staged, item)
    return parts


def test_the_new_hub_adopts_the_parts_in_any_order(group: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = move_to_beta(group, monkeypatch)
    shuffled = list(reversed(parts)) + [parts[0]]
    new = HubGroup.adopt(node="beta", item=shuffled)
    assert (new.hub, new.moved_to, new.seq, new.epoch) == ("beta", None, group.hub.seq, group.hub.epoch)
    assert new.public.to_bytes() == group.hub.public.to_bytes()


def test_the_new_hub_refuses_incomplete_tampered_or_mismatched_parts(group: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = list(move_to_beta(group, monkeypatch))

    def refused_adoption(items: list[GroupItem], node: str = "beta") -> str:
        with pytest.raises(RemoteProtocolError) as exc:
            HubGroup.adopt(node=node, item=items)
        assert exc.value.code == "invalid"
        return str(exc.value)

    assert "lacks part(s)" in refused_adoption(parts[:-1])
    assert "not a hand-over to gamma" in refused_adoption(parts, node="gamma")
    tampered = dataclasses.replace(parts[0], message=b"\xff" + parts[0].message[1:])
    assert "malformed" in refused_adoption([tampered] + parts[1:])
    truncated = dataclasses.replace(parts[-1], message=parts[-1].message[:-1])
    assert "malformed" in refused_adoption(parts[:-1] + [truncated])
    state = assemble(parts)[1]
    for wrong in ({"epoch": group.hub.epoch + 1}, {"seq": group.hub.seq + 1}):
        other = split_state(group=GROUP_ID, **{"epoch": group.hub.epoch, "seq": group.hub.seq, **wrong}, hub="beta", state=state)
        assert "do not match" in refused_adoption(list(other))


# ---- a hub move adds no one ------------------------------------------------------------------


def test_a_commit_that_adds_and_moves_the_hub_is_refused(group: Scenario) -> None:
    alice = group.devices[0]
    move = group_context_extensions(GroupExtension("beta", (ALICE,)))
    dan = Device.new("dan@beta")
    state, seq = group.hub.to_bytes(), group.hub.seq
    _, item = group.commit(alice, proposals=[GroupContextExtensions(move), Add(dan.key_package)])
    outcome = group.hub.order(item)
    assert (outcome.code, outcome.ordered, outcome.handover) == ("not_allowed", (), None)
    assert (group.hub.to_bytes(), group.hub.seq, group.hub.moved_to) == (state, seq, None)


def test_the_rule_says_to_move_the_hub_in_a_commit_of_its_own(group: Scenario) -> None:
    from sonet.core.groups.policy import check_commit
    from sonet.core.groups.state import extension_in
    from sonet.core.mls.group.public import PublicCommit

    alice = group.devices[0]
    move = group_context_extensions(GroupExtension("beta", (ALICE,)))
    _, item = group.commit(alice, proposals=[GroupContextExtensions(move), Add(Device.new("dan@beta").key_package)])
    public = HubGroup.from_bytes(group.hub.to_bytes()).public
    commit = public.process(item.message)
    assert isinstance(commit, PublicCommit) and commit.extensions is not None
    with pytest.raises(PolicyError, match="move the hub in a commit of its own"):
        check_commit(before=GroupExtension("alpha", (ALICE,)), members=group.hub.members(), commit=commit, after=extension_in(commit.extensions))
