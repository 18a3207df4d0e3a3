"""Attack: lock everyone out without any crypto (issue 13, items 1 and 2). A real node; an
attacker process (connection_flood.py) keeps 2,000 sockets that send a WebSocket upgrade and
then nothing, and 200 unauthenticated connections that each send most of a 4 MiB frame and
stop, all at once and from another loopback address than the legitimate device (ATTACKER_SOURCE),
reopening each one the node closes, for ~12 s. Meanwhile a legitimate device registers and alice and bob exchange
messages, round after round, each through new connections.

Measured before: after the 10 s handshake deadline the node waited for ever for each peer's
close reply, so 1,009 such sockets made every legitimate connection time out and the node
logged an EMFILE traceback every 0.1 s; each unauthenticated connection could hold ~4 MiB (100:
47 -> 465 MB RSS). Now pending connections are capped and the oldest silent one is evicted, every
pre-auth phase has a deadline ending in a reset, a pre-auth message is at most a handshake
message, and refusals are one summary line per interval. The test asserts that every
legitimate command succeeds during the attack, that the node's RSS (sampled from
/proc/<pid>/status) stays under 300 MB, that its log holds no traceback and only summary lines
about the flood; it prints the figures.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..conftest import NodeProcess, Processes, here, ok, read_texts, register, setup_pair

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[3]
STALLED = 2000
PARTIAL = 200
ATTACK_SECONDS = 12.0
MAX_RSS_MB = 300
#: the attacker's source address. Another loopback address than the device's (127.0.0.1): the
#: per-address caps are what keeps a flood from locking others out. From the device's own
#: address the node cannot tell the two apart and getting in is partly luck (one run took 12 s
#: to register, another timed out): a known limit, docs/security.md.
ATTACKER_SOURCE = "127.0.0.2"
#: the node's pending connections per address (default [connections]), and what else it has open
PENDING_PER_ADDRESS = 64
MAX_CONNECTIONS = 4096
FD_ROOM = 100
#: hang guard for the attacker process (never a performance threshold)
ATTACK_GUARD_S = 120.0
#: the device's rounds under attack start at most this often: a user's pace, not a tight loop.
#: Each round's commands open a connection each, and the node lets an address make 20
#: handshakes a second after a burst of 100 ([handshake] per_address_*): back to back, on a
#: fast machine, the rounds went past that and a command was refused rate_limited
ROUND_PERIOD_S = 0.5


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


class Sampler:
    """The node's RSS and open files, sampled every 0.1 s in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.rss, self.fds = pid, [rss_mb(pid)], [open_fds(pid)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.rss.append(rss_mb(self.pid))
            self.fds.append(open_fds(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def timed(action: Callable[[], object]) -> float:
    start = time.monotonic()
    action()
    return (time.monotonic() - start) * 1000


def test_a_connection_flood_locks_nobody_out_and_holds_no_memory(procs: Processes, tmp_path: Path) -> None:
    pair = setup_pair(procs, tmp_path)
    node: NodeProcess = pair.node
    rounds = 0

    def exchange() -> None:
        nonlocal rounds
        rounds += 1
        text = f"through the connection flood #{rounds}"
        ok(here("sonet", "--home", pair.alice, "send", "bob@localhost", text))
        shown = [m["text"] for m in read_texts(ok(here("sonet", "--home", pair.bob, "recv", "--json")).out)]
        assert text in shown, shown

    # bob writes first: alice then holds bob's access token, her texts are not message requests
    ok(here("sonet", "--home", pair.bob, "send", "alice@localhost", "hello alice"))
    ok(here("sonet", "--home", pair.alice, "recv"))
    quiet = [timed(exchange) for _ in range(2)]
    rss_before = rss_mb(node.pid)
    sampler = Sampler(node.pid)
    flood = procs.popen(
        [sys.executable, "-m", "tests.e2e.attacks.connection_flood", node.url, str(STALLED), str(PARTIAL), str(ATTACK_SECONDS), ATTACKER_SOURCE],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # the flood is on: every socket has been opened once
    registered = [timed(lambda: register(tmp_path / "carol", "carol@localhost", node))]
    under_attack = []
    while flood.poll() is None:
        started = time.monotonic()
        under_attack.append(timed(exchange))
        if len(under_attack) % 4 == 0 and flood.poll() is None:
            user = f"user{len(registered)}"
            registered.append(timed(lambda: register(tmp_path / user, f"{user}@localhost", node)))
        time.sleep(max(0.0, ROUND_PERIOD_S - (time.monotonic() - started)))
    out, err = flood.communicate(timeout=ATTACK_GUARD_S)
    sampler.stop()
    assert flood.returncode == 0, err
    attack = json.loads(out)
    after = [timed(exchange) for _ in range(2)]

    log = node.stderr()
    flood_lines = [line for line in log.splitlines() if "refused or cut connections" in line]
    print(
        f"\nconnection flood: {STALLED} stalled upgrades + {PARTIAL} partial 4 MiB frames from {ATTACKER_SOURCE} for {attack['seconds']} s: "
        f"{attack['connections']} connections ({attack['opened_in_first_second']} in the first second, "
        f"{attack['most_open_at_once']} open at once on the attacker's side), {attack['bytes_sent'] / 2**20:.0f} MiB sent; "
        f"how the node ended them: {attack['ends']}"
        f"\nnode: RSS {rss_before:.0f} MB before, max {max(sampler.rss):.0f} MB during the flood; "
        f"open files max {max(sampler.fds)}; {len(flood_lines)} summary log lines, e.g. {flood_lines[-1] if flood_lines else '-'}"
        f"\ndevice: registrations under attack {[round(ms) for ms in registered]} ms; send+recv round median "
        f"{statistics.median(quiet):.0f} ms quiet, median {statistics.median(under_attack):.0f} ms / max "
        f"{max(under_attack):.0f} ms under attack ({len(under_attack)} rounds: {[round(ms) for ms in under_attack]}), "
        f"median {statistics.median(after):.0f} ms after"
    )
    assert node.alive()
    assert under_attack, "the device exchanged messages during the flood"
    assert max(sampler.rss) < MAX_RSS_MB, f"RSS reached {max(sampler.rss):.0f} MB"
    assert "Traceback" not in log and "EMFILE" not in log.replace("accept_failed_EMFILE", ""), log[-3000:]
    # the node held no more than its caps while thousands of sockets knocked: its pending
    # connections within PENDING_PER_ADDRESS, the silent ones it evicted in its tarpit (an open
    # file each, nothing more, 60 s at most) within its connection cap
    assert attack["most_open_at_once"] > STALLED and max(sampler.fds) < MAX_CONNECTIONS + FD_ROOM, max(sampler.fds)
    # one summary line per interval, not one per connection
    assert len(flood_lines) <= attack["seconds"] / 10 + 2, flood_lines
