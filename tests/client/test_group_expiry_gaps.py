"""A device and the items nodes dropped at their expiry (client/groups/engine.py, docs/groups.md
"Disappearing messages on nodes"), against the real hub ordering (core/groups/hub.py): missing
items the next copy says were all timed are skipped once their latest expiry has passed on the
device's clock, never before, never when an untimed item is among them, and never across a
change of epoch (a commit a node claims expired: the device waits and alerts). A copy whose
expiry is not the one its sender authenticated is not taken."""

from __future__ import annotations

import dataclasses
import os

from sonet.client.groups.engine import GroupEngine
from sonet.core.content import Content, encode_content
from sonet.core.envelope import Envelope
from sonet.core.groups.expiry import read_expiry_aad
from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.wire import decode_struct, encode_struct

from .test_groups_engine import ALICE, BOB, HUB, NOW, TREES, Dev, add, change, create, devices, envelope, texts

__all__ = ["devices"]  # the fixture


class RealHub:
    """The group's hub as a node runs it (HubGroup), fed SUBMIT items of alice's changes."""

    def __init__(self, alice: Dev, group: bytes) -> None:
        g = alice.group(group)
        info = MLSMessage(WireFormat.GROUP_INFO, g.group_info(with_ratchet_tree=False, external_pub=False)).to_bytes()
        self.hub = HubGroup.create(node=HUB, group=group, group_info=info, ratchet_tree=g.ratchet_tree_bytes())
        self.alice, self.group = alice, group

    def send(self, op: dict) -> Envelope:
        """Alice makes ``op``; the hub orders it; alice takes her copy back; bob's copy."""
        own = change(self.alice, self.group, op)
        expires = read_expiry_aad(_aad(own.message)) or 0
        submit = GroupItem(
            kind=ItemKind.SUBMIT, ref=own.ref, group=self.group, epoch=own.epoch, seq=0, message=own.message, welcome=own.welcome,
            members=(), outcome="", hub="", expires=expires,
        )  # fmt: skip
        outcome = self.hub.order(submit)
        assert outcome.code == "ok", outcome.code
        (node, copy), = outcome.ordered
        assert node == HUB
        env = envelope(copy)
        assert self.alice.engine().accept(env, NOW)
        return env


def _aad(message: bytes) -> bytes:
    body = MLSMessage.from_bytes(message).body
    return getattr(body, "authenticated_data", b"") or b""


def timed(body: str, expires: int | None) -> dict:
    content = Content.make_text(id=os.urandom(16), sent_at=NOW, text=body)
    return {"op": "send", "content": encode_content(dataclasses.replace(content, expires=expires))}


def engine_at(dev: Dev, now: int) -> GroupEngine:
    engine = GroupEngine(dev.state, dev.profile, rng=os.urandom, clock=lambda: now)
    engine.trees = TREES
    return engine


def joined(devices: dict[str, Dev]) -> tuple[bytes, RealHub]:
    alice, bob = devices["alice"], devices["bob"]
    group = create(alice)
    hub = RealHub(alice, group)
    welcome = hub.send(add(alice, bob))
    assert engine_at(bob, NOW).accept(welcome, NOW) and bob.record(group).next_seq == 2
    return group, hub


def test_timed_items_a_node_dropped_are_skipped_once_expired_and_not_before(devices: dict[str, Dev]) -> None:
    bob = devices["bob"]
    group, hub = joined(devices)
    hub.send(timed("one", NOW + 5000))  # 2: dropped by the nodes before bob fetched it
    hub.send(timed("two", NOW + 6000))  # 3: dropped too
    after = hub.send(timed("after", None))  # 4
    copy = decode_struct(GroupItem, after.body)
    assert (copy.floor, copy.gap_expires) == (1, NOW + 6000)
    early = engine_at(bob, NOW + 5999)
    assert early.accept(after, NOW)
    assert bob.record(group).next_seq == 2 and texts(bob) == [] and early.rejected == []  # one may still come: waits
    assert early.submissions() == [] and bob.record(group).next_seq == 2
    later = engine_at(bob, NOW + 6000)
    later.submissions()  # any later receive, with nothing new: goes on
    assert texts(bob) == [(4, ALICE, "after")] and bob.record(group).next_seq == 5
    assert later.rejected == [f"skipped items 2..3 of group {group.hex()}: timed messages that expired before this device fetched them"]
    assert bob.state.held_group_seqs(group) == []


def test_a_missing_untimed_item_is_never_skipped(devices: dict[str, Dev]) -> None:
    bob = devices["bob"]
    group, hub = joined(devices)
    missing = hub.send(timed("plain", None))  # 2: not timed
    hub.send(timed("brief", NOW + 10))  # 3: timed, dropped
    last = hub.send(timed("last", None))  # 4: floor 2
    assert decode_struct(GroupItem, last.body).floor == 2
    far = engine_at(bob, NOW + 10**9)
    assert far.accept(last, NOW) and far.submissions() == []
    assert bob.record(group).next_seq == 2 and texts(bob) == []  # waits for 2, however long
    # here the real item comes, and everything follows
    assert far.accept(missing, NOW)  # then 3, timed and long expired, is skipped in the same go
    assert texts(bob) == [(2, ALICE, "plain"), (4, ALICE, "last")] and bob.record(group).next_seq == 5


def test_a_commit_a_node_claims_expired_is_never_skipped(devices: dict[str, Dev]) -> None:
    bob = devices["bob"]
    group, hub = joined(devices)
    commit = hub.send({"op": "admin", "account": BOB})  # 2: a commit, epoch 1 -> 2
    message = hub.send(timed("in epoch 2", None))  # 3
    forged = envelope(dataclasses.replace(decode_struct(GroupItem, message.body), floor=1, gap_expires=NOW))
    engine = engine_at(bob, NOW + 10**6)
    assert engine.accept(forged, NOW)
    assert bob.record(group).next_seq == 2 and texts(bob) == []
    assert any("a change of the group is among them" in alert.text for alert in bob.state.alerts())
    assert engine.accept(commit, NOW) and engine.accept(message, NOW)
    assert texts(bob) == [(3, ALICE, "in epoch 2")] and bob.group(group).epoch == 2


def test_a_copy_whose_expiry_is_not_its_senders_is_not_taken(devices: dict[str, Dev]) -> None:
    bob = devices["bob"]
    group, hub = joined(devices)
    real = hub.send(timed("short", NOW + 5000))
    item = decode_struct(GroupItem, real.body)
    for wrong in (0, NOW + 10**9):  # a node took the expiry off, or moved it
        dataclasses.replace(item, expires=wrong).check()
    engine = engine_at(bob, NOW)
    assert engine.accept(envelope(dataclasses.replace(item, expires=NOW + 10**9)), NOW)
    assert texts(bob) == [] and bob.record(group).next_seq == 3
    assert "its sender set it to expire at" in engine.rejected[0]

