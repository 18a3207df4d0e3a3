"""Attachments with real processes (issue 17 item 1): the node is SIGKILLed mid-upload and
restarted, and the same ``sonet send --file`` goes on from what the node had on disk (the same
blob: a restart from 0 would be refused); ``sonet download`` is SIGKILLed mid-way and the next
one resumes from its partial file; the file arrives with the same SHA-256; no 64-byte slice of
it is anywhere in the node's data directory or log."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import SONET, Processes, ok, setup_pair, sonet

pytestmark = pytest.mark.slow

SIZE = 48 * 1024 * 1024
#: hang guard while polling (never a performance threshold)
GUARD_S = 60.0


def wait_for(check, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def test_upload_survives_a_node_kill_and_download_resumes(procs: Processes, tmp_path: Path) -> None:
    pair = setup_pair(procs, tmp_path)
    data = os.urandom(SIZE)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    blobs = pair.node.data / "blobs"

    send = procs.popen([SONET, "--home", str(pair.alice), "send", "bob@localhost", "--file", str(path), "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    def part_under_way() -> Path | None:
        return next((p for p in blobs.glob("*.part") if p.stat().st_size >= 8 * 1024 * 1024), None)

    part = wait_for(part_under_way, "an upload 8 MiB under way")
    pair.node.kill()  # SIGKILL mid-upload
    held = part.stat().st_size
    assert 0 < held < len(data) + 16 * 1024
    node = procs.start_node(pair.node.data)  # the same port: the send dials it again by itself
    out, err = send.communicate(timeout=GUARD_S)
    assert send.returncode == 0, err
    sent = json.loads(out.splitlines()[-1])
    assert sent["sha256"] == hashlib.sha256(data).hexdigest()
    done = list(blobs.glob("*.blob"))
    assert [p.stem for p in done] == [part.stem]  # the same blob, completed from where it stopped
    assert not list(blobs.glob("*.part"))

    ok(sonet(pair.bob, "recv"))
    out_dir = tmp_path / "downloads"
    out_dir.mkdir()
    download = procs.popen([SONET, "--home", str(pair.bob), "download", sent["id"], "--out", str(out_dir)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    partial = wait_for(lambda: next((p for p in out_dir.glob(".*.sonet-download") if p.stat().st_size >= 4 * 1024 * 1024), None),
                       "a download 4 MiB under way")  # fmt: skip
    download.send_signal(signal.SIGKILL)
    download.wait(timeout=GUARD_S)
    had = partial.stat().st_size
    assert 0 < had and not (out_dir / "big.bin").exists()
    saved = Path(ok(sonet(pair.bob, "download", sent["id"], "--out", str(out_dir))).out.strip())
    assert saved == out_dir / "big.bin" and hashlib.sha256(saved.read_bytes()).hexdigest() == sent["sha256"]
    assert [p.name for p in out_dir.iterdir()] == ["big.bin"]

    node.terminate()
    files = {str(p): p.read_bytes() for p in pair.node.data.rglob("*") if p.is_file()}
    files["log"] = (pair.node.stderr() + node.stderr()).encode()
    for start in range(0, len(data) - 64, 256 * 1024):
        piece = data[start : start + 64]
        assert not any(piece in content for content in files.values()), start
