"""A report about an envelope this node sent settles its delivery row only once this node has
handed the envelope on (issue 13, 10a): a destination, or a relay, cannot mark an item
"accepted" or "failed" while it is still in this node's outbox, since nobody downstream can
have received it from us. A report that overtakes the settling of the push that handed the item
on is kept aside and applied then."""

from __future__ import annotations

import pytest

from sonet.node.store import OutboundItem, StatusUpdate, Store, StoreError, Tracking

from .test_contract import ALICE, DAY, NOW, ROOMY, mid

BETA = "beta.example"
REMOTE = "rita@beta.example"


def item(n: int) -> OutboundItem:
    tracking = Tracking(sender_account=ALICE, sender_device=1, id=mid(n), account=REMOTE, device=1)
    return OutboundItem(dest=BETA, key=b"k%d" % n, expires=NOW + DAY, data=b"transit %d" % n, tracking=tracking)


def report(n: int, state: str, code: str = "", *, at: int) -> StatusUpdate:
    return StatusUpdate(id=mid(n), account=REMOTE, device=1, state=state, code=code, at=at)


async def rows(store: Store, *ns: int) -> list[tuple[str, str, int]]:
    return [(r.state, r.code, r.updated_at) for r in await store.deliveries(ALICE, 1, [mid(n) for n in ns])]


async def queued_seqs(store: Store) -> list[int]:
    return [i.seq for i in await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)]


async def test_a_report_about_a_queued_item_changes_nothing_until_it_is_handed_on(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1), item(2)])

    assert await store.receive([report(1, "accepted", at=NOW + 1), report(2, "failed", "unknown_device", at=NOW + 1)], now=NOW + 1, quota=ROOMY) == ["ok", "ok"]
    assert await rows(store, 1, 2) == [("queued", "", NOW), ("queued", "", NOW)]

    # Item 1 is handed to a relay (its "ok" is no final outcome): the report kept aside applies.
    [first, second] = await queued_seqs(store)
    await store.outbox_done(BETA, [first], now=NOW + 2)
    assert await rows(store, 1, 2) == [("accepted", "", NOW + 1), ("queued", "", NOW)]

    # Item 2 meets a final outcome of its own (here: it expires): that one counts, not the report.
    expired = StatusUpdate(id=mid(2), account=REMOTE, device=1, state="failed", code="expired", at=NOW + 3)
    await store.outbox_done(BETA, [second], now=NOW + 3, statuses=[expired])
    assert await rows(store, 2) == [("failed", "expired", NOW + 3)]


async def test_a_report_after_the_item_was_handed_on_applies_at_once(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 1)

    await store.receive([report(1, "failed", "mailbox_full", at=NOW + 2)], now=NOW + 2, quota=ROOMY)

    assert await rows(store, 1) == [("failed", "mailbox_full", NOW + 2)]


async def test_a_report_with_an_unknown_state_is_refused_even_while_its_item_waits(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)])
    with pytest.raises(StoreError):
        await store.receive([report(1, "bogus", at=NOW + 1)], now=NOW + 1, quota=ROOMY)
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 2)
    assert await rows(store, 1) == [("queued", "", NOW)]
