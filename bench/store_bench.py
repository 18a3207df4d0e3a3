"""Storage benchmark: mailbox insert + delete throughput of the SQLite store, durably committed.

What is measured (``measure(quick)``; N = 5,120 envelopes = 20 batches quick, 65,536 = 256
batches full; ~2 s and ~15-25 s on the 2-core dev VM):

- ``store_envelopes_per_s``: node.store.SqliteStore in a fresh temporary directory (``tempfile``:
  the machine's ordinary disk unless ``TMPDIR`` says otherwise), opened the normal way (WAL
  journal, ``synchronous=FULL``: every COMMIT is fsynced before it returns). One account with
  one device is registered, then N envelopes go through its mailbox in batches of 256:
  ``enqueue`` of 256 envelopes (one ``BEGIN IMMEDIATE`` transaction, as SendBatch does: device
  check, dedup lookups, quota check, insert), then ``ack`` of the same 256 ids (one transaction:
  remember the ids in ``acked_ids``, delete the rows). Envelopes have random 16-byte ids and
  1 KiB random bodies, expiring a day later. The figure is N divided by the summed wall time of
  the enqueue + ack calls (each envelope inserted and deleted once), measured from trio, so the
  worker-thread hop of every call is included; account setup and generating the batches (random
  bytes, NewEnvelope objects) are not. ``acked_ids`` grows by 256 rows per batch (the ids stay
  known until they expire), so the figure depends on N.
- ``store_envelopes_per_s_ceiling``: the same N ids and bodies inserted and deleted with raw
  ``sqlite3`` in a second fresh file in the same directory, same pragmas (WAL,
  ``synchronous=FULL``), a minimal table ``(id BLOB PRIMARY KEY, body BLOB)``, same batching:
  one ``BEGIN IMMEDIATE`` transaction per 256-row ``executemany`` insert, then one per 256-row
  delete, on the calling thread: what SQLite itself allows on this disk. Timed the same way.
- ``store_batch_commit_ms_p50`` (and ``..._ceiling``): the median wall time in milliseconds of
  one 256-envelope ``enqueue`` call (resp. one raw 256-row insert transaction), commit included.

The two sides alternate batch by batch (raw batch i, then store batch i), so load from other
processes on a shared machine falls on both alike. The temporary directory is removed at the
end, even on error.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import trio

from sonet.node.store import NewEnvelope, Quota, SqliteStore

__all__ = ["measure"]

BATCH = 256
BODY_BYTES = 1024
DAY_MS = 24 * 3600 * 1000
ACCOUNT = "bench@bench.example"


def _batch(start: int, n: int) -> list[tuple[bytes, bytes]]:
    """The (16-byte random id, 1 KiB random body) pairs of the batch at ``start``."""
    rng = random.Random(start)
    return [(rng.randbytes(16), rng.randbytes(BODY_BYTES)) for _ in range(min(BATCH, n - start))]


def _raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise RuntimeError("cannot enable WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (id BLOB PRIMARY KEY, body BLOB NOT NULL)")
    except BaseException:
        conn.close()
        raise
    return conn


def _raw_pair(conn: sqlite3.Connection, batch: list[tuple[bytes, bytes]]) -> tuple[float, float]:
    """Insert then delete one batch, one transaction each: (insert seconds, total seconds)."""
    ids = [(id_,) for id_, _ in batch]
    t0 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO t (id, body) VALUES (?, ?)", batch)
    conn.execute("COMMIT")
    t1 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("DELETE FROM t WHERE id = ?", ids)
    conn.execute("COMMIT")
    return t1 - t0, time.perf_counter() - t0


async def _store_pair(
    store: SqliteStore, batch: list[tuple[bytes, bytes]], now: int, quota: Quota
) -> tuple[float, float]:
    """Enqueue then ack one batch: (enqueue seconds, total seconds)."""
    envelopes = [
        NewEnvelope(account=ACCOUNT, device_id=1, id=id_, expires=now + DAY_MS, kind=1, body=body)
        for id_, body in batch
    ]
    ids = [id_ for id_, _ in batch]
    t0 = time.perf_counter()
    stored = await store.enqueue(envelopes, now=now, quota=quota)
    t1 = time.perf_counter()
    acked = await store.ack(ACCOUNT, 1, ids, now=now)
    t2 = time.perf_counter()
    if stored != len(batch) or acked != len(batch):
        raise RuntimeError(f"store stored {stored}, acked {acked} of {len(batch)}")
    return t1 - t0, t2 - t0


async def _run(tmp: Path, n: int) -> dict[str, float | int]:
    now = int(time.time() * 1000)
    quota = Quota(max_envelopes=4 * BATCH, max_bytes=4 * BATCH * BODY_BYTES)
    raw = _raw_connect(tmp / "ceiling.db")
    try:
        async with await SqliteStore.open(tmp / "node.db") as store:
            await store.register_account(
                account=ACCOUNT,
                fingerprint="fp-bench",
                record=b"bench device record",
                account_identity=b"bench identity",
                device_list=b"bench device list v1",
                invite_hash=None,
                now=now,
            )
            raw_commits: list[float] = []
            store_commits: list[float] = []
            raw_total = store_total = 0.0
            for start in range(0, n, BATCH):
                batch = _batch(start, n)
                commit, total = _raw_pair(raw, batch)
                raw_commits.append(commit)
                raw_total += total
                commit, total = await _store_pair(store, batch, now, quota)
                store_commits.append(commit)
                store_total += total
            if (await store.stats())["envelopes"] != 0:
                raise RuntimeError("store left envelopes behind")
        if raw.execute("SELECT count(*) FROM t").fetchone()[0] != 0:
            raise RuntimeError("ceiling left rows behind")
    finally:
        raw.close()
    return {
        "store_envelopes_per_s": n / store_total,
        "store_envelopes_per_s_ceiling": n / raw_total,
        "store_batch_commit_ms_p50": statistics.median(store_commits) * 1000,
        "store_batch_commit_ms_p50_ceiling": statistics.median(raw_commits) * 1000,
    }


def measure(quick: bool) -> dict[str, float | int]:
    n = BATCH * (20 if quick else 256)
    with tempfile.TemporaryDirectory(prefix="sonet-bench-store-") as tmp:
        return trio.run(_run, Path(tmp), n)


if __name__ == "__main__":
    import sys

    for key, value in measure("--quick" in sys.argv).items():
        print(f"{key} {value:.1f}")
