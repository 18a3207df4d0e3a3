"""Batches past one multi-row INSERT (dialect.insert_rows: 64 rows per statement, the rest one
each): every row stored once, in the order given, deduplicated, and the acknowledged ids
remembered, on both backends."""

from __future__ import annotations

from sonet.node.store import OutboundItem, Store, Tracking
from sonet.node.store.dialect import ROWS_PER_INSERT

from .test_contract import ALICE, BOB, DAY, NOW, ROOMY, env, mid, pending_ids, register

#: two full statements and a remainder
COUNT = 2 * ROWS_PER_INSERT + 5


async def test_a_large_enqueue_keeps_its_order_and_counts_each_envelope_once(store: Store) -> None:
    await register(store, ALICE)
    batch = [env(n) for n in range(COUNT)]
    assert await store.enqueue([*batch, env(3)], now=NOW, quota=ROOMY) == COUNT
    assert await pending_ids(store, ALICE) == [mid(n) for n in range(COUNT)]
    assert await store.enqueue(batch, now=NOW, quota=ROOMY) == 0  # a retransmission stores nothing


async def test_a_large_push_is_stored_in_order_and_its_acknowledged_ids_are_remembered(store: Store) -> None:
    await register(store, ALICE)
    push = [env(n) for n in range(COUNT)]
    assert await store.receive([*push[:70], push[10], *push[70:]], now=NOW, quota=ROOMY) == ["ok"] * (COUNT + 1)
    assert await pending_ids(store, ALICE) == [mid(n) for n in range(COUNT)]

    assert await store.ack(ALICE, 1, [mid(n) for n in range(COUNT)], now=NOW) == COUNT
    assert await store.receive(push, now=NOW, quota=ROOMY) == ["ok"] * COUNT  # answered, not stored again
    assert await pending_ids(store, ALICE) == []


async def test_a_large_outbound_batch_is_queued_in_order_once(store: Store) -> None:
    await register(store, ALICE)
    await register(store, BOB)
    items = [
        OutboundItem(
            dest="beta.example",
            key=b"k%d" % n,
            expires=NOW + DAY,
            data=b"item %d" % n,
            tracking=Tracking(sender_account=ALICE, sender_device=1, id=mid(n), account="rita@beta.example", device=1),
        )
        for n in range(COUNT)
    ]
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[*items, items[0]], sender=(ALICE, 1))
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=items[:5], sender=(ALICE, 1))
    queued = await store.outbox("beta.example", limit=1000, max_bytes=1 << 20, now=NOW)
    assert [q.key for q in queued] == [item.key for item in items]

    await store.outbox_done("beta.example", [q.seq for q in queued], now=NOW + 1)
    rows = await store.deliveries(ALICE, 1, [mid(n) for n in range(COUNT)])
    assert [(r.id, r.state) for r in rows] == [(mid(n), "queued") for n in range(COUNT)]  # handed on, no status yet
