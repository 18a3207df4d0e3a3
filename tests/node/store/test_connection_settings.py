"""How the store sets up its SQLite writer connection (node/store/sqlite.py ``_connect``):

- a new database gets ``PAGE_SIZE`` pages (SQLite's 4 KiB, chosen by measurement,
  docs/performance.md round 17); a file made with other pages keeps them (changing them takes a
  VACUUM, which opening the store never runs) and works as before;
- the migrations run with SQLite's temporary files, and only then do statement journals move
  into memory: a migration that rebuilds a large table would else hold it in memory whole."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from sonet.node.store import SqliteStore
from sonet.node.store import sqlite as sqlite_backend
from sonet.node.store.sqlite import PAGE_SIZE, _connect

from .test_contract import ALICE, NOW, ROOMY, env, pending_ids, register


def _page_size(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


async def test_a_new_database_gets_the_chosen_page_size(tmp_path: Path) -> None:
    assert PAGE_SIZE == 4096
    path = tmp_path / "node.db"
    async with await SqliteStore.open(path) as store:
        await register(store, ALICE)
        await store.enqueue([env(1, body=b"x" * 40_000)], now=NOW, quota=ROOMY)  # over several pages
    assert _page_size(path) == PAGE_SIZE


async def test_a_database_made_with_other_pages_keeps_them_and_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "node.db"
    monkeypatch.setattr(sqlite_backend, "PAGE_SIZE", 16384)  # what bench/relay_store_bench.py --page-size does
    async with await SqliteStore.open(path) as store:
        await register(store, ALICE)
        await store.enqueue([env(1, body=b"x" * 40_000), env(2)], now=NOW, quota=ROOMY)
    assert _page_size(path) == 16384
    monkeypatch.setattr(sqlite_backend, "PAGE_SIZE", 4096)  # the node's again: the file keeps its own
    async with await SqliteStore.open(path) as store:
        (first, _) = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)
        assert first.body == b"x" * 40_000
        assert await store.ack(ALICE, 1, [env(1).id], now=NOW) == 1
        assert await pending_ids(store, ALICE) == [env(2).id]
    assert _page_size(path) == 16384


#: PRAGMA temp_store: 0 the default (files), 2 memory
_DEFAULT, _MEMORY = 0, 2


def test_migrations_run_with_temporary_files_then_journals_go_to_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_migrate = sqlite_backend.migrate

    def migrate(conn: sqlite3.Connection) -> int:
        seen.append(int(conn.execute("PRAGMA temp_store").fetchone()[0]))
        return real_migrate(conn)

    monkeypatch.setattr(sqlite_backend, "migrate", migrate)
    conn = _connect(str(tmp_path / "node.db"))
    try:
        assert seen == [_DEFAULT]
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == _MEMORY
    finally:
        conn.close()
