"""Attack: issue 13's first acceptance criterion, every connection-level attack at once against
ONE real node. An attacker process (combined_flood.py) keeps 2,000 sockets that send a WebSocket
upgrade and then nothing, 200 unauthenticated connections that each send most of a 4 MiB frame
and stop, and 16 workers replaying a recorded first handshake message, reopening whatever the
node closes, for ~10 s and until the device below has done two rounds under it (on a loaded
machine a round can take longer). Meanwhile, every 2 s, a legitimate device registers a new
account and exchanges a message with bob (the new user writes, bob receives), each through new
connections.

Run twice: with the attacker on 127.0.0.2 (another address than the device's) and on 127.0.0.1,
the device's OWN address, where the node cannot tell the two apart: there the device gets in
because a full pending table evicts a pending connection instead of refusing the newcomer,
silent ones first and never one whose handshake began (transport/admission.py); the silent ones
evicted wait in the node's tarpit instead of reconnecting at once (transport/server.py), and
replays are refused after a hash lookup (core/handshake_guard.py).

Asserts: every round completes (within ROUND_GUARD_S, a hang guard for a shared 2-core machine,
not a performance threshold: the real times are printed, with the same rounds without the
attack for comparison). A device command whose dial waited out its deadline
(limits.HANDSHAKE_DEADLINE_S, 10 s: nothing was sent) is run again, as its user would, and
counted: on a loaded machine the node gets a fraction of a core (12-47% measured under the load
of a full run), serves the flood's connections in arrival order (the kernel's accept queue) at
~1.2 ms of CPU each, and a device's connection can wait behind hundreds of them; that wait is
the machine's, not a lock-out (accepting the whole queue at once instead made the same-address
flood evict the device's connection; a deeper queue, a longer wait). The node's RSS (sampled
every 0.1 s from /proc/<pid>/status) stays under 300 MB, the attack really ran at its sizes (sockets open at once on the attacker's side, replays
answered ``replayed`` and none given any public-key work), the node's log holds no traceback. Prints the
figures: round times, RSS, the node's CPU, the node's summary counts of refused and cut
connections (evicted, tarpitted).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ..conftest import Processes, Result, here, ok, read_texts, register, setup_pair
from .test_connections import Sampler, open_fds, rss_mb
from .test_handshake_flood import cpu_ms, recorded_hello1

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
STALLED = 2000
PARTIAL = 200
WORKERS = 16
#: the attack lasts at least this long, and until the device has done ROUNDS_UNDER_ATTACK rounds
ATTACK_SECONDS = 10.0
ROUNDS_UNDER_ATTACK = 2
#: a device round starts this often while the attack runs
ROUND_EVERY_S = 2.0
MAX_RSS_MB = 300
#: hang guards (never performance thresholds): one device round (its dials retried within it),
#: the attack (it ends by itself after this long), the attacker's exit once told to stop
ROUND_GUARD_S = 120.0
ATTACK_MAX_S = 300.0
ATTACK_GUARD_S = 120.0
_SUMMARY = re.compile(r"refused or cut connections in the last [\d.]+ s: (.*?)(?: \(most from|$)")


def summary_totals(log: str) -> Counter[str]:
    """The node's summary lines about refused and cut connections, added up by event."""
    totals: Counter[str] = Counter()
    for line in log.splitlines():
        if m := _SUMMARY.search(line):
            for part in m.group(1).split(", "):
                event, _, n = part.rpartition(" ")
                totals[event] += int(n)
    return totals


#: what a device command says when its dial waited out limits.HANDSHAKE_DEADLINE_S
DIAL_TIMED_OUT = "did not complete the handshake in time"


class Patient:
    """``here``, but a command whose dial timed out (nothing was sent; a registration is then
    completed by the same command: client/pending_registration.py) runs again, as its user
    would, until the round's hang guard; ``retries`` counts them."""

    def __init__(self) -> None:
        self.retries = 0

    def __call__(self, program: str, *args: str | Path) -> Result:
        give_up = time.monotonic() + ROUND_GUARD_S
        while True:
            result = here(program, *args)
            if result.rc == 0 or DIAL_TIMED_OUT not in result.out + result.err or time.monotonic() > give_up:
                return result
            self.retries += 1


class AttackerFiles(Sampler):
    """Sampler of the node, plus the attacker's open files (its sockets) at each sample."""

    def __init__(self, node_pid: int, attacker_pid: int) -> None:
        self.attacker_pid, self.attacker_fds = attacker_pid, [0]
        super().__init__(node_pid)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.rss.append(rss_mb(self.pid))
            self.fds.append(open_fds(self.pid))
            try:
                self.attacker_fds.append(open_fds(self.attacker_pid))
            except FileNotFoundError:  # the attacker has exited
                pass


@pytest.mark.parametrize("source", ["127.0.0.2", "127.0.0.1"], ids=["attacker_elsewhere", "attacker_on_the_device_address"])
def test_every_connection_attack_at_once_locks_nobody_out(procs: Processes, tmp_path: Path, source: str) -> None:
    pair = setup_pair(procs, tmp_path)
    node = pair.node
    hello = recorded_hello1(node)
    rss_before = rss_mb(node.pid)
    rounds: list[tuple[float, float]] = []  # (register ms, exchange ms)
    quiet: list[tuple[float, float]] = []
    patient = Patient()

    def device_round() -> None:
        user = f"user{len(quiet) + len(rounds)}"
        start = time.monotonic()
        register(tmp_path / user, f"{user}@localhost", node, run=patient)
        registered = time.monotonic()
        text = f"{user} through every attack at once"
        ok(patient("sonet", "--home", tmp_path / user, "send", "bob@localhost", text))
        shown = [m["text"] for m in read_texts(ok(patient("sonet", "--home", pair.bob, "recv", "--json")).out)]
        assert text in shown, shown
        done = time.monotonic()
        rounds.append(((registered - start) * 1000, (done - registered) * 1000))

    for _ in range(2):  # the same rounds without the attack, for comparison
        device_round()
    quiet, rounds[:] = list(rounds), []
    cpu_before = cpu_ms(node.pid)
    attacker = procs.popen(
        [
            sys.executable, "-m", "tests.e2e.attacks.combined_flood", node.url, hello.hex(),
            str(STALLED), str(PARTIAL), str(WORKERS), str(ATTACK_MAX_S), source,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    sampler = AttackerFiles(node.pid, attacker.pid)
    attack_start = time.monotonic()
    time.sleep(2.0)  # the flood is on: every socket has been opened once
    while len(rounds) < ROUNDS_UNDER_ATTACK or time.monotonic() < attack_start + ATTACK_SECONDS:
        next_round = time.monotonic() + ROUND_EVERY_S
        device_round()
        time.sleep(max(0.0, next_round - time.monotonic()))
    under_attack = attacker.poll() is None  # every round ran while the attack did
    attacker.terminate()  # the attack ends; its figures come all the same
    out, err = attacker.communicate(timeout=ATTACK_GUARD_S)
    node_cpu_s = (cpu_ms(node.pid) - cpu_before) / 1000
    attack_s = time.monotonic() - attack_start
    sampler.stop()
    assert attacker.returncode == 0, err
    attack = json.loads(out)

    log = node.stderr()
    totals = summary_totals(log)
    answers = attack["replay_answers"]
    print(
        f"\ncombined attack from {source} for {attack['seconds']} s: {STALLED} stalled upgrades + {PARTIAL} partial 4 MiB frames + "
        f"{WORKERS} replay workers; {attack['connections']} connections ({attack['opened_in_first_second']} in the first second), "
        f"{attack['most_open_at_once']} sockets open at once (attacker's open files max {max(sampler.attacker_fds)}), "
        f"{attack['ends'].get('partial_frame_started', 0)} partial frames started ({attack['bytes_sent'] / 2**20:.0f} MiB sent), attacker CPU {attack['cpu_s']} s; flood ends {attack['ends']}; "
        f"{attack['replays']} replays, answers {answers}"
        f"\nnode: RSS {rss_before:.0f} MB before, max {max(sampler.rss):.0f} MB; open files max {max(sampler.fds)}; "
        f"CPU {node_cpu_s:.1f} s in {attack_s:.1f} s ({100 * node_cpu_s / attack_s:.0f}% of one core); "
        f"summary counts {dict(sorted(totals.items()))}"
        f"\ndevice: quiet rounds (register, send+recv) {[(round(r), round(x)) for r, x in quiet]} ms; under attack {len(rounds)} rounds, register ms {[round(r) for r, _ in rounds]}, "
        f"send+recv ms {[round(x) for _, x in rounds]}; round median {statistics.median(r + x for r, x in rounds):.0f} ms, "
        f"max {max(r + x for r, x in rounds):.0f} ms; dials that timed out and were retried {patient.retries}"
    )
    assert node.alive() and "Traceback" not in log, log[-3000:]
    assert max(r + x for r, x in rounds) < ROUND_GUARD_S * 1000, rounds
    assert under_attack and len(rounds) >= ROUNDS_UNDER_ATTACK, rounds
    assert max(sampler.rss) < MAX_RSS_MB, f"RSS reached {max(sampler.rss):.0f} MB"
    # the attack ran at its sizes: every stalled socket open at once (the partial ones too but
    # when the node, behind on a loaded machine, leaves some unanswered long enough that they
    # start again: printed), replays answered (refused). How many partial frames got started is
    # printed, not asserted: from the device's address the stalled sockets evict the partial
    # ones while these still wait for their answer (silent)
    assert attack["most_open_at_once"] >= STALLED, attack
    assert attack["replays"] >= WORKERS and answers.get("HandshakeError:replayed", 0) > 0, attack
    assert not {"Hello2", "Cookie"} & set(answers), answers  # no replay got any public-key work
