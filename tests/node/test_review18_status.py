"""Review of ``sonet-node status``: in text a peer's last error (its own words, from an
ErrorFrame it answered a push with) cannot drive the operator's terminal or add lines; a
``--watch`` says when the database is locked and goes on watching."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from sonet.node.cli import _federation_lines, main


def test_a_peers_error_message_is_one_safe_line() -> None:
    federation = {
        "outbox": 1,
        "peers": [
            {
                "name": "beta.example",
                "route": ["beta.example"],
                "link": "backing off",
                "queued": 1,
                "last_error": {"message": "beta.example did not take the items: no\n  gamma.example: route ok\x1b]0;owned\x07\x1b[2J", "code": "rate\u2028limited\x9b"},
            }
        ],
    }
    lines = _federation_lines(federation)
    assert len(lines) == 2
    line = lines[1]
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line and "\x9b" not in line and "\u2028" not in line
    assert "last error: beta.example did not take the items: no gamma.example: route ok" in line


def test_a_watch_goes_on_through_a_locked_database(tmp_path: Path) -> None:
    data = tmp_path / "node"
    assert main(["init", "--data", str(data), "--name", "alpha.example", "--listen", "127.0.0.1:0"]) == 0
    locker = sqlite3.connect(data / "node.db", isolation_level=None)
    locker.execute("PRAGMA journal_mode = DELETE")  # so that an exclusive lock keeps readers out
    locker.execute("BEGIN EXCLUSIVE")
    watch = subprocess.Popen(
        [sys.executable, "-m", "sonet.node.cli", "status", "--data", str(data), "--watch", "--interval", "0.2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert watch.stdout is not None
    error = json.loads(watch.stdout.readline())  # after the busy timeout: one line, and on
    locker.execute("ROLLBACK")
    locker.close()
    status = json.loads(watch.stdout.readline())
    watch.send_signal(signal.SIGINT)
    _rest, err = watch.communicate()
    assert error["error"]["code"] == "store_error" and "locked" in error["error"]["message"]
    assert status["name"] == "alpha.example"
    assert watch.returncode == 0, err
