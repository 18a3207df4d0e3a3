"""The purge, a device's removal and an account's delete mail a bounded number of rows and bytes
at a time (node/store/sqlite_mailbox.py ``PURGE_ROWS`` / ``PURGE_BYTES`` / ``PURGE_ACKED_IDS``;
the purge a transaction per chunk, so other writes go between). SQLite keeps each statement's
journal in memory, and one DELETE of every expired row held them all (300,000 rows of 1 KiB: a
505 MB peak, 49 MB in chunks), as did a device's removal, whose cascade deleted its whole mailbox
in one statement (200 MB of mail: 347 MB, 52 in chunks; docs/performance.md round 17). In chunks,
each must still take every row it should and no other, and leave the counters (what the quota
reads) right, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from sonet.node.store import Quota, QuotaExceeded, Store
from sonet.node.store import sqlite as sqlite_backend
from sonet.node.store import sqlite_mailbox

from .test_contract import ALICE, BOB, DAY, NOW, ROOMY, env, pending_ids, register

#: ten expiring rows of 10 bytes, one of 40 (over the byte cap alone), two that stay
_EXPIRING = [env(n, body=b"e" * 10, expires=NOW + 10) for n in range(1, 11)] + [env(11, body=b"L" * 40, expires=NOW + 20)]
_STAYING = [env(20, body=b"s" * 7, expires=NOW + DAY), env(21, body=b"s" * 7, expires=NOW + DAY)]


def _record(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, pick: Callable[[Any], Any]) -> list[Any]:
    """``pick`` of what each call of ``module.name`` returns, in order (the calls go through)."""
    seen: list[Any] = []
    real = getattr(module, name)

    def spy(*args: Any) -> Any:
        result = real(*args)
        seen.append(pick(result))
        return result

    monkeypatch.setattr(module, name, spy)
    return seen


def _spy_on_chunks(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Each chunk of mailbox rows deleted, in order."""
    return _record(monkeypatch, sqlite_mailbox, "_chunk", lambda result: result[0])


def _spy_on_purge_transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows each call of the purge's per-transaction step deleted (the first runs in
    the transaction that purges everything else, each later one in its own)."""
    return _record(monkeypatch, sqlite_backend, "_purge_expired_mail", lambda result: result[0])


async def test_every_expired_row_goes_in_bounded_statements_and_the_counts_stay_right(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_mailbox, "PURGE_ROWS", 3)
    monkeypatch.setattr(sqlite_mailbox, "PURGE_BYTES", 25)
    chunks = _spy_on_chunks(monkeypatch)
    await register(store, ALICE)
    await store.enqueue([*_EXPIRING, *_STAYING], now=NOW, quota=Quota(max_envelopes=13, max_bytes=1000))

    transactions = _spy_on_purge_transactions(monkeypatch)
    assert await store.purge_expired(now=NOW + 30) == 11
    sizes = [len(chunk) for chunk in chunks]
    assert sum(sizes) == 11
    assert max(sizes) <= 3  # the row cap
    assert sizes[-1] == 1  # the 40-byte row went alone: over the byte cap, but never left behind
    assert transactions == [2, 2, 2, 2, 2, 1]  # a chunk each: other writes may go between them
    assert await pending_ids(store, ALICE, now=NOW + 30) == [env(20).id, env(21).id]
    stats = await store.stats()
    assert (stats["envelopes"], stats["envelope_bytes"]) == (2, 14)

    # The counters the quota reads say two rows of 14 bytes: room for exactly two more.
    tight = Quota(max_envelopes=4, max_bytes=1000)
    await store.enqueue([env(30, expires=NOW + DAY), env(31, expires=NOW + DAY)], now=NOW + 30, quota=tight)
    with pytest.raises(QuotaExceeded):
        await store.enqueue([env(32, expires=NOW + DAY)], now=NOW + 30, quota=tight)


async def _second_device(store: Store, account: str) -> None:
    await store.add_device(
        account=account, fingerprint=f"fp2-{account}", record=b"record 2", device_list=b"list v2", expected_version=1, now=NOW
    )


async def _mail_and_acked_ids(store: Store, account: str, device_id: int, first: int) -> None:
    """Seven envelopes of 10 bytes for the device, and five acked ids (five more, then acked)."""
    await store.enqueue([env(n, to=account, device_id=device_id, body=b"m" * 10) for n in range(first, first + 12)], now=NOW, quota=ROOMY)
    assert await store.ack(account, device_id, [env(n).id for n in range(first + 7, first + 12)], now=NOW) == 5


async def test_a_removed_devices_mail_goes_in_bounded_statements(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_mailbox, "PURGE_ROWS", 3)
    monkeypatch.setattr(sqlite_mailbox, "PURGE_BYTES", 25)
    monkeypatch.setattr(sqlite_mailbox, "PURGE_ACKED_IDS", 2)
    await register(store, ALICE)
    await _second_device(store, ALICE)
    await _mail_and_acked_ids(store, ALICE, 1, 100)
    await _mail_and_acked_ids(store, ALICE, 2, 200)
    chunks = _spy_on_chunks(monkeypatch)

    assert await store.remove_device(account=ALICE, device_id=2, device_list=b"list v3", expected_version=2, now=NOW + 1)
    sizes = [len(chunk) for chunk in chunks]
    assert sizes == [2, 2, 2, 1]  # two rows of 10 bytes fit in 25
    stats = await store.stats()
    assert (stats["envelopes"], stats["envelope_bytes"]) == (7, 70)  # device 1's, untouched
    assert stats.get("acked_ids", 5) == 5  # device 1's five; device 2's went (SQLite counts them)
    assert await pending_ids(store, ALICE) == [env(n).id for n in range(100, 107)]
    # device 1's ack records still hold: a retransmission of one is not stored again
    await store.enqueue([env(107, body=b"m" * 10)], now=NOW + 2, quota=ROOMY)
    assert await pending_ids(store, ALICE, now=NOW + 2) == [env(n).id for n in range(100, 107)]


async def test_a_removed_accounts_mail_goes_in_bounded_statements(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_mailbox, "PURGE_ROWS", 3)
    monkeypatch.setattr(sqlite_mailbox, "PURGE_ACKED_IDS", 2)
    await register(store, ALICE)
    await _second_device(store, ALICE)
    await register(store, BOB)
    await _mail_and_acked_ids(store, ALICE, 1, 100)
    await _mail_and_acked_ids(store, ALICE, 2, 200)
    await _mail_and_acked_ids(store, BOB, 1, 300)
    chunks = _spy_on_chunks(monkeypatch)

    assert await store.remove_account(ALICE, now=NOW + 1) is not None
    sizes = [len(chunk) for chunk in chunks]
    assert sum(sizes) == 14 and max(sizes) <= 3
    stats = await store.stats()
    assert (stats["envelopes"], stats.get("acked_ids", 5)) == (7, 5)  # bob's
    assert await pending_ids(store, BOB) == [env(n).id for n in range(300, 307)]
