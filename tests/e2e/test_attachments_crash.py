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

from .conftest import SONET, Processes, ok, setup_pair, sonet_here

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

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
    assert send.returncode == 0, (out, err)
    sent = json.loads(out.splitlines()[-1])
    assert sent["sha256"] == hashlib.sha256(data).hexdigest()
    done = list(blobs.glob("*.blob"))
    assert [p.stem for p in done] == [part.stem]  # the same blob, completed from where it stopped
    assert not list(blobs.glob("*.part"))

    ok(sonet_here(pair.bob, "recv"))
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
    saved = Path(ok(sonet_here(pair.bob, "download", sent["id"], "--out", str(out_dir))).out.strip())
    assert saved == out_dir / "big.bin" and hashlib.sha256(saved.read_bytes()).hexdigest() == sent["sha256"]
    assert [p.name for p in out_dir.iterdir()] == ["big.bin"]

    node.terminate()
    files = {str(p): p.read_bytes() for p in pair.node.data.rglob("*") if p.is_file()}
    files["log"] = (pair.node.stderr() + node.stderr()).encode()
    for start in range(0, len(data) - 64, 256 * 1024):
        piece = data[start : start + 64]
        assert not any(piece in content for content in files.values()), start


def test_acceptance_100_mib_from_alpha_to_beta_with_a_kill_each_way(procs: Processes, tmp_path: Path) -> None:
    """Issue 17's acceptance: alice@alpha sends bob@beta 100 MiB of random bytes; alpha is
    SIGKILLed mid-upload and the upload resumes where it stopped; bob's download (beta fetches
    from alpha over the federation) is cut mid-way and resumes; the same SHA-256; no 64-byte slice
    of the file in either node's data directory or log."""
    from .conftest import register
    from .test_federation import peer, restart, start

    alpha, beta = start(procs, tmp_path, "alpha"), start(procs, tmp_path, "beta")
    peer(alpha, beta)
    peer(beta, alpha)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(alice, "alice@alpha", alpha)
    register(bob, "bob@beta", beta)
    data = os.urandom(100 * 1024 * 1024)
    path = tmp_path / "random.bin"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    send = procs.popen([SONET, "--home", str(alice), "send", "bob@beta", "--file", str(path), "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    blobs = alpha.data / "blobs"
    part = wait_for(lambda: next((p for p in blobs.glob("*.part") if p.stat().st_size >= 16 * 1024 * 1024), None), "16 MiB uploaded")
    stderr_before = alpha.stderr()
    alpha.kill()
    assert part.stat().st_size < len(data)
    alpha = restart(procs, alpha)
    out, err = send.communicate(timeout=GUARD_S)
    assert send.returncode == 0, err
    sent = json.loads(out.splitlines()[-1])
    assert sent["sha256"] == digest and [p.stem for p in blobs.glob("*.blob")] == [part.stem]

    deadline = time.monotonic() + GUARD_S
    while not any(o.get("id") == sent["id"] for o in map(json.loads, ok(sonet_here(bob, "recv", "--wait", "2", "--json")).out.splitlines())):
        assert time.monotonic() < deadline, "bob never got the file message"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    download = procs.popen([SONET, "--home", str(bob), "download", sent["id"], "--out", str(downloads)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    wait_for(lambda: next((p for p in downloads.glob(".*.sonet-download") if p.stat().st_size >= 8 * 1024 * 1024), None), "8 MiB downloaded")
    download.send_signal(signal.SIGKILL)
    download.wait(timeout=GUARD_S)
    saved = Path(ok(sonet_here(bob, "download", sent["id"], "--out", str(downloads))).out.strip())
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == digest

    for node in (alpha, beta):
        node.terminate()
    files = {str(p): p.read_bytes() for node in (alpha, beta) for p in node.data.rglob("*") if p.is_file()}
    files["logs"] = (stderr_before + alpha.stderr() + beta.stderr()).encode()
    for start_at in range(0, len(data) - 64, 1024 * 1024 + 4099):
        piece = data[start_at : start_at + 64]
        assert not any(piece in content for content in files.values()), start_at
