"""``Readiness`` (node/ops/service.py): each way the node cannot work is a one-line reason."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from sonet.node.ops.service import Readiness
from sonet.node.store import StoreError


async def _fine() -> None:
    return None


async def test_ready_when_everything_answers(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    db.write_bytes(b"x")
    assert await Readiness(_fine, database=db, disk_free=lambda: 1 << 30, reserve_bytes=1 << 20).check() is None


async def test_a_failing_store_is_named_in_one_line() -> None:
    async def fails() -> None:
        raise StoreError("database error: disk I/O error\nmore detail")

    assert await Readiness(fails).check() == "database unreachable: database error: disk I/O error"


async def test_a_store_that_does_not_answer_in_time() -> None:
    async def hangs() -> None:
        await trio.sleep_forever()

    assert await Readiness(hangs, deadline_s=0.05).check() == "database unreachable: no answer within 0.05 s"


async def test_a_replaced_database_file(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    db.write_bytes(b"x")
    readiness = Readiness(_fine, database=db)
    other = tmp_path / "other"
    other.write_bytes(b"y")
    os.replace(other, db)
    reason = await readiness.check()
    assert reason is not None and reason.startswith("database unreachable: node.db was replaced")


async def test_a_full_disk(tmp_path: Path) -> None:
    free = [10]
    readiness = Readiness(_fine, disk_free=lambda: free[0], reserve_bytes=100)
    assert await readiness.check() == "disk full: 10 bytes free, the reserve is 100 bytes"
    free[0] = 0
    assert await Readiness(_fine, disk_free=lambda: free[0]).check() == "disk full: 0 bytes free, the reserve is 0 bytes"
    free[0] = 1000
    assert await readiness.check() is None
