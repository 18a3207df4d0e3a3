"""Review of 160e07c (issue 14 item 1): multi-row INSERTs (dialect.insert_rows, ROWS_PER_INSERT
rows per statement) where there was one statement per row. On BOTH backends: rows with NULLs
and values beside rows without them in one statement (PostgreSQL types a VALUES list by its
rows), several outbox items for one envelope and device settled in one statement (their
delivery rows' ON CONFLICT DO NOTHING meets a row of the same statement), statuses that settle
some of a large batch (DO UPDATE, each key once), and a push's envelopes in order across the
statements and the other items between them. And the widest insert fits the parameter limits."""

from __future__ import annotations

import sqlite3

from sonet.node.store import NewEnvelope, OutboundItem, StatusUpdate, Store, Tracking
from sonet.node.store.dialect import ROWS_PER_INSERT
from sonet.node.store.migrations import MIGRATIONS

from .test_contract import ALICE, DAY, NOW, ROOMY, env, mid, pending_ids, register

BETA = "beta.example"
RITA = "rita@beta.example"
#: two full statements and a remainder
COUNT = 2 * ROWS_PER_INSERT + 7


def tracked(n: int, *, key: bytes | None = None, expires: int = NOW + DAY, device: int = 1) -> OutboundItem:
    tracking = Tracking(sender_account=ALICE, sender_device=1, id=mid(n), account=RITA, device=device)
    return OutboundItem(dest=BETA, key=key or b"k%d" % n, expires=expires, data=b"t%d" % n, tracking=tracking)


def untracked(n: int) -> OutboundItem:
    return OutboundItem(dest=BETA, key=b"u%d" % n, expires=NOW + DAY, data=b"u%d" % n)


async def test_null_and_non_null_values_share_statements_and_settle(store: Store) -> None:
    """Tracked and untracked items alternate (NULL tracking columns beside values, device
    numbers of every integer width), disappearing ones beside lasting ones (``vanishes``
    NULL or not in the delivery rows), and some settled by statuses (DO UPDATE)."""
    items = [
        tracked(n, device=(1, 70_000, 2**40)[n % 3], expires=NOW + (60_000 if n % 4 == 0 else DAY)) if n % 2 else untracked(n)
        for n in range(COUNT)
    ]
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=items)
    queued = await store.outbox(BETA, limit=1000, max_bytes=1 << 20, now=NOW)
    assert [q.key for q in queued] == [i.key for i in items]

    statuses = [
        StatusUpdate(id=mid(n), account=RITA, device=(1, 70_000, 2**40)[n % 3], state="accepted", code="", at=NOW + 5)
        for n in range(1, COUNT, 4)
    ]
    await store.outbox_done(BETA, [q.seq for q in queued], now=NOW + 5, statuses=statuses)
    rows = await store.deliveries(ALICE, 1, [mid(n) for n in range(1, COUNT, 2)])
    settled = {mid(n) for n in range(1, COUNT, 4)}
    assert [(r.id, r.device, r.state) for r in rows] == [
        (mid(n), (1, 70_000, 2**40)[n % 3], "accepted" if mid(n) in settled else "queued") for n in range(1, COUNT, 2)
    ]
    assert await store.outbox_counts() == {}


async def test_several_items_of_one_envelope_and_device_settle_in_one_statement(store: Store) -> None:
    """Two outbox items name the same envelope and recipient device (two keys): their
    delivery rows meet in one multi-row INSERT ... ON CONFLICT DO NOTHING, the first queued
    speaks; a report for it afterwards settles the one row."""
    items = [item for n in range(ROWS_PER_INSERT) for item in (tracked(n), tracked(n, key=b"again%d" % n))]
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=items)
    queued = await store.outbox(BETA, limit=1000, max_bytes=1 << 20, now=NOW)
    assert len(queued) == 2 * ROWS_PER_INSERT
    await store.outbox_done(BETA, [q.seq for q in queued], now=NOW + 5)  # handed on: "queued"
    rows = await store.deliveries(ALICE, 1, [mid(n) for n in range(ROWS_PER_INSERT)])
    assert [(r.id, r.state, r.updated_at) for r in rows] == [(mid(n), "queued", NOW) for n in range(ROWS_PER_INSERT)]
    report = StatusUpdate(id=mid(3), account=RITA, device=1, state="failed", code="unknown_device", at=NOW + 6)
    assert await store.receive([report], now=NOW + 6, quota=ROOMY) == ["ok"]
    [row] = await store.deliveries(ALICE, 1, [mid(3)])
    assert (row.state, row.code) == ("failed", "unknown_device")


async def test_a_push_keeps_its_order_across_statements_and_the_items_between_them(store: Store) -> None:
    await register(store, ALICE)
    first = [env(n) for n in range(ROWS_PER_INSERT + 3)]
    second = [env(n) for n in range(ROWS_PER_INSERT + 3, COUNT)]
    between: list[NewEnvelope | OutboundItem | StatusUpdate] = [
        untracked(1),
        StatusUpdate(id=mid(999), account=RITA, device=1, state="accepted", code="", at=NOW),
        first[5],  # a duplicate of the run before: stored once
    ]
    push = [*first, *between, *second, second[0]]
    assert await store.receive(push, now=NOW, quota=ROOMY) == ["ok"] * len(push)
    assert await pending_ids(store, ALICE) == [mid(n) for n in range(COUNT)]


def test_the_widest_insert_fits_both_parameter_limits() -> None:
    """ROWS_PER_INSERT times the widest table's columns: within this SQLite's variable limit
    (32,766 by default since 3.32; 999 before) and PostgreSQL's 65,535."""
    conn = sqlite3.connect(":memory:")
    for migration in MIGRATIONS:
        for statement in migration:
            conn.execute(statement)
    tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    widest = max(len(conn.execute(f"PRAGMA table_info({t})").fetchall()) for t in tables)
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    assert ROWS_PER_INSERT * widest <= min(limit, 65_535), (widest, limit)
    # the ``IN (...)`` lists beside them (500 keys and the other parameters) fit too
    assert 500 + 3 <= limit


async def test_settles_and_answers_past_one_query_of_keys(store: Store) -> None:
    """A settle of more seqs, and a deliveries() question of more ids, than one ``IN (...)``
    holds (500): every item settled once, every id answered in the order asked, those still
    queued (read from the outbox) beside those settled (from their rows) and unknown ones."""
    many = 1100
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(n) for n in range(many)])
    queued = await store.outbox(BETA, limit=10_000, max_bytes=1 << 30, now=NOW)
    assert len(queued) == many
    taken = [q.seq for q in queued[:700]]
    statuses = [StatusUpdate(id=mid(n), account=RITA, device=1, state="accepted", code="", at=NOW + 5) for n in range(0, 700, 2)]
    await store.outbox_done(BETA, [*reversed(taken), *taken[:10]], now=NOW + 5, statuses=statuses)
    assert await store.outbox_counts() == {BETA: many - 700}

    asked = sorted(mid(n) for n in range(many + 50))
    rows = await store.deliveries(ALICE, 1, asked)
    expected = {mid(n): ("accepted" if n < 700 and n % 2 == 0 else "queued") for n in range(many)}
    assert [(r.id, r.state) for r in rows] == [(i, expected[i]) for i in asked if i in expected]
