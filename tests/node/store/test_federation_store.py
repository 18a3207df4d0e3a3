"""The federation part of the Store contract: outboxes, relay deduplication, delivery rows,
peer keys (node/store/base.py), run against every backend via the `store` fixture."""

from __future__ import annotations

import pytest

from sonet.node.store import (
    DELIVERY_GRACE_MS,
    DeliveryRow,
    OutboundItem,
    QueuedItem,
    Quota,
    QuotaExceeded,
    StatusUpdate,
    Store,
    StoreError,
    Tracking,
)

from .test_contract import ALICE, BOB, DAY, NOW, ROOMY, env, mid, pending_ids, register

BETA = "beta.example"
GAMMA = "gamma.example"
REMOTE = "rita@beta.example"
FP_B = "b" * 32
FP_C = "c" * 32


def tracking(n: int, *, sender: str = ALICE, sender_device: int = 1, device: int = 1) -> Tracking:
    return Tracking(sender_account=sender, sender_device=sender_device, id=mid(n), account=REMOTE, device=device)


def out(
    n: int,
    *,
    dest: str = BETA,
    key: bytes | None = None,
    expires: int = NOW + DAY,
    data: bytes | None = None,
    tracked: Tracking | None = None,
) -> OutboundItem:
    return OutboundItem(
        dest=dest,
        key=mid(n) if key is None else key,
        expires=expires,
        data=b"transit %d" % n if data is None else data,
        tracking=tracked,
    )


def status(n: int, state: str, code: str = "", *, at: int = NOW + 5, device: int = 1) -> StatusUpdate:
    return StatusUpdate(id=mid(n), account=REMOTE, device=device, state=state, code=code, at=at)


async def queued(store: Store, dest: str = BETA, *, now: int = NOW) -> list[bytes]:
    """The data of everything queued for ``dest``, in queue order."""
    return [item.data for item in await store.outbox(dest, limit=1000, max_bytes=1 << 30, now=now)]


async def delivery_states(store: Store, *ns: int, sender: str = ALICE, device: int = 1) -> list[tuple[str, str]]:
    rows = await store.deliveries(sender, device, [mid(n) for n in ns])
    return [(row.state, row.code) for row in rows]


# enqueue(..., outbound=...) -------------------------------------------------------------


async def test_enqueue_commits_local_envelopes_and_outbound_items_together(store: Store) -> None:
    await register(store, ALICE)

    new = await store.enqueue(
        [env(1)], now=NOW, quota=ROOMY, outbound=[out(2, tracked=tracking(2)), out(3, dest=GAMMA)]
    )

    assert new == 1  # outbound items are not mailbox envelopes
    assert await pending_ids(store, ALICE) == [mid(1)]
    assert await queued(store, BETA) == [b"transit 2"]
    assert await queued(store, GAMMA) == [b"transit 3"]
    assert await store.deliveries(ALICE, 1, [mid(2)]) == [
        DeliveryRow(
            sender_account=ALICE,
            sender_device=1,
            id=mid(2),
            device=1,
            dest=BETA,  # the node and the device number: the row does not name the account
            state="queued",
            code="",
            updated_at=NOW,
            expires=NOW + DAY,
        )
    ]
    assert await store.deliveries(ALICE, 1, [mid(3)]) == []  # untracked: no row


async def test_enqueue_of_outbound_items_alone(store: Store) -> None:
    assert await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1), out(2)]) == 0
    assert await queued(store) == [b"transit 1", b"transit 2"]


async def test_quota_exceeded_writes_no_envelope_outbox_item_or_delivery_row(store: Store) -> None:
    await register(store, ALICE)
    tiny = Quota(max_envelopes=1, max_bytes=1 << 20)

    with pytest.raises(QuotaExceeded):
        await store.enqueue([env(1), env(2)], now=NOW, quota=tiny, outbound=[out(3, tracked=tracking(3))])

    assert await pending_ids(store, ALICE) == []
    assert await store.outbox_counts() == {}
    assert await store.deliveries(ALICE, 1, [mid(3)]) == []
    assert (await store.stats())["outbox"] == 0


async def test_unknown_device_writes_no_outbox_item_or_delivery_row(store: Store) -> None:
    await register(store, ALICE)

    with pytest.raises(StoreError):
        await store.enqueue([env(1, device_id=9)], now=NOW, quota=ROOMY, outbound=[out(2, tracked=tracking(2))])

    assert await store.outbox_counts() == {}
    assert await store.deliveries(ALICE, 1, [mid(2)]) == []


async def test_an_outbound_item_already_queued_is_skipped(store: Store) -> None:
    first = out(1, data=b"first", tracked=tracking(1))
    again = out(1, data=b"second", tracked=tracking(1), expires=NOW + 2 * DAY)

    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[first, again])
    await store.enqueue([], now=NOW + 1, quota=ROOMY, outbound=[again])

    assert await queued(store) == [b"first"]  # the first wins
    rows = await store.deliveries(ALICE, 1, [mid(1)])
    assert [(r.updated_at, r.expires) for r in rows] == [(NOW, NOW + DAY)]  # one row, untouched


async def test_the_same_key_for_another_destination_is_another_item(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, dest=BETA), out(1, dest=GAMMA)])
    assert await store.outbox_counts() == {BETA: 1, GAMMA: 1}


async def test_an_expired_outbound_item_is_not_queued_by_enqueue(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, expires=NOW, tracked=tracking(1))])
    assert await store.outbox_counts() == {}
    assert await store.deliveries(ALICE, 1, [mid(1)]) == []


async def test_a_handed_on_key_is_remembered_until_it_expires(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, expires=NOW + DAY)])
    [item] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    await store.outbox_done(BETA, [item.seq], now=NOW + 1)
    # The same item, retransmitted later with another expiry (so it is still deliverable).
    later = out(1, expires=NOW + 3 * DAY, data=b"again")

    await store.enqueue([], now=NOW + DAY - 1, quota=ROOMY, outbound=[later])
    assert await store.receive([later], now=NOW + DAY - 1, quota=ROOMY) == ["ok"]
    assert await store.outbox_counts() == {}  # a duplicate of what was handed on

    await store.enqueue([], now=NOW + DAY, quota=ROOMY, outbound=[later])
    assert await queued(store, now=NOW + DAY) == [b"again"]  # the key expired with its item

    # Handed on again: the key is now remembered until the new expiry, not the stale one.
    [item] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + DAY)
    await store.outbox_done(BETA, [item.seq], now=NOW + DAY)
    await store.enqueue([], now=NOW + 2 * DAY, quota=ROOMY, outbound=[later])
    assert await store.outbox_counts() == {}


async def test_a_requeued_tracked_envelope_keeps_its_delivery_row(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, tracked=tracking(1))])
    [item] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    await store.outbox_done(BETA, [item.seq], now=NOW + 1, statuses=[status(1, "accepted", at=NOW + 1)])

    # The sender retransmits the envelope in a new item (another key): the row stays final.
    await store.enqueue([], now=NOW + 2, quota=ROOMY, outbound=[out(1, key=mid(99), tracked=tracking(1))])

    assert await queued(store) == [b"transit 1"]
    rows = await store.deliveries(ALICE, 1, [mid(1)])
    assert [(r.state, r.updated_at) for r in rows] == [("accepted", NOW + 1)]


# receive ------------------------------------------------------------------------------


async def test_receive_answers_one_outcome_per_item_in_order(store: Store) -> None:
    await register(store, ALICE)

    outcomes = await store.receive(
        [
            env(1),
            env(2, to="nobody@alpha.example"),
            env(3, device_id=7),
            env(4, expires=NOW),
            out(5, dest=GAMMA),
            out(6, dest=GAMMA, expires=NOW),
            status(7, "accepted"),  # about no envelope this node sent: ignored
        ],
        now=NOW,
        quota=ROOMY,
    )

    assert outcomes == ["ok", "unknown_account", "unknown_device", "expired", "ok", "expired", "ok"]
    assert await pending_ids(store, ALICE) == [mid(1)]  # refused items wrote nothing
    assert await queued(store, GAMMA) == [b"transit 5"]
    assert await store.outbox_counts() == {GAMMA: 1}


async def test_receive_of_nothing_is_nothing(store: Store) -> None:
    assert await store.receive([], now=NOW, quota=ROOMY) == []


async def test_receive_checks_the_quota_per_item_in_order(store: Store) -> None:
    await register(store, ALICE)
    await register(store, BOB)
    await store.enqueue([env(1)], now=NOW, quota=ROOMY)
    two = Quota(max_envelopes=2, max_bytes=100)

    outcomes = await store.receive(
        [env(2), env(3), env(4, to=BOB), env(5, to=BOB, body=b"x" * 101), env(6, to=BOB, body=b"y" * 50)],
        now=NOW,
        quota=two,
    )

    # env 2 fills Alice's mailbox, so env 3 no longer fits; a too-big item does not stop the
    # smaller one after it.
    assert outcomes == ["ok", "mailbox_full", "ok", "mailbox_full", "ok"]
    assert await pending_ids(store, ALICE) == [mid(1), mid(2)]
    items = await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)
    assert [i.id for i in items] == [mid(4), mid(6)]


async def test_receive_answers_ok_to_duplicates_and_stores_them_once(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([env(1), env(2)], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(2)], now=NOW)
    full = Quota(max_envelopes=1, max_bytes=1 << 20)

    # 1: still in the (now full) mailbox; 2: delivered and acknowledged; 3 twice in one push.
    outcomes = await store.receive([env(1), env(2), env(3), env(3)], now=NOW, quota=Quota(max_envelopes=2, max_bytes=1 << 20))
    assert outcomes == ["ok", "ok", "ok", "ok"]
    assert await pending_ids(store, ALICE) == [mid(1), mid(3)]
    assert await store.receive([env(1), env(3)], now=NOW, quota=full) == ["ok", "ok"]


async def test_receive_answers_ok_to_a_queued_outbound_item_and_queues_it_once(store: Store) -> None:
    item = out(1, dest=GAMMA)
    assert await store.receive([item, item], now=NOW, quota=ROOMY) == ["ok", "ok"]
    assert await store.receive([item], now=NOW + 1, quota=ROOMY) == ["ok"]
    assert await queued(store, GAMMA) == [b"transit 1"]


async def test_status_updates_change_only_queued_delivery_rows(store: Store) -> None:
    await store.enqueue(
        [], now=NOW, quota=ROOMY, outbound=[out(1, tracked=tracking(1)), out(2, tracked=tracking(2))]
    )
    # handed to a relay: the reports come back through it
    await store.outbox_done(BETA, [i.seq for i in await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)], now=NOW + 1)

    outcomes = await store.receive(
        [status(1, "accepted", at=NOW + 5), status(2, "failed", "unknown_device", at=NOW + 6)], now=NOW + 7, quota=ROOMY
    )
    assert outcomes == ["ok", "ok"]
    rows = await store.deliveries(ALICE, 1, [mid(1), mid(2)])
    assert [(r.state, r.code, r.updated_at) for r in rows] == [
        ("accepted", "", NOW + 5),
        ("failed", "unknown_device", NOW + 6),
    ]

    # Final states stay final, whatever a later (replayed or contradicting) report says.
    again = [status(1, "failed", "mailbox_full", at=NOW + 8), status(2, "accepted", at=NOW + 8)]
    assert await store.receive(again, now=NOW + 8, quota=ROOMY) == ["ok", "ok"]
    assert await delivery_states(store, 1, 2) == [("accepted", ""), ("failed", "unknown_device")]


async def test_receive_is_one_transaction(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, tracked=tracking(1))])

    # A status the store cannot hold fails the whole push, including the items before it.
    with pytest.raises(StoreError):
        await store.receive([env(2), out(3, dest=GAMMA), status(1, "bogus")], now=NOW, quota=ROOMY)

    assert await pending_ids(store, ALICE) == []
    assert await store.outbox_counts() == {BETA: 1}
    assert await delivery_states(store, 1) == [("queued", "")]


# outbox -------------------------------------------------------------------------------


async def test_outbox_lists_unexpired_items_of_one_destination_oldest_first(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1), out(2, dest=GAMMA), out(3, expires=NOW + 10)])
    await store.receive([out(4)], now=NOW + 1, quota=ROOMY)

    items = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + 10)

    assert [(i.dest, i.key, i.data, i.queued_at) for i in items] == [
        (BETA, mid(1), b"transit 1", NOW),
        (BETA, mid(4), b"transit 4", NOW + 1),
    ]
    assert items[0].seq < items[1].seq
    assert items[0] == QueuedItem(seq=items[0].seq, dest=BETA, key=mid(1), expires=NOW + DAY, data=b"transit 1", queued_at=NOW)
    assert await store.outbox("nowhere.example", limit=10, max_bytes=1 << 20, now=NOW) == []


async def test_outbox_caps_items_and_bytes_but_always_returns_the_first(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(n, data=bytes(10)) for n in range(1, 5)])

    async def keys(limit: int, max_bytes: int) -> list[bytes]:
        return [i.key for i in await store.outbox(BETA, limit=limit, max_bytes=max_bytes, now=NOW)]

    assert await keys(2, 1000) == [mid(1), mid(2)]
    assert await keys(10, 25) == [mid(1), mid(2)]
    assert await keys(10, 30) == [mid(1), mid(2), mid(3)]
    assert await keys(10, 5) == [mid(1)]  # bigger than the cap alone: still sent, alone
    with pytest.raises(ValueError):
        await store.outbox(BETA, limit=0, max_bytes=1000, now=NOW)


async def test_an_outbox_read_says_whether_it_held_everything_past_its_start(store: Store) -> None:
    """``complete``: the outbox worker does not read again until woken (federation/outbox.py)."""
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(n, data=bytes(10)) for n in range(1, 5)])

    async def complete(limit: int, max_bytes: int, after: int = 0) -> tuple[int, bool]:
        page = await store.outbox(BETA, limit=limit, max_bytes=max_bytes, now=NOW, after=after)
        return len(page), page.complete

    assert await complete(10, 1000) == (4, True)
    assert await complete(5, 40) == (4, True)  # exactly at the byte cap, under the count
    assert await complete(4, 1000) == (4, False)  # stopped at the count: there may be more
    assert await complete(2, 1000) == (2, False)
    assert await complete(10, 25) == (2, False)  # stopped at the byte cap
    assert await complete(10, 5) == (1, False)  # the first alone, over the cap
    last = (await store.outbox(BETA, limit=10, max_bytes=1000, now=NOW))[-1].seq
    assert await complete(10, 1000, after=last) == (0, True)
    assert await store.outbox("nowhere.example", limit=10, max_bytes=1000, now=NOW) == []
    # an expired item is not there to read: a read that skips it is still complete
    assert (await store.outbox(BETA, limit=10, max_bytes=1000, now=NOW + DAY)).complete


async def test_outbox_seqs_are_never_reused(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1)])
    [first] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    await store.outbox_done(BETA, [first.seq], now=NOW)

    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(2)])
    [second] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)

    assert second.seq > first.seq
    await store.outbox_done(BETA, [first.seq], now=NOW)  # a late, repeated done: no effect
    assert await queued(store) == [b"transit 2"]


async def test_outbox_counts_and_destinations(store: Store) -> None:
    assert await store.outbox_counts() == {}
    assert await store.outbox_destinations() == []

    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, dest=GAMMA), out(2), out(3)])

    assert await store.outbox_counts() == {BETA: 2, GAMMA: 1}
    assert await store.outbox_destinations() == [BETA, GAMMA]
    assert (await store.stats())["outbox"] == 3


# outbox_done --------------------------------------------------------------------------


async def test_outbox_done_deletes_only_the_given_items_of_that_destination(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1), out(2), out(3, dest=GAMMA)])
    beta = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    [gamma] = await store.outbox(GAMMA, limit=10, max_bytes=1 << 20, now=NOW)

    await store.outbox_done(BETA, [beta[0].seq, gamma.seq, 10**9], now=NOW)

    assert await queued(store, BETA) == [b"transit 2"]
    assert await queued(store, GAMMA) == [b"transit 3"]  # another destination's seq: ignored


async def test_outbox_done_applies_statuses_and_queues_reports(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, tracked=tracking(1)), out(2, tracked=tracking(2))])
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(10, dest=GAMMA)])
    items = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)

    await store.outbox_done(
        BETA,
        [i.seq for i in items],
        now=NOW + 3,
        statuses=[status(1, "accepted", at=NOW + 3), status(2, "failed", "mailbox_full", at=NOW + 3)],
        reports=[out(10, dest=GAMMA, data=b"dup"), out(11, dest=GAMMA), out(12, dest=GAMMA, expires=NOW + 3)],
    )

    assert await store.outbox_counts() == {GAMMA: 2}
    assert await queued(store, GAMMA) == [b"transit 10", b"transit 11"]  # dedup, expired skipped
    assert await delivery_states(store, 1, 2) == [("accepted", ""), ("failed", "mailbox_full")]


async def test_outbox_done_is_one_transaction(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, tracked=tracking(1))])
    [item] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)

    with pytest.raises(StoreError):
        await store.outbox_done(BETA, [item.seq], now=NOW, statuses=[status(1, "bogus")], reports=[out(2, dest=GAMMA)])

    assert await store.outbox_counts() == {BETA: 1}  # still there: the pusher will try again
    assert await delivery_states(store, 1) == [("queued", "")]


# deliveries ---------------------------------------------------------------------------


async def test_deliveries_are_seen_only_by_the_sending_device_in_order(store: Store) -> None:
    await store.enqueue(
        [],
        now=NOW,
        quota=ROOMY,
        outbound=[
            out(2, key=b"k2d2", tracked=tracking(2, device=2)),
            out(2, key=b"k2d1", tracked=tracking(2, device=1)),
            out(1, key=b"k1", tracked=tracking(1)),
            out(3, key=b"k3", tracked=tracking(3, sender_device=2)),
            out(4, key=b"k4", tracked=tracking(4, sender=BOB)),
        ],
    )

    rows = await store.deliveries(ALICE, 1, [mid(2), mid(1), mid(3), mid(4), mid(1), mid(5)])

    assert [(r.id, r.device) for r in rows] == [(mid(1), 1), (mid(2), 1), (mid(2), 2)]
    assert await store.deliveries(ALICE, 2, [mid(3)]) != []
    assert await store.deliveries(BOB, 1, [mid(3)]) == []
    assert await store.deliveries(ALICE, 1, []) == []


# expired_outbox and expire_outbox -----------------------------------------------------


async def test_expired_outbox_lists_expired_items_of_one_destination_and_drops_nothing(store: Store) -> None:
    await store.enqueue(
        [],
        now=NOW,
        quota=ROOMY,
        outbound=[
            out(1, expires=NOW + 10, tracked=tracking(1)),
            out(2, expires=NOW + 10, dest=GAMMA),
            out(3, expires=NOW + 20, tracked=tracking(3)),
            out(4, expires=NOW + 5, data=bytes(10)),
            out(5, expires=NOW + 5, data=bytes(10)),
        ],
    )

    expired = await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + 10)

    assert [(i.dest, i.key) for i in expired] == [(BETA, mid(1)), (BETA, mid(4)), (BETA, mid(5))]  # queue order
    assert expired[0] == QueuedItem(seq=expired[0].seq, dest=BETA, key=mid(1), expires=NOW + 10, data=b"transit 1", queued_at=NOW)
    assert [i.key for i in await store.expired_outbox(BETA, limit=2, max_bytes=1 << 20, now=NOW + 10)] == [mid(1), mid(4)]
    assert [i.key for i in await store.expired_outbox(BETA, limit=10, max_bytes=15, now=NOW + 10)] == [mid(1)]
    assert [i.key for i in await store.expired_outbox(BETA, limit=10, max_bytes=20, now=NOW + 5)] == [mid(4), mid(5)]
    assert await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + 4) == []
    assert [i.key for i in await store.expired_outbox(GAMMA, limit=10, max_bytes=1 << 20, now=NOW + 10)] == [mid(2)]
    with pytest.raises(ValueError):
        await store.expired_outbox(BETA, limit=0, max_bytes=1000, now=NOW)
    assert await queued(store, BETA, now=NOW) == [b"transit 1", b"transit 3", bytes(10), bytes(10)]  # nothing dropped
    assert await delivery_states(store, 1, 3) == [("queued", ""), ("queued", "")]


async def test_expire_outbox_leaves_outbox_items_to_their_workers(store: Store) -> None:
    # The worker of a destination settles its expired items itself (expired_outbox, then one
    # outbox_done): expire_outbox must not drop an item whose push may be in flight.
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, expires=NOW + 10, tracked=tracking(1))])

    await store.expire_outbox(now=NOW + 10)

    assert await store.outbox_counts() == {BETA: 1}
    assert await delivery_states(store, 1) == [("queued", "")]


async def test_settling_an_expired_item_fails_its_delivery_once_in_one_transaction(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, expires=NOW + 10, tracked=tracking(1)), out(2, expires=NOW + 10)])
    expired = await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + 10)

    await store.outbox_done(
        BETA,
        [i.seq for i in expired],
        now=NOW + 10,
        statuses=[status(1, "failed", "expired", at=NOW + 10)],
        reports=[out(9, dest=GAMMA, expires=NOW + DAY)],  # "expired", back to a relayed item's origin
    )

    assert await store.outbox_counts() == {GAMMA: 1}
    assert await delivery_states(store, 1) == [("failed", "expired")]
    assert await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + 10) == []


async def test_a_report_about_an_item_never_handed_on_does_not_settle_it(store: Store) -> None:
    # The item is still queued here when a report about it arrives: nobody downstream can have
    # received it from this node, so the report cannot make it "accepted" -- it expires unsent.
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, expires=NOW + 10, tracked=tracking(1))])
    await store.receive([status(1, "accepted", at=NOW + 1)], now=NOW + 1, quota=ROOMY)
    assert await delivery_states(store, 1) == [("queued", "")]
    [item] = await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + 10)

    await store.outbox_done(BETA, [item.seq], now=NOW + 10, statuses=[status(1, "failed", "expired", at=NOW + 10)])

    assert await delivery_states(store, 1) == [("failed", "expired")]
    assert await store.outbox_counts() == {}


async def test_delivery_rows_outlive_their_envelope_by_the_grace_period(store: Store) -> None:
    assert DELIVERY_GRACE_MS == 7 * DAY  # the sender may ask about an envelope up to a week late
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, expires=NOW + DAY, tracked=tracking(1))])
    [item] = await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW + DAY)
    await store.outbox_done(BETA, [item.seq], now=NOW + DAY, statuses=[status(1, "failed", "expired", at=NOW + DAY)])

    await store.expire_outbox(now=NOW + DAY + DELIVERY_GRACE_MS - 1)
    assert await delivery_states(store, 1) == [("failed", "expired")]  # the sender may ask late

    await store.expire_outbox(now=NOW + DAY + DELIVERY_GRACE_MS)
    assert await store.deliveries(ALICE, 1, [mid(1)]) == []


async def test_purge_expired_leaves_the_outbox_alone(store: Store) -> None:
    # queued 30 days before its expiry: an ordinary envelope, whose delivery row outlives it (a
    # disappearing message's goes at its expiry: tests/node/store/test_vanishing.py)
    await store.enqueue([], now=NOW + 10 - 30 * DAY, quota=ROOMY, outbound=[out(1, expires=NOW + 10, tracked=tracking(1))])
    await store.purge_expired(now=NOW + 10)
    assert await store.outbox_counts() == {BETA: 1}  # only its outbox worker settles it
    assert await delivery_states(store, 1) == [("queued", "")]


# Peer keys ----------------------------------------------------------------------------


async def test_set_peer_key_is_stored_only_for_the_current_pin(store: Store) -> None:
    await store.add_peer(name="beta.example", url="ws://b:1", fingerprint=FP_B, via=None, now=NOW)
    await store.add_peer(name="gamma.example", url="ws://c:1", fingerprint=FP_C, via=None, now=NOW)

    assert await store.set_peer_key("Beta.Example", fingerprint=FP_B.upper(), key=b"beta key") is True
    assert await store.set_peer_key("gamma.example", fingerprint=FP_B, key=b"mis-keyed") is False
    assert await store.set_peer_key("gamma.example", fingerprint="not a fingerprint", key=b"x") is False
    assert await store.set_peer_key("delta.example", fingerprint=FP_B, key=b"unknown") is False

    assert [(p.name, p.key) for p in await store.peers()] == [("beta.example", b"beta key"), ("gamma.example", None)]


async def test_a_removed_or_re_added_peer_forgets_its_key(store: Store) -> None:
    await store.add_peer(name="beta.example", url="ws://b:1", fingerprint=FP_B, via=None, now=NOW)
    assert await store.set_peer_key("beta.example", fingerprint=FP_B, key=b"old key") is True

    assert await store.remove_peer("beta.example") is True
    await store.add_peer(name="beta.example", url="ws://b:1", fingerprint=FP_C, via=None, now=NOW + 1)

    [peer] = await store.peers()
    assert (peer.fingerprint, peer.key) == (FP_C, None)
    assert await store.set_peer_key("beta.example", fingerprint=FP_B, key=b"old key") is False  # stale pin
    assert [p.key for p in await store.peers()] == [None]


# Durability ---------------------------------------------------------------------------


async def test_outbox_deliveries_and_peer_keys_survive_reopening(open_backend) -> None:  # noqa: ANN001 - fixture
    first = await open_backend()
    try:
        await first.add_peer(name="beta.example", url="ws://b:1", fingerprint=FP_B, via=None, now=NOW)
        await first.set_peer_key("beta.example", fingerprint=FP_B, key=b"beta key")
        await first.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, tracked=tracking(1)), out(2), out(3)])
        [own, _, relayed] = await first.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
        await first.outbox_done(BETA, [own.seq, relayed.seq], now=NOW)
    finally:
        await first.close()
    second = await open_backend()
    try:
        assert [p.key for p in await second.peers()] == [b"beta key"]
        assert await queued(second) == [b"transit 2"]
        assert await delivery_states(second, 1) == [("queued", "")]
        await second.enqueue([], now=NOW, quota=ROOMY, outbound=[out(3)])
        assert await queued(second) == [b"transit 2"]  # the handed-on key was kept too
    finally:
        await second.close()


async def test_the_keys_of_own_devices_envelopes_are_not_remembered_once_handed_on(store: Store) -> None:
    # Nothing upstream retransmits them, and a key names the recipient: a device that sends
    # the same envelope again has it pushed again, and the recipient's node deduplicates it.
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[out(1, tracked=tracking(1)), out(2)])
    items = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    await store.outbox_done(BETA, [i.seq for i in items], now=NOW)
    await store.enqueue([], now=NOW + 1, quota=ROOMY, outbound=[out(1, tracked=tracking(1)), out(2)])
    assert await queued(store, now=NOW + 1) == [b"transit 1"]
    assert await delivery_states(store, 1) == [("queued", "")]  # the one row, not a second
