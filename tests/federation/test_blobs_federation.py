"""Attachments across nodes (node/client_blobs.py, federation BlobGet): carol@gamma downloads a
blob alice uploaded to alpha through her own node, which asks alpha through the relay beta and
passes each chunk on; nothing of it is kept on beta or gamma; the refusals of alpha reach carol
as they are, and a node that is not a peer is unknown."""

from __future__ import annotations

import hashlib
import os

import pytest

from sonet.core.blob_api import BLOB_CHUNK_BYTES, BlobChunk, BlobCreate, BlobCreated, BlobGet, BlobPut, BlobStored
from sonet.node.blobs import BLOBS_DIR
from tests.node.conftest import StartNode
from tests.node.kit import NodeError

from .net import ALPHA, triangle

DATA = os.urandom(2 * BLOB_CHUNK_BYTES + 777)


async def test_a_blob_of_another_node_comes_through_the_relay(start_node: StartNode) -> None:
    net = await triangle(start_node)
    async with net.alpha.raw(net.alice.first) as conn:
        created = await conn.request(lambda n: BlobCreate(request=n, size=len(DATA), sha256=hashlib.sha256(DATA).digest()))
        assert isinstance(created, BlobCreated)
        blob = created.blob
        for offset in range(0, len(DATA), BLOB_CHUNK_BYTES):
            stored = await conn.request(lambda n: BlobPut(request=n, blob=blob, offset=offset, data=DATA[offset : offset + BLOB_CHUNK_BYTES]))
            assert isinstance(stored, BlobStored)
        assert stored.complete
    async with net.gamma.raw(net.carol.first) as conn:
        got, offset = bytearray(), 3  # from any offset, as a resumed download asks
        while offset < len(DATA):
            chunk = await conn.request(lambda n: BlobGet(request=n, node=ALPHA, blob=blob, offset=offset))
            assert isinstance(chunk, BlobChunk) and chunk.offset == offset and chunk.total == len(DATA)
            got += chunk.data
            offset += len(chunk.data)
        assert bytes(got) == DATA[3:]
        for code, frame in (
            ("blob_unknown", lambda n: BlobGet(request=n, node=ALPHA, blob=os.urandom(16), offset=0)),
            ("bad_input", lambda n: BlobGet(request=n, node=ALPHA, blob=blob, offset=len(DATA))),
            ("unknown_node", lambda n: BlobGet(request=n, node="nowhere.example", blob=blob, offset=0)),
            ("bad_address", lambda n: BlobGet(request=n, node="not a node", blob=blob, offset=0)),
        ):
            with pytest.raises(NodeError) as info:
                await conn.request(frame)
            assert info.value.code == code, info.value
    for node in (net.beta, net.gamma):  # passed on, never kept
        assert not list((node.data_dir / BLOBS_DIR).iterdir())
