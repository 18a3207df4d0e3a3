"""Two processes opening a new SQLite store at once (here two threads, each with its own
connection, as two processes have): both open it, none is told "database is locked". Turning
WAL on answered that at once to one of the two in about 4% of such pairs (11 of 300), SQLite's
busy timeout not waiting there (sqlite.py ``_wal`` tries again)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sonet.node.store.migrations import LATEST_VERSION
from sonet.node.store.sqlite import _connect

PAIRS = 150


@pytest.mark.slow  # 150 new stores (~4 CPU-s): make test runs it, make check does not
def test_two_connections_opening_a_new_file_at_once_both_open_it(tmp_path: Path) -> None:
    failures: list[str] = []
    opened: list[tuple[str, int]] = []
    for n in range(PAIRS):
        path = str(tmp_path / f"node{n}.db")
        start = threading.Barrier(2)

        def open_it() -> None:
            start.wait()
            try:
                conn = _connect(path)
            except Exception as exc:  # noqa: BLE001 - counted below
                failures.append(repr(exc))
                return
            try:
                opened.append((conn.execute("PRAGMA journal_mode").fetchone()[0], conn.execute("PRAGMA user_version").fetchone()[0]))
            finally:
                conn.close()

        threads = [threading.Thread(target=open_it) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert opened == [("wal", LATEST_VERSION)] * (2 * PAIRS)
