"""Migrations 32 and 33 (issue 14 item 1) on populated databases. 32: the delivery rows move from a
table keyed by (id, dest, device, sender) to a rowid table with that key as a UNIQUE index
(SQLite only: PostgreSQL's table is a heap already). 33: that key is ordered by the sender first
(sender_account, sender_device, id, dest, device), and the rows a relay's report may change
("queued") get an index of their own (``deliveries_queued``), on both backends. A database left
with rows in every state, at version 31 or 32, must answer as before, and the writes that target
the key (the settle's and the reports' ON CONFLICT upserts, the early reports kept aside, the
reports' updates by (id, node, device)) and the purges must work on the moved rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sonet.node.store import SqliteStore
from sonet.node.store.base import DELIVERY_GRACE_MS

from .old_versions import at_version
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


@pytest.fixture(params=[("sqlite", 31), ("sqlite", 32), ("postgresql", 32)], ids=lambda p: f"{p[0]}-v{p[1]}")
def open_old(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    backend, version = request.param
    return at_version(request, tmp_path, version, [(_INSERT_DELIVERY, _DELIVERIES)], backend=backend)


def _table_sql(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT sql FROM sqlite_master WHERE name = 'deliveries'").fetchone()[0])


async def test_rows_of_an_older_version_answer_and_take_upserts_after_the_move(
    open_old: Callable[[], Any], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with await open_old() as store:
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

    if request.node.callspec.params["open_old"][0] == "sqlite":
        table = _table_sql(tmp_path / "node.db")
        assert "WITHOUT ROWID" not in table
        assert "UNIQUE (sender_account, sender_device, id, dest, device)" in table
        _assert_the_indexes_are_used(tmp_path / "node.db")


def _assert_the_indexes_are_used(path: Path) -> None:
    """Each question asked of the rows reads an index, not the table: the sender's status question
    the sender's range of the key; a relay's report and the early reports (no sender named) the
    "queued" rows' index; the purges their time indexes."""
    plans = {
        "SELECT id FROM deliveries WHERE id IN (?, ?) AND sender_account = ? AND sender_device = ?": "sqlite_autoindex_deliveries_1",
        "UPDATE deliveries SET state = ? WHERE id = ? AND dest = ? AND device = ? AND state = 'queued'": "deliveries_queued",
        "UPDATE deliveries SET state = early_state WHERE id = ? AND dest = ? AND device = ? AND state = 'queued'"
        " AND early_state IS NOT NULL": "deliveries_queued",
        "DELETE FROM deliveries WHERE expires <= ?": "deliveries_expiry",
        "DELETE FROM deliveries WHERE vanishes IS NOT NULL AND vanishes <= ?": "deliveries_vanishing",
    }
    with sqlite3.connect(path) as conn:
        for sql, index in plans.items():
            (step,) = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", (1,) * sql.count("?"))]
            assert step.startswith("SEARCH deliveries USING ") and f"INDEX {index} (" in step, (sql, step)


async def test_a_new_database_has_the_rowid_table(tmp_path: Path) -> None:
    """The fresh schema (fresh_schema.py) says the same as the migrations: the key is UNIQUE,
    so a second row for one (id, dest, device, sender) is refused by the database itself."""
    path = tmp_path / "fresh.db"
    async with await SqliteStore.open(path) as store:
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(7)])
        await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 1, statuses=[status(7, "accepted", at=NOW + 1)])
    assert "WITHOUT ROWID" not in _table_sql(path)
    assert "UNIQUE (sender_account, sender_device, id, dest, device)" in _table_sql(path)
    _assert_the_indexes_are_used(path)
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(_INSERT_DELIVERY.format(marks=", ".join("?" * 10)), (ALICE, 1, mid(7), BETA, 1, "queued", "", NOW, NOW + DAY, None))
