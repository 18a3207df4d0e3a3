"""Attack round 9: the blob store answered each BlobCreate's quota check, and the purge loop
each BlobExpire woke, by scanning every blob on the node (~3 ms and ~9 ms at 100,000 blobs, on
the event loop): a device's attachment writes cost the node in proportion to everybody's
blobs. Usage per account and the expiries are now kept beside the blobs (node/blobs.py), so
those requests touch only their own blob; the answers are the same."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from sonet.node.blob_settings import BlobSettings
from sonet.node.blobs import BLOBS_DIR, BlobStore
from sonet.node.client_checks import RequestError


class NoScan(dict):  # type: ignore[type-arg]
    """The blob table, refusing to be scanned (as a node with 100,000 blobs should not be)."""

    def values(self):  # type: ignore[no-untyped-def]
        raise AssertionError("scanned every blob")

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("scanned every blob")


async def test_requests_and_the_purge_do_not_scan_every_blob(tmp_path: Path) -> None:
    (tmp_path / BLOBS_DIR).mkdir()
    for i in range(1000):  # everybody else's blobs, as a restart finds them
        record = {"account": f"u{i}@alpha.example", "size": 10, "sha256": "00" * 32, "created_at": 0, "expires": 10**15}
        (tmp_path / BLOBS_DIR / f"{os.urandom(16).hex()}.meta").write_text(json.dumps(record))
    store = await BlobStore.open(tmp_path, BlobSettings(account_max_blobs=3), rng=os.urandom)
    store._blobs = NoScan(store._blobs)
    data = b"0123456789"
    made = [await store.create("a@alpha.example", len(data), hashlib.sha256(data).digest(), now=1) for _ in range(3)]
    assert store.usage("a@alpha.example") == (30, 3)
    with pytest.raises(RequestError) as refusal:
        await store.create("a@alpha.example", 10, bytes(32), now=1)
    assert refusal.value.code == "blob_quota"
    assert (await store.put("a@alpha.example", made[0].id, 0, data)).complete
    first = made[0].expires
    assert store.next_expiry() == first
    assert await store.expire("a@alpha.example", made[1].id, 500, now=2) == 500
    assert await store.expire("a@alpha.example", made[1].id, 400, now=2) == 400  # closer again
    assert await store.expire("a@alpha.example", made[2].id, 0, now=2) == 0  # gone now
    assert store.next_expiry() == 400
    assert await store.purge(399) == 0
    assert await store.purge(400) == 1  # once, at its newest time, not at the 500 it had
    assert store.next_expiry() == first
    assert store.usage("a@alpha.example") == (10, 1)
    assert await store.purge(first) == 1 and store.usage("a@alpha.example") == (0, 0)
    assert store.next_expiry() == 10**15
    assert store.usage("u7@alpha.example") == (10, 1)
