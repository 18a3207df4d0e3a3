"""A backup taken while messages flow restores into a node that delivers every message
acknowledged before it (issue 18's acceptance), with real node processes: alice's device sends
in a loop (the client SDK in this process, tests/e2e/faults.py ``Sender``) while ``sonet-node
backup`` runs as its own process against the running node; the node is stopped, the backup
restored into a new data directory, a node started from it on the same address, and bob's
device receives there. A backup with one byte changed is refused in one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import trio

from .conftest import SONET_NODE, Processes, cli, node_here, ok, setup_pair, sonet_here
from .faults import Inbox, Sender

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

#: acknowledged sends wanted before the backup starts, and after it ended
BEFORE, AFTER = 5, 3
#: hang guards (never performance thresholds)
FLOW_GUARD_S = 120.0


def back_up_while_sending(data: Path, sender: Sender, backup: Path) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    """`sonet-node backup --json` of the running node at ``data``, as a process of its own,
    started once BEFORE sends were acknowledged and with AFTER more acknowledged once it ended:
    (the finished backup command, the ids acknowledged before it started)."""
    acknowledged_before: set[str] = set()
    backup_run: list[subprocess.CompletedProcess[bytes]] = []

    async def flow_and_back_up() -> None:
        stop = False
        with trio.fail_after(FLOW_GUARD_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender.run, lambda: stop)
                while len(sender.acked) < BEFORE:
                    await trio.sleep(0.01)
                acknowledged_before.update(sender.acked)
                done = await trio.run_process(
                    [SONET_NODE, "backup", "--data", str(data), str(backup), "--json"],
                    capture_stdout=True, capture_stderr=True, check=False,
                )  # fmt: skip
                backup_run.append(done)
                after = len(sender.acked)
                print(f"acknowledged before the backup: {len(acknowledged_before)}, when it ended: {after}, sent: {sender.sent}")
                while len(sender.acked) < after + AFTER:
                    await trio.sleep(0.01)
                stop = True

    trio.run(flow_and_back_up)
    [done] = backup_run
    return done, acknowledged_before


def test_backup_while_messages_flow_restores_every_acknowledged_message(procs: Processes, tmp_path: Path) -> None:
    pair = setup_pair(procs, tmp_path)
    # bob writes first: alice is his contact, so her load is not capped as message requests
    ok(sonet_here(pair.bob, "send", "alice@localhost", "hello alice"))
    ok(sonet_here(pair.alice, "recv"))
    backup = tmp_path / "backup"
    sender = Sender(pair.alice, "bob@localhost", "flow")
    done, acknowledged_before = back_up_while_sending(pair.node.data, sender, backup)
    assert done.returncode == 0 and done.stderr == b"", done
    [made] = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert made["store"] == "sqlite" and made["node"] == "localhost"
    assert sender.crashes == [], sender.crashes
    assert pair.node.alive()  # the node served throughout

    assert pair.node.terminate() == 0
    restored = tmp_path / "restored"
    ok(node_here("restore", "--data", restored, backup))
    node = procs.start_node(restored)  # node.toml pins the same port: bob's device finds it
    assert node.url == pair.node.url and node.fingerprint == pair.node.fingerprint

    inbox = Inbox(pair.bob)
    trio.run(inbox.receive, acknowledged_before)
    shown = inbox.texts("flow")
    assert acknowledged_before <= set(shown), sorted(acknowledged_before - set(shown))
    assert len(shown) == len(set(shown))  # nothing twice
    assert inbox.tracebacks == [], inbox.tracebacks


def test_a_backup_with_one_changed_byte_is_refused_in_one_line(procs: Processes, tmp_path: Path) -> None:
    pair = setup_pair(procs, tmp_path)
    ok(sonet_here(pair.alice, "send", "bob@localhost", "kept"))
    backup = tmp_path / "backup"
    ok(cli("sonet-node", "backup", "--data", pair.node.data, backup))
    db = backup / "node.db"
    raw = bytearray(db.read_bytes())
    raw[len(raw) // 3] ^= 0x40
    db.write_bytes(bytes(raw))
    result = cli("sonet-node", "restore", "--data", tmp_path / "restored", backup)
    assert result.rc == 1 and result.out == ""
    [line] = result.err.splitlines()
    assert line.startswith("sonet-node: error: ") and "node.db does not match its SHA-256" in line, line
    assert not (tmp_path / "restored").exists()
