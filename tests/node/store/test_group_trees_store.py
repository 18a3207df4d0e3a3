"""The ratchet trees a hub keeps for joiners (node/store/sqlite_group_trees.py): read back in
chunks from any offset, kept once per (group, epoch), bounded per group by count and bytes with
the oldest dropped first, gone when they expire."""

from __future__ import annotations

import os

import pytest

from sonet.core.groups import trees
from sonet.node.store import SqliteStore
from sonet.node.store.sqlite_budgets import Charges
from sonet.node.store.sqlite_group_trees import _keep_tree, _purge_group_trees

from .test_contract import NOW

GROUP, OTHER = bytes(range(16)), bytes(16)
TTL = 1000


async def keep(store: SqliteStore, group: bytes, epoch: int, tree: bytes, *, now: int = NOW) -> Charges:
    charges = Charges()
    await store._transaction(lambda conn: _keep_tree(conn, group, epoch, tree, now=now, ttl_ms=TTL, charges=charges))
    return charges


async def whole(store: SqliteStore, group: bytes, epoch: int, *, now: int = NOW, length: int = 1000) -> bytes | None:
    parts, offset = [], 0
    while True:
        found = await store.group_tree(group, epoch, offset=offset, length=length, now=now)
        if found is None:
            return None if offset == 0 else b"".join(parts)
        total, chunk = found
        parts.append(chunk)
        offset += len(chunk)
        if offset == total:
            return b"".join(parts)


async def test_a_kept_tree_is_read_back_in_chunks_once_per_epoch(tmp_path) -> None:  # noqa: ANN001
    async with await SqliteStore.open(tmp_path / "node.db") as store:
        tree = os.urandom(4567)
        assert (await keep(store, GROUP, 3, tree)).bytes > len(tree)  # counted against the disk reserve
        assert (await keep(store, GROUP, 3, b"another")).bytes == 0  # a retried commit: kept once
        assert await whole(store, GROUP, 3) == tree
        assert await store.group_tree(GROUP, 3, offset=4000, length=1000, now=NOW) == (4567, tree[4000:])
        for group, epoch, offset in ((GROUP, 4, 0), (OTHER, 3, 0), (GROUP, 3, 4567), (GROUP, 3, -1)):
            assert await store.group_tree(group, epoch, offset=offset, length=10, now=NOW) is None


async def test_trees_expire_with_their_items(tmp_path) -> None:  # noqa: ANN001
    async with await SqliteStore.open(tmp_path / "node.db") as store:
        await keep(store, GROUP, 1, b"tree")
        assert await store.group_tree(GROUP, 1, offset=0, length=10, now=NOW + TTL) is None
        await store._transaction(lambda conn: _purge_group_trees(conn, NOW + TTL))
        count = await store._read(lambda conn: conn.execute("SELECT count(*) FROM group_trees").fetchone()[0])
        assert count == 0


async def test_a_group_keeps_its_newest_trees_within_the_bounds(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from sonet.node.store import sqlite_group_trees

    monkeypatch.setattr(sqlite_group_trees, "MAX_KEPT_TREES", 3)
    monkeypatch.setattr(sqlite_group_trees, "MAX_KEPT_TREE_BYTES", 250)
    async with await SqliteStore.open(tmp_path / "node.db") as store:
        await keep(store, OTHER, 1, b"o" * 100)  # another group's trees count for it alone
        for epoch in range(1, 6):
            await keep(store, GROUP, epoch, bytes([epoch]) * 50)
        assert [await whole(store, GROUP, e) is not None for e in range(1, 6)] == [False, False, True, True, True]  # count
        await keep(store, GROUP, 6, b"x" * 200)  # 200 + 50 of epoch 5 fit 250: epoch 4 goes (bytes)
        assert [await whole(store, GROUP, e) is not None for e in range(3, 7)] == [False, False, True, True]
        assert await whole(store, OTHER, 1) == b"o" * 100
        await keep(store, GROUP, 7, b"y" * (trees.MAX_TREE_BYTES + 1))  # too large to keep at all
        assert await whole(store, GROUP, 7) is None and await whole(store, GROUP, 6) is not None
