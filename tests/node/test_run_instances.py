"""``sonet-node run --listen``: several processes on one data directory only with PostgreSQL,
each on its own address (docs/operations.md "Several processes, one node"); the lock and
runtime files of each process (node/data_dir.py instance_files)."""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

import pytest

from sonet.node import cli
from sonet.node.data_dir import LOCK_FILE, instance_files

from .cli_kit import error_line, init, run

#: a database URL nothing needs to answer: these runs are refused before anything connects
DATABASE = "postgresql://sonet@127.0.0.1:1/nowhere"


def test_one_lock_and_runtime_file_per_listen_address_only_with_a_shared_database() -> None:
    assert instance_files("127.0.0.1:7480", shared=False) == (None, "run.json")
    assert instance_files("127.0.0.1:7480", shared=True) == ("node-127.0.0.1_7480.lock", "run-127.0.0.1_7480.json")
    lock, runtime = instance_files("[::1]:7480", shared=True)
    assert lock == "node-___1__7480.lock" and runtime == "run-___1__7480.json"  # no path separators or colons
    assert instance_files("127.0.0.1:7481", shared=True) != instance_files("127.0.0.1:7480", shared=True)


def _hold(path: Path, mode: int) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, mode | fcntl.LOCK_NB)
    return fd


def test_sqlite_stays_one_process_whatever_its_listen_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = init(capsys, tmp_path / "node")
    fd = _hold(data / LOCK_FILE, fcntl.LOCK_EX)  # a running node
    try:
        line = error_line(run(capsys, "run", "--data", data, "--listen", "127.0.0.1:0"), "already running")
        assert "--listen" not in line  # another address would not help
    finally:
        os.close(fd)


def _on_postgresql(data: Path) -> None:
    path = data / "node.toml"
    text = path.read_text()
    if re.search(r"(?m)^\[storage\]$", text):
        text = re.sub(r"(?m)^\[storage\]$", f'[storage]\ndatabase = "{DATABASE}"', text, count=1)
    else:
        text += f'\n[storage]\ndatabase = "{DATABASE}"\n'
    path.write_text(text)


def test_postgresql_refuses_only_a_second_process_on_the_same_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = init(capsys, tmp_path / "node")
    _on_postgresql(data)
    started: list[tuple[str, str]] = []
    # what runs once the locks are held (tests/e2e/test_multiprocess.py runs real processes)
    monkeypatch.setattr(cli, "_run_locked", lambda data, config, *, as_json, runtime_file: started.append((config.listen, runtime_file)))
    shared = _hold(data / LOCK_FILE, fcntl.LOCK_SH)  # other processes of the node run
    own = _hold(data / "node-127.0.0.1_7480.lock", fcntl.LOCK_EX)  # one of them on 127.0.0.1:7480
    try:
        error_line(run(capsys, "run", "--data", data, "--listen", "127.0.0.1:7480"), "already running", "--listen 127.0.0.1:7480")
        assert started == []
        # another address gets past the locks, with a runtime file of its own
        assert run(capsys, "run", "--data", data, "--listen", "127.0.0.1:7481").code == 0
        assert started == [("127.0.0.1:7481", "run-127.0.0.1_7481.json")]
        # a restore (which takes node.lock exclusively) sees the node running
        with pytest.raises(BlockingIOError):
            _hold(data / LOCK_FILE, fcntl.LOCK_EX)
    finally:
        os.close(own)
        os.close(shared)


def test_a_bad_listen_address_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = init(capsys, tmp_path / "node")
    error_line(run(capsys, "run", "--data", data, "--listen", "nowhere"), "invalid listen address", code=2)
    error_line(run(capsys, "run", "--data", data, "--ops-listen", "127.0.0.1:99999"), "invalid listen address", code=2)
