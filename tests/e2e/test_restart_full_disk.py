"""A real node killed while its disk is full starts again on the still-full disk, and writes
its run.json once there is room (tests/node/test_restart_full_disk.py has the in-process
cases). Measured before: the restart failed with ``cannot listen on 127.0.0.1:PORT`` (the
real cause, ENOSPC writing run.json, was reported as a port problem). Needs a tmpfs: skipped
where this process may not mount one.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sonet.node.app import RUNTIME_FILE

from .conftest import NODE_TIMEOUT_S, Processes, node_here, ok, start_pinned_node
from .faults import _mount_tmpfs, fill_disk


@pytest.fixture
def disk(tmp_path: Path, procs: Processes) -> Iterator[Path]:
    path = tmp_path / "disk"
    path.mkdir()
    if not _mount_tmpfs(path):
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        procs.cleanup()  # the nodes on it first: a mounted file system in use cannot go
        subprocess.run(["umount", str(path)], check=True, timeout=30)


def test_a_node_killed_on_a_full_disk_restarts_before_there_is_room_again(procs: Processes, disk: Path) -> None:
    data = disk / "node"
    node = start_pinned_node(procs, data)
    filled = fill_disk(disk / "fill")
    node.kill()  # SIGKILL on a full disk: run.json, the WAL and its index stay behind
    assert (data / RUNTIME_FILE).exists()

    again = procs.start_node(data)  # fails the test if it prints no "listening on" line
    assert again.url == node.url and again.alive()
    stderr = again.stderr()
    assert "cannot write run.json: No space left on device" in stderr and "cannot listen" not in stderr
    print(f"\nfilled {filled >> 20} MiB; restarted on the full disk: {again.url}")

    (disk / "fill").unlink()  # room again: the node writes its run.json and status finds it
    deadline = time.monotonic() + NODE_TIMEOUT_S  # a hang guard, not a performance bound
    while not (data / RUNTIME_FILE).exists():
        assert time.monotonic() < deadline, "run.json was never written"
        time.sleep(0.1)
    assert json.loads((data / RUNTIME_FILE).read_text())["pid"] == again.pid
    status = ok(node_here("status", "--data", data, "--json")).out
    assert again.url in status
