"""Two processes opening the same device home at once (here two threads, each with its own
connection and file descriptors: SQLite's locks and the home's lock work alike between them).
A new home is made once: one vault key, which both seal with, and one schema. An existing
state's open writes nothing, so it does not wait for (or block) a writer; an upgrade that
cannot get the write lock says so in one line."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sonet.client import state as state_module
from sonet.client.state import DeviceState, StateError
from sonet.client.vault import Vault


def at_once(n: int, fn: Callable[[int], object]) -> list[object]:
    """``fn(0)`` .. ``fn(n - 1)`` on n threads released together: what each returned or raised."""
    start = threading.Barrier(n)
    outcomes: list[object] = [None] * n

    def run(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - reported by the caller's assertion
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def open_and_seal(home: Path, i: int) -> str:
    """Open (or make) ``home``, seal a value with its vault: each opener's value must open later."""
    state = DeviceState(home)
    try:
        state.put(f"opener{i}", b"sealed by %d" % i)
    finally:
        state.close()
    return "ok"


def schema(home: Path) -> list[Any]:
    with closing(sqlite3.connect(home / "state.db")) as db:
        return db.execute("SELECT type, name FROM sqlite_master ORDER BY type, name").fetchall()


def test_two_making_the_same_new_home_at_once_share_one_vault_key_and_one_schema(tmp_path: Path) -> None:
    expected = schema(_made(tmp_path / "reference"))
    for round_ in range(10):  # (the window is a few ms wide: several rounds)
        home = tmp_path / f"home{round_}"
        assert at_once(3, lambda i: open_and_seal(home, i)) == ["ok"] * 3
        state = DeviceState(home, create=False)  # the key on disk opens what each of them sealed
        try:
            assert [state.get(f"opener{i}") for i in range(3)] == [b"sealed by %d" % i for i in range(3)]
        finally:
            state.close()
        assert schema(home) == expected
        assert not list(home.glob("*.tmp"))


def test_two_upgrading_the_same_state_at_once_both_open_it(tmp_path: Path) -> None:
    """A state.db of an earlier version (without later columns and indexes) opened by new
    versions at once (say the app and a `sonet` command after an update): the upgrade is one
    transaction that takes the write lock first; the others wait and find it done. (A
    deferred BEGIN read the columns first, then failed at once with "database is locked":
    its snapshot was stale once another upgrade had committed.)"""
    expected = schema(_made(tmp_path / "reference"))
    for round_ in range(10):
        home = _made(tmp_path / f"home{round_}")
        _as_before_the_history(home)
        assert at_once(3, lambda i: open_and_seal(home, i)) == ["ok"] * 3
        assert schema(home) == expected


def test_a_new_state_db_beside_a_made_vault_is_made_once(tmp_path: Path) -> None:
    """The vault was made but not state.db's schema (a process stopped in between): the
    home is still locked while it is made (a new file's switch to WAL fails at once while
    another connection makes it)."""
    expected = schema(_made(tmp_path / "reference"))
    for round_ in range(10):
        home = tmp_path / f"home{round_}"
        home.mkdir(mode=0o700)
        Vault.open(home, create=True)
        (home / "state.db").touch(mode=0o600)
        assert at_once(3, lambda i: open_and_seal(home, i)) == ["ok"] * 3
        assert schema(home) == expected


def test_opening_an_existing_state_writes_nothing_so_a_writer_does_not_hold_it_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _made(tmp_path / "home")
    _no_waiting(monkeypatch)
    with closing(sqlite3.connect(home / "state.db", isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        writer.execute("INSERT INTO kv (key, value) VALUES ('other', x'00')")
        state = DeviceState(home, create=False)  # would fail at once if it wanted the write lock
        state.close()
        writer.execute("COMMIT")


def test_an_upgrade_that_cannot_get_the_write_lock_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _made(tmp_path / "home")
    with closing(sqlite3.connect(home / "state.db", isolation_level=None)) as db:
        db.execute("DROP INDEX inbox_unread")  # as a version before that index left it
    _no_waiting(monkeypatch)
    with closing(sqlite3.connect(home / "state.db", isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        with pytest.raises(StateError) as refused:
            DeviceState(home, create=False)
        writer.execute("ROLLBACK")
    assert str(refused.value) == f"the device state {home / 'state.db'} is busy: another sonet process is writing it; try again"
    DeviceState(home, create=False).close()  # once the writer is done, the upgrade goes through
    assert ("index", "inbox_unread") in schema(home)


def test_the_schema_check_knows_every_table_and_index_the_schema_makes() -> None:
    statements = state_module._TABLES + state_module.HISTORY_INDEXES
    assert len(state_module._SCHEMA_NAMES) == len(re.findall(r"\bCREATE\b", statements)) > 30


def _as_before_the_history(home: Path) -> None:
    """``home``'s state.db as a version before the history left it: without the columns and
    indexes the history added (as tests/client/test_history.py's upgrade test makes it)."""
    with closing(sqlite3.connect(home / "state.db", isolation_level=None)) as db:
        for (index,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall():
            db.execute(f"DROP INDEX {index}")
        for table, column in (("sent", "body"), ("sent", "type"), ("inbox", "unread"), ("group_inbox", "unread"), ("group_sent", "body"), ("group_sent", "type")):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


def _made(home: Path) -> Path:
    DeviceState(home).close()
    return home


def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state's connections give up at once on a lock (not after the 5 s busy timeout)."""
    connect = sqlite3.connect
    monkeypatch.setattr(state_module.sqlite3, "connect", lambda *args, **kwargs: connect(*args, **{**kwargs, "timeout": 0}))
