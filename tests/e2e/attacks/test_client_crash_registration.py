"""Attack (issue 13, item 5, the device's side): SIGKILL a real `sonet register` process 0-50 ms
after it starts sending its Register, then run `sonet register` again.

Before the fix a device saved its keys only once the node had answered: a process killed
between the node's commit and that save left an account with an invite spent and a name taken
for good, and no device holding its keys. Now the request and its keys are saved in state.db
before anything is sent (client/pending_registration.py), and the next `sonet register` sends
the same request with the same keys, which the node answers as the first.

"Starts sending" is when the process committed its pending registration (the row shows up in
its state.db; the next thing it does is connect and send). Kill ``i`` lands ``i*5`` to
``(i+1)*5`` ms after that (even tries) or after the node committed the device (odd tries: the
row shows up in the node's database), so the kills cover the connection and the request going
out as well as the node's answer on its way and being saved: connecting and the node's checks
take longer than 50 ms here, and a kill anchored at the start only would never reach the
commit. After each: the same `sonet register` again (in this process: the CLI's main)
completes it, or — when the kill came after the profile was saved — `sonet recv` finishes the
set-up; the account then has exactly one device, the one whose key the home holds, and it
receives a message from a contact and answers it. The killed process is `sonet` with 12
one-time prekeys of each kind instead of 60 (tests/few_prekeys.py): they are not counted here.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sonet.node.app import DB_FILE

from ..conftest import NODE_NAME, NodeProcess, Processes, ok, read_json_lines, read_texts, register, sonet_here, start_pinned_node

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[3]
#: `sonet` as a process of its own, with few one-time prekeys (they are not counted here)
SONET_FEW_PREKEYS = [sys.executable, "-m", "tests.few_prekeys"]
TRIES = 10
#: kill ``i`` lands STEP_S * (i + uniform(0, 1)) after its anchor: 0-50 ms over the ten
STEP_S = 0.005
#: hang guards only (never a performance threshold)
PENDING_GUARD_S = 60.0


class _Poll:
    """Whether a query finds a row in a database another process writes, asked again and again
    on one read-only connection (a new connection each time, every half millisecond, took much
    of a core from the process being watched). False while the file is not there or busy."""

    def __init__(self, path: Path, query: str, *params: str) -> None:
        self.path, self.query, self.params = path, query, params
        self.db: sqlite3.Connection | None = None

    def __call__(self) -> bool:
        try:
            if self.db is None:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=0.05)
            return self.db.execute(self.query, self.params).fetchone() is not None
        except sqlite3.Error:  # not created yet (its tables neither): open it again next time
            self.close()
            return False

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def _kv_has(home: Path, key: str) -> bool:
    """Whether the device state in ``home`` has the (sealed) value named ``key``; the names are
    not secret. False while state.db is not there or busy."""
    poll = _kv_poll(home, key)
    try:
        return poll()
    finally:
        poll.close()


def _kv_poll(home: Path, key: str) -> _Poll:
    return _Poll(home / "state.db", "SELECT 1 FROM kv WHERE key = ?", key)


def node_devices(node: NodeProcess, account: str) -> list[tuple[int, str]]:
    db = sqlite3.connect(f"file:{node.data / DB_FILE}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT device_id, fingerprint FROM devices WHERE account = ? ORDER BY device_id", (account,)).fetchall()
    finally:
        db.close()


def kill_while_registering(
    procs: Processes, home: Path, address: str, node: NodeProcess, invite: str, *, after: str, delay: float
) -> tuple[str, float]:
    """Start `sonet register` and SIGKILL it ``delay`` s ``after`` it saved its pending
    registration ("pending") or after the node committed its device ("commit"); return where
    the kill landed and the measured delay."""
    argv = [*SONET_FEW_PREKEYS, "--home", str(home), "register", address, "--node", node.url, "--invite", invite]
    proc = procs.popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    guard = time.monotonic() + PENDING_GUARD_S
    if after == "pending":
        anchor = _kv_poll(home, "pending_registration")
    else:
        anchor = _Poll(node.data / DB_FILE, "SELECT 1 FROM devices WHERE account = ?", address)
    try:
        while not anchor():
            if proc.poll() is not None:
                break  # finished (or failed: the checks below say which) before the anchor was seen
            assert time.monotonic() < guard, f"no {after} showed up"
            time.sleep(0.0005)
    finally:
        anchor.close()
    anchored = time.monotonic()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    killed = time.monotonic() - anchored
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        assert proc.returncode == 0, f"`sonet register` exited {proc.returncode}"
        where = "finished before the kill"
    elif _kv_has(home, "address"):
        where = "after the profile was saved"
    elif node_devices(node, address):
        where = "after the node committed, before the device saved its answer"
    else:
        where = "before the node committed"
    return where, killed


def test_sigkill_during_register_then_register_again_completes_it(procs: Processes, tmp_path: Path) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    print(f"\nrandom seed {seed}")
    started = time.monotonic()
    node = start_pinned_node(procs, tmp_path / "node")
    contact, contact_address = tmp_path / "contact", f"contact@{NODE_NAME}"
    register(contact, contact_address, node)
    tally: dict[str, int] = {}
    delays: list[float] = []
    resumed = 0
    for i in range(TRIES):
        home, address = tmp_path / f"user{i}", f"user{i}@{NODE_NAME}"
        invite = node.invite()
        # even tries: 0-50 ms after the request was saved (connecting, sending); odd ones: 0-50 ms
        # after the node committed (the answer on its way, being saved, the set-up after it)
        after = "pending" if i % 2 == 0 else "commit"
        where, killed = kill_while_registering(procs, home, address, node, invite, after=after, delay=STEP_S * (i + rng.random()))
        tally[where] = tally.get(where, 0) + 1
        delays.append(killed * 1000)

        if _kv_has(home, "address"):  # saved already: register says so, and the next command finishes the set-up
            again = sonet_here(home, "register", address, "--node", node.url, "--invite", invite)
            assert again.rc == 1 and f"already holds {address}" in again.err, again
            ok(sonet_here(home, "recv"))
        else:  # the same command again: it completes the same registration
            again = ok(sonet_here(home, "register", address, "--node", node.url, "--invite", invite))
            assert again.out.startswith(f"registered {address} (device 1) on {node.url}"), again.out
            if where != "finished before the kill":
                assert f"sonet: completing an interrupted registration of {address} on {node.url}" in again.err, again.err
                resumed += 1
        assert not _kv_has(home, "pending_registration")

        # exactly one device, the one whose key this home holds
        [mine] = read_json_lines(ok(sonet_here(home, "devices", "--json")).out)
        assert mine["this_device"] and mine["id"] == 1, mine
        assert node_devices(node, address) == [(1, mine["fingerprint"])], f"try {i} ({where})"

        # and it is a working account: a contact writes, it reads and answers
        ok(sonet_here(contact, "send", address, f"hello user{i}"))
        assert [m["text"] for m in read_texts(ok(sonet_here(home, "recv", "--json")).out)] == [f"hello user{i}"]
        ok(sonet_here(home, "send", contact_address, f"hi from user{i}"))
        assert [m["text"] for m in read_texts(ok(sonet_here(contact, "recv", "--json")).out)] == [f"hi from user{i}"]

    # a used invite stays used: another home cannot take it over
    thief = sonet_here(tmp_path / "thief", "register", f"thief@{NODE_NAME}", "--node", node.url, "--invite", invite)
    assert thief.rc == 1 and "invite" in thief.err, thief

    print(f"{TRIES} SIGKILLs of `sonet register` 0-50 ms after it saved its request (even tries) or after the node "
          "committed it (odd tries): "
          + ", ".join(f"{count} {where}" for where, count in sorted(tally.items())))
    print(f"{resumed} completed by `sonet register` again (same keys), every account with exactly one device that works; "
          f"kill delays (ms): {', '.join(f'{d:.1f}' for d in delays)}; {time.monotonic() - started:.1f} s")
    assert node.alive() and "Traceback" not in node.stderr(), node.stderr()[-3000:]
