"""``outbox_done(..., failed=...)`` (node/store/base.py): the items an outbox worker drops
because their bytes no longer decode have their delivery rows failed with the code given, in
the transaction that deletes them, on every backend; untracked items, statuses for the other
items and the storage counters are as without it."""

from __future__ import annotations

import pytest

from sonet.node.store import StoreError, Store

from .test_contract import NOW, ROOMY
from .test_federation_store import BETA, GAMMA, delivery_states, out, queued, status, tracking
from .test_review6_usage import consistent

DAMAGED = "outbox_damaged"


async def test_a_failed_item_gets_a_failed_delivery_row_and_the_others_their_statuses(store: Store) -> None:
    await store.enqueue(
        [], now=NOW, quota=ROOMY, outbound=[out(1, tracked=tracking(1)), out(2, tracked=tracking(2)), out(3, tracked=tracking(3)), out(4)]
    )
    first, second, third, relayed = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)

    # the damaged one (2) dropped alone, as _prepare does; a status naming it changes nothing
    await store.outbox_done(BETA, [second.seq], now=NOW + 2, statuses=[status(2, "accepted", at=NOW + 2)], failed={second.seq: DAMAGED})
    assert await delivery_states(store, 1, 2, 3) == [("queued", ""), ("failed", DAMAGED), ("queued", "")]
    # an untracked one (a relayed item) and a tracked one in one batch, with a status for 1
    await store.outbox_done(
        BETA,
        [first.seq, third.seq, relayed.seq],
        now=NOW + 3,
        statuses=[status(1, "failed", "expired", at=NOW + 3)],
        failed={third.seq: DAMAGED, relayed.seq: DAMAGED},
    )

    assert await store.outbox_counts() == {}
    assert await delivery_states(store, 1, 2, 3) == [("failed", "expired"), ("failed", DAMAGED), ("failed", DAMAGED)]
    [row] = await store.deliveries(tracking(2).sender_account, 1, [tracking(2).id])
    assert row.updated_at == NOW + 2
    await consistent(store)


async def test_a_failed_item_stays_final(store: Store) -> None:
    # a report that comes later for it (a peer cannot have it: it never went out) changes nothing
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, tracked=tracking(1))])
    [item] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    await store.outbox_done(BETA, [item.seq], now=NOW + 1, failed={item.seq: DAMAGED})
    await store.outbox_done(BETA, [], now=NOW + 2, statuses=[status(1, "accepted", at=NOW + 2)])
    assert await delivery_states(store, 1) == [("failed", DAMAGED)]


async def test_dropping_a_failed_item_is_one_transaction(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, tracked=tracking(1)), out(2, tracked=tracking(2))])
    items = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)

    with pytest.raises(StoreError):  # a bogus status for the other item: nothing of the call is kept
        await store.outbox_done(
            BETA, [i.seq for i in items], now=NOW, statuses=[status(2, "bogus")], failed={items[0].seq: DAMAGED}, reports=[out(3, dest=GAMMA)]
        )

    assert await store.outbox_counts() == {BETA: 2}
    assert await queued(store, BETA) == [b"transit 1", b"transit 2"]
    assert await delivery_states(store, 1, 2) == [("queued", ""), ("queued", "")]
    await consistent(store)
