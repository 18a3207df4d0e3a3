"""What a sender's delivery rows must keep doing whatever their layout: review 8 found the first
two broken by delivery rows appended in write order (73dbfbe, since reverted: a key could get a
second row, queued or final, that outlived its first). On both backends."""

from __future__ import annotations

from typing import Any

from sonet.node.store import SqliteStore, Store
from sonet.node.store.base import DELIVERY_GRACE_MS

from .test_contract import NOW, ROOMY, mid
from .test_delivery_rows import BETA, answers, item, queued_seqs, status


async def _rows(store: Store, n: int) -> list[tuple[Any, ...]]:
    assert isinstance(store, SqliteStore)  # PostgresStore is one too: same plumbing
    return [
        tuple(row)
        for row in await store._call(
            lambda conn: conn.execute("SELECT state, updated_at, expires FROM deliveries WHERE id = ? ORDER BY state", (mid(n),)).fetchall()
        )
    ]


async def test_a_settled_envelope_sent_again_through_a_relay_never_answers_queued_again(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 5)  # handed to a relay
    await store.receive([status(1, "accepted", at=NOW + 6)], now=NOW + 6, quota=ROOMY)
    # the device sends it again (it missed the answer); handed to the relay again, which
    # answers "ok" from its dedup record and never reports for it again
    await store.enqueue([], now=NOW + 9, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 10)
    assert [a[3] for a in await answers(store, 1)] == ["accepted"]
    await store.expire_outbox(now=NOW + 6 + DELIVERY_GRACE_MS)  # the final row's time is over
    assert [a[3] for a in await answers(store, 1)] in ([], ["accepted"])  # never "queued" again


async def test_a_final_answer_never_turns_into_another(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 5, statuses=[status(1, "accepted", at=NOW + 5)])
    # sent again later; the recipient's device was removed meanwhile: the copy is refused
    await store.enqueue([], now=NOW + 1000, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(
        BETA, await queued_seqs(store), now=NOW + 1001, statuses=[status(1, "failed", "unknown_device", at=NOW + 1001)]
    )
    assert [a[3] for a in await answers(store, 1)] == ["accepted"]
    await store.expire_outbox(now=NOW + 5 + DELIVERY_GRACE_MS)
    assert [a[3] for a in await answers(store, 1)] in ([], ["accepted"])  # never "failed"


async def test_two_items_of_one_key_in_one_hand_off_write_one_row(store: Store) -> None:
    """Two outbox items for one (id, node, device) (two recipient accounts on that node with the
    same device number) deleted in one outbox_done: one final row, no queued row beside it."""
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1), item(1, to="rob@beta.example")])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 5, statuses=[status(1, "accepted", at=NOW + 5)])
    assert [s for s, _, _ in await _rows(store, 1)] == ["accepted"]
    # both handed to a relay: one queued row
    await store.enqueue([], now=NOW + 6, quota=ROOMY, outbound=[item(2), item(2, to="rob@beta.example")])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 7)
    assert [s for s, _, _ in await _rows(store, 2)] == ["queued"]
