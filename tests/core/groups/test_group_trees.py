"""Ratchet trees by reference and the group size caps (core/groups/trees.py, items.py, hub.py;
docs/groups.md "Trees by reference", "Sizes"): a Welcome without its tree joins with the tree
the hub kept, and with no other; a tree comes back from its chunks whole or not at all; group
items, GroupTree frames and Kind.GROUP envelopes are bounded by the caps."""

from __future__ import annotations

import dataclasses
import os

import pytest

from sonet.core import limits
from sonet.core.client_api import GroupTree
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.groups import hub as hub_module
from sonet.core.groups.items import MAX_GROUP_ITEM_BYTES, MAX_GROUP_MESSAGE_BYTES, GroupItem, GroupMember, ItemKind
from sonet.core.groups.trees import CHUNK_BYTES, MAX_TREE_BYTES, TreeDownload, tree_chunk
from sonet.core.mls.framing import MLSMessage
from sonet.core.mls.group import Group
from sonet.core.mls.messages import Add
from sonet.core.wire import decode_frame, encode_frame, encode_struct

from .devices import CS, GROUP_ID, Device, Scenario, submit


def answers(tree: bytes, *, group: bytes = GROUP_ID, epoch: int = 1) -> list[GroupTree]:
    parts, offset = [], 0
    while offset < len(tree):
        total, chunk = tree_chunk(tree, offset)
        parts.append(GroupTree(request=1, group=group, epoch=epoch, offset=offset, total=total, chunk=chunk))
        offset += len(chunk)
    return parts


def test_a_tree_comes_back_whole_from_its_chunks() -> None:
    tree = os.urandom(2 * CHUNK_BYTES + 12345)
    parts = answers(tree)
    assert [len(p.chunk) for p in parts] == [CHUNK_BYTES, CHUNK_BYTES, 12345]
    download = TreeDownload(GROUP_ID, 1)
    for part in parts:
        assert not download.done
        download.add(decode_frame(encode_frame(part)))  # each answer fits a frame
    assert download.done and download.tree() == tree
    with pytest.raises(ValueError):
        tree_chunk(tree, len(tree))


@pytest.mark.parametrize("case", ["other group", "other epoch", "skipped part", "size changed", "short part", "incomplete"])
def test_a_download_refuses_anything_but_the_next_part_of_its_tree(case: str) -> None:
    first, second, third = answers(os.urandom(2 * CHUNK_BYTES + 10))
    download = TreeDownload(GROUP_ID, 1)
    download.add(first)
    bad = {
        "other group": dataclasses.replace(second, group=bytes(16)),
        "other epoch": dataclasses.replace(second, epoch=2),
        "skipped part": third,
        "size changed": dataclasses.replace(second, total=second.total + 1),
        "short part": dataclasses.replace(second, chunk=second.chunk[:-1]),
        "incomplete": None,
    }[case]
    with pytest.raises(RemoteProtocolError):
        if bad is None:
            download.tree()
        else:
            download.add(bad)


@pytest.mark.parametrize(
    "fields",
    [
        {"chunk": b"x" * (CHUNK_BYTES + 1), "total": CHUNK_BYTES + 1},
        {"chunk": b""},
        {"offset": 10, "total": 10},
        {"offset": 5, "total": 8},
        {"total": MAX_TREE_BYTES + 1},
        {"group": b"short"},
    ],
)
def test_a_group_tree_answer_out_of_bounds_is_refused(fields: dict) -> None:
    good = GroupTree(request=1, group=GROUP_ID, epoch=1, offset=0, total=4, chunk=b"tree")
    assert decode_frame(encode_frame(good)) == good
    with pytest.raises(ProtocolError):
        encode_frame(dataclasses.replace(good, **fields))


def test_a_welcome_without_its_tree_joins_with_the_hubs_tree_only() -> None:
    scenario = Scenario(Device.new("alice@alpha.example"))
    alice, bob = scenario.devices[0], Device.new("bob@beta.example")
    staged, item = scenario.commit(alice, proposals=[Add(bob.key_package)], ratchet_tree_in_welcome=False)
    before = scenario.hub.public.tree.to_bytes()
    assert scenario.hub.order(item).code == "ok"
    alice.g.merge(staged)
    kept = scenario.hub.public.tree.to_bytes()  # what the hub's node keeps for epoch 1

    def join(tree: bytes | None) -> Group:
        return Group.join(
            CS, MLSMessage.from_bytes(item.welcome), bob.key_package, init_priv=bob.init_priv, encryption_priv=bob.encryption_priv,
            signature_priv=bob.signature_priv, ratchet_tree=tree,
        )  # fmt: skip

    with pytest.raises(ProtocolError, match="carries no ratchet tree"):
        join(None)
    with pytest.raises(ProtocolError):
        join(before)  # the tree of another epoch: its hash is not the GroupInfo's
    tampered = bytearray(kept)
    tampered[len(tampered) // 2] ^= 1
    with pytest.raises(ProtocolError):
        join(bytes(tampered))
    joined = join(kept)
    assert joined.epoch == 1 and joined.ratchet_tree_bytes() == alice.g.ratchet_tree_bytes()
    assert len(item.welcome) < len(kept)  # the tree is not in the Welcome


def test_a_group_item_is_bounded_as_a_whole_and_fits_one_group_envelope() -> None:
    members = tuple(GroupMember(account=f"member{n:05d}@alpha.example", device=n + 1) for n in range(2000))
    item = GroupItem(
        kind=ItemKind.ORDERED, ref=os.urandom(16), group=GROUP_ID, epoch=1, seq=1, message=os.urandom(MAX_GROUP_MESSAGE_BYTES),
        welcome=b"", members=members, outcome="", hub="alpha.example",
    )  # fmt: skip
    body = encode_struct(item)
    assert len(body) <= item.size() <= MAX_GROUP_ITEM_BYTES
    envelope = Envelope(v=ENVELOPE_VERSION, id=item.ref, to="member00000@alpha.example", device=1, expires=10**12, kind=Kind.GROUP, body=body)
    envelope.check()
    with pytest.raises(ValueError, match="too large"):
        dataclasses.replace(envelope, kind=Kind.SEALED).check()  # other envelopes keep their cap
    assert limits.MAX_ENVELOPE_BODY < len(body)
    over = dataclasses.replace(item, welcome=os.urandom(MAX_GROUP_ITEM_BYTES - item.size() + 1))
    with pytest.raises(ValueError, match="too large"):
        over.check()


def test_the_hub_refuses_a_commit_that_makes_the_group_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "MAX_GROUP_DEVICES", 2)
    scenario = Scenario(Device.new("alice@alpha.example"))
    alice = scenario.devices[0]
    scenario.add(alice, Device.new("bob@beta.example"))
    _, item = scenario.commit(alice, proposals=[Add(Device.new("carol@gamma.example").key_package)])
    outcome = scenario.hub.order(item)
    assert (outcome.code, outcome.ordered, scenario.hub.epoch) == ("too_large", (), 1)


def test_a_submission_over_the_item_cap_is_too_large() -> None:
    scenario = Scenario(Device.new("alice@alpha.example"))
    alice = scenario.devices[0]
    message = alice.g.encrypt(b"hi", alice.rng.randbytes)
    item = submit(message, epoch=0)
    assert scenario.hub.order(item).code == "ok"
    huge = dataclasses.replace(item, ref=os.urandom(16), message=os.urandom(MAX_GROUP_MESSAGE_BYTES + 1))
    assert scenario.hub.order(huge).code == "too_large"
