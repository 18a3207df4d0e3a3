"""Attack: one registered device floods envelopes of the largest size (256 KiB) at three real
nodes (issue 13, item 3): to a local account, through a relay towards a node that is down, and
towards a pinned peer that is down, for ``FLOOD_SECONDS`` each.

Measured before the stored-bytes budgets: the disk filled at 53-65 MB/s, 1.17 GB queued for a
down peer in 20 s, 971 MB relayed. Now every actor has a budget in node.toml ``[storage]``
(small ones here): the sending device, the outbox towards each destination, what a relay holds
for each origin. The test measures each node's data directory before and after each flood and
asserts it grew by no more than the budget that applies (plus the write-ahead log's slack), that
the flood met the refusal that budget gives, that two other users exchange messages throughout,
and that everything the nodes accepted is delivered once the down nodes are back. It prints the
figures.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import NodeProcess, Processes, here, init_node, node_here, ok, read_texts, register, set_listen

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[3]
MIB = 1 << 20
FLOOD_SECONDS = 4.0
#: bound on the flood's attempts (it stops by itself at whichever comes first)
MAX_ATTEMPTS = 4000
#: [storage] of every node here: the attacker's device may hold more than one outbox's budget,
#: so the outbox and relay budgets are what stops the remote floods (small enough to be reached
#: within the device's burst of remote lookups, node/client_limits.py, which a send towards a
#: node that is down spends)
DEVICE_BUDGET = 16 * MIB
OUTBOX_BUDGET = 4 * MIB
RELAY_BUDGET = 4 * MIB
STORAGE = (
    f"\n[storage]\ndevice_max_bytes = {DEVICE_BUDGET}\naccount_max_bytes = {2 * DEVICE_BUDGET}\n"
    f"outbox_max_bytes = {OUTBOX_BUDGET}\nrelay_origin_max_bytes = {RELAY_BUDGET}\n"
)
FEDERATION = "\n[federation]\nretry_max_s = 1.0\nrequest_timeout_s = 3.0\n"
#: what a data directory may grow by beyond the budgets: the write-ahead log (its file keeps the
#: size of the largest run between checkpoints, refused writes included)
WAL_SLACK = 16 * MIB
#: hang guards (never performance thresholds)
ATTACK_GUARD_S = 120.0
DRAIN_GUARD_S = 90.0


def start(procs: Processes, root: Path, name: str) -> NodeProcess:
    data = root / name
    init_node(data, name=name)
    with open(data / "node.toml", "a") as f:
        f.write(FEDERATION + STORAGE)
    node = procs.start_node(data)
    set_listen(data, f"127.0.0.1:{node.port}")  # a restart comes back on the same URL
    return node


def pin(node: NodeProcess, other: NodeProcess, *, via: str | None = None) -> None:
    args = ["peer", "add", "--data", node.data, "--name", other.name, "--url", other.url, "--fingerprint", other.fingerprint]
    ok(node_here(*args, *(["--via", via] if via else [])))


def disk_used(node: NodeProcess) -> int:
    """Bytes the files of the node's data directory take."""
    return sum(os.stat(Path(d) / f).st_size for d, _, files in os.walk(node.data) for f in files)


def mailbox_count(node: NodeProcess, account: str) -> int:
    with sqlite3.connect(f"file:{node.data / 'node.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM mailbox WHERE account = ?", (account,)).fetchone()[0]


FLOODER = [sys.executable, "-m", "tests.e2e.attacks.disk_fill_flood"]


def victim(procs: Processes, node: NodeProcess, address: str) -> str:
    """Register ``address`` (an account the attacker controls); its access token (hex)."""
    proc = procs.popen([*FLOODER, "victim", node.url, node.fingerprint, node.invite(), address], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return outcome(proc)["token"]


def witnessed(node: NodeProcess, other: NodeProcess) -> int:
    """The size of ``other``'s directory ``node`` has cosigned (0: none yet)."""
    with sqlite3.connect(f"file:{node.data / 'node.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT size FROM witnessed WHERE node = ?", (other.name,)).fetchone()
    return 0 if row is None else row[0]


def leaves(node: NodeProcess) -> int:
    with sqlite3.connect(f"file:{node.data / 'node.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM directory_leaves").fetchone()[0]


def flood(
    procs: Processes, node: NodeProcess, attacker: str, to: str, token: str, *, seconds: float = FLOOD_SECONDS, attempts: int = MAX_ATTEMPTS
) -> subprocess.Popen[str]:
    args = [*FLOODER, "flood", node.url, node.fingerprint, node.invite(), attacker, to, token, str(seconds), str(attempts)]
    return procs.popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def outcome(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=ATTACK_GUARD_S)
    assert proc.returncode == 0, err
    return json.loads(out)


class Users:
    """alice and dave (alpha) write to each other, and alice and bob (beta) while beta is up:
    every round each sends and the other receives, through new connections."""

    def __init__(self, tmp: Path) -> None:
        self.homes = {name: tmp / name for name in ("alice", "dave", "bob")}
        self.rounds = 0

    def exchange(self, sender: str, recipient: str, address: str) -> None:
        text = f"{sender} to {recipient} through the flood #{self.rounds}"
        ok(here("sonet", "--home", self.homes[sender], "send", address, text))
        deadline = time.monotonic() + DRAIN_GUARD_S
        while time.monotonic() < deadline:
            shown = [m["text"] for m in read_texts(ok(here("sonet", "--home", self.homes[recipient], "recv", "--json")).out)]
            if text in shown:
                return
        raise AssertionError(f"{recipient} never received {text!r}")

    def round(self, *, beta_up: bool) -> None:
        self.rounds += 1
        self.exchange("alice", "dave", "dave@alpha")
        self.exchange("dave", "alice", "alice@alpha")
        if beta_up:  # (both ways: alice is bob's contact, not a message request)
            self.exchange("alice", "bob", "bob@beta")
            self.exchange("bob", "alice", "alice@alpha")


def during(proc: subprocess.Popen[str], users: Users, *, beta_up: bool) -> int:
    rounds = 0
    while proc.poll() is None:
        users.round(beta_up=beta_up)
        rounds += 1
    return rounds


class Figures(list[str]):
    """What each phase measured, printed as it comes (and shown by a failing assertion)."""

    def append(self, line: str) -> None:
        print(f"\ndisk fill, {line}", flush=True)
        super().append(line)


def wait_for(check, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + DRAIN_GUARD_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def test_one_device_cannot_fill_the_disks_and_users_keep_talking(procs: Processes, tmp_path: Path) -> None:
    alpha, beta, gamma = (start(procs, tmp_path, name) for name in ("alpha", "beta", "gamma"))
    pin(alpha, beta)
    pin(beta, alpha)
    pin(beta, gamma)
    pin(gamma, beta)
    pin(alpha, gamma, via="beta")
    pin(gamma, alpha, via="beta")
    users = Users(tmp_path)
    # The recipients of the floods, and what the attacker knows of them: their access tokens
    # (it writes as a contact).
    tokens = {address: victim(procs, node, address) for address, node in (("victim@beta", beta), ("victim@gamma", gamma))}
    register(users.homes["bob"], "bob@beta", beta)
    # beta's and gamma's directories now hold every account of this test. alpha witnesses its
    # peers' directories when it starts, then once a minute (gamma, not a direct peer, gossips
    # nothing to it): restarted now, it has their final heads at once instead of a minute on.
    assert alpha.terminate() == 0
    alpha = procs.start_node(alpha.data)
    tokens["victim@alpha"] = victim(procs, alpha, "victim@alpha")
    register(users.homes["alice"], "alice@alpha", alpha)
    register(users.homes["dave"], "dave@alpha", alpha)
    users.round(beta_up=True)  # sessions exist
    figures = Figures()

    # 1. To a local account: the sending device's budget.
    before = disk_used(alpha)
    proc = flood(procs, alpha, "mallory@alpha", "victim@alpha", tokens["victim@alpha"])
    rounds = during(proc, users, beta_up=True)
    local = outcome(proc)
    grown = disk_used(alpha) - before
    figures.append(f"local: {local}, alpha grew {grown / MIB:.1f} MiB (budget {DEVICE_BUDGET / MIB:.0f} MiB), {rounds} user rounds")
    assert local["refused"].get("sender_full", 0) > 0, figures
    assert local["accepted_bytes"] <= DEVICE_BUDGET
    assert grown <= DEVICE_BUDGET + WAL_SLACK, figures[-1]

    # One envelope to each remote victim while all nodes are up, once alpha witnessed their
    # nodes' directories with the victims in them (a newer head makes alpha forget the device
    # lists it cached): alpha has their device lists when their nodes go down.
    for node in (beta, gamma):
        wait_for(lambda node=node: witnessed(alpha, node) == leaves(node), f"alpha witnessed {node.name}'s directory")
    for address in ("victim@beta", "victim@gamma"):
        warm = outcome(flood(procs, alpha, f"warm{address[7]}@alpha", address, tokens[address], attempts=1))
        assert warm["accepted"] == 1, warm

    # 2. Through the relay beta towards gamma, which is down: the relay's budget for alpha,
    #    then alpha's outbox towards gamma.
    gamma.terminate()
    before_alpha, before_beta = disk_used(alpha), disk_used(beta)
    proc = flood(procs, alpha, "mallory2@alpha", "victim@gamma", tokens["victim@gamma"])
    rounds = during(proc, users, beta_up=True)
    relayed = outcome(proc)
    grown_alpha, grown_beta = disk_used(alpha) - before_alpha, disk_used(beta) - before_beta
    figures.append(
        f"relay: {relayed}, beta grew {grown_beta / MIB:.1f} MiB (relay budget {RELAY_BUDGET / MIB:.0f} MiB), "
        f"alpha {grown_alpha / MIB:.1f} MiB (outbox budget {OUTBOX_BUDGET / MIB:.0f} MiB), {rounds} user rounds"
    )
    assert relayed["refused"].get("outbox_full", 0) > 0, figures
    assert relayed["accepted_bytes"] <= RELAY_BUDGET + OUTBOX_BUDGET
    assert grown_beta <= RELAY_BUDGET + WAL_SLACK, figures[-1]
    assert grown_alpha <= OUTBOX_BUDGET + WAL_SLACK, figures[-1]

    # 3. Towards the pinned peer beta, which is down: alpha's outbox towards beta.
    beta.terminate()
    before = disk_used(alpha)
    proc = flood(procs, alpha, "mallory3@alpha", "victim@beta", tokens["victim@beta"])
    rounds = during(proc, users, beta_up=False)
    down = outcome(proc)
    grown = disk_used(alpha) - before
    figures.append(f"down peer: {down}, alpha grew {grown / MIB:.1f} MiB (outbox budget {OUTBOX_BUDGET / MIB:.0f} MiB), {rounds} user rounds")
    assert down["refused"].get("outbox_full", 0) > 0, figures
    assert down["accepted_bytes"] <= OUTBOX_BUDGET
    assert grown <= OUTBOX_BUDGET + WAL_SLACK, figures[-1]

    # Nothing accepted is lost: with beta and gamma back, every accepted envelope arrives.
    beta, gamma = procs.start_node(beta.data), procs.start_node(gamma.data)
    at_beta, at_gamma = 1 + down["accepted"], 1 + relayed["accepted"]  # with the warm-up's
    wait_for(lambda: mailbox_count(beta, "victim@beta") == at_beta, f"the {at_beta} envelopes accepted for victim@beta arrived")
    wait_for(lambda: mailbox_count(gamma, "victim@gamma") == at_gamma, f"the {at_gamma} envelopes accepted for victim@gamma arrived")
    users.round(beta_up=True)
    for node in (alpha, beta, gamma):
        assert node.alive() and "Traceback" not in node.stderr(), node.stderr()[-3000:]
