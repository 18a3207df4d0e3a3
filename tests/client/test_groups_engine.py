"""The device's group engine (client/groups/engine.py) without a node: items built as a hub would
build them, fed to ``GroupEngine.accept`` in any order, duplicated, tampered with; the device's
own submissions adopted, redone after another commit or a stale_epoch verdict, dropped after a
refusal. The state it keeps is sealed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from sonet.client.groups.engine import ORDERED, GroupEngine
from sonet.client.groups.keys import SUITE, new_key_package, own_key_package, signature_key
from sonet.client.groups.ops import make
from sonet.client.groups.rules import public_view
from sonet.client.groups.store import GroupRecord, Outstanding
from sonet.client.state import DeviceState, Profile
from sonet.core.content import Content, encode_content
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core.groups.state import GroupExtension, group_context_extensions
from sonet.core.mls.group import Group
from sonet.core.wire import encode_struct

NOW = 1_800_000_000_000
#: the ratchet tree after each adding commit ``change`` made, by ref (Welcomes go without it)
TREES: dict[bytes, bytes] = {}
HUB = "alpha.example"
ALICE, BOB, CAROL = (f"{name}@{HUB}" for name in ("alice", "bob", "carol"))


@dataclass
class Dev:
    state: DeviceState
    profile: Profile

    def engine(self) -> GroupEngine:
        engine = GroupEngine(self.state, self.profile, rng=os.urandom, clock=lambda: NOW)
        engine.trees = TREES  # as client/groups/tree_fetch.py would have fetched them from the hub
        return engine

    def record(self, group: bytes) -> GroupRecord:
        record = self.state.group_record(group)
        assert record is not None
        return record

    def group(self, group: bytes) -> Group:
        return Group.from_bytes(self.record(group).mls)


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[dict[str, Dev]]:
    made = {}
    for name, account in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        state = DeviceState(tmp_path / name)
        mode = CryptoMode.CLASSICAL
        profile = Profile(
            address=account, device_id=1, node_url="wss://x", node_fingerprint="f", mode=mode,
            identity=SigningKey.generate(mode, os.urandom), identity_dh=None,
            hpke=HpkePrivateKey.generate(mode, os.urandom), account_key=SigningKey.generate(mode, os.urandom),
        )  # fmt: skip
        state.save_profile(profile)
        made[name] = Dev(state, profile)
    yield made
    for dev in made.values():
        dev.state.close()


class Hub:
    """Orders messages as a hub would: the next sequence number, one commit per epoch."""

    def __init__(self, group: bytes) -> None:
        self.group = group
        self.seq = 0

    def ordered(self, message: bytes, *, epoch: int, welcome: bytes = b"", ref: bytes | None = None) -> Envelope:
        self.seq += 1
        item = GroupItem(
            kind=ItemKind.ORDERED, ref=ref or os.urandom(16), group=self.group, epoch=epoch, seq=self.seq, message=message,
            welcome=welcome, members=(), outcome="", hub=HUB,
        )  # fmt: skip
        return envelope(item)


def envelope(item: GroupItem) -> Envelope:
    return Envelope(v=ENVELOPE_VERSION, id=item.ref, to=BOB, device=1, expires=NOW + 10**6, kind=Kind.GROUP, body=encode_struct(item))


def verdict(group: bytes, ref: bytes, outcome: str, epoch: int) -> Envelope:
    item = GroupItem(kind=ItemKind.VERDICT, ref=ref, group=group, epoch=epoch, seq=0, message=b"", welcome=b"", members=(), outcome=outcome, hub="")
    return envelope(item)


def create(alice: Dev) -> bytes:
    """Alice's group of one, kept in her state; its id."""
    own = own_key_package(alice.state, alice.profile, os.urandom, NOW)
    group_id = os.urandom(16)
    group = Group.create(
        SUITE, group_id, own.key_package.leaf_node, signature_priv=signature_key(alice.state, os.urandom),
        encryption_priv=own.encryption_priv, rng=os.urandom, extensions=group_context_extensions(GroupExtension(HUB, (ALICE,))),
    )  # fmt: skip
    alice.state.save_group(GroupRecord(id=group_id, next_seq=1, created=NOW, mls=group.to_bytes(), public=public_view(group)))
    return group_id


def change(dev: Dev, group: bytes, op: dict) -> Outstanding:
    """Make ``op`` on ``dev``'s group and keep it as its outstanding submission (as
    client/groups/api.py does)."""
    record = dev.record(group)
    made = make(dev.group(group), op, os.urandom)
    ref = os.urandom(16)
    own = Outstanding(
        ref=ref, origin=ref, kind=made.kind, epoch=made.epoch, message=made.message, welcome=made.welcome, after=made.after,
        op=op, submitted=True,
    )  # fmt: skip
    dev.state.save_group(record.but(own=own, mls=made.now if made.now is not None else record.mls))
    if made.welcome and made.after is not None:
        TREES[ref] = Group.from_bytes(made.after).ratchet_tree_bytes()
    return own


def text(body: str) -> dict:
    return {"op": "send", "content": encode_content(Content.make_text(id=os.urandom(16), sent_at=NOW, text=body))}


def add(dev: Dev, *joiners: Dev) -> dict:
    return {"op": "add", "key_packages": [new_key_package(j.state, j.profile, os.urandom, NOW) for j in joiners]}


def started(devices: dict[str, Dev]) -> tuple[bytes, Hub, list[Envelope]]:
    """Alice creates a group and adds bob (her own commit ordered at 1); the items so far."""
    alice, bob = devices["alice"], devices["bob"]
    group = create(alice)
    hub = Hub(group)
    own = change(alice, group, add(alice, bob))
    items = [hub.ordered(own.message, epoch=0, welcome=own.welcome, ref=own.ref)]
    engine = alice.engine()
    assert engine.accept(items[0], NOW)
    assert engine.outcomes == {own.origin: ORDERED}
    assert alice.record(group).own is None and alice.group(group).epoch == 1
    return group, hub, items


def texts(dev: Dev) -> list[tuple[int, str, str]]:
    return [(m.seq, m.sender, m.text) for m in dev.state.unshown_group_messages()]


def test_items_out_of_order_are_held_and_processed_in_order_once(devices: dict[str, Dev]) -> None:
    alice, bob = devices["alice"], devices["bob"]
    group, hub, items = started(devices)
    for body in ("one", "two", "three"):
        own = change(alice, group, text(body))
        items.append(hub.ordered(own.message, epoch=1, ref=own.ref))
        alice.engine().accept(items[-1], NOW)
    engine = bob.engine()
    for env in (items[3], items[2]):  # before the Welcome: held, sealed
        assert engine.accept(env, NOW)
    assert bob.state.group_record(group) is None and bob.state.held_group_seqs(group) == [3, 4]
    raw = bob.state._db.execute("SELECT item FROM mls_held").fetchall()
    assert all(items[3].body not in row[0] and items[2].body not in row[0] for row in raw)
    assert engine.accept(items[0], NOW)  # the Welcome: joins at 1, then 2 is missing
    assert bob.record(group).next_seq == 2 and texts(bob) == []
    assert engine.accept(items[1], NOW)  # fills the gap: 2, 3, 4 in order
    assert texts(bob) == [(2, ALICE, "one"), (3, ALICE, "two"), (4, ALICE, "three")]
    assert bob.record(group).next_seq == 5 and bob.state.held_group_seqs(group) == []
    for env in items:  # everything again (acks lost): nothing new
        assert engine.accept(env, NOW)
    assert len(texts(bob)) == 3 and engine.rejected == []


def test_tampered_and_malformed_items_are_dropped_and_the_order_moves_on(devices: dict[str, Dev]) -> None:
    alice, bob = devices["alice"], devices["bob"]
    group, hub, items = started(devices)
    engine = bob.engine()
    assert engine.accept(items[0], NOW)
    own = change(alice, group, text("secret"))
    message = bytearray(own.message)
    message[-5] ^= 1
    assert engine.accept(hub.ordered(bytes(message), epoch=1), NOW)
    assert len(engine.rejected) == 1 and f"skipped message 2 of group {group.hex()}" in engine.rejected[0]
    assert bob.record(group).next_seq == 3 and texts(bob) == []
    junk = replace(items[0], body=b"\x93junk")
    assert engine.accept(junk, NOW) and "dropped group item" in engine.rejected[1]
    second = change(alice, group, text("next"))
    wrong_id = replace(hub.ordered(second.message, epoch=1), id=os.urandom(16))
    assert engine.accept(wrong_id, NOW) and "the envelope's id is not the item's ref" in engine.rejected[2]
    assert bob.record(group).next_seq == 3
    hub.seq -= 1  # the genuine item 3
    assert engine.accept(hub.ordered(second.message, epoch=1), NOW)
    assert texts(bob) == [(3, ALICE, "next")]


def test_only_an_admin_names_the_group(devices: dict[str, Dev]) -> None:
    alice, bob = devices["alice"], devices["bob"]
    group, hub, items = started(devices)
    engine = bob.engine()
    engine.accept(items[0], NOW)

    def state_op(name: str) -> dict:
        return {"op": "send", "content": encode_content(Content.make_group_state(id=os.urandom(16), sent_at=NOW, name=name, topic="t"))}

    own = change(alice, group, state_op("hikers"))
    named = hub.ordered(own.message, epoch=1, ref=own.ref)
    engine.accept(named, NOW)
    assert (bob.record(group).name, bob.record(group).topic) == ("hikers", "t")
    alice_engine = alice.engine()
    alice_engine.accept(named, NOW)  # her own, ordered: she takes it too
    assert (alice.record(group).name, alice.record(group).topic) == ("hikers", "t")
    mine = change(bob, group, state_op("bob's group"))
    alice_engine.accept(hub.ordered(mine.message, epoch=1, ref=mine.ref), NOW)
    assert alice.record(group).name == "hikers" and "is not an admin" in alice_engine.rejected[0]


def test_another_commit_first_makes_the_device_redo_its_change(devices: dict[str, Dev]) -> None:
    alice, bob, carol = devices["alice"], devices["bob"], devices["carol"]
    group, hub, items = started(devices)
    bob.engine().accept(items[0], NOW)
    # both change epoch 1 at once: alice adds carol, bob sends; the hub orders alice's first
    alices = change(alice, group, add(alice, carol))
    bobs = change(bob, group, text("hi all"))
    first = hub.ordered(alices.message, epoch=1, welcome=alices.welcome, ref=alices.ref)
    engine = bob.engine()
    assert engine.accept(first, NOW)
    record = bob.record(group)
    assert record.own is not None and record.own.redo and record.own.redo_epoch == 2 and bob.group(group).epoch == 2
    assert engine.accept(verdict(group, bobs.ref, "stale_epoch", 2), NOW)  # the hub's refusal of the old one: nothing more
    [(_record, again, hub_name)] = engine.submissions()
    assert hub_name == HUB and again.origin == bobs.origin and again.ref != bobs.ref and again.epoch == 2 and not again.redo
    assert bob.record(group).own == again and engine.submissions() == [(bob.record(group), again, HUB)]
    # ordered now: everyone (carol too, who joined at 1) reads it in epoch 2
    second = hub.ordered(again.message, epoch=2, ref=again.ref)
    assert engine.accept(second, NOW) and engine.outcomes == {bobs.origin: ORDERED} and bob.record(group).own is None
    alice.engine().accept(first, NOW)
    alice.engine().accept(second, NOW)
    carols = carol.engine()
    carols.accept(first, NOW)
    carols.accept(second, NOW)
    assert texts(alice) == texts(carol) == [(3, BOB, "hi all")]
    assert alice.group(group).epoch_authenticator == bob.group(group).epoch_authenticator == carol.group(group).epoch_authenticator


def test_a_stale_verdict_redoes_a_message_and_another_refusal_drops_it(devices: dict[str, Dev]) -> None:
    alice, bob = devices["alice"], devices["bob"]
    group, hub, items = started(devices)
    engine = bob.engine()
    engine.accept(items[0], NOW)
    commit = change(alice, group, add(alice, devices["carol"]))
    stale = change(bob, group, text("late"))
    # the hub ordered alice's commit first and refused bob's message: the verdict comes first
    assert engine.accept(verdict(group, stale.ref, "stale_epoch", 2), NOW)
    assert engine.submissions() == []  # bob is still at epoch 1: it waits
    assert engine.accept(hub.ordered(commit.message, epoch=1, welcome=commit.welcome, ref=commit.ref), NOW)
    [(_record, again, _hub)] = engine.submissions()  # at epoch 2 now: made again
    assert again.origin == stale.origin and again.ref != stale.ref and again.epoch == 2
    assert engine.accept(verdict(group, again.ref, "not_allowed", 2), NOW)
    assert engine.outcomes == {stale.origin: "not_allowed"} and bob.record(group).own is None
    assert "refused this device's change" in engine.rejected[-1]
    assert engine.accept(verdict(group, os.urandom(16), "invalid", 2), NOW)  # not ours: nothing changes
    assert bob.record(group).own is None and engine.submissions() == []


def test_the_hold_back_buffer_is_bounded(devices: dict[str, Dev], monkeypatch: pytest.MonkeyPatch) -> None:
    bob = devices["bob"]
    monkeypatch.setattr("sonet.client.groups.store.MAX_HELD_PER_GROUP", 2)
    group = os.urandom(16)
    hub = Hub(group)
    hub.seq = 10
    engine = bob.engine()
    envelopes = [hub.ordered(b"\x00\x01", epoch=1) for _ in range(3)]
    assert engine.accept(envelopes[0], NOW) and engine.accept(envelopes[1], NOW)
    assert not engine.accept(envelopes[2], NOW)  # stays in the mailbox
    assert "kept group item" in engine.rejected[0] and bob.state.held_group_seqs(group) == [11, 12]


def test_leaving_is_committed_by_the_first_member_staying(devices: dict[str, Dev]) -> None:
    alice, bob = devices["alice"], devices["bob"]
    group, hub, items = started(devices)
    bob.engine().accept(items[0], NOW)
    leave = change(bob, group, {"op": "leave"})
    proposal = hub.ordered(leave.message, epoch=1, ref=leave.ref)
    assert bob.engine().accept(proposal, NOW) and bob.record(group).own is None
    engine = alice.engine()
    engine.accept(proposal, NOW)
    [(_record, commit, _hub)] = engine.submissions()
    assert commit.kind == "commit"
    ordered = hub.ordered(commit.message, epoch=1, ref=commit.ref)
    engine.accept(ordered, NOW)
    bob.engine().accept(ordered, NOW)
    assert [leaf for leaf, _ in alice.group(group).members()] == [0]
    assert not bob.record(group).active and alice.record(group).active


def test_a_change_the_rules_forbid_is_refused_even_when_ordered(devices: dict[str, Dev]) -> None:
    alice, bob, carol = devices["alice"], devices["bob"], devices["carol"]
    group, hub, items = started(devices)
    bob.engine().accept(items[0], NOW)
    # bob is no admin; a hub that orders his adding carol anyway does not get alice to apply it
    bobs = change(bob, group, add(bob, carol))
    engine = alice.engine()
    assert engine.accept(hub.ordered(bobs.message, epoch=1, welcome=bobs.welcome, ref=bobs.ref), NOW)
    assert "only an admin adds devices of another account" in engine.rejected[0]
    assert alice.group(group).epoch == 1 and alice.record(group).next_seq == 3
    assert [leaf for leaf, _ in alice.group(group).members()] == [0, 1]
