"""A file message's blob goes from the node with the message (client/blob_expiry.py): a delete
for everyone of one's own file deletes it at once (in a group too), a recipient's cannot; a file
sent while the conversation's timer is on has its blob expire with the message, through the
node's one purge path. Real devices against an in-process node on a shared fake clock."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sonet.client.file_fields import file_ref_of
from sonet.client.sdk import Device
from sonet.core.attachment import FileRef
from sonet.core.errors import LocalProtocolError
from sonet.node.blobs import BLOBS_DIR, BlobStore
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, Clock

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]
FIVE_S = 5_000


def store_of(node: RunningNode) -> BlobStore:
    blobs = node.node.context.blobs
    assert blobs is not None
    return blobs


def ref_of(device: Device, msg_id: bytes) -> FileRef:
    [kept] = device.state.find_messages(msg_id, device.state.profile().address)
    return file_ref_of(device.state.message_text(kept))


def on_disk(node: RunningNode, ref: FileRef) -> list[str]:
    return sorted(p.name for p in (node.data_dir / BLOBS_DIR).iterdir() if p.name.startswith(ref.blob.hex()))


async def test_a_delete_for_everyone_deletes_the_blob_and_only_the_author_can(alpha: RunningNode, register: Register, tmp_path: Path) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    path = tmp_path / "plan.pdf"
    path.write_bytes(os.urandom(5000))
    sent = await alice.send_file(BOB, path, "the plan")
    ref = ref_of(alice, sent.id)
    await bob.receive()
    with pytest.raises(LocalProtocolError) as refusal:
        await bob.delete(sent.id, everyone=True)
    assert refusal.value.code == "not_author"
    assert store_of(alpha).get(ref.blob) is not None and on_disk(alpha, ref)
    await bob.delete(sent.id)  # for him only: the blob stays, it is alice's
    assert store_of(alpha).get(ref.blob) is not None

    result = await alice.delete(sent.id, everyone=True)
    assert result.type == "delete"
    assert store_of(alpha).get(ref.blob) is None and on_disk(alpha, ref) == []
    assert store_of(alpha).usage(ALICE) == (0, 0)


async def test_a_delete_for_everyone_in_a_group_deletes_the_blob(alpha: RunningNode, register: Register, tmp_path: Path) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    await alice.group_create("hikers", [BOB, CAROL])
    path = tmp_path / "route.gpx"
    path.write_bytes(os.urandom(7000))
    sent = await alice.group_send_file("hikers", path)
    ref = ref_of(alice, sent.id)
    assert on_disk(alpha, ref)
    await alice.delete(sent.id, everyone=True)
    assert store_of(alpha).get(ref.blob) is None and on_disk(alpha, ref) == []


async def test_a_file_sent_under_a_timer_has_its_blob_expire_with_it(
    alpha: RunningNode, register: Register, clock: Clock, tmp_path: Path
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await alice.set_timer(BOB, FIVE_S)
    path = tmp_path / "voice.ogg"
    path.write_bytes(os.urandom(4000))
    sent = await alice.send_file(BOB, path)
    ref = ref_of(alice, sent.id)
    expires = alice.state.message_expiry(sent.id)
    assert expires is not None
    info = store_of(alpha).get(ref.blob)
    assert info is not None and info.expires == expires  # not the 30-day retention
    received = await bob.receive()
    assert next(m for m in received.messages if m.id == sent.id).fields["expires"] == expires
    # the node's purge (the same one as retention) drops it at that time, not before
    assert await store_of(alpha).purge(expires - 1) == 0
    clock.advance(FIVE_S)
    assert await store_of(alpha).purge(clock()) == 1
    assert on_disk(alpha, ref) == []


async def test_a_file_sent_without_a_timer_keeps_the_retention(alpha: RunningNode, register: Register, tmp_path: Path) -> None:
    alice, _bob = await register(alpha, "alice"), await register(alpha, "bob")
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    sent = await alice.send_file(BOB, path)
    info = store_of(alpha).get(ref_of(alice, sent.id).blob)
    assert info is not None and info.expires == info.created_at + store_of(alpha).settings.retention_ms
