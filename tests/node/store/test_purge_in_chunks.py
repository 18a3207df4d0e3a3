"""The purge deletes expired mail a bounded number of rows and bytes at a time
(node/store/sqlite_mailbox.py ``PURGE_ROWS`` / ``PURGE_BYTES``): SQLite keeps each statement's
journal in memory, and one DELETE of every expired row held them all (300,000 rows of 1 KiB:
a 505 MB peak, 58 MB in chunks; docs/performance.md round 17). In chunks, the purge must still
take every expired row and no other, and leave the counters (what the quota reads) right, on
both backends."""

from __future__ import annotations

import pytest

from sonet.node.store import Quota, QuotaExceeded, Store
from sonet.node.store import sqlite_mailbox

from .test_contract import ALICE, DAY, NOW, env, pending_ids, register

#: ten expiring rows of 10 bytes, one of 40 (over the byte cap alone), two that stay
_EXPIRING = [env(n, body=b"e" * 10, expires=NOW + 10) for n in range(1, 11)] + [env(11, body=b"L" * 40, expires=NOW + 20)]
_STAYING = [env(20, body=b"s" * 7, expires=NOW + DAY), env(21, body=b"s" * 7, expires=NOW + DAY)]


async def test_every_expired_row_goes_in_bounded_statements_and_the_counts_stay_right(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_mailbox, "PURGE_ROWS", 3)
    monkeypatch.setattr(sqlite_mailbox, "PURGE_BYTES", 25)
    chunks: list[list[int]] = []
    real = sqlite_mailbox._expired_rows

    def spy(conn: object, now: int) -> list[int]:
        chunks.append(real(conn, now))  # type: ignore[arg-type]
        return chunks[-1]

    monkeypatch.setattr(sqlite_mailbox, "_expired_rows", spy)
    await register(store, ALICE)
    await store.enqueue([*_EXPIRING, *_STAYING], now=NOW, quota=Quota(max_envelopes=13, max_bytes=1000))

    assert await store.purge_expired(now=NOW + 30) == 11
    sizes = [len(chunk) for chunk in chunks]
    assert sizes[-1] == 0 and sum(sizes) == 11
    assert max(sizes) <= 3  # the row cap
    assert 1 in sizes  # the 40-byte row went alone: over the byte cap, but never left behind
    assert await pending_ids(store, ALICE, now=NOW + 30) == [env(20).id, env(21).id]
    stats = await store.stats()
    assert (stats["envelopes"], stats["envelope_bytes"]) == (2, 14)

    # The counters the quota reads say two rows of 14 bytes: room for exactly two more.
    tight = Quota(max_envelopes=4, max_bytes=1000)
    await store.enqueue([env(30, expires=NOW + DAY), env(31, expires=NOW + DAY)], now=NOW + 30, quota=tight)
    with pytest.raises(QuotaExceeded):
        await store.enqueue([env(32, expires=NOW + DAY)], now=NOW + 30, quota=tight)
