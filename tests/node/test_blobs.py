"""The blob store (node/blobs.py, node/client_blobs.py): chunked upload with resume after a cut
connection and after a restart, ranged download, and every refusal (quota in bytes and count,
size limit, wrong offset, a digest that does not match, another account's blob, an upload not
finished, no account), hostile frames, retention."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgpack
import pytest
import trio

from sonet.core.blob_api import BLOB_CHUNK_BYTES, BlobChunk, BlobCreate, BlobCreated, BlobGet, BlobPut, BlobStatus, BlobStored
from sonet.core.client_api import CLIENT_FRAMES
from sonet.core.errors import RemoteProtocolError
from sonet.core.wire import decode_frame
from sonet.node.blob_settings import BlobSettings
from sonet.node.blobs import BLOBS_DIR, BlobStore
from sonet.node.client_checks import RequestError

from .conftest import NODE_NAME, RunningNode, StartNode
from .kit import NodeError, RawConnection, new_identity

DATA = os.urandom(2 * BLOB_CHUNK_BYTES + 12_345)


async def create(conn: RawConnection, data: bytes = DATA, digest: bytes | None = None) -> bytes:
    reply = await conn.request(lambda n: BlobCreate(request=n, size=len(data), sha256=digest or hashlib.sha256(data).digest()))
    assert isinstance(reply, BlobCreated)
    return reply.blob


async def put(conn: RawConnection, blob: bytes, offset: int, data: bytes) -> BlobStored:
    reply = await conn.request(lambda n: BlobPut(request=n, blob=blob, offset=offset, data=data))
    assert isinstance(reply, BlobStored)
    return reply


async def upload_from(conn: RawConnection, blob: bytes, offset: int, data: bytes = DATA) -> BlobStored:
    reply = None
    while offset < len(data):
        reply = await put(conn, blob, offset, data[offset : offset + BLOB_CHUNK_BYTES])
        offset = reply.stored
    assert reply is not None
    return reply


async def download(conn: RawConnection, blob: bytes, offset: int = 0) -> bytes:
    out = bytearray()
    while True:
        reply = await conn.request(lambda n: BlobGet(request=n, node=NODE_NAME, blob=blob, offset=offset))
        assert isinstance(reply, BlobChunk) and reply.offset == offset
        out += reply.data
        offset += len(reply.data)
        if offset == reply.total:
            return bytes(out)


async def refused(conn: RawConnection, frame_of, code: str) -> None:  # noqa: ANN001
    with pytest.raises(NodeError) as info:
        await conn.request(frame_of)
    assert info.value.code == code, info.value


async def test_upload_cut_resume_and_download(running: RunningNode) -> None:
    alice = await running.enroll("alice")
    bob = await running.enroll("bob")
    async with running.raw(alice.first) as conn:
        blob = await create(conn)
        first = await put(conn, blob, 0, DATA[:BLOB_CHUNK_BYTES])
        assert (first.stored, first.size, first.complete) == (BLOB_CHUNK_BYTES, len(DATA), False)
    # the connection was cut: a new one asks how much the node has and goes on from there
    async with running.raw(alice.first) as conn:
        status = await conn.request(lambda n: BlobStatus(request=n, blob=blob))
        assert isinstance(status, BlobStored) and status.stored == BLOB_CHUNK_BYTES
        await refused(conn, lambda n: BlobPut(request=n, blob=blob, offset=0, data=b"x" * 10), "blob_offset")
        await refused(conn, lambda n: BlobGet(request=n, node=NODE_NAME, blob=blob, offset=0), "blob_incomplete")
        done = await upload_from(conn, blob, status.stored)
        assert done.complete and done.stored == len(DATA)
        # a chunk sent again after a lost answer is no error
        assert (await put(conn, blob, 0, DATA[:10])).complete
    # anyone registered here with the id downloads it, from any offset
    async with running.raw(bob.first) as conn:
        assert await download(conn, blob) == DATA
        assert await download(conn, blob, offset=BLOB_CHUNK_BYTES + 7) == DATA[BLOB_CHUNK_BYTES + 7 :]
        await refused(conn, lambda n: BlobGet(request=n, node=NODE_NAME, blob=blob, offset=len(DATA)), "bad_input")
        # but only its owner writes it
        await refused(conn, lambda n: BlobStatus(request=n, blob=blob), "blob_unknown")
        await refused(conn, lambda n: BlobPut(request=n, blob=blob, offset=len(DATA), data=b"x"), "blob_unknown")
        await refused(conn, lambda n: BlobGet(request=n, node=NODE_NAME, blob=os.urandom(16), offset=0), "blob_unknown")
    on_disk = running.data_dir / BLOBS_DIR / f"{blob.hex()}.blob"
    assert on_disk.read_bytes() == DATA


async def test_a_digest_that_does_not_match_drops_the_blob(running: RunningNode) -> None:
    alice = await running.enroll("alice")
    data = os.urandom(1000)
    async with running.raw(alice.first) as conn:
        blob = await create(conn, data, digest=hashlib.sha256(b"something else").digest())
        await refused(conn, lambda n: BlobPut(request=n, blob=blob, offset=0, data=data), "blob_corrupt")
        await refused(conn, lambda n: BlobStatus(request=n, blob=blob), "blob_unknown")
    assert not list((running.data_dir / BLOBS_DIR).iterdir())


async def test_quota_size_limit_and_retention(start_node: StartNode) -> None:
    settings = BlobSettings(max_file_bytes=100_000, account_max_bytes=250_000, account_max_blobs=3, retention_days=1)
    node = await start_node(blobs=settings)
    alice = await node.enroll("alice")
    async with node.raw(alice.first) as conn:
        await refused(conn, lambda n: BlobCreate(request=n, size=settings.max_blob_bytes + 1, sha256=bytes(32)), "blob_too_large")
        for _ in range(2):
            await conn.request(lambda n: BlobCreate(request=n, size=100_000, sha256=bytes(32)))
        await refused(conn, lambda n: BlobCreate(request=n, size=60_000, sha256=bytes(32)), "blob_quota")  # bytes
        await conn.request(lambda n: BlobCreate(request=n, size=10, sha256=bytes(32)))
        await refused(conn, lambda n: BlobCreate(request=n, size=10, sha256=bytes(32)), "blob_quota")  # count
    blobs = node.node.context.blobs
    assert blobs is not None and blobs.usage(alice.address) == (200_010, 3)
    assert await blobs.purge(node.node.clock_ms() + settings.retention_ms) == 3
    assert blobs.usage(alice.address) == (0, 0) and not list((node.data_dir / BLOBS_DIR).iterdir())


async def test_a_device_without_an_account_is_refused(running: RunningNode) -> None:
    async with running.raw(new_identity()) as conn:
        await refused(conn, lambda n: BlobCreate(request=n, size=10, sha256=bytes(32)), "not_registered")
        await refused(conn, lambda n: BlobGet(request=n, node=NODE_NAME, blob=bytes(16), offset=0), "not_registered")


@pytest.mark.parametrize(
    "fields",
    [
        [112, 1, bytes(16), 0, b"x" * (BLOB_CHUNK_BYTES + 1)],  # a chunk over the cap
        [112, 1, bytes(16), 0, b""],  # an empty chunk
        [112, 1, bytes(15), 0, b"x"],  # a short blob id
        [112, 1, bytes(16), -1, b"x"],  # a negative offset
        [110, 1, 0, bytes(32)],  # an empty blob
        [110, 1, 2**41, bytes(32)],  # beyond any node's limit
        [110, 1, 10, bytes(31)],  # a short digest
        [116, 1, bytes(16), 3, 4, b"xx"],  # a chunk past the blob's end
    ],
)
def test_hostile_blob_frames_are_refused(fields: list) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_frame(msgpack.packb(fields), CLIENT_FRAMES)
    assert info.value.code == "bad_input"


async def test_resume_after_a_restart(tmp_path: Path) -> None:
    """What the node acknowledged survives a restart: the size of the part is what it holds."""
    settings = BlobSettings()
    store = await BlobStore.open(tmp_path, settings, rng=os.urandom)
    info = await store.create("alice@alpha.example", len(DATA), hashlib.sha256(DATA).digest(), now=1)
    await store.put("alice@alpha.example", info.id, 0, DATA[:BLOB_CHUNK_BYTES])
    (tmp_path / BLOBS_DIR / "leftover.tmp").write_bytes(b"x")  # a rename a crash interrupted
    again = await BlobStore.open(tmp_path, settings, rng=os.urandom)
    held = again.owned("alice@alpha.example", info.id)
    assert (held.stored, held.complete) == (BLOB_CHUNK_BYTES, False)
    assert not (tmp_path / BLOBS_DIR / "leftover.tmp").exists()
    offset = held.stored
    while offset < len(DATA):
        offset = (await again.put("alice@alpha.example", info.id, offset, DATA[offset : offset + BLOB_CHUNK_BYTES])).stored
    assert again.owned("alice@alpha.example", info.id).complete
    third = await BlobStore.open(tmp_path, settings, rng=os.urandom)
    got, data = await third.read(info.id, 0)
    assert got.complete and data == DATA[:BLOB_CHUNK_BYTES]
    with pytest.raises(RequestError) as refusal:
        await third.read(os.urandom(16), 0)
    assert refusal.value.code == "blob_unknown"


async def test_concurrent_puts_of_one_chunk_store_it_once(tmp_path: Path) -> None:
    store = await BlobStore.open(tmp_path, BlobSettings(), rng=os.urandom)
    data = os.urandom(5000)
    info = await store.create("a@b.example", len(data), hashlib.sha256(data).digest(), now=1)
    codes: list[str] = []

    async def one() -> None:
        try:
            await store.put("a@b.example", info.id, 0, data[:3000])
        except RequestError as exc:
            codes.append(exc.code)

    async with trio.open_nursery() as n:
        n.start_soon(one)
        n.start_soon(one)
    assert codes == ["blob_offset"] and store.owned("a@b.example", info.id).stored == 3000


def test_blobs_section_of_node_toml() -> None:
    from sonet.node.config import ConfigError, NodeConfig

    base = {"name": "alpha.example", "listen": "127.0.0.1:0"}
    config = NodeConfig.from_dict({**base, "blobs": {"max_file_bytes": 1 << 30, "retention_days": 7}})
    assert (config.blobs.max_file_bytes, config.blobs.retention_days, config.blobs.account_max_blobs) == (1 << 30, 7, 1000)
    assert NodeConfig.from_dict(__import__("tomllib").loads(config.to_toml())).blobs == config.blobs
    for bad in ({"retention_days": 0}, {"max_file_bytes": "100"}, {"account_max_blobs": -1}, {"max_size": 1}):
        with pytest.raises(ConfigError, match="blobs"):
            NodeConfig.from_dict({**base, "blobs": bad})


async def test_concurrent_creates_cannot_pass_the_quota_together(tmp_path: Path) -> None:
    store = await BlobStore.open(tmp_path, BlobSettings(account_max_blobs=2), rng=os.urandom)
    codes: list[str] = []

    async def one() -> None:
        try:
            await store.create("a@b.example", 10, bytes(32), now=1)
        except RequestError as exc:
            codes.append(exc.code)

    async with trio.open_nursery() as n:
        for _ in range(5):
            n.start_soon(one)
    assert codes == ["blob_quota"] * 3 and store.usage("a@b.example") == (20, 2)
    assert len(list((tmp_path / BLOBS_DIR).glob("*.meta"))) == 2
