"""Delivery rows appended in write order (migration 22, issue 14 item 1): a row written final is
in no index keyed by the envelope id, so a key may get a second final row; the oldest answers.
Queued rows (handed to a relay, or holding an early report) are found by id in a partial index.
On both backends, and the migration from version 21 on both."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sonet.node.store import Store

from .old_versions import at_version
from .test_contract import ALICE, DAY, NOW, ROOMY, mid
from .test_delivery_rows import BETA, RITA, answers, item, queued_seqs, status


async def test_an_envelope_settled_twice_keeps_its_first_final_row(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 5, statuses=[status(1, "failed", "mailbox_full", at=NOW + 5)])
    # sent again after its first copy was settled: queued anew, settled again, another state
    await store.enqueue([], now=NOW + 6, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 7, statuses=[status(1, "accepted", at=NOW + 7)])
    await store.enqueue([], now=NOW + 8, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 9, statuses=[status(1, "accepted", at=NOW + 9)])
    assert await answers(store, 1) == [(mid(1), BETA, 1, "failed", "mailbox_full", NOW + 5, NOW + 5)]


async def test_a_final_row_is_not_changed_by_a_late_report(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 5, statuses=[status(1, "accepted", at=NOW + 5)])
    await store.receive([status(1, "failed", "unknown_device", at=NOW + 6)], now=NOW + 6, quota=ROOMY)
    assert await answers(store, 1) == [(mid(1), BETA, 1, "accepted", "", NOW + 5, NOW + 5)]


async def test_an_early_report_then_the_final_status_of_the_hand_off(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1), item(2)])
    # reports while the items wait: kept aside on queued rows, the answer still "queued"
    await store.receive(
        [status(1, "failed", "unknown_device", at=NOW + 2), status(2, "accepted", at=NOW + 2)], now=NOW + 2, quota=ROOMY
    )
    assert [a[3] for a in await answers(store, 1, 2)] == ["queued", "queued"]
    # the push's own answers settle both (made final in place): no report kept aside applies
    await store.outbox_done(
        BETA, await queued_seqs(store), now=NOW + 3, statuses=[status(1, "accepted", at=NOW + 3), status(2, "failed", "expired", at=NOW + 3)]
    )
    assert await answers(store, 1, 2) == [
        (mid(1), BETA, 1, "accepted", "", NOW + 3, NOW + 3),
        (mid(2), BETA, 1, "failed", "expired", NOW + 3, NOW + 3),
    ]
    # one row each: the queued rows became final, none was appended beside them
    await store.receive([status(1, "failed", "mailbox_full", at=NOW + 4)], now=NOW + 4, quota=ROOMY)
    assert [a[3] for a in await answers(store, 1, 2)] == ["accepted", "failed"]


async def test_a_relayed_row_settled_by_its_report_stays_as_it_was_made(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1), item(2, device=2)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 5)  # handed to a relay: queued rows
    await store.receive([status(1, "accepted", at=NOW + 6)], now=NOW + 6, quota=ROOMY)
    await store.receive([status(1, "failed", "mailbox_full", at=NOW + 7)], now=NOW + 7, quota=ROOMY)  # final stays final
    assert await answers(store, 1, 2) == [
        (mid(1), BETA, 1, "accepted", "", NOW + 6, NOW + 6),
        (mid(2), BETA, 2, "queued", "", NOW, NOW + DAY),
    ]
    await store.receive([status(2, "failed", "unknown_device", at=NOW + 8, device=2)], now=NOW + 8, quota=ROOMY)
    assert (await answers(store, 2))[0][3:] == ("failed", "unknown_device", NOW + 8, NOW + 8)
    # sent again and handed on again: the new queued row answers nothing over the final one
    await store.enqueue([], now=NOW + 9, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 10)
    await store.receive([status(1, "failed", "expired", at=NOW + 11)], now=NOW + 11, quota=ROOMY)
    assert (await answers(store, 1))[0][3:] == ("accepted", "", NOW + 6, NOW + 6)


async def test_ids_spread_over_many_rows_and_ids_not_found(store: Store) -> None:
    # 600 envelopes (more than one query's 500 ids), each to two devices, settled in three
    # pushes in an order that spreads an id's rows apart; then questions mixing them with
    # ids never sent, in any order.
    n = 600
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(i, device=d) for i in range(n) for d in (1, 2)])
    seqs = await _all_seqs(store)
    by_device = {1: seqs[0::2], 2: seqs[1::2]}
    await store.outbox_done(BETA, by_device[2][: n // 2], now=NOW + 1, statuses=[status(i, "accepted", at=NOW + 1, device=2) for i in range(n // 2)])
    await store.outbox_done(BETA, by_device[1], now=NOW + 2, statuses=[status(i, "failed", "mailbox_full", at=NOW + 2) for i in range(n)])
    await store.outbox_done(BETA, by_device[2][n // 2 :], now=NOW + 3)  # handed to a relay: queued
    asked = [*range(n - 1, -1, -7), n + 1, n + 2]
    expected = []
    for i in sorted(asked, key=lambda i: mid(i)):
        if i >= n:
            continue
        expected.append((mid(i), BETA, 1, "failed", "mailbox_full", NOW + 2, NOW + 2))
        expected.append((mid(i), BETA, 2, "accepted", "", NOW + 1, NOW + 1) if i < n // 2 else (mid(i), BETA, 2, "queued", "", NOW, NOW + DAY))
    assert await answers(store, *asked) == expected
    assert await answers(store, n + 1, n + 2) == []
    assert await store.deliveries(ALICE, 2, [mid(1)]) == []  # another device of the sender


async def _all_seqs(store: Store) -> list[int]:
    seqs: list[int] = []
    while batch := await store.outbox(BETA, limit=1000, max_bytes=1 << 30, now=NOW, after=seqs[-1] if seqs else 0):
        seqs.extend(i.seq for i in batch)
    return seqs


# The migration from version 21, on both backends ----------------------------------------------

#: what version 21 held: 1 queued (handed to a relay), 2 final, 3 queued with an early report
#: and its item still in the outbox
_DELIVERIES = [
    (ALICE, 1, mid(1), BETA, 1, "queued", "", NOW, NOW + DAY, None, None, None, None),
    (ALICE, 1, mid(2), BETA, 1, "failed", "mailbox_full", NOW + 1, NOW + 1, None, None, None, None),
    (ALICE, 1, mid(3), BETA, 1, "queued", "", NOW, NOW + DAY, "accepted", "", NOW + 2, None),
]
_OUTBOX = [(BETA, b"k3", NOW + DAY, b"transit 3", NOW, 9, None, ALICE, 1, mid(3), RITA, 1)]
_INSERT_DELIVERY = (
    "INSERT INTO deliveries (sender_account, sender_device, id, dest, device, state, code, updated_at, expires,"
    " early_state, early_code, early_at, vanishes) VALUES ({marks})"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (dest, key, expires, data, queued_at, size, origin, sender_account, sender_device, id, account, device)"
    " VALUES ({marks})"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def open_v21(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """Opens (and so migrates) a database version 21 left populated."""
    return at_version(request, tmp_path, 21, [(_INSERT_DELIVERY, _DELIVERIES), (_INSERT_OUTBOX, _OUTBOX)], backend=request.param)


async def test_migration_22_copies_the_rows_and_keeps_their_states(open_v21: Callable[[], Any]) -> None:
    async with await open_v21() as store:
        assert await answers(store, 1, 2, 3) == [
            (mid(1), BETA, 1, "queued", "", NOW, NOW + DAY),
            (mid(2), BETA, 1, "failed", "mailbox_full", NOW + 1, NOW + 1),
            (mid(3), BETA, 1, "queued", "", NOW, NOW + DAY),
        ]
        # 1's report finds its copied queued row; 2 stays final
        await store.receive([status(1, "accepted", at=NOW + 3), status(2, "accepted", at=NOW + 3)], now=NOW + 3, quota=ROOMY)
        # 3 handed on: the report kept aside on its copied row applies
        [three] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
        await store.outbox_done(BETA, [three.seq], now=NOW + 4)
        assert await answers(store, 1, 2, 3) == [
            (mid(1), BETA, 1, "accepted", "", NOW + 3, NOW + 3),
            (mid(2), BETA, 1, "failed", "mailbox_full", NOW + 1, NOW + 1),
            (mid(3), BETA, 1, "accepted", "", NOW + 2, NOW + 2),
        ]
        # new rows are appended after the copied ones (the sequence continues past them)
        await store.enqueue([], now=NOW + 5, quota=ROOMY, outbound=[item(4)])
        await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 6, statuses=[status(4, "accepted", at=NOW + 6)])
        assert (await answers(store, 4))[0][3] == "accepted"
        assert await store.outbox_counts() == {}
