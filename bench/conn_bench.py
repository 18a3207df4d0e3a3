"""Idle ``/client`` connections held by one node, and what each costs in node memory.

What is measured (``measure(quick)``):

- A real node: ``sonet-node init`` + ``sonet-node run`` (from this venv) in a temp dir on
  127.0.0.1 port 0; the URL is parsed from its "listening on" line. Before anything, the soft
  RLIMIT_NOFILE of this process is raised to the hard limit (the node inherits it).
- node.toml lifts the admission caps for this one client address (``_lift_admission_caps``):
  the figure is the cost of a held connection, not the policy that refuses floods.
- One warm-up connection is opened and closed, then the node's RSS (VmRSS from
  /proc/PID/status) is read. Then this one process opens N connections to ``/client``, in
  concurrent batches of ``BATCH`` (100) in a trio nursery; each completes the full hybrid
  (ML-DSA/ML-KEM) secure-channel handshake as an unregistered device and reads the Welcome,
  then stays idle and open. Each connection has its own device key (generated before the clock
  starts): the node keeps at most ``max_per_device`` connections of one device.
  N = 10,000 (full) or 200 (quick); batches stop early when the opening deadline passes
  (100 s full, 8 s quick, or ``--budget=SECONDS``; the same budget for the bare server), so N
  is what was reached.
- After a 1 s settle the node's RSS is read again; then every connection is closed (WebSocket
  close, bounded by a timeout) and the node killed.

Figures:
- ``connections_held``: connections open (handshake done, Welcome read, not closed by the node)
  when the second RSS was read; ``connections_refused``: attempts that failed or were closed.
- ``rss_bytes_per_connection`` = (RSS after - RSS before) / connections_held (node process).
- ``handshakes_per_s``: connections_held / wall time spent opening them (client and node
  share the machine's 2 cores, so this is the end-to-end rate with both sides' crypto).

Ceiling (same run, same machine): a bare server on the node's own transport
(``sonet.transport.server.serve`` and transport/websocket.py: the same admission, deadlines,
reads and upgrade handling; caps lifted as for the node) whose handler accepts, marks the
connection authenticated and waits in ``get_message`` as an idle node connection does, with no
handshake, secure channel or session, in a child ``python -c`` process; the same N idle
connections (plain WebSocket, opened by ``sonet.transport.websocket.open_websocket``) measured
the same way (before 2026-12-07 this was a bare trio-websocket server, ~19.0 KB a connection):
``rss_bytes_per_connection_ceiling`` (LOWER is better here: it is the transport's floor),
``connections_held_ceiling`` (``bare_ws_opens_per_s`` is its open rate, for information).
``handshakes_per_s_ceiling``: full hybrid handshakes per second with both sides (initiator and
responder, same keys, no admission, no Welcome) pumped in memory in this one thread, no
transport, for 1 s (quick) / 3 s (full). The end-to-end run has client and node on separate
cores, so its ratio to this ceiling can exceed 1 (up to ~2 with perfect overlap).
Every process and connection started here is closed/killed before returning, even on error.
"""

from __future__ import annotations

import os
import queue
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

from sonet.core.client_api import CLIENT_FRAMES, Welcome
from sonet.core.crypto import CryptoMode, CryptoPolicy, SigningKey
from sonet.core.handshake import Handshake, HandshakeComplete, PeerIdentified, Role
from sonet.transport import dial
from sonet.transport.websocket import open_websocket

BIN = Path(sys.executable).parent
BATCH = 100
STARTUP_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 10.0
_LISTENING = re.compile(r"^sonet node (\S+) listening on (ws://\S+)")

#: the ceiling's server: the node's listening transport, no handshake or session (argv[1]: the
#: connections to let in)
_BARE_SERVER = """
import functools, sys, trio
from sonet.transport.ws_errors import ConnectionClosed
from sonet.transport.server import ConnectionLimits, serve
room = int(sys.argv[1])
caps = ConnectionLimits(
    max_connections=room, max_connections_per_address=room, max_pending=room, max_pending_per_address=room
)
async def handler(request, conn):
    ws = await request.accept()
    conn.authenticated()
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed:
        pass
async def main():
    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve, handler, "127.0.0.1", 0, plain_http_answer="bench", caps=caps))
        print(f"listening on ws://127.0.0.1:{server.port}", flush=True)
trio.run(main)
"""


def _raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SONET_HOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(args: list[str], stderr_path: Path, pattern: re.Pattern[str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``args``; return it and the URL from its first line matching ``pattern``."""
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1, env=_env()
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError(f"{args[0]} exited: {stderr_path.read_text(errors='replace')[-2000:]}")
            if m := pattern.search(line):
                return proc, m.group(m.lastindex or 0)
    except BaseException:
        _kill(proc)
        raise


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=STARTUP_TIMEOUT_S)


async def _open_one(url: str, identity: SigningKey | None, fingerprint: str | None, ready, release: trio.Event) -> None:
    """Open one connection (``/client`` through the transport's dial, handshake and Welcome
    included, when ``identity`` is given; else a bare WebSocket to ``url/``), call
    ``ready(closed)`` once (``closed()`` tells whether it closed since; None: it failed), hold
    it until ``release``."""
    reported = False
    try:
        if identity is None:
            async with open_websocket(url + "/") as ws:
                reported = True
                ready(lambda: ws.closed is not None)
                await release.wait()
        else:
            async with dial(url, "/client", identity=identity, expected_peer=fingerprint, frames=CLIENT_FRAMES, greeting=Welcome) as sock:
                reported = True
                ready(lambda: sock.closed)
                await release.wait()
    except Exception:
        if not reported:
            ready(None)


async def _hold(url: str, n: int, budget_s: float, pid: int, identities: list[SigningKey] | None, fingerprint: str | None) -> dict:
    """``identities``: one device key per connection (+1 for the warm-up), or None for bare
    WebSockets. One key per connection: the node closes a device's oldest connection beyond
    ``max_per_device``."""
    keys = iter(identities) if identities is not None else None

    def identity() -> SigningKey | None:
        return next(keys) if keys is not None else None

    held: list = []
    failed = 0
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        try:
            # warm-up: one connection opened and closed before the "before" reading
            warm = trio.Event()
            done_warm = trio.Event()
            nursery.start_soon(_open_one, url, identity(), fingerprint, lambda closed: done_warm.set(), warm)
            await done_warm.wait()
            warm.set()
            await trio.sleep(0.5)
            before = _rss(pid)

            start = time.monotonic()
            deadline = start + budget_s
            opened = 0
            while opened < n and time.monotonic() < deadline:
                size = min(BATCH, n - opened)
                left = size
                batch_done = trio.Event()

                def ready(closed) -> None:
                    nonlocal left, failed
                    if closed is None:
                        failed += 1
                    else:
                        held.append(closed)
                    left -= 1
                    if left == 0:
                        batch_done.set()

                for _ in range(size):
                    nursery.start_soon(_open_one, url, identity(), fingerprint, ready, release)
                await batch_done.wait()
                opened += size
            elapsed = time.monotonic() - start
            await trio.sleep(1.0)
            after = _rss(pid)
            alive = sum(1 for closed in held if not closed())
        finally:
            release.set()
            # graceful close, bounded; whatever is left is cancelled
            nursery.cancel_scope.deadline = trio.current_time() + CLOSE_TIMEOUT_S
    return {
        "held": alive,
        "refused": failed + (len(held) - alive),
        "per_conn": (after - before) / alive if alive else 0.0,
        "rate": alive / elapsed if elapsed > 0 else 0.0,
        "before": before,
        "after": after,
    }


def _handshake_in_memory(identity: SigningKey, node_key: SigningKey) -> None:
    """One full initiator+responder handshake pumped in memory (no transport)."""
    ini = Handshake(
        Role.INITIATOR, identity=identity, policy=CryptoPolicy(), rng=os.urandom, prologue=b"/client",
        expected_peer=node_key.public.fingerprint,
    )
    resp = Handshake(Role.RESPONDER, identity=node_key, policy=CryptoPolicy(), rng=os.urandom, prologue=b"/client")
    done_i = done_r = False
    messages = list(ini.data_to_send())
    while not (done_i and done_r):
        if not messages:
            raise RuntimeError("in-memory handshake stalled")
        for message in messages:
            resp.receive_data(message)
        answers = list(resp.data_to_send())
        event = resp.next_event()
        if isinstance(event, PeerIdentified):
            resp.accept()
            answers += resp.data_to_send()
            event = resp.next_event()
        done_r = done_r or isinstance(event, HandshakeComplete)
        for message in answers:
            ini.receive_data(message)
        messages = list(ini.data_to_send())
        done_i = done_i or isinstance(ini.next_event(), HandshakeComplete)


def _handshakes_in_memory_per_s(identity: SigningKey, seconds: float) -> float:
    node_key = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
    _handshake_in_memory(identity, node_key)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        _handshake_in_memory(identity, node_key)
        count += 1
    return count / elapsed


def _lift_admission_caps(config: Path, n: int) -> None:
    """This suite measures what a held connection costs, not the admission policy: its N
    connections come from one address, have no account and open as fast as they can, which the
    default caps of node.toml (8 without an account per address, 20 handshakes a second per
    address, ...) refuse on purpose (tests/e2e/attacks/ measure those). The node is told to let
    them in and keep them."""
    room = n + 1_000
    with config.open("a", encoding="utf-8") as f:
        f.write(
            "\n# bench/conn_bench.py: one client address holds every connection\n"
            f"[connections]\nmax_connections = {room}\nmax_per_address = {room}\nmax_pending = {room}\n"
            f"max_pending_per_address = {room}\nmax_unregistered = {room}\nmax_unregistered_per_address = {room}\n"
            "unregistered_timeout_s = 3600.0\nhandshake_timeout_s = 120.0\n"
            f"[handshake]\nmax_in_progress = {room}\nload_per_second = 100000\n"
            "per_address_per_second = 100000\nper_address_burst = 1000000\n"
        )


def measure(quick: bool, budget_s: float | None = None) -> dict[str, float | int]:
    """``budget_s``: the opening deadline of each side instead of the default (8 s / 100 s)."""
    n = 200 if quick else 10_000
    budget = budget_s if budget_s is not None else 8.0 if quick else 100.0
    nofile = _raise_nofile()
    n = min(n, max(0, (nofile - 100)))
    out: dict[str, float | int] = {}
    with tempfile.TemporaryDirectory(prefix="sonet-bench-conns-") as tmp_dir:
        tmp = Path(tmp_dir)
        data = tmp / "node"
        init = subprocess.run(
            [str(BIN / "sonet-node"), "init", "--data", str(data), "--name", "localhost", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
        m = re.search(r"^fingerprint: (\S+)$", init.stdout, re.M)
        if init.returncode != 0 or not m:
            raise RuntimeError(f"sonet-node init failed: {init.stdout}{init.stderr}")
        fingerprint = m.group(1)
        identity = SigningKey.generate(CryptoMode.HYBRID, os.urandom)

        _lift_admission_caps(data / "node.toml", n)
        node, url = _spawn([str(BIN / "sonet-node"), "run", "--data", str(data)], tmp / "node.stderr", _LISTENING)
        try:
            # made before the clock starts: key generation is not part of opening a connection
            identities = [SigningKey.generate(CryptoMode.HYBRID, os.urandom) for _ in range(n + 1)]
            r = trio.run(_hold, url, n, budget, node.pid, identities, fingerprint)
        finally:
            _kill(node)
        out["connections_held"] = r["held"]
        out["connections_refused"] = r["refused"]
        out["rss_bytes_per_connection"] = r["per_conn"]
        out["handshakes_per_s"] = r["rate"]
        out["node_rss_before_bytes"] = r["before"]
        out["node_rss_after_bytes"] = r["after"]

        target = max(1, r["held"])
        bare, bare_url = _spawn(
            [sys.executable, "-c", _BARE_SERVER, str(target + 1_000)], tmp / "bare.stderr", re.compile(r"listening on (ws://\S+)")
        )
        try:
            c = trio.run(_hold, bare_url, target, budget, bare.pid, None, None)
        finally:
            _kill(bare)
        out["connections_held_ceiling"] = c["held"]
        out["connections_refused_ceiling"] = c["refused"]
        out["rss_bytes_per_connection_ceiling"] = c["per_conn"]
        out["bare_ws_opens_per_s"] = c["rate"]
    out["handshakes_per_s_ceiling"] = _handshakes_in_memory_per_s(identity, 1.0 if quick else 3.0)
    return out


if __name__ == "__main__":
    import json

    budget = next((float(arg.split("=", 1)[1]) for arg in sys.argv if arg.startswith("--budget=")), None)
    print(json.dumps(measure("--full" not in sys.argv, budget), indent=2))
