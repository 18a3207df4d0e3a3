"""Several ``sonet-node run`` processes of one node (node/cluster.py) and what lives between
connections for a moment: a device linked while the new device waits on one process and the
approving device is on another (the slot is in the database, node/linking.py), and a typing
indicator arriving at one process reaching a device connected to another (node/cluster.py
passes ephemeral pushes on). Real processes on loopback, a throwaway PostgreSQL cluster."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .conftest import SONET, Processes, link_device, node_here, ok, read_texts, register, sonet_here
from .test_multiprocess import database  # noqa: F401 - the module's PostgreSQL database fixture

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]

#: hang guard while waiting for a condition (never a performance threshold)
POLL_GUARD_S = 120.0


def test_link_across_processes_and_typing_reaches_another_process(procs: Processes, tmp_path: Path, database: str) -> None:  # noqa: F811
    alpha_dir = tmp_path / "alpha"
    ok(node_here("init", "--data", alpha_dir, "--name", "alpha", "--listen", "127.0.0.1:0", "--database", database))
    alpha1 = procs.start_node_on_free_port(alpha_dir)
    alpha3 = procs.start_node_on_free_port(alpha_dir)
    alice, bob, bob2 = tmp_path / "alice", tmp_path / "bob", tmp_path / "bob2"
    register(alice, "alice@alpha", alpha1)
    register(bob, "bob@alpha", alpha3)

    # bob's new device waits on alpha#1; bob's first device approves on alpha#3
    link_device(procs, alpha1, bob2, bob, "bob@alpha", 2)
    ok(sonet_here(alice, "send", "bob@alpha", "hello both of bob's devices"))
    for home in (bob, bob2):
        got = [m["text"] for m in read_texts(ok(sonet_here(home, "recv", "--wait", "10", "--json")).out)]
        assert got == ["hello both of bob's devices"], (home, got)

    # alice (alpha#1) types to bob; bob's first device follows on alpha#3
    follow = procs.popen(
        [SONET, "--home", str(bob), "recv", "--follow", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=1
    )
    seen = threading.Event()

    def watch() -> None:
        for line in follow.stdout:  # type: ignore[union-attr]
            if json.loads(line).get("typing") == "started":
                seen.set()
                return

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.monotonic() + POLL_GUARD_S
    # a typing indicator is not kept: sent again until bob's connection is up and sees one
    while not seen.wait(1.0):
        assert time.monotonic() < deadline, "hang guard: bob never saw alice typing"
        assert follow.poll() is None, follow.stderr.read()  # type: ignore[union-attr]
        ok(sonet_here(alice, "typing", "bob@alpha"))
    follow.terminate()
    follow.wait()
    for node in (alpha1, alpha3):
        assert node.alive() and "Traceback" not in node.stderr(), node.stderr()
