"""Relay throughput and latency between two real nodes (alpha -> beta), and the bare transport.

What is measured (``measure(quick)``):

- Two real nodes, ``alpha`` and ``beta``: ``sonet-node init --registration open`` + ``run`` from
  this venv in a temp dir on 127.0.0.1 port 0 (beta's ``[mailbox] max_envelopes`` raised to
  1,000,000 so the quota never refuses a push; ``[federation] retry_max_s = 1``), pinned to each
  other with ``sonet-node peer add`` while running. Default durability (SQLite as shipped).
- Raw devices (tests/node/kit.py on sonet.transport, full hybrid secure channel): ``bob@beta`` (one
  device, connected to beta; it acks every Deliver frame as it arrives, like a client) and
  ``K`` = 40 sender accounts ``s0..s39@alpha``, one registered device and connection each.
  Several senders because the node limits stored envelopes per device to 200/s (burst 1,000,
  node/client_limits.py); batches rotate over the senders so that limit does not bind (a
  ``rate_limited`` refusal is retried after 0.1 s and counted in ``relay_rate_limited_batches``).
- Every envelope: ``Kind.SEALED``, a 16-byte id, 1 KiB random body, to ``bob@beta`` device 1
  (the exact device list beta publishes; alpha looks it up through federation). One envelope
  is sent and received first (warm-up: federation link, device-list cache); not timed.
- ``relay_envelopes_per_s``: SendBatch frames of 256 envelopes, at most 4 batches in flight
  (each awaited until alpha answers Accepted = committed to its outbox), alpha pushes to beta,
  beta commits to bob's mailbox and pushes Deliver frames. Timed from the first SendBatch to
  the moment bob's connection has received all N envelopes. N = 50,176 full / 5,120 quick;
  no new batch is started after 25 s (full) / 6 s (quick), N is then what was sent
  (``relay_envelopes``).
- ``latency_p{50,95,99}_ms_at_1000``: one SendBatch of 10 envelopes every 10 ms (1,000/s
  offered) for 10 s (quick 3 s); per envelope, the time from alpha's Accepted reaching this
  process to bob's connection on beta receiving it (same process, same clock). ``..._at_80pct``:
  the same at 0.8 x ``relay_envelopes_per_s`` (batch of round(rate/100) every 10 ms; the rate
  actually offered is ``latency_offered_per_s_at_80pct``).
  Envelopes not received within 30 s after the load stops are counted in
  ``latency_lost_at_1000`` / ``latency_lost_at_80pct`` (and left out of the percentiles).

Ceilings (same run, same machine; no crypto, no durability, no rate limits):
- ``relay_ceiling_per_s`` (also ``relay_envelopes_per_s_ceiling``): the same N envelopes,
  the same msgpack ``SendBatch`` encoding (core/wire.py) and 256 per frame, sent on one bare
  trio-websocket connection to a forwarding server process that passes each message unchanged
  to a sink server process; the sink decodes each frame and counts envelopes. Timed from the
  first frame sent to the sink having counted N (it tells the client over a second socket).
- ``latency_p{50,95,99}_ms_at_1000_ceiling``, ``latency_p99_ms_at_80pct_ceiling`` (LOWER is
  better: the transport's floor): the same offered loads on that bare path for 5 s (quick 2 s);
  time from just before the client sends the frame to the sink decoding it (the send time,
  CLOCK_MONOTONIC, is in the envelope id; client and sink share the machine's clock).
Every process and connection started here is closed/killed before returning, even on error.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

from sonet.core import limits
from sonet.core.client_api import Accepted, Ack, Deliver, Register, Registered, SendBatch
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.wire import encode_frame

from .conn_bench import _LISTENING, BIN, _env, _kill, _spawn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests/ is not installed; bench runs from the repository root
    sys.path.insert(0, str(ROOT))
from tests.node.kit import Account, Member, NodeError, connect_raw  # noqa: E402

__all__ = ["measure"]

BATCH = 256
WINDOW = 4
SENDERS = 40
BODY = 1024
TICK_S = 0.010
DRAIN_S = 30.0
RELAY_GUARD_S = 120.0
TTL_MS = limits.DEFAULT_ENVELOPE_TTL_MS

_SINK = """
import json, sys, time, trio
from trio_websocket import serve_websocket, ConnectionClosed
from sonet.core.wire import decode_frame
import sonet.core.client_api  # registers the SendBatch frame tag
state = {"n": 0, "lat": []}
changed = trio.Event()
async def handler(request):
    global changed
    ws = await request.accept()
    try:
        if request.path == "/in":
            while True:
                frame = decode_frame(await ws.get_message())
                now = time.monotonic_ns()
                for env in frame.envelopes:
                    if env.id[0] == 1:
                        state["lat"].append((now - int.from_bytes(env.id[1:9], "big")) / 1e6)
                state["n"] += len(frame.envelopes)
                changed.set(); changed = trio.Event()
        else:  # /watch: "reset", or "N" -> answer once N envelopes were counted
            while True:
                msg = await ws.get_message()
                if msg == "reset":
                    state["n"], state["lat"] = 0, []
                    await ws.send_message("ok")
                    continue
                target = int(msg)
                while state["n"] < target:
                    await changed.wait()
                await ws.send_message(json.dumps({"n": state["n"], "lat": state["lat"]}))
    except ConnectionClosed:
        pass
async def main():
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        print(f"listening on ws://127.0.0.1:{server.port}", flush=True)
trio.run(main)
"""

_FORWARDER = """
import sys, trio
from trio_websocket import serve_websocket, open_websocket_url, ConnectionClosed
SINK = sys.argv[1]
async def handler(request):
    ws = await request.accept()
    try:
        async with open_websocket_url(SINK + "/in", max_message_size=2**23) as out:
            while True:
                await out.send_message(await ws.get_message())
    except ConnectionClosed:
        pass
async def main():
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        print(f"listening on ws://127.0.0.1:{server.port}", flush=True)
trio.run(main)
"""


def _envelope(to: str, msg_id: bytes) -> Envelope:
    return Envelope(
        v=ENVELOPE_VERSION, id=msg_id, to=to, device=1, expires=int(time.time() * 1000) + TTL_MS,
        kind=Kind.SEALED, body=os.urandom(BODY),
    )


def _id(phase: int, seq: int, stamp: int = 0) -> bytes:
    """phase (1 byte) + stamp (8) + seq (7): unique, and carries a send time where needed."""
    return bytes([phase]) + stamp.to_bytes(8, "big") + seq.to_bytes(7, "big")


def _leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def _init(data: Path, name: str) -> str:
    proc = subprocess.run(
        [str(BIN / "sonet-node"), "init", "--data", str(data), "--name", name, "--listen", "127.0.0.1:0",
         "--registration", "open"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=_env(),
    )
    m = re.search(r"^fingerprint: (\S+)$", proc.stdout, re.M)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"sonet-node init failed: {proc.stdout}{proc.stderr}")
    conf = data / "node.toml"
    text = re.sub(r"(?m)^max_envelopes = \d+$", "max_envelopes = 1000000", conf.read_text())
    conf.write_text(text + "\n[federation]\nretry_max_s = 1.0\n")
    return m.group(1)


def _peer(data: Path, name: str, url: str, fingerprint: str) -> None:
    proc = subprocess.run(
        [str(BIN / "sonet-node"), "peer", "add", "--data", str(data), "--name", name, "--url", url,
         "--fingerprint", fingerprint],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=_env(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sonet-node peer add failed: {proc.stdout}{proc.stderr}")


async def _device(url: str, fingerprint: str, user: str, node: str, conns: list, slot: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Register ``user@node`` (open registration), put its connection in ``conns[slot]`` and
    keep it open until cancelled."""
    account = Account(address=f"{user}@{node}")
    member = Member.new(account.address)
    async with connect_raw(url, identity=member.identity, node_fingerprint=fingerprint) as conn:
        reply = await conn.request(
            lambda n: Register(
                request=n, user=user, invite="", record=member.record, account_identity=account.identity_bytes,
                device_list=account.sign_list([member.fingerprint], version=1),
                keys=member.keys,
            )
        )
        if not isinstance(reply, Registered):
            raise RuntimeError(f"register {user}@{node}: {reply!r}")
        conns[slot] = conn
        task_status.started()
        await trio.sleep_forever()


class _Receiver:
    """bob's side: arrival time of every envelope id; acks each Deliver frame at once."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.arrived: dict[bytes, float] = {}
        self.changed = trio.Event()
        self.ended = False
        #: ids a ``wait_for`` still waits for (O(1) work per arrival, not a rescan)
        self._pending: set[bytes] = set()

    async def run(self) -> None:
        async for frame in self.conn.deliveries:
            if not isinstance(frame, Deliver):
                continue
            now = time.perf_counter()
            ids = tuple(item.envelope.id for item in frame.items)
            for i in ids:
                self.arrived.setdefault(i, now)
                self._pending.discard(i)
            self.changed.set()
            self.changed = trio.Event()
            await self.conn.send(Ack(ids=ids))
        self.ended = True
        self.changed.set()

    async def wait_for(self, ids, timeout: float) -> bool:
        self._pending = {i for i in ids if i not in self.arrived}
        with trio.move_on_after(timeout):
            while self._pending:
                if self.ended:
                    raise RuntimeError(f"bob's connection to beta ended: {self.conn.error!r}")
                await self.changed.wait()
            return True
        return False


async def _send(conns: list, index: int, envelopes: tuple[Envelope, ...], stats: dict) -> float:
    """One SendBatch on sender ``index % K``; retry rate_limited; return the Accepted time."""
    conn = conns[index % len(conns)]
    while True:
        try:
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=envelopes))
        except NodeError as exc:
            if exc.code != "rate_limited":
                raise
            stats["rate_limited"] += 1
            await trio.sleep(0.1)
            continue
        if not isinstance(reply, Accepted):
            raise RuntimeError(f"SendBatch answered {reply!r}")
        return time.perf_counter()


async def _offered_load(conns, to: str, phase: int, rate: float, seconds: float, receiver: _Receiver, stats) -> tuple[list[float], int]:
    per_tick = max(1, round(rate * TICK_S))
    accepted: dict[bytes, float] = {}
    ids: list[bytes] = []

    async def one(tick: int, batch: tuple[Envelope, ...]) -> None:
        at = await _send(conns, tick, batch, stats)
        for env in batch:
            accepted[env.id] = at

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for tick in range(int(seconds / TICK_S)):
            await trio.sleep_until(start + tick * TICK_S)
            batch = tuple(_envelope(to, _id(phase, tick * per_tick + k)) for k in range(per_tick))
            ids += [e.id for e in batch]
            nursery.start_soon(one, tick, batch)
    await receiver.wait_for(ids, DRAIN_S)
    lat = [(receiver.arrived[i] - accepted[i]) * 1e3 for i in ids if i in receiver.arrived and i in accepted]
    return lat, len(ids) - len(lat)


async def _relay(alpha_url: str, alpha_fp: str, beta_url: str, beta_fp: str, n: int, send_s: float, lat_s: float) -> dict:
    out: dict[str, float | int] = {}
    stats = {"rate_limited": 0}
    async with trio.open_nursery() as nursery:
        bob: list = [None]
        await nursery.start(_device, beta_url, beta_fp, "bob", "beta", bob, 0)
        receiver = _Receiver(bob[0])
        nursery.start_soon(receiver.run)
        conns: list = [None] * SENDERS
        async with trio.open_nursery() as regs:
            for i in range(SENDERS):
                regs.start_soon(nursery.start, _device, alpha_url, alpha_fp, f"s{i}", "alpha", conns, i)

        # warm-up: until alpha has loaded beta from its peer table and the link is up
        warm = (_envelope("bob@beta", _id(9, 0)),)
        deadline = time.monotonic() + 30
        while True:
            try:
                await _send(conns, 0, warm, stats)
                break
            except NodeError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"warm-up SendBatch to bob@beta kept failing: {exc}") from None
                await trio.sleep(0.5)
        if not await receiver.wait_for([warm[0].id], 30):
            raise RuntimeError("warm-up envelope never reached bob@beta")

        # throughput
        batches = [tuple(_envelope("bob@beta", _id(2, b * BATCH + k)) for k in range(BATCH)) for b in range(n // BATCH)]
        window = trio.Semaphore(WINDOW)
        sent_ids: list[bytes] = []

        async def one(b: int) -> None:
            try:
                await _send(conns, b, batches[b], stats)
            finally:
                window.release()

        t0 = time.perf_counter()
        stop = t0 + send_s
        async with trio.open_nursery() as senders:
            for b in range(len(batches)):
                if time.perf_counter() > stop:
                    break
                await window.acquire()
                sent_ids += [e.id for e in batches[b]]
                senders.start_soon(one, b)
        if not await receiver.wait_for(sent_ids, RELAY_GUARD_S):
            got = sum(1 for i in sent_ids if i in receiver.arrived)
            raise RuntimeError(f"relay: bob received {got} of {len(sent_ids)} accepted envelopes")
        t1 = max(receiver.arrived[i] for i in sent_ids)
        peak = len(sent_ids) / (t1 - t0)
        out["relay_envelopes"] = len(sent_ids)
        out["relay_envelopes_per_s"] = peak
        batches = []  # free the payloads

        lat, lost = await _offered_load(conns, "bob@beta", 3, 1000.0, lat_s, receiver, stats)
        for p in (50, 95, 99):
            out[f"latency_p{p}_ms_at_1000"] = _pct(lat, p)
        out["latency_lost_at_1000"] = lost
        rate80 = 0.8 * peak
        lat, lost = await _offered_load(conns, "bob@beta", 4, rate80, lat_s, receiver, stats)
        out["latency_p50_ms_at_80pct"] = _pct(lat, 50)
        out["latency_p99_ms_at_80pct"] = _pct(lat, 99)
        out["latency_lost_at_80pct"] = lost
        out["latency_offered_per_s_at_80pct"] = max(1, round(rate80 * TICK_S)) / TICK_S
        out["relay_rate_limited_batches"] = stats["rate_limited"]
        nursery.cancel_scope.cancel()  # closes every device connection
    return out


async def _bare(fwd_url: str, sink_url: str, n: int, rate80: float, lat_s: float) -> dict:
    out: dict[str, float | int] = {}
    big = 2**23
    async with open_websocket_url(sink_url + "/watch", max_message_size=big) as watch, \
            open_websocket_url(fwd_url + "/in", max_message_size=big) as ws:
        frames = [
            encode_frame(SendBatch(request=b + 1, envelopes=tuple(_envelope("bob@beta", _id(2, b * BATCH + k)) for k in range(BATCH))))
            for b in range(n // BATCH)
        ]
        total = len(frames) * BATCH
        t0 = time.perf_counter()
        for frame in frames:
            await ws.send_message(frame)
        await watch.send_message(str(total))
        json.loads(await watch.get_message())
        out["relay_ceiling_per_s"] = total / (time.perf_counter() - t0)
        del frames

        async def load(rate: float) -> list[float]:
            await watch.send_message("reset")
            await watch.get_message()
            per_tick = max(1, round(rate * TICK_S))
            start = trio.current_time()
            ticks = int(lat_s / TICK_S)
            for tick in range(ticks):
                await trio.sleep_until(start + tick * TICK_S)
                stamp = time.monotonic_ns()
                envs = tuple(_envelope("bob@beta", _id(1, tick * per_tick + k, stamp)) for k in range(per_tick))
                await ws.send_message(encode_frame(SendBatch(request=tick + 1, envelopes=envs)))
            await watch.send_message(str(ticks * per_tick))
            return json.loads(await watch.get_message())["lat"]

        lat = await load(1000.0)
        for p in (50, 95, 99):
            out[f"latency_p{p}_ms_at_1000_ceiling"] = _pct(lat, p)
        lat = await load(rate80)
        out["latency_p50_ms_at_80pct_ceiling"] = _pct(lat, 50)
        out["latency_p99_ms_at_80pct_ceiling"] = _pct(lat, 99)
    return out


def measure(quick: bool) -> dict[str, float | int]:
    n = (20 if quick else 196) * BATCH
    send_s = 6.0 if quick else 25.0
    lat_s = 3.0 if quick else 10.0
    bare_lat_s = 2.0 if quick else 5.0
    out: dict[str, float | int] = {}
    with tempfile.TemporaryDirectory(prefix="sonet-bench-relay-") as tmp_dir:
        tmp = Path(tmp_dir)
        fps = {name: _init(tmp / name, name) for name in ("alpha", "beta")}
        procs: list[subprocess.Popen[str]] = []
        try:
            urls = {}
            for name in ("alpha", "beta"):
                proc, urls[name] = _spawn([str(BIN / "sonet-node"), "run", "--data", str(tmp / name)], tmp / f"{name}.stderr", _LISTENING)
                procs.append(proc)
            _peer(tmp / "alpha", "beta", urls["beta"], fps["beta"])
            _peer(tmp / "beta", "alpha", urls["alpha"], fps["alpha"])
            out.update(trio.run(_relay, urls["alpha"], fps["alpha"], urls["beta"], fps["beta"], n, send_s, lat_s))
        except Exception as exc:
            tails = " | ".join(
                f"{name}: {(tmp / f'{name}.stderr').read_text(errors='replace')[-600:]}"
                for name in ("alpha", "beta") if (tmp / f"{name}.stderr").exists()
            )
            leaf = _leaf(exc)
            raise RuntimeError(f"relay failed: {type(leaf).__name__}: {leaf} [node stderr: {tails}]") from exc
        finally:
            for proc in procs:
                _kill(proc)

        listening = re.compile(r"listening on (ws://\S+)")
        procs = []
        try:
            sink, sink_url = _spawn([sys.executable, "-c", _SINK], tmp / "sink.stderr", listening)
            procs.append(sink)
            fwd, fwd_url = _spawn([sys.executable, "-c", _FORWARDER, sink_url], tmp / "fwd.stderr", listening)
            procs.append(fwd)
            rate80 = out["latency_offered_per_s_at_80pct"]
            out.update(trio.run(_bare, fwd_url, sink_url, out["relay_envelopes"], rate80, bare_lat_s))
        finally:
            for proc in procs:
                _kill(proc)
    out["relay_envelopes_per_s_ceiling"] = out["relay_ceiling_per_s"]
    return out


if __name__ == "__main__":
    print(json.dumps(measure("--full" not in sys.argv), indent=2))
