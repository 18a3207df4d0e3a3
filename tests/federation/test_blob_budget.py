"""The per-device budget of bytes fetched from other nodes (node/client_limits.py
admit_blob / settle_blob): carol@gamma downloads alice@alpha's blob through her
node until her budget is spent, then is refused ``rate_limited`` with a clear message and
nothing is fetched; another device of gamma still gets its chunks, and a blob of carol's own
node is not charged."""

from __future__ import annotations

import hashlib
import os

import pytest

from sonet.core.blob_api import BLOB_CHUNK_BYTES, BlobChunk, BlobCreate, BlobCreated, BlobGet, BlobPut, BlobStored
from sonet.core.ratelimit import Rate
from sonet.node.client_limits import ClientLimits
from tests.node.conftest import NodeParams, RunningNode, StartNode
from tests.node.kit import Member, NodeError, RawConnection

from .net import ALPHA, GAMMA, triangle

DATA = os.urandom(3 * BLOB_CHUNK_BYTES - 1000)


async def _upload(node: RunningNode, member: Member) -> bytes:
    async with node.raw(member) as conn:
        created = await conn.request(lambda n: BlobCreate(request=n, size=len(DATA), sha256=hashlib.sha256(DATA).digest()))
        assert isinstance(created, BlobCreated)
        for offset in range(0, len(DATA), BLOB_CHUNK_BYTES):
            stored = await conn.request(lambda n: BlobPut(request=n, blob=created.blob, offset=offset, data=DATA[offset : offset + BLOB_CHUNK_BYTES]))
            assert isinstance(stored, BlobStored)
        return created.blob


async def _chunk(conn: RawConnection, node: str, blob: bytes, offset: int) -> bytes:
    reply = await conn.request(lambda n: BlobGet(request=n, node=node, blob=blob, offset=offset))
    assert isinstance(reply, BlobChunk) and reply.offset == offset
    return reply.data


async def test_remote_blob_bytes_are_charged_per_device(start_node: StartNode, node_params: NodeParams) -> None:
    # two chunks and a half, refilled at a byte a second: a whole chunk is taken before each fetch
    node_params.client_limits = ClientLimits(remote_blob_bytes=Rate(per_second=1, burst=BLOB_CHUNK_BYTES * 5 // 2))
    net = await triangle(start_node)
    blob = await _upload(net.alpha, net.alice.first)
    own = await _upload(net.gamma, net.carol.first)
    async with net.gamma.raw(net.carol.first) as conn:
        # a refused fetch (an unknown blob) gives its chunk's worth back
        with pytest.raises(NodeError) as refusal:
            await _chunk(conn, ALPHA, os.urandom(16), 0)
        assert refusal.value.code == "blob_unknown"
        assert await _chunk(conn, ALPHA, blob, 0) == DATA[:BLOB_CHUNK_BYTES]
        # the last chunk is short: only what it used is kept (a half chunk and 1000 bytes are left)
        assert await _chunk(conn, ALPHA, blob, 2 * BLOB_CHUNK_BYTES) == DATA[2 * BLOB_CHUNK_BYTES :]
        # not a whole chunk's worth left: refused before anything is fetched
        with pytest.raises(NodeError) as refusal:
            await _chunk(conn, ALPHA, blob, BLOB_CHUNK_BYTES)
        assert refusal.value.code == "rate_limited"
        assert "fetched too many bytes of files from other nodes; try again in" in str(refusal.value)
        # her own node's blobs are not fetched from another node: not charged
        for offset in range(0, len(DATA), BLOB_CHUNK_BYTES):
            assert await _chunk(conn, GAMMA, own, offset) == DATA[offset : offset + BLOB_CHUNK_BYTES]
    # reconnecting does not refill it (the actor is the device key)
    async with net.gamma.raw(net.carol.first) as conn:
        with pytest.raises(NodeError) as refusal:
            await _chunk(conn, ALPHA, blob, BLOB_CHUNK_BYTES)
        assert refusal.value.code == "rate_limited"
    # another device has its own budget
    dave = await net.gamma.enroll("dave")
    async with net.gamma.raw(dave.first) as conn:
        assert await _chunk(conn, ALPHA, blob, BLOB_CHUNK_BYTES) == DATA[BLOB_CHUNK_BYTES : 2 * BLOB_CHUNK_BYTES]
