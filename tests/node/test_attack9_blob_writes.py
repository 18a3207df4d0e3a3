"""Attack round 9: writes to the attachment store had no budget but the per-connection request
rate. Each ``BlobPut`` fsyncs its chunk however small it is (and ``BlobCreate`` / ``BlobExpire``
write and fsync a record): one device sending 1-byte chunks on its eight connections had a real
node fsync ~1,500 times a second at ~70% of a core, doubling other devices' send latency. They
now share a bucket per device and one per account (node/client_limits.py ``BLOB_WRITES``), far
above an honest upload in 1 MiB chunks."""

from __future__ import annotations

import logging

import pytest

from sonet.core.blob_api import BLOB_CHUNK_BYTES, BlobCreate, BlobExpire, BlobPut
from sonet.federation.ratelimit import Rate
from sonet.node.client_limits import BLOB_WRITES, BLOB_WRITES_PER_ACCOUNT, ClientLimits

from .test_client_limits import ALICE, Clock, Conn, Ctx, refused

BLOB = bytes(16)


def put(size: int = 1) -> BlobPut:
    return BlobPut(request=1, blob=BLOB, offset=0, data=b"x" * size)


async def test_tiny_chunks_are_refused_past_the_device_budget() -> None:
    clock = Clock()
    limits = ClientLimits()
    mallory = Conn(Ctx(clock), "dev-mallory")
    for _ in range(BLOB_WRITES.burst):
        await limits.check(mallory, put())
    assert await refused(limits, mallory, put()) == "too many attachment writes from this device; try again in a moment"
    await refused(limits, mallory, BlobCreate(request=1, size=10, sha256=bytes(32)))
    await refused(limits, mallory, BlobExpire(request=1, blob=BLOB, expires=1))
    # another connection of the same device shares it; another device does not
    await refused(limits, Conn(mallory.ctx, "dev-mallory"), put())
    await limits.check(Conn(mallory.ctx, "dev-bob", account="bob@alpha.example"), put())
    clock.ms += 1000  # a second's worth comes back
    for _ in range(int(BLOB_WRITES.per_second)):
        await limits.check(mallory, put())
    await refused(limits, mallory, put())


async def test_an_account_cannot_multiply_it_with_devices() -> None:
    limits = ClientLimits()
    ctx = Ctx(Clock())
    devices = [Conn(ctx, f"dev-{i}") for i in range(BLOB_WRITES_PER_ACCOUNT.burst // BLOB_WRITES.burst + 1)]
    for conn in devices[:-1]:
        for _ in range(BLOB_WRITES.burst):
            await limits.check(conn, put())
    assert await refused(limits, devices[-1], put()) == f"too many attachment writes from the devices of {ALICE}; try again in a moment"


async def test_an_upload_of_the_largest_file_in_full_chunks_is_not_limited() -> None:
    clock = Clock()
    limits = ClientLimits()
    conn = Conn(Ctx(clock), "dev-alice")
    await limits.check(conn, BlobCreate(request=1, size=100 * 2**20, sha256=bytes(32)))
    for _ in range(101):  # 100 MiB of file in 1 MiB chunks, at once
        await limits.check(conn, put(BLOB_CHUNK_BYTES))
    for _ in range(2000):  # and 2 GiB more at 50 MiB/s (the node measured ~36 MiB/s)
        clock.ms += 20
        await limits.check(conn, put(BLOB_CHUNK_BYTES))


async def test_a_device_that_keeps_going_past_a_limit_is_not_a_log_line_each_time(caplog: pytest.LogCaptureFixture) -> None:
    # each token that comes back ends the run of refusals; the next refusal started a new run
    # and wrote a line (826 lines in 10 s from one device against a real node)
    caplog.set_level(logging.DEBUG, logger="sonet.node.client")
    clock = Clock()
    limits = ClientLimits(blob_writes=Rate(per_second=100, burst=1))
    conn = Conn(Ctx(clock), "dev-mallory")
    for _ in range(200):
        await limits.check(conn, put())
        await refused(limits, conn, put())
        clock.ms += 10
    assert len(caplog.records) <= 1, [r.getMessage() for r in caplog.records[:3]]
