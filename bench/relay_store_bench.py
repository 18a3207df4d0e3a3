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
"The transit log").
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import trio

from sonet.core import limits
from sonet.node.store import NewEnvelope, OutboundItem, Quota, SqliteStore, StatusUpdate, Tracking

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


async def _round(tmp: Path, n: int, rng: random.Random, body_bytes: int = BODY_BYTES) -> dict[str, float]:
    now = int(time.time() * 1000)
    quota = Quota(max_envelopes=1_000_000, max_bytes=1 << 40)
    cpu = _Cpu()
    async with await SqliteStore.open(tmp / "alpha.db") as alpha, await SqliteStore.open(tmp / "beta.db") as beta:
        await _register(alpha, SENDER, now)
        await _register(beta, RECIPIENT, now)
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


def measure(n: int = 20 * PUSH, rounds: int = 3, body_bytes: int = BODY_BYTES) -> dict[str, float]:
    results: list[dict[str, float]] = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory(prefix="sonet-bench-relaystore-") as tmp:
            results.append(trio.run(_round, Path(tmp), n, random.Random(r), body_bytes))
    return {k: round(statistics.median(res[k] for res in results), 1) for k in results[0]}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.relay_store_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=_positive, default=20 * PUSH, help="envelopes per round (default 20,480)")
    parser.add_argument("--rounds", type=_positive, default=3, help="fresh stores measured; the medians are printed (default 3)")
    parser.add_argument("--body-bytes", type=_positive, default=BODY_BYTES, help="bytes of each envelope body (default 1,024)")
    options = parser.parse_args()
    print(json.dumps(measure(options.n, options.rounds, options.body_bytes)))
