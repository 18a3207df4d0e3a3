"""Attack round 9: chunks of this node's own blobs were served without any budget but the
per-connection request rate. One device downloading the same 1 MiB chunk again and again on
its eight connections got ~340 MiB/s from a real node, whose core it took whole (each chunk is
read and sealed for the channel): another device's send went from 3 to 17 ms. They now come out
of a per-device byte budget of their own (node/client_limits.py ``LOCAL_BLOB_BYTES``, the
``admit_blob`` / ``settle_blob`` of other nodes' blobs), which lets five of the largest files
through at once."""

from __future__ import annotations

import hashlib
import os

import pytest
import trio

from sonet.core.blob_api import BLOB_CHUNK_BYTES, BlobChunk, BlobCreate, BlobCreated, BlobGet, BlobPut, BlobStored
from sonet.federation.ratelimit import Rate
from sonet.node.blob_settings import BlobSettings
from sonet.node.client_limits import LOCAL_BLOB_BYTES, ClientLimits

from .conftest import HANG_S, NODE_NAME, NodeParams, StartNode
from .kit import NodeError, RawConnection

DATA = os.urandom(2 * BLOB_CHUNK_BYTES + 1000)


async def _upload(conn: RawConnection) -> bytes:
    created = await conn.request(lambda n: BlobCreate(request=n, size=len(DATA), sha256=hashlib.sha256(DATA).digest()))
    assert isinstance(created, BlobCreated)
    for offset in range(0, len(DATA), BLOB_CHUNK_BYTES):
        stored = await conn.request(lambda n: BlobPut(request=n, blob=created.blob, offset=offset, data=DATA[offset : offset + BLOB_CHUNK_BYTES]))
        assert isinstance(stored, BlobStored)
    return created.blob


async def _chunk(conn: RawConnection, blob: bytes, offset: int) -> bytes:
    reply = await conn.request(lambda n: BlobGet(request=n, node=NODE_NAME, blob=blob, offset=offset))
    assert isinstance(reply, BlobChunk) and reply.offset == offset
    return reply.data


async def test_chunks_of_this_nodes_blobs_are_charged_per_device(start_node: StartNode, node_params: NodeParams) -> None:
    # two chunks and 500 bytes, refilled at a byte a second: a whole chunk is taken before each read
    node_params.client_limits = ClientLimits(local_blob_bytes=Rate(per_second=1, burst=2 * BLOB_CHUNK_BYTES + 500))
    node = await start_node()
    alice, mallory = await node.enroll("alice"), await node.enroll("mallory")
    with trio.fail_after(HANG_S):
        async with node.raw(alice.first) as conn:
            blob = await _upload(conn)
        async with node.raw(mallory.first) as conn:
            with pytest.raises(NodeError) as refusal:  # a refused read gives its chunk's worth back
                await _chunk(conn, os.urandom(16), 0)
            assert refusal.value.code == "blob_unknown"
            assert await _chunk(conn, blob, 0) == DATA[:BLOB_CHUNK_BYTES]
            assert await _chunk(conn, blob, 2 * BLOB_CHUNK_BYTES) == DATA[2 * BLOB_CHUNK_BYTES :]  # short: only its 1000 bytes are kept
            with pytest.raises(NodeError) as refusal:
                await _chunk(conn, blob, BLOB_CHUNK_BYTES)
            assert refusal.value.code == "rate_limited"
            assert "fetched too many bytes of files from this node; try again in" in str(refusal.value)
        async with node.raw(mallory.first) as conn:  # reconnecting refills nothing
            with pytest.raises(NodeError) as refusal:
                await _chunk(conn, blob, 0)
            assert refusal.value.code == "rate_limited"
        async with node.raw(alice.first) as conn:  # another device has its own
            for offset in (0, BLOB_CHUNK_BYTES):
                assert await _chunk(conn, blob, offset) == DATA[offset : offset + BLOB_CHUNK_BYTES]


def test_the_default_lets_five_of_the_largest_files_through_at_once() -> None:
    assert LOCAL_BLOB_BYTES.burst >= 5 * BlobSettings().max_blob_bytes
