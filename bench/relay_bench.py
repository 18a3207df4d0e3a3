"""Relay throughput and latency between two real nodes (alpha -> beta), and the bare transport.

What is measured (``measure(quick)``):

- Two real nodes, ``alpha`` and ``beta``: ``sonet-node init --registration open`` + ``run`` from
  this venv in a temp dir on 127.0.0.1 port 0 (beta's ``[mailbox] max_envelopes`` raised to
  1,000,000 so the quota never refuses a push; ``[federation] retry_max_s = 1``), pinned to each
  other with ``sonet-node peer add`` while running. Default durability (SQLite as shipped).
- Raw devices (tests/node/kit.py on sonet.transport, full hybrid secure channel): ``bob@beta`` (one
  device, connected to beta; it acks every Deliver frame as it arrives, like a client) and
  ``K`` = 40 sender accounts ``s0..s39@alpha``, one registered device and connection each
  (registered 4 at a time: a node keeps at most 8 connections without an account per address).
  Several senders because the node limits stored envelopes per device to 200/s (burst 1,000,
  node/client_limits.py); batches rotate over the senders so that limit does not bind (a
  ``rate_limited`` refusal is retried after 0.1 s and counted in ``relay_rate_limited_batches``).
  The senders are bob's contacts: every SendBatch carries bob's access token (which his device
  gets with its sender certificate), so nothing counts as a message request.
- Every envelope: ``Kind.SEALED``, a random 16-byte id (``relay_ids`` = "random": what clients
  send, so the stores index ids in no order), 1 KiB random body, to ``bob@beta`` device 1
  (the exact device list beta publishes; alpha looks it up through federation). One envelope
  is sent and received first (warm-up: federation link, device-list cache); not timed.
- ``relay_envelopes_per_s``: SendBatch frames of 256 envelopes, at most 4 batches in flight
  (each awaited until alpha answers Accepted = committed to its outbox), alpha pushes to beta,
  beta commits to bob's mailbox and pushes Deliver frames. Timed from the first SendBatch to
  the moment bob's connection has received all N envelopes. N = 50,176 full / 5,120 quick;
  no new batch is started after 25 s (full) / 6 s (quick), N is then what was sent
  (``relay_envelopes``).
- ``relay_cpu_us_per_env_{sending,receiving}_node``: CPU (user + system, all threads, from
  /proc/PID/stat) of alpha's and beta's processes per relayed envelope, from just before the
  first SendBatch (after both were idle) until both are idle again after the last arrival
  (less than 10 ms CPU in 250 ms; ``relay_idle_wait_s``): what happens after delivery (bob's
  acks, alpha settling its outbox) is counted too. Steadier than envelopes/s on a shared
  machine: waiting for a core does not count. ``relay_cpu_us_per_env_bench_process``: the
  same for this process (40 senders' and bob's connections; the envelopes are built before).
- ``latency_p{50,95,99}_ms_at_1000``: one SendBatch of 10 envelopes every 10 ms (1,000/s
  offered) for 10 s (quick 3 s); per envelope, the time from alpha's Accepted reaching this
  process to bob's connection on beta receiving it (same process, same clock). ``..._at_80pct``:
  the same at 0.8 x ``relay_envelopes_per_s`` (batch of round(rate/100) every 10 ms; the rate
  actually offered is ``latency_offered_per_s_at_80pct``).
  Envelopes not received within 30 s after the load stops are counted in
  ``latency_lost_at_1000`` / ``latency_lost_at_80pct`` (and left out of the percentiles).
  ``latency_cpu_us_per_env_{sending,receiving}_node_at_1000``: each node's CPU per envelope
  during the 1,000/s load, until both are idle again. Ten times it is what one SendBatch of 10
  costs a node (its push, answers and settles included): at a light load most of a node's work
  is per batch, not per envelope, and that work is on every envelope's path (the latency).
  ``python -m bench.relay_bench --latency SECONDS [--rate R]`` runs only this load (at R/s,
  default 1,000; and its ceiling), with the nodes' CPU per envelope during it
  (``latency_cpu_us_per_env_{sending,receiving}_node``): to profile the latency alone.

- ``envelope_bytes_100b_text_hybrid``: two client devices (client/sdk.py ``Device``, hybrid
  keys and sessions) registered on beta, ``alice`` and ``carol``. ``Device.send_text`` of a
  100-byte text, as ``sonet send`` does it; the size is that of the envelope (msgpack, as in
  every frame that carries it) as beta delivers it to the recipient, read by a raw connection
  of the recipient's device that does not acknowledge it; then the recipient's ``receive``
  decrypts it (checked) and sends its delivery receipt, which the sender fetches. First alice
  -> carol (``..._first``: it starts the session) and carol -> alice; then the session is
  established and 6 more texts go a, a, c, a, c, c (turns both ways and messages within a
  chain): the figure is the largest of those 6, ``..._min`` the smallest.

Ceilings (same run, same machine; no crypto, no durability, no rate limits):
- ``relay_ceiling_per_s`` (also ``relay_envelopes_per_s_ceiling``): the same N envelopes,
  the same msgpack ``SendBatch`` encoding (core/wire.py) and as many per frame as a SendBatch
  holds (256, MAX_ENVELOPES_PER_FRAME), sent on one WebSocket connection to a forwarding server
  process that passes each message unchanged to a sink server process; the sink decodes each
  frame and counts envelopes. Timed from the first frame sent to the sink having counted N (it
  tells the client over a second socket). The transport is the node's, without its secure
  channel: both servers listen with sonet.transport.server ``serve`` (the node's reads, its
  64 KiB send pieces, admission and deadlines) and raise an accepted connection's message cap
  to MAX_RECORD_BYTES as the node does after a handshake; the client and the forwarder connect
  with the WebSocket settings of sonet.transport.dial (cap MAX_RECORD_BYTES). The node's own
  hops carry 256 (SendBatch), up to 1,024 (Push) and up to 128 (Deliver) envelopes per message.
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
from sonet.transport.websocket import open_websocket

from sonet.client.sdk import Device
from sonet.client.state import DeviceState
from sonet.core import limits
from sonet.core.client_api import (
    Accepted, AccessToken, Ack, Deliver, GetSenderCertificate, Register, Registered, SendBatch, SenderCertificate,
)
from sonet.core.crypto import CryptoMode
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.invite import make_invite
from sonet.core.wire import encode_frame, encode_struct

from .conn_bench import _LISTENING, BIN, _env, _kill, _spawn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests/ is not installed; bench runs from the repository root
    sys.path.insert(0, str(ROOT))
from tests.node.kit import Account, Member, NodeError, connect_raw  # noqa: E402

__all__ = ["measure"]

BATCH = limits.MAX_ENVELOPES_PER_FRAME
WINDOW = 4
SENDERS = 40
#: registrations under way at once: a node keeps at most 8 connections without an account
#: per source address ([connections] max_unregistered_per_address), and all come from 127.0.0.1
REGISTERING = 4
BODY = 1024
TICK_S = 0.010
DRAIN_S = 30.0
RELAY_GUARD_S = 120.0
TTL_MS = limits.DEFAULT_ENVELOPE_TTL_MS
#: after the last envelope arrived, the nodes count as idle again once both used less than
#: IDLE_CPU_S of CPU in IDLE_POLL_S (what they still do per envelope: acks, outbox settling)
IDLE_POLL_S = 0.25
IDLE_CPU_S = 0.01
IDLE_GUARD_S = 20.0
#: the text of the envelope-size figure: 100 bytes of UTF-8
TEXT_100B = ("The relay bench measures what one short message costs on the wire. " * 2)[:100]
#: messages of the established session whose envelopes are measured (after the first exchange)
ESTABLISHED_MESSAGES = ("alice", "alice", "carol", "alice", "carol", "carol")
_CLK_TCK = os.sysconf("SC_CLK_TCK")

#: what the ceiling's server processes share: the node's listening code (sonet.transport.server:
#: its reads, 64 KiB send pieces, admission and deadlines) and, once accepted, the message cap of
#: an authenticated connection, as node/server.py sets it after the handshake (none is run here)
_SERVE = """
import functools, trio
from sonet.core import limits
from sonet.transport.server import serve
from sonet.transport.socket import set_message_cap
from sonet.transport.websocket import open_websocket as dial  # the node's dialling WebSocket
async def accept(request, conn):
    ws = await request.accept()
    conn.authenticated()
    set_message_cap(ws, limits.MAX_RECORD_BYTES)
    return ws
async def listen(handler):
    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve, handler, "127.0.0.1", 0, plain_http_answer="bench"))
        print(f"listening on ws://127.0.0.1:{server.port}", flush=True)
"""

_SINK = _SERVE + """
import json, sys, time
from sonet.transport.ws_errors import ConnectionClosed
from sonet.core.wire import decode_frame
import sonet.core.client_api  # registers the SendBatch frame tag
state = {"n": 0, "lat": []}
changed = trio.Event()
async def handler(request, conn):
    global changed
    ws = await accept(request, conn)
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
trio.run(listen, handler)
"""

_FORWARDER = _SERVE + """
import sys
from sonet.transport.ws_errors import ConnectionClosed
SINK = sys.argv[1]
async def handler(request, conn):
    ws = await accept(request, conn)
    try:
        async with dial(SINK + "/in") as out:
            while True:
                await out.send_message(await ws.get_message())
    except ConnectionClosed:
        pass
trio.run(listen, handler)
"""


def _envelope(to: str, msg_id: bytes) -> Envelope:
    return Envelope(
        v=ENVELOPE_VERSION, id=msg_id, to=to, device=1, expires=int(time.time() * 1000) + TTL_MS,
        kind=Kind.SEALED, body=os.urandom(BODY),
    )


def _random_id() -> bytes:
    """What clients send (client/sdk.py: ``rng(ENVELOPE_ID_LEN)``): ids in no order, as the
    nodes' stores see them in real use."""
    return os.urandom(limits.ENVELOPE_ID_LEN)


def _stamped_id(seq: int, stamp: int) -> bytes:
    """For the bare path's latency only (no store there): 1 + send time (8) + seq (7)."""
    return bytes([1]) + stamp.to_bytes(8, "big") + seq.to_bytes(7, "big")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


async def _until_idle(pids: tuple[int, ...]) -> float:
    """Wait until every process in ``pids`` is idle (see IDLE_CPU_S); the seconds waited."""
    started = time.perf_counter()
    last = [_cpu_s(pid) for pid in pids]
    while time.perf_counter() - started < IDLE_GUARD_S:
        await trio.sleep(IDLE_POLL_S)
        now = [_cpu_s(pid) for pid in pids]
        busy = any(b - a >= IDLE_CPU_S for a, b in zip(last, now))
        last = now
        if not busy:
            break
    return time.perf_counter() - started


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
    """One SendBatch on sender ``index % K`` with the recipient's access token (``stats["access"]``);
    retry rate_limited; return the Accepted time."""
    conn = conns[index % len(conns)]
    while True:
        try:
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=envelopes, access=stats["access"]))
        except NodeError as exc:
            if exc.code != "rate_limited":
                raise
            stats["rate_limited"] += 1
            await trio.sleep(0.1)
            continue
        if not isinstance(reply, Accepted):
            raise RuntimeError(f"SendBatch answered {reply!r}")
        return time.perf_counter()


async def _offered_load(conns, to: str, rate: float, seconds: float, receiver: _Receiver, stats) -> tuple[list[float], int]:
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
            batch = tuple(_envelope(to, _random_id()) for _ in range(per_tick))
            ids += [e.id for e in batch]
            nursery.start_soon(one, tick, batch)
    await receiver.wait_for(ids, DRAIN_S)
    lat = [(receiver.arrived[i] - accepted[i]) * 1e3 for i in ids if i in receiver.arrived and i in accepted]
    return lat, len(ids) - len(lat)


async def _latency_with_cpu(conns, rate: float, seconds: float, receiver: _Receiver, stats, pids: tuple[int, int], *, suffix: str) -> dict:  # noqa: ANN001
    """The latency at ``rate``/s offered for ``seconds`` (``latency_p{50,95,99}_ms_at_<rate>``,
    ``latency_lost_at_<rate>``) and each node's CPU per envelope from its start until both nodes
    are idle again (``latency_cpu_us_per_env_{sending,receiving}_node<suffix>``). Both nodes must
    be idle when it starts. At a light load that CPU is mostly per SendBatch and per push, not
    per envelope (one SendBatch a TICK_S: 10 envelopes each at 1,000/s): what a batch costs."""
    out: dict[str, float | int] = {}
    cpu0 = [_cpu_s(pid) for pid in pids]
    lat, lost = await _offered_load(conns, "bob@beta", rate, seconds, receiver, stats)
    for p in (50, 95, 99):
        out[f"latency_p{p}_ms_at_{rate:g}"] = _pct(lat, p)
    out[f"latency_lost_at_{rate:g}"] = lost
    await _until_idle(pids)
    alpha_us, beta_us = ((_cpu_s(pid) - a) * 1e6 / max(1, len(lat)) for pid, a in zip(pids, cpu0))
    out[f"latency_cpu_us_per_env_sending_node{suffix}"] = alpha_us
    out[f"latency_cpu_us_per_env_receiving_node{suffix}"] = beta_us
    return out


async def _relay(
    alpha_url: str, alpha_fp: str, beta_url: str, beta_fp: str, pids: tuple[int, int], n: int, send_s: float, lat_s: float, rate: float = 1000.0
) -> dict:
    """``pids``: the processes of alpha and beta. ``n`` 0: only the latency at ``rate``/s."""
    out: dict[str, float | int] = {}
    stats: dict = {"rate_limited": 0, "access": ()}
    async with trio.open_nursery() as nursery:
        bob: list = [None]
        await nursery.start(_device, beta_url, beta_fp, "bob", "beta", bob, 0)
        receiver = _Receiver(bob[0])
        # the senders are bob's contacts: they present his access token (core/access.py), as a
        # device does once bob wrote to it; else each envelope is a message request
        reply = await bob[0].request(lambda n: GetSenderCertificate(request=n))
        if not isinstance(reply, SenderCertificate) or not reply.access:
            raise RuntimeError(f"bob's sender certificate: {reply!r}")
        stats["access"] = (AccessToken(account="bob@beta", token=reply.access),)
        nursery.start_soon(receiver.run)
        conns: list = [None] * SENDERS
        registering = trio.Semaphore(REGISTERING)

        async def sender(i: int) -> None:
            async with registering:
                await nursery.start(_device, alpha_url, alpha_fp, f"s{i}", "alpha", conns, i)

        async with trio.open_nursery() as regs:
            for i in range(SENDERS):
                regs.start_soon(sender, i)

        # warm-up: until alpha has loaded beta from its peer table and the link is up
        warm = (_envelope("bob@beta", _random_id()),)
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

        if n == 0:
            await _until_idle(pids)  # the warm-up's settling is not counted
            out.update(await _latency_with_cpu(conns, rate, lat_s, receiver, stats, pids, suffix=""))
            nursery.cancel_scope.cancel()
            return out

        # throughput
        batches = [tuple(_envelope("bob@beta", _random_id()) for _ in range(BATCH)) for _ in range(n // BATCH)]
        window = trio.Semaphore(WINDOW)
        sent_ids: list[bytes] = []

        async def one(b: int) -> None:
            try:
                await _send(conns, b, batches[b], stats)
            finally:
                window.release()

        await _until_idle(pids)  # the warm-up's settling is not counted
        cpu0 = [_cpu_s(pid) for pid in pids] + [time.process_time()]
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
        out["relay_idle_wait_s"] = await _until_idle(pids)
        cpu1 = [_cpu_s(pid) for pid in pids] + [time.process_time()]
        alpha_us, beta_us, bench_us = ((b - a) * 1e6 / len(sent_ids) for a, b in zip(cpu0, cpu1))
        out["relay_cpu_us_per_env_sending_node"] = alpha_us
        out["relay_cpu_us_per_env_receiving_node"] = beta_us
        out["relay_cpu_us_per_env_bench_process"] = bench_us
        batches = []  # free the payloads

        out.update(await _latency_with_cpu(conns, 1000.0, lat_s, receiver, stats, pids, suffix="_at_1000"))
        rate80 = 0.8 * peak
        lat, lost = await _offered_load(conns, "bob@beta", rate80, lat_s, receiver, stats)
        out["latency_p50_ms_at_80pct"] = _pct(lat, 50)
        out["latency_p99_ms_at_80pct"] = _pct(lat, 99)
        out["latency_lost_at_80pct"] = lost
        out["latency_offered_per_s_at_80pct"] = max(1, round(rate80 * TICK_S)) / TICK_S
        out["relay_rate_limited_batches"] = stats["rate_limited"]
        nursery.cancel_scope.cancel()  # closes every device connection
    return out


async def _peek(url: str, fingerprint: str, device: Device, msg_id: bytes) -> int:
    """The encoded size of envelope ``msg_id`` as the node delivers it to ``device`` (over a
    raw connection of that device that does not acknowledge it: the device still gets it)."""
    with trio.fail_after(30):
        async with connect_raw(url, identity=device.state.profile().identity, node_fingerprint=fingerprint) as conn:
            async for frame in conn.deliveries:
                for item in frame.items if isinstance(frame, Deliver) else ():
                    if item.envelope.id == msg_id:
                        return len(encode_struct(item.envelope))
    raise RuntimeError(f"envelope {msg_id.hex()} was not delivered: {conn.error!r}")


async def _text(url: str, fingerprint: str, sender: Device, recipient: Device) -> int:
    """``sender`` sends TEXT_100B with ``Device.send_text``; the size of its envelope, after
    ``recipient`` received and decrypted it (and so answered with a delivery receipt)."""
    to = recipient.state.profile()
    sent = await sender.send_text(to.address, TEXT_100B)
    if sent.devices != 1:
        raise RuntimeError(f"send_text to {to.address}: {sent!r}")
    size = await _peek(url, fingerprint, recipient, sent.id)
    got = await recipient.receive()
    if [(m.id, m.fields.get("text")) for m in got.messages if m.type == "text"] != [(sent.id, TEXT_100B)] or got.rejected:
        raise RuntimeError(f"{to.address} did not read the text: {got!r}")
    recipient.state.mark_shown([m.id for m in got.messages])  # as `sonet recv` does once printed
    got = await sender.receive()  # the delivery receipt, as a client fetches it
    sender.state.mark_shown([m.id for m in got.messages])
    return size


async def _envelope_sizes(url: str, fingerprint: str, homes: Path) -> dict[str, float | int]:
    """Envelope sizes of a 100-byte text between two hybrid client devices (client/sdk.py
    ``Device``, keys and sessions in hybrid mode) of one node: the first (it starts the
    session), then ESTABLISHED_MESSAGES after one message each way."""
    devices: dict[str, Device] = {}
    try:
        for user in ("alice", "carol"):
            devices[user] = Device(DeviceState(homes / user))
            # an open node: the invite's secret is not checked, its fingerprint pins the node
            await devices[user].register(f"{user}@beta", url, make_invite(fingerprint, os.urandom(20)), mode=CryptoMode.HYBRID)
        alice, carol = devices["alice"], devices["carol"]
        first = await _text(url, fingerprint, alice, carol)
        await _text(url, fingerprint, carol, alice)
        sizes = [
            await _text(url, fingerprint, devices[who], devices["carol" if who == "alice" else "alice"]) for who in ESTABLISHED_MESSAGES
        ]
    finally:
        for device in devices.values():
            device.state.close()
    return {
        "envelope_bytes_100b_text_hybrid": max(sizes),
        "envelope_bytes_100b_text_hybrid_min": min(sizes),
        "envelope_bytes_100b_text_hybrid_first": first,
    }


async def _bare(fwd_url: str, sink_url: str, n: int, rate80: float | None, lat_s: float, rate: float = 1000.0) -> dict:
    """``n`` 0 and ``rate80`` None: only the latency at ``rate``/s."""
    out: dict[str, float | int] = {}
    async with open_websocket(sink_url + "/watch") as watch, open_websocket(fwd_url + "/in") as ws:
        frames = [
            encode_frame(SendBatch(request=b + 1, envelopes=tuple(_envelope("bob@beta", _random_id()) for _ in range(BATCH))))
            for b in range(n // BATCH)
        ]
        total = len(frames) * BATCH
        t0 = time.perf_counter()
        for frame in frames:
            await ws.send_message(frame)
        await watch.send_message(str(total))
        json.loads(await watch.get_message())
        if total:
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
                envs = tuple(_envelope("bob@beta", _stamped_id(tick * per_tick + k, stamp)) for k in range(per_tick))
                await ws.send_message(encode_frame(SendBatch(request=tick + 1, envelopes=envs)))
            await watch.send_message(str(ticks * per_tick))
            return json.loads(await watch.get_message())["lat"]

        lat = await load(rate)
        for p in (50, 95, 99):
            out[f"latency_p{p}_ms_at_{rate:g}_ceiling"] = _pct(lat, p)
        if rate80 is None:
            return out
        lat = await load(rate80)
        out["latency_p50_ms_at_80pct_ceiling"] = _pct(lat, 50)
        out["latency_p99_ms_at_80pct_ceiling"] = _pct(lat, 99)
    return out


def measure(quick: bool, latency_only_s: float = 0.0, rate: float = 1000.0) -> dict[str, float | int]:
    """Every figure (``quick``: the small sizes); or with ``latency_only_s``, only the latency
    at ``rate`` envelopes/s (``latency_p*_ms_at_<rate>``, its ceiling, the nodes' CPU per
    envelope meanwhile), each load that many seconds (no throughput runs, no envelope sizes:
    to profile the latency alone)."""
    n = 0 if latency_only_s else (20 if quick else 196) * BATCH
    send_s = 6.0 if quick else 25.0
    lat_s = latency_only_s or (3.0 if quick else 10.0)
    bare_lat_s = latency_only_s or (2.0 if quick else 5.0)
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
            pids = (procs[0].pid, procs[1].pid)
            out.update(trio.run(_relay, urls["alpha"], fps["alpha"], urls["beta"], fps["beta"], pids, n, send_s, lat_s, rate))
            if n:
                out.update(trio.run(_envelope_sizes, urls["beta"], fps["beta"], tmp / "devices"))
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
            rate80 = out.get("latency_offered_per_s_at_80pct")
            out.update(trio.run(_bare, fwd_url, sink_url, out.get("relay_envelopes", 0), rate80, bare_lat_s, rate))
        finally:
            for proc in procs:
                _kill(proc)
    if n:
        out["relay_envelopes_per_s_ceiling"] = out["relay_ceiling_per_s"]
    out["relay_ids"] = "random"
    return out


if __name__ == "__main__":
    # python -m bench.relay_bench [--full] | --latency SECONDS [--rate R] (the latency alone,
    # at R envelopes/s, default 1,000)
    if "--latency" in sys.argv:
        rate = float(sys.argv[sys.argv.index("--rate") + 1]) if "--rate" in sys.argv else 1000.0
        print(json.dumps(measure(True, float(sys.argv[sys.argv.index("--latency") + 1]), rate), indent=2))
    else:
        print(json.dumps(measure("--full" not in sys.argv), indent=2))
