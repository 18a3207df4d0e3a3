"""``make run NAME=... LISTEN=...`` on a data dir that is already initialised says, in one line,
that they are not applied (instead of silently running the node as it was). A stand-in
``sonet-node`` records what make runs, so no node starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

REPO = Path(__file__).resolve().parents[2]


def make_run(tmp_path: Path, data: Path, *assignments: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        (bin_dir / "python").symlink_to(sys.executable)
        script = bin_dir / "sonet-node"
        script.write_text('#!/bin/sh\necho "sonet-node $*"\n')
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("NAME", "LISTEN", "DATA", "MAKEFLAGS")}
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), "-o", ".venv/.installed-run", "run", f"DATA={data}", f"BIN={bin_dir}", *assignments],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
    )


def initialised(data: Path) -> Path:
    data.mkdir()
    (data / "node.toml").write_text('name = "alpha.example"\nlisten = "127.0.0.1:7480"\n')
    return data


@pytest.mark.parametrize("assignments", [("NAME=beta.example",), ("LISTEN=127.0.0.1:9999",), ("NAME=beta.example", "LISTEN=0.0.0.0:1")])
def test_name_or_listen_for_an_initialised_dir_is_reported(tmp_path: Path, assignments: tuple[str, ...]) -> None:
    data = initialised(tmp_path / "node")
    done = make_run(tmp_path, data, *assignments)
    assert done.returncode == 0, done
    assert done.stderr == (
        f"{data} is already initialised as alpha.example on 127.0.0.1:7480; NAME=/LISTEN= only apply to a new data dir"
        f" — edit {data}/node.toml or `make clean`\n"
    )
    assert done.stdout == f"sonet-node run --data {data}\n"  # no init: the node is not re-created


@pytest.mark.parametrize("assignments", [(), ("NAME=alpha.example",), ("NAME=alpha.example", "LISTEN=127.0.0.1:7480")])
def test_no_message_when_nothing_would_change(tmp_path: Path, assignments: tuple[str, ...]) -> None:
    data = initialised(tmp_path / "node")
    done = make_run(tmp_path, data, *assignments)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", f"sonet-node run --data {data}\n")


def test_a_new_data_dir_is_initialised_with_them(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    done = make_run(tmp_path, data, "NAME=beta.example", "LISTEN=127.0.0.1:9999")
    assert (done.returncode, done.stderr) == (0, ""), done
    assert done.stdout.splitlines() == [
        f"sonet-node init --data {data} --name beta.example --listen 127.0.0.1:9999",
        f"sonet-node run --data {data}",
    ]
