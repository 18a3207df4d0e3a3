"""Review of round 9 (rev9): migration 23 counts only the mailbox rows of devices that exist
(test_mailbox_counts.py: "An SQLite file written with foreign keys off may hold rows of a device
that is gone"), but such rows stay in the mailbox, and the expiry purge takes every expired row
from mailbox_counts (sqlite_mailbox.py ``_purge_expired``: one GROUP BY over the rows it is
about to delete, then ``MailboxCounts.apply``). For the gone device that is an INSERT of a
negative counter naming a device that does not exist: a foreign-key failure, and the whole
purge transaction with it, at every purge from the day that row expired. The purge now takes
nothing from a counter for such rows (they still go)."""

from __future__ import annotations

from pathlib import Path

from sonet.node.store import SqliteStore

from .old_versions import sqlite_at
from .test_contract import ALICE, DAY, NOW, mid
from .test_mailbox_counts import _INSERT_MAILBOX, _V22_ROWS, consistent

GHOST = "ghost@alpha.example"


async def test_the_purge_works_on_a_store_migrated_with_rows_of_a_gone_device(tmp_path: Path) -> None:
    rows = [*_V22_ROWS, (_INSERT_MAILBOX, [(GHOST, 1, mid(9), NOW + DAY, 1, b"x", 1, NOW)])]
    async with await sqlite_at(tmp_path / "node.db", 22, rows)() as store:
        assert isinstance(store, SqliteStore)
        await store.purge_expired(now=NOW + DAY)
        assert await consistent(store, at=(NOW + DAY,)) == {}
        left = await store._call(lambda conn: conn.execute("SELECT count(*) FROM mailbox").fetchone()[0])
        assert left == 0
        assert await store.account(ALICE) is not None
