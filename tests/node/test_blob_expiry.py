"""Deleting blobs (node/blobs.py expire, node/client_blobs.py blob_expire): a delete for everyone
deletes its file's blob at once, a disappearing message's expiry brings the blob's closer and the
node purges it then (the same purge as retention), only the owner account may, the earlier time
survives a restart, and hostile BlobExpire frames are refused."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import msgpack
import pytest
import trio

from sonet.core.blob_api import BlobExpire, BlobExpiry, BlobGet
from sonet.core.client_api import CLIENT_FRAMES
from sonet.core.errors import RemoteProtocolError
from sonet.core.wire import decode_frame
from sonet.node.blob_settings import BlobSettings
from sonet.node.blobs import BLOBS_DIR, BlobStore

from .conftest import HANG_S, NODE_NAME, RunningNode
from .kit import RawConnection
from .test_blobs import create, download, refused, upload_from

DATA = os.urandom(3000)


async def _uploaded(conn: RawConnection) -> bytes:
    blob = await create(conn, DATA)
    assert (await upload_from(conn, blob, 0, DATA)).complete
    return blob


async def _expire(conn: RawConnection, blob: bytes, expires: int) -> int:
    reply = await conn.request(lambda n: BlobExpire(request=n, blob=blob, expires=expires))
    assert isinstance(reply, BlobExpiry) and reply.blob == blob
    return reply.expires


def _files(running: RunningNode, blob: bytes) -> list[str]:
    return sorted(p.name for p in (running.data_dir / BLOBS_DIR).iterdir() if p.name.startswith(blob.hex()))


async def test_a_delete_removes_the_blob_at_once_and_only_the_owner_may(running: RunningNode) -> None:
    alice = await running.enroll("alice")
    bob = await running.enroll("bob")
    async with running.raw(alice.first) as conn:
        blob = await _uploaded(conn)
    async with running.raw(bob.first) as conn:
        assert await download(conn, blob) == DATA
        # bob may read it (he has the id) but not delete it: another's blob is as good as unknown
        await refused(conn, lambda n: BlobExpire(request=n, blob=blob, expires=0), "blob_unknown")
    assert _files(running, blob) == [f"{blob.hex()}.blob", f"{blob.hex()}.meta"]
    async with running.raw(alice.first) as conn:
        assert await _expire(conn, blob, 0) == 0
        assert _files(running, blob) == []
        await refused(conn, lambda n: BlobGet(request=n, node=NODE_NAME, blob=blob, offset=0), "blob_unknown")
        await refused(conn, lambda n: BlobExpire(request=n, blob=blob, expires=0), "blob_unknown")
    blobs = running.node.context.blobs
    assert blobs is not None and blobs.usage(alice.address) == (0, 0)


async def test_an_expiry_brings_the_purge_closer(running: RunningNode) -> None:
    alice = await running.enroll("alice")
    async with running.raw(alice.first) as conn:
        blob = await _uploaded(conn)
        blobs = running.node.context.blobs
        assert blobs is not None
        retention = blobs.owned(alice.address, blob).expires
        # a time after its retention changes nothing
        assert await _expire(conn, blob, retention + 1000) == retention
        soon = running.node.clock_ms() + 1500
        assert await _expire(conn, blob, soon) == soon
        record = json.loads((running.data_dir / BLOBS_DIR / f"{blob.hex()}.meta").read_text())
        assert record["expires"] == soon  # durable: a restart keeps it
        assert await _expire(conn, blob, soon + 500) == soon  # never later again
        assert await download(conn, blob) == DATA
    # the node's purge loop was asleep for up to a minute: the new expiry woke it
    with trio.fail_after(HANG_S):
        while _files(running, blob):
            await trio.sleep(0.05)
    assert running.node.clock_ms() >= soon
    async with running.raw(alice.first) as conn:
        await refused(conn, lambda n: BlobGet(request=n, node=NODE_NAME, blob=blob, offset=0), "blob_unknown")


async def test_an_expiry_survives_a_restart_and_an_unfinished_blob_goes_too(tmp_path: Path) -> None:
    settings = BlobSettings()
    store = await BlobStore.open(tmp_path, settings, rng=os.urandom)
    info = await store.create("alice@alpha.example", len(DATA), hashlib.sha256(DATA).digest(), now=1_000)
    await store.put("alice@alpha.example", info.id, 0, DATA[:1000])  # not finished
    assert await store.expire("alice@alpha.example", info.id, 5_000, now=2_000) == 5_000
    again = await BlobStore.open(tmp_path, settings, rng=os.urandom)
    assert again.next_expiry() == 5_000 and again.owned("alice@alpha.example", info.id).stored == 1000
    assert await again.purge(4_999) == 0
    assert await again.purge(5_000) == 1
    assert again.next_expiry() is None and not list((tmp_path / BLOBS_DIR).iterdir())


@pytest.mark.parametrize(
    "fields",
    [
        [117, 1, bytes(15), 0],  # a short blob id
        [117, 1, bytes(17), 0],  # a long one
        [117, 1, bytes(16), -1],  # a negative time
        [117, 1, bytes(16), 2**63],  # out of range
        [117, 1, bytes(16)],  # no time
        [117, 1, bytes(16), "0"],  # a time that is not a number
        [118, 1, bytes(16), -5],  # an answer with a negative time
    ],
)
def test_hostile_blob_expire_frames_are_refused(fields: list) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_frame(msgpack.packb(fields), CLIENT_FRAMES)
    assert info.value.code == "bad_input"
