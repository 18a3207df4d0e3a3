"""Migration 32 (issue 14 item 1): the delivery rows move from a table keyed by (id, dest, device,
sender) to a rowid table with that key as a UNIQUE index. A version-31 database left with rows
in every state must answer as before, and the writes that target the key (the settle's and the
reports' ON CONFLICT upserts, the early reports kept aside) and the purges must work on the
moved rows. SQLite only: PostgreSQL's migration 32 is empty (its table is a heap already)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sonet.node.store import SqliteStore
from sonet.node.store.base import DELIVERY_GRACE_MS

from .old_versions import sqlite_at
from .test_contract import ALICE, DAY, NOW, ROOMY, mid
from .test_delivery_rows import BETA, answers, item, queued_seqs, status

_INSERT_DELIVERY = (
    "INSERT INTO deliveries (sender_account, sender_device, id, dest, device, state, code, updated_at, expires, vanishes)"
    " VALUES ({marks})"
)
#: what version 31 held: 1 handed to a relay ("queued"), 2 failed, 3 accepted and disappearing
#: (it vanishes at NOW + 50), 4 accepted
_DELIVERIES = [
    (ALICE, 1, mid(1), BETA, 1, "queued", "", NOW, NOW + DAY, None),
    (ALICE, 1, mid(2), BETA, 1, "failed", "mailbox_full", NOW + 1, NOW + 1, None),
    (ALICE, 1, mid(3), BETA, 1, "accepted", "", NOW + 2, NOW + 2, NOW + 50),
    (ALICE, 1, mid(4), BETA, 1, "accepted", "", NOW + 3, NOW + 3, None),
]


@pytest.fixture
def open_v31(tmp_path: Path) -> Callable[[], Any]:
    return sqlite_at(tmp_path / "node.db", 31, [(_INSERT_DELIVERY, _DELIVERIES)])


def _table_sql(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT sql FROM sqlite_master WHERE name = 'deliveries'").fetchone()[0])


async def test_rows_of_version_31_answer_and_take_upserts_after_the_move(open_v31: Callable[[], Any], tmp_path: Path) -> None:
    async with await open_v31() as store:
        assert await answers(store, 1, 2, 3, 4) == [
            (mid(1), BETA, 1, "queued", "", NOW, NOW + DAY),
            (mid(2), BETA, 1, "failed", "mailbox_full", NOW + 1, NOW + 1),
            (mid(3), BETA, 1, "accepted", "", NOW + 2, NOW + 2),
            (mid(4), BETA, 1, "accepted", "", NOW + 3, NOW + 3),
        ]
        # the relay's report settles 1 (an upsert on a moved row); a report cannot move 2 (final)
        await store.receive(
            [status(1, "accepted", at=NOW + 10), status(2, "accepted", at=NOW + 10)], now=NOW + 10, quota=ROOMY
        )
        # 5 is new: queued, gets an early report while queued, then handed on (the report applies)
        await store.enqueue([], now=NOW + 11, quota=ROOMY, outbound=[item(5)])
        await store.receive([status(5, "failed", "unknown_device", at=NOW + 12)], now=NOW + 12, quota=ROOMY)
        await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 13)
        # 4 again (a retransmitted id the push settles): the final row it has stays final
        await store.enqueue([], now=NOW + 14, quota=ROOMY, outbound=[item(4, key=b"again")])
        await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 15, statuses=[status(4, "failed", "x", at=NOW + 15)])
        assert await answers(store, 1, 2, 4, 5) == [
            (mid(1), BETA, 1, "accepted", "", NOW + 10, NOW + 10),
            (mid(2), BETA, 1, "failed", "mailbox_full", NOW + 1, NOW + 1),
            (mid(4), BETA, 1, "accepted", "", NOW + 3, NOW + 3),
            (mid(5), BETA, 1, "failed", "unknown_device", NOW + 12, NOW + 12),
        ]

        # the disappearing one goes at its time (the purge); the others a grace period after they
        # became final (the outbox expiry)
        await store.purge_expired(now=NOW + 50)
        assert [r[0] for r in await answers(store, 1, 2, 3, 4, 5)] == [mid(1), mid(2), mid(4), mid(5)]
        await store.expire_outbox(now=NOW + 11 + DELIVERY_GRACE_MS)
        assert [r[0] for r in await answers(store, 1, 2, 3, 4, 5)] == [mid(5)]

    table = _table_sql(tmp_path / "node.db")
    assert "WITHOUT ROWID" not in table
    assert "UNIQUE (id, dest, device, sender_account, sender_device)" in table


async def test_a_new_database_has_the_rowid_table(tmp_path: Path) -> None:
    """The fresh schema (fresh_schema.py) says the same as the migration: the key is UNIQUE,
    so a second row for one (id, dest, device, sender) is refused by the database itself."""
    path = tmp_path / "fresh.db"
    async with await SqliteStore.open(path) as store:
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(7)])
        await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 1, statuses=[status(7, "accepted", at=NOW + 1)])
    assert "WITHOUT ROWID" not in _table_sql(path)
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(_INSERT_DELIVERY.format(marks=", ".join("?" * 10)), (ALICE, 1, mid(7), BETA, 1, "queued", "", NOW, NOW + DAY, None))
