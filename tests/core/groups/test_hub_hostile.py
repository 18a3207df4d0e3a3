"""``HubGroup.order`` on hostile input: byte-mutated and truncated messages and Welcomes of
every kind a member sends, and odd item fields. It never raises, answers "ok" or a refusal code,
and a refusal changes nothing."""

from __future__ import annotations

import dataclasses
import random

import pytest

from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import GROUP_REFUSALS, GroupItem
from sonet.core.mls.messages import Add, Remove

from .devices import Device, Scenario, submit

ALICE, BOB, CAROL = "alice@alpha", "bob@beta", "carol@gamma"


@pytest.fixture(scope="module")
def samples() -> tuple[bytes, list[GroupItem]]:
    """A hub state at epoch 1 and valid SUBMIT items of every kind for it."""
    group = Scenario(Device.new(ALICE))
    group.add(group.devices[0], Device.new(BOB), Device.new(CAROL))
    alice, bob, carol = group.devices
    items = [
        group.commit(alice, proposals=[Add(Device.new("dan@gamma").key_package)])[1],
        group.commit(bob)[1],
        group.commit(alice, proposals=[Remove(carol.g.leaf_index)])[1],
        submit(bob.g.propose(Remove(bob.g.leaf_index), bob.rng.randbytes), epoch=1, ref=group.ref()),
        submit(carol.g.encrypt(b"hello", carol.rng.randbytes), epoch=1, ref=group.ref()),
    ]
    return group.hub.to_bytes(), items


def _mutate(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    if not data or choice == 0:
        return data[: rng.randrange(len(data) + 1)]
    at = rng.randrange(len(data))
    if choice == 1:
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
    if choice == 2:
        return data[:at] + rng.randbytes(rng.randrange(1, 9)) + data[at:]
    return data[:at] + data[at + rng.randrange(1, 9) :]


@pytest.mark.parametrize("seed", range(6))
def test_mutated_items_are_ordered_or_refused_without_change(samples: tuple[bytes, list[GroupItem]], seed: int) -> None:
    state, items = samples
    rng = random.Random(seed)
    for _ in range(40):
        hub = HubGroup.from_bytes(state)
        base = rng.choice(items)
        field = rng.choice(["message", "message", "welcome"] if base.welcome else ["message"])
        item = dataclasses.replace(base, **{field: _mutate(getattr(base, field), rng)})
        outcome = hub.order(item)
        assert outcome.code == "ok" or outcome.code in GROUP_REFUSALS
        if outcome.code != "ok":
            assert hub.to_bytes() == state


@pytest.mark.parametrize(
    "change",
    [
        {"ref": b"short"},
        {"group": b"x" * 17},
        {"epoch": -1},
        {"seq": 3},
        {"hub": "alpha"},
        {"outcome": "invalid"},
        {"kind": 9},
        {"message": b""},
    ],
)
def test_items_that_break_the_struct_rules_are_invalid(samples: tuple[bytes, list[GroupItem]], change: dict[str, object]) -> None:
    state, items = samples
    hub = HubGroup.from_bytes(state)
    outcome = hub.order(dataclasses.replace(items[-1], **change))  # type: ignore[arg-type]
    assert (outcome.code, outcome.ordered) == ("invalid", ()) and hub.to_bytes() == state
