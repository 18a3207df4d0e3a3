"""Relaxed writes (node/store/group_commit.py "Relaxed writes"): a group made only of writes that
acknowledge nothing to anyone (a device's ack, a settle of pushed items without reports) commits
without waiting for the disk; any other write in the group makes it durable; the connection is
durable again after it, whatever happened."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from sonet.node.store import SqliteStore
from sonet.node.store.base import QuotaExceeded
from sonet.node.store.group_commit import GroupCommit, _run_group

from .test_contract import BOB, NOW, ROOMY, env, mid, register
from .test_tail_capture import outbound

FULL, NORMAL = 2, 1


class Recording:
    """A connection that notes the ``synchronous`` setting in force at each COMMIT."""

    def __init__(self, conn: Any, seen: list[int]) -> None:
        self._conn, self._seen = conn, seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            self._seen.append(self._conn.execute("PRAGMA synchronous").fetchone()[0])
        return self._conn.execute(sql, *args)


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    opened = await SqliteStore.open(tmp_path / "node.db")
    try:
        await register(opened, BOB)
        yield opened
    finally:
        await opened.close()


def recorded(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = store._writes._call

    async def call(fn: Any, *args: Any) -> Any:
        if fn is _run_group:
            return await real(lambda conn, *rest: _run_group(Recording(conn, seen), *rest), *args)
        return await real(fn, *args)

    monkeypatch.setattr(store._writes, "_call", call)
    return seen


async def synchronous(store: SqliteStore) -> int:
    return int(await store._call(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]))


async def test_an_ack_and_a_settle_commit_without_waiting_for_the_disk(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = recorded(store, monkeypatch)
    await store.enqueue([env(1, to=BOB)], now=NOW, quota=ROOMY, outbound=[outbound(2, "beta.example")], sender=(BOB, 1))
    await store.ack(BOB, 1, [mid(1)], now=NOW)
    queued = await store.outbox("beta.example", limit=10, max_bytes=1 << 20, now=NOW)
    await store.outbox_done("beta.example", [queued[0].seq], now=NOW)
    assert seen == [FULL, NORMAL, NORMAL]  # the enqueue told a device "stored": durable
    assert await synchronous(store) == FULL  # and the connection is durable again


async def test_a_settle_that_queues_reports_is_durable(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = recorded(store, monkeypatch)
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[outbound(2, "beta.example")], sender=(BOB, 1))
    queued = await store.outbox("beta.example", limit=10, max_bytes=1 << 20, now=NOW)
    await store.outbox_done("beta.example", [queued[0].seq], now=NOW, reports=[outbound(3, "gamma.example")])
    assert seen == [FULL, FULL]


def test_a_group_with_any_durable_write_is_durable(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (v INTEGER)")
    seen: list[int] = []

    def insert(c: Any, v: int) -> None:
        c.execute("INSERT INTO t VALUES (?)", (v,))

    def group(*relaxed: bool) -> None:
        from sonet.node.store.group_commit import _Write

        _run_group(Recording(conn, seen), [_Write(insert, (n,), 1, None, r) for n, r in enumerate(relaxed)], ())

    group(True, True)
    group(True, False)
    group(False)
    assert seen == [NORMAL, FULL, FULL]
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == FULL


async def test_a_relaxed_group_that_fails_leaves_the_connection_durable(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "g.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (v INTEGER)")

    async def call(fn: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(lambda: fn(conn, *args))

    def refuse(c: Any) -> None:
        c.execute("INSERT INTO t VALUES (1)")
        raise QuotaExceeded("full")

    writes = GroupCommit(call)
    with pytest.raises(QuotaExceeded):
        await writes.run(refuse, relaxed=True)
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == FULL
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0
