"""Review of round 9 (rev9): the blob store's expiry heap (node/blobs.py, 5b9959f) is kept
"with lazy deletion, rebuilt when stale entries outnumber the blobs". It is rebuilt only in
``expire`` when an expiry is brought closer; a blob dropped at once (a BlobExpire to now, as a
delete for everyone asks) or dropped as corrupt leaves its (retention, id) entry behind, popped
only when the retention (30 days by default) came. Forgetting a blob now rebuilds the heap too
once stale entries outnumber the blobs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sonet.node.blob_settings import BlobSettings
from sonet.node.blobs import BLOBS_DIR, BlobStore

ACCOUNT = "mallory@alpha.example"
CYCLES = 1500


async def test_blobs_created_and_deleted_at_once_leave_no_expiry_entries_behind(tmp_path: Path) -> None:
    (tmp_path / BLOBS_DIR).mkdir()
    store = await BlobStore.open(tmp_path, BlobSettings(), rng=os.urandom)
    data = b"x"
    kept = await store.create("alice@alpha.example", 1, hashlib.sha256(data).digest(), now=1)
    for n in range(CYCLES):
        info = await store.create(ACCOUNT, 1, hashlib.sha256(data).digest(), now=1 + n)
        assert await store.expire(ACCOUNT, info.id, 0, now=2 + n) == 0  # deleted for everyone: gone now
    assert store.usage(ACCOUNT) == (0, 0)
    assert store.next_expiry() == kept.expires
    # what the store holds for its one blob's expiry: bounded by its blobs, as the docstring says
    held = len(store._expiries)
    assert held <= 2 * len(store._blobs) + 64, f"{held} expiry entries kept for {len(store._blobs)} blob(s)"
