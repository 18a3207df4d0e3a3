"""CPU per envelope of each store call on the relay path, in isolation (issue 14 item 1).

Not a suite of bench/run.py: a tool to measure store changes before and after. It drives one
``SqliteStore`` (fresh temporary directory, opened the normal way: WAL, synchronous=FULL) the
way the two nodes of bench/relay_bench.py do, for N envelopes with random 16-byte ids and 1 KiB
bodies:

- the sending node ("alpha"): ``enqueue`` of SendBatch-sized batches (256 tracked outbound
  items for another node, as a device's SendBatch to a remote account makes), ``outbox`` of a
  Push's worth (up to 1,024), ``outbox_done`` of those with an "accepted" status each (the
  final hop answered ok), and ``deliveries`` of each SendBatch's ids (the sender's ticks);
- the receiving node ("beta"): ``receive`` of the Push (1,024 envelopes for one device),
  ``pending`` of a Deliver frame's worth (128) and ``ack`` of those ids, until drained.

Each call is timed with ``time.process_time`` (all threads of this process: the store's worker
thread included) and summed per call; the figure is CPU µs per envelope for each call and in
all per side. Run: ``python -m bench.relay_store_bench [N] [--rounds R] [--body-bytes B]`` (N =
20,480 and B = 1,024 by default); prints one JSON object of medians over R rounds (fresh store
each). ``--body-bytes`` shows what the payload bytes cost apart from the rows (docs/performance.md,
"The transit log"). ``--acked-ids K`` gives the receiving node K acknowledged ids of earlier
traffic before the round (random, unexpired: a node that has relayed for days keeps each id to
the end of its envelope's expiry day), so its ``ack`` inserts into an index of that size, as in
real use (``--acked-per-device`` of them per receiving device, 1,000 by default: bob's among
them; ``--acked-per-device K`` gives bob all of them, a device that receives that much);
``--delivery-rows K`` gives the sending node K final delivery rows of the last
``DELIVERY_GRACE_MS`` (what a week of traffic leaves), so its settle inserts into that index as
in real use; ``--page-size`` opens both stores' new files with that SQLite page size instead of
the node's (node/store/sqlite.py ``PAGE_SIZE``).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import closing
from pathlib import Path
from typing import Any

import trio

from sonet.core import limits
from sonet.node.store import NewEnvelope, OutboundItem, Quota, SqliteStore, StatusUpdate, Tracking
from sonet.node.store.base import DELIVERY_GRACE_MS
from sonet.node.store import sqlite as sqlite_backend
from sonet.node.store.sqlite_mailbox import ACKED_ID_GRANULARITY_MS as ACKED_DAY_MS  # an acked id's time: its day

__all__ = ["measure"]

SEND_BATCH = 256
PUSH = 1024
DELIVER = 128
BODY_BYTES = 1024
#: what clients give an envelope (and bench/relay_bench.py does): an ordinary one, whose acked id
#: is kept to its day's end (a short-lived one's is kept to its ms: node/store/vanishing.py)
TTL_MS = limits.DEFAULT_ENVELOPE_TTL_MS
SENDER = "s0@alpha.example"
RECIPIENT = "bob@beta.example"


async def _register(store: SqliteStore, account: str, now: int) -> None:
    await store.register_account(
        account=account,
        fingerprint=f"fp-{account}",
        record=b"bench device record",
        account_identity=b"bench identity",
        device_list=b"bench device list v1",
        invite_hash=None,
        now=now,
    )


class _Cpu:
    """CPU seconds summed per call name."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    async def run(self, name: str, call):  # noqa: ANN001, ANN202 - an awaitable in, its result out
        t0 = time.process_time()
        result = await call
        self.spent[name] += time.process_time() - t0
        return result


#: acknowledged ids each receiving device holds, in ``--acked-ids``' history (a month of mail);
#: ``--acked-per-device`` sets it
ACKED_PER_DEVICE = 1000


def _earlier_acked_ids(path: Path, count: int, now: int, rng: random.Random, per_device: int = ACKED_PER_DEVICE) -> None:
    """``count`` acknowledged ids, ``per_device`` for each of as many receiving devices (bob's
    among them), as the envelopes of the last TTL_MS leave them: spread evenly over the days up
    to this round's (bulk-loaded in key order: how they got there is not what is measured). The
    other devices are not registered: only the index's size and shape matter here."""
    last_day = (now + TTL_MS) // ACKED_DAY_MS * ACKED_DAY_MS + ACKED_DAY_MS
    days = [last_day - d * ACKED_DAY_MS for d in range(1, TTL_MS // ACKED_DAY_MS + 1)]
    devices = [RECIPIENT] + [f"r{n}@beta.example" for n in range(1, max(1, count // per_device))]
    rows = sorted((devices[i % len(devices)], rng.randbytes(16), days[i % len(days)]) for i in range(count))
    _bulk_load(path, [
        ("INSERT INTO acked_ids (account, device_id, id, expires) VALUES (?, 1, ?, ?)", rows),
        ("INSERT INTO acked_days (expires) VALUES (?) ON CONFLICT DO NOTHING", [(day,) for day in days]),
    ])


#: delivery rows each sending device has of the last week, in ``--delivery-rows``' history
ROWS_PER_SENDER = 1000


def _earlier_delivery_rows(path: Path, count: int, now: int, rng: random.Random) -> None:
    """``count`` final delivery rows settled over the last DELIVERY_GRACE_MS, ROWS_PER_SENDER
    for each of as many sending devices (the bench's own sender among them), bulk-loaded."""
    senders = [SENDER] + [f"s{n}@alpha.example" for n in range(1, max(1, count // ROWS_PER_SENDER))]
    rows = sorted((rng.randbytes(16), senders[i % len(senders)], now - rng.randrange(DELIVERY_GRACE_MS)) for i in range(count))
    _bulk_load(path, [(
        "INSERT INTO deliveries (sender_account, sender_device, id, dest, device, state, code, updated_at, expires)"
        " VALUES (?, 1, ?, 'beta.example', 1, 'accepted', '', ?, ?)",
        [(sender, id_, at, at) for id_, sender, at in rows],
    )])


def _bulk_load(path: Path, inserts: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
    """Run each (INSERT, its rows) into the closed store file ``path``, in one transaction."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        for sql, rows in inserts:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")


async def _round(
    tmp: Path,
    n: int,
    rng: random.Random,
    body_bytes: int = BODY_BYTES,
    acked_ids: int = 0,
    delivery_rows: int = 0,
    acked_per_device: int = ACKED_PER_DEVICE,
) -> dict[str, float]:
    now = int(time.time() * 1000)
    quota = Quota(max_envelopes=1_000_000, max_bytes=1 << 40)
    cpu = _Cpu()
    async with await SqliteStore.open(tmp / "alpha.db") as alpha, await SqliteStore.open(tmp / "beta.db") as beta:
        await _register(alpha, SENDER, now)
        await _register(beta, RECIPIENT, now)
    if acked_ids:
        _earlier_acked_ids(tmp / "beta.db", acked_ids, now, rng, acked_per_device)
    if delivery_rows:
        _earlier_delivery_rows(tmp / "alpha.db", delivery_rows, now, rng)
    async with await SqliteStore.open(tmp / "alpha.db") as alpha, await SqliteStore.open(tmp / "beta.db") as beta:
        for start in range(0, n, PUSH):
            ids = [rng.randbytes(16) for _ in range(min(PUSH, n - start))]
            bodies = {id_: rng.randbytes(body_bytes) for id_ in ids}
            for b in range(0, len(ids), SEND_BATCH):
                batch = ids[b : b + SEND_BATCH]
                items = [
                    OutboundItem(
                        dest="beta.example",
                        key=id_,
                        expires=now + TTL_MS,
                        data=bodies[id_] + b"transit header..",  # the encoded Transit: envelope + a little
                        tracking=Tracking(sender_account=SENDER, sender_device=1, id=id_, account=RECIPIENT, device=1),
                    )
                    for id_ in batch
                ]
                await cpu.run("alpha.enqueue", alpha.enqueue([], now=now, quota=quota, outbound=items, sender=(SENDER, 1)))
            queued = await cpu.run("alpha.outbox", alpha.outbox("beta.example", limit=PUSH, max_bytes=1 << 30, now=now))
            if len(queued) != len(ids):
                raise RuntimeError(f"outbox gave {len(queued)} of {len(ids)}")
            envelopes = [
                NewEnvelope(account=RECIPIENT, device_id=1, id=id_, expires=now + TTL_MS, kind=1, body=bodies[id_]) for id_ in ids
            ]
            outcomes = await cpu.run("beta.receive", beta.receive(envelopes, now=now, quota=quota))
            if outcomes.count("ok") != len(ids):
                raise RuntimeError(f"receive: {sorted(set(outcomes))}")
            statuses = [StatusUpdate(id=id_, account=RECIPIENT, device=1, state="accepted", code="", at=now) for id_ in ids]
            await cpu.run("alpha.outbox_done", alpha.outbox_done("beta.example", [q.seq for q in queued], now=now, statuses=statuses))
            after = 0
            while True:
                items_ = await cpu.run("beta.pending", beta.pending(RECIPIENT, 1, after_seq=after, limit=DELIVER, now=now))
                if not items_:
                    break
                after = items_[-1].seq
                await cpu.run("beta.ack", beta.ack(RECIPIENT, 1, [i.id for i in items_], now=now))
            for b in range(0, len(ids), SEND_BATCH):
                rows = await cpu.run("alpha.deliveries", alpha.deliveries(SENDER, 1, ids[b : b + SEND_BATCH]))
                if len(rows) != len(ids[b : b + SEND_BATCH]) or any(r.state != "accepted" for r in rows):
                    raise RuntimeError("deliveries do not say accepted")
        if (await beta.stats())["envelopes"] or (await alpha.outbox_counts()):
            raise RuntimeError("left envelopes behind")
    out = {f"{name}_us": s * 1e6 / n for name, s in cpu.spent.items()}
    for side in ("alpha", "beta"):
        out[f"{side}_total_us"] = sum(v for k, v in out.items() if k.startswith(side + ".") and not k.startswith("alpha.deliveries"))
    return out


def measure(
    n: int = 20 * PUSH,
    rounds: int = 3,
    body_bytes: int = BODY_BYTES,
    acked_ids: int = 0,
    page_size: int | None = None,
    delivery_rows: int = 0,
    acked_per_device: int = ACKED_PER_DEVICE,
) -> dict[str, float]:
    if page_size is not None:
        sqlite_backend.PAGE_SIZE = page_size  # read by each new connection
    results: list[dict[str, float]] = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory(prefix="sonet-bench-relaystore-") as tmp:
            results.append(trio.run(_round, Path(tmp), n, random.Random(r), body_bytes, acked_ids, delivery_rows, acked_per_device))
    return {k: round(statistics.median(res[k] for res in results), 1) for k in results[0]}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.relay_store_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=_positive, default=20 * PUSH, help="envelopes per round (default 20,480)")
    parser.add_argument("--rounds", type=_positive, default=3, help="fresh stores measured; the medians are printed (default 3)")
    parser.add_argument("--body-bytes", type=_positive, default=BODY_BYTES, help="bytes of each envelope body (default 1,024)")
    parser.add_argument("--acked-ids", type=_non_negative, default=0, metavar="K", help="acknowledged ids the receiving node holds before the round (default 0)")
    parser.add_argument("--acked-per-device", type=_positive, default=ACKED_PER_DEVICE, metavar="K", help=f"of those, each receiving device's (default {ACKED_PER_DEVICE:,})")
    parser.add_argument("--delivery-rows", type=_non_negative, default=0, metavar="K", help="final delivery rows the sending node holds before the round (default 0)")
    parser.add_argument("--page-size", type=int, choices=[1 << k for k in range(9, 17)], help="SQLite page size of the new files (default: the node's)")
    options = parser.parse_args()
    print(json.dumps(measure(
        options.n, options.rounds, options.body_bytes, options.acked_ids, options.page_size, options.delivery_rows, options.acked_per_device
    )))
