"""Stored-bytes budgets (Quota; node/store/sqlite_budgets.py): per sending device and account,
per destination outbox, per relayed origin, and the node-wide disk reserve. Each is checked in
the transaction that stores, refuses with its own code, stores nothing of a refused batch, and
frees up as what it counted is delivered, acknowledged or removed."""

from __future__ import annotations

import dataclasses

import pytest

from sonet.node.store import (
    STORED_ROW_OVERHEAD,
    OutboundItem,
    OverBudget,
    Quota,
    SenderRemoved,
    StatusUpdate,
    Store,
    Tracking,
)

from .conftest import StoreOpener, database_size
from .test_contract import ALICE, BOB, CAROL, DAY, NOW, ROOMY, env, mid, pending_ids, register
from .outbox_rows import with_outbox_table

BETA = "beta.example"
GAMMA = "gamma.example"
DELTA = "delta.example"
BODY = b"x" * 1000
#: what one BODY-sized row is charged
ROW = len(BODY) + STORED_ROW_OVERHEAD


def budgets(**kwargs: int) -> Quota:
    return dataclasses.replace(ROOMY, **kwargs)


def remote_item(n: int, *, dest: str = BETA, sender: str = ALICE, device: int = 1, data: bytes = BODY) -> OutboundItem:
    tracking = Tracking(sender_account=sender, sender_device=device, id=mid(n), account=f"rita@{dest}", device=1)
    return OutboundItem(dest=dest, key=b"k%d" % n, expires=NOW + DAY, data=data, tracking=tracking)


def relayed(n: int, *, origin: str, dest: str = DELTA) -> OutboundItem:
    return OutboundItem(dest=dest, key=b"r%d" % n, expires=NOW + DAY, data=BODY, origin=origin)


async def senders(store: Store, *accounts: str, devices: int = 1) -> None:
    """Register ``accounts`` with ``devices`` devices each: the store stores only what a
    device that exists sends (a removed one's is refused)."""
    for account in accounts:
        await register(store, account)
        for n in range(2, devices + 1):
            await store.add_device(
                account=account, fingerprint=f"fp-{account}-{n}", record=b"r", device_list=b"l", expected_version=n - 1, now=NOW
            )


async def refused(code: str, call) -> OverBudget:  # noqa: ANN001
    with pytest.raises(OverBudget) as caught:
        await call
    assert caught.value.code == code
    return caught.value


# Per sending device and account -------------------------------------------------------------

async def test_a_sending_device_is_refused_past_its_budget_and_nothing_is_stored(store: Store) -> None:
    await register(store, ALICE)
    await register(store, BOB)
    await register(store, CAROL)
    quota = budgets(sender_device_bytes=3 * ROW)
    for n in range(3):
        await store.enqueue([env(n, to=BOB, body=BODY)], now=NOW, quota=quota, sender=(ALICE, 1))

    error = await refused("sender_full", store.enqueue([env(9, to=BOB, body=BODY)], now=NOW, quota=quota, sender=(ALICE, 1)))
    assert "alice@alpha.example/1" in str(error)
    assert await pending_ids(store, BOB) == [mid(0), mid(1), mid(2)]

    # Outbound items count too, and a mixed batch is refused whole.
    with pytest.raises(OverBudget):
        await store.enqueue([], now=NOW, quota=quota, outbound=[remote_item(9)], sender=(ALICE, 1))
    assert await store.outbox_counts() == {}

    # A retransmission is never refused; another sender is not affected.
    assert await store.enqueue([env(1, to=BOB, body=BODY)], now=NOW, quota=quota, sender=(ALICE, 1)) == 0
    assert await store.enqueue([env(5, to=BOB, body=BODY)], now=NOW, quota=quota, sender=(CAROL, 1)) == 1

    # Delivered and acknowledged: the device may send again.
    assert await store.ack(BOB, 1, [mid(0)], now=NOW + 1) == 1
    assert await store.enqueue([env(9, to=BOB, body=BODY)], now=NOW + 1, quota=quota, sender=(ALICE, 1)) == 1


async def test_nothing_of_a_removed_sending_device_is_stored(store: Store) -> None:
    await senders(store, BOB)
    await senders(store, ALICE, devices=2)
    account = await store.account(ALICE)
    assert account is not None
    assert await store.remove_device(account=ALICE, device_id=2, device_list=b"v3", expected_version=account.device_list_version, now=NOW)
    with pytest.raises(SenderRemoved) as caught:
        await store.enqueue([env(1, to=BOB, body=BODY)], now=NOW, quota=ROOMY, outbound=[remote_item(2, device=2)], sender=(ALICE, 2))
    assert caught.value.code == "device_removed"
    assert await pending_ids(store, BOB) == []
    assert await store.outbox_counts() == {}
    assert await store.deliveries(ALICE, 2, [mid(2)]) == []
    # the account's remaining device sends as before
    assert await store.enqueue([env(1, to=BOB, body=BODY)], now=NOW, quota=ROOMY, sender=(ALICE, 1)) == 1


async def test_tiny_envelopes_are_charged_for_their_rows(store: Store) -> None:
    await senders(store, ALICE, BOB)
    quota = budgets(sender_device_bytes=10 * STORED_ROW_OVERHEAD)
    await store.enqueue([env(n, to=BOB, body=b"") for n in range(10)], now=NOW, quota=quota, sender=(ALICE, 1))
    await refused("sender_full", store.enqueue([env(10, to=BOB, body=b"")], now=NOW, quota=quota, sender=(ALICE, 1)))


async def test_an_account_budget_spans_its_devices(store: Store) -> None:
    await senders(store, BOB)
    await senders(store, ALICE, devices=3)
    quota = budgets(sender_device_bytes=10 * ROW, sender_account_bytes=3 * ROW)
    await store.enqueue([env(1, to=BOB, body=BODY), env(2, to=BOB, body=BODY)], now=NOW, quota=quota, sender=(ALICE, 1))
    await store.enqueue([], now=NOW, quota=quota, outbound=[remote_item(3, device=2)], sender=(ALICE, 2))

    error = await refused("sender_full", store.enqueue([env(4, to=BOB, body=BODY)], now=NOW, quota=quota, sender=(ALICE, 3)))
    assert "account alice@alpha.example" in str(error)


async def test_expired_envelopes_count_until_purged_then_free_the_budget(store: Store) -> None:
    await senders(store, ALICE, BOB)
    quota = budgets(sender_device_bytes=ROW)
    await store.enqueue([env(1, to=BOB, body=BODY, expires=NOW + 10)], now=NOW, quota=quota, sender=(ALICE, 1))
    # still on the disk: it still counts
    await refused("sender_full", store.enqueue([env(2, to=BOB, body=BODY)], now=NOW + 10, quota=quota, sender=(ALICE, 1)))
    assert await store.purge_expired(now=NOW + 10) == 1
    assert await store.enqueue([env(2, to=BOB, body=BODY)], now=NOW + 10, quota=quota, sender=(ALICE, 1)) == 1


async def test_removing_the_recipient_device_frees_the_senders_budget(store: Store) -> None:
    await senders(store, ALICE, BOB)
    quota = budgets(sender_device_bytes=ROW)
    await store.enqueue([env(1, to=BOB, body=BODY)], now=NOW, quota=quota, sender=(ALICE, 1))
    account = await store.account(BOB)
    assert account is not None
    assert await store.remove_device(account=BOB, device_id=1, device_list=b"list v2", expected_version=account.device_list_version, now=NOW)

    await register(store, CAROL)
    assert await store.enqueue([env(2, to=CAROL, body=BODY)], now=NOW, quota=quota, sender=(ALICE, 1)) == 1


# Per destination outbox -----------------------------------------------------------------------

async def test_an_outbox_towards_a_node_is_refused_at_its_budget(store: Store) -> None:
    await senders(store, ALICE, CAROL)
    quota = budgets(outbox_bytes=2 * ROW)
    await store.enqueue([], now=NOW, quota=quota, outbound=[remote_item(1), remote_item(2, sender=BOB)], sender=(ALICE, 1))

    error = await refused("outbox_full", store.enqueue([], now=NOW, quota=quota, outbound=[remote_item(3, sender=CAROL)], sender=(CAROL, 1)))
    assert "outbox towards beta.example is full" in str(error)
    assert await store.outbox_counts() == {BETA: 2}
    assert await store.deliveries(CAROL, 1, [mid(3)]) == []  # no delivery row either

    # Other destinations are not affected; a retransmission into the full outbox is accepted.
    await store.enqueue([], now=NOW, quota=quota, outbound=[remote_item(4, dest=GAMMA)], sender=(ALICE, 1))
    await store.enqueue([], now=NOW, quota=quota, outbound=[remote_item(1)], sender=(ALICE, 1))
    assert await store.outbox_counts() == {BETA: 2, GAMMA: 1}

    # Handed on: room again.
    [first, _] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    await store.outbox_done(BETA, [first.seq], now=NOW + 1)
    await store.enqueue([], now=NOW + 1, quota=quota, outbound=[remote_item(3, sender=CAROL)], sender=(CAROL, 1))
    assert await store.outbox_counts() == {BETA: 2, GAMMA: 1}


async def test_reports_are_queued_even_into_a_full_outbox(store: Store) -> None:
    await senders(store, ALICE)
    quota = budgets(outbox_bytes=ROW)
    await store.enqueue([], now=NOW, quota=quota, outbound=[remote_item(1)], sender=(ALICE, 1))
    [item] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    report = OutboundItem(dest=BETA, key=b"report", expires=NOW + DAY, data=b"r" * 100)

    await store.outbox_done(GAMMA, [], now=NOW, reports=[report])

    assert await store.outbox_counts() == {BETA: 2}
    assert item.seq > 0


def _usage_and_recount(conn):  # noqa: ANN001, ANN202 - a store connection in, two dicts out
    """storage_usage's outbox-side rows (those not zero), and the same sums counted from the outbox."""
    with_outbox_table(conn)
    held = {
        (scope, key): (count, size)
        for scope, key, count, size in conn.execute("SELECT scope, key, count, bytes FROM storage_usage").fetchall()
        if (count, size) != (0, 0)
    }
    recount = {}
    for scope, key_sql, where in (
        ("outbox", "dest", "1 = 1"),
        ("origin", "origin", "origin IS NOT NULL"),
        ("device", "sender_account || '/' || sender_device", "sender_account IS NOT NULL"),
        ("account", "sender_account", "sender_account IS NOT NULL"),
    ):
        for key, count, size in conn.execute(
            f"SELECT {key_sql}, count(*), sum(size) FROM outbox WHERE {where} GROUP BY {key_sql}"
        ).fetchall():
            recount[(scope, key)] = (count, size)
    return held, recount


async def test_outbox_usage_is_what_the_outbox_holds_after_queueing_relaying_and_settling(store: Store) -> None:
    """The outbox's budget counters are kept by the writes that queue and settle items (not
    triggers): after each step they equal a recount of the outbox, duplicates counted once."""
    await senders(store, ALICE, CAROL)
    own = [remote_item(n) for n in range(6)] + [remote_item(n, dest=GAMMA) for n in range(6, 9)]
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[*own, own[0]], sender=(ALICE, 1))
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[remote_item(20, sender=CAROL), own[1]], sender=(CAROL, 1))
    await store.receive([relayed(1, origin=BETA), relayed(2, origin=GAMMA), relayed(1, origin=BETA)], now=NOW, quota=ROOMY)
    held, recount = await store._call(_usage_and_recount)  # type: ignore[attr-defined]
    assert held == recount
    assert held[("outbox", BETA)] == (7, 7 * len(BODY)) and held[("origin", BETA)] == (1, len(BODY))

    queued = await store.outbox(BETA, limit=4, max_bytes=1 << 20, now=NOW)
    report = OutboundItem(dest=GAMMA, key=b"report", expires=NOW + DAY, data=b"r" * 100)
    statuses = [StatusUpdate(id=mid(0), account=f"rita@{BETA}", device=1, state="accepted", code="", at=NOW)]
    await store.outbox_done(BETA, [q.seq for q in queued], now=NOW, statuses=statuses, reports=[report])
    [relayed_item] = await store.outbox(DELTA, limit=1, max_bytes=1 << 20, now=NOW + 1)  # the one from beta
    await store.outbox_done(DELTA, [relayed_item.seq], now=NOW + 1)
    held, recount = await store._call(_usage_and_recount)  # type: ignore[attr-defined]
    assert held == recount
    assert held[("outbox", BETA)] == (3, 3 * len(BODY)) and ("origin", BETA) not in held

    rest = [q.seq for dest in (BETA, GAMMA, DELTA) for q in await store.outbox(dest, limit=100, max_bytes=1 << 20, now=NOW + 1)]
    for dest in (BETA, GAMMA, DELTA):
        await store.outbox_done(dest, rest, now=NOW + 2)
    assert await store._call(_usage_and_recount) == ({}, {})  # type: ignore[attr-defined]


# Per relayed origin ----------------------------------------------------------------------------

async def test_a_relay_holds_at_most_its_budget_for_each_origin(store: Store) -> None:
    await register(store, ALICE)
    quota = budgets(relay_origin_bytes=2 * ROW)
    assert await store.receive([relayed(1, origin=BETA), relayed(2, origin=BETA)], now=NOW, quota=quota) == ["ok", "ok"]

    # The whole push is undone, the envelope for a local mailbox too: the peer keeps it all.
    error = await refused("relay_full", store.receive([env(7, body=BODY), relayed(3, origin=BETA)], now=NOW, quota=quota))
    assert "relay for beta.example" in str(error)
    assert await pending_ids(store, ALICE) == []
    assert await store.outbox_counts() == {DELTA: 2}

    # Another origin has its own share; a retransmission is answered "ok".
    assert await store.receive([relayed(4, origin=GAMMA), relayed(1, origin=BETA)], now=NOW, quota=quota) == ["ok", "ok"]
    assert await store.outbox_counts() == {DELTA: 3}


async def test_a_relay_refuses_past_the_outbox_budget_of_the_destination(store: Store) -> None:
    quota = budgets(relay_origin_bytes=10 * ROW, outbox_bytes=2 * ROW)
    await store.receive([relayed(1, origin=BETA), relayed(2, origin=GAMMA)], now=NOW, quota=quota)
    await refused("outbox_full", store.receive([relayed(3, origin=BETA)], now=NOW, quota=quota))


# The node-wide reserve ------------------------------------------------------------------------

class Disk:
    def __init__(self, free: int) -> None:
        self.free = free

    def __call__(self) -> int:
        return self.free


async def test_within_the_disk_reserve_new_messages_are_refused_but_acks_and_removals_work(open_backend: StoreOpener) -> None:
    disk = Disk(free=100 * ROW)
    store = await open_backend(disk_free=disk)
    try:
        await senders(store, ALICE, BOB, CAROL)
        quota = budgets(reserve_bytes=10 * ROW)
        await store.enqueue([env(1, body=BODY), env(2, to=BOB, body=BODY)], now=NOW, quota=quota, sender=(CAROL, 1))
        await store.enqueue([], now=NOW, quota=quota, outbound=[remote_item(1)], sender=(ALICE, 1))

        disk.free = 10 * ROW + 100  # one more row would dip into the reserve
        await refused("disk_full", store.enqueue([env(3, body=BODY)], now=NOW, quota=quota, sender=(CAROL, 1)))
        await refused("disk_full", store.enqueue([], now=NOW, quota=quota, outbound=[remote_item(2)], sender=(ALICE, 1)))
        await refused("disk_full", store.receive([env(4, body=BODY)], now=NOW, quota=quota))
        await refused("disk_full", store.receive([relayed(5, origin=BETA)], now=NOW, quota=quota))

        # What frees space or settles what was taken still works.
        assert await store.ack(ALICE, 1, [mid(1)], now=NOW + 1) == 1
        [item] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
        await store.outbox_done(BETA, [item.seq], now=NOW + 1)
        status = StatusUpdate(id=mid(1), account="rita@beta.example", device=1, state="accepted", code="", at=NOW + 2)
        assert await store.receive([status], now=NOW + 2, quota=quota) == ["ok"]
        assert [r.state for r in await store.deliveries(ALICE, 1, [mid(1)])] == ["accepted"]
        assert await store.enqueue([env(2, to=BOB, body=BODY)], now=NOW, quota=quota, sender=(CAROL, 1)) == 0  # a retransmission
        account = await store.account(BOB)
        assert account is not None
        assert await store.remove_device(account=BOB, device_id=1, device_list=b"v2", expected_version=account.device_list_version, now=NOW)
        assert await store.purge_expired(now=NOW + 3) == 0

        disk.free = 100 * ROW
        assert await store.enqueue([env(3, body=BODY)], now=NOW, quota=quota, sender=(CAROL, 1)) == 1
    finally:
        await store.close()


async def test_the_database_never_grows_past_its_maximum_for_new_messages(store: Store) -> None:
    await senders(store, ALICE, BOB)
    # ~250 KB over what the empty schema takes (~250 KB in SQLite, ~8 MB in PostgreSQL)
    quota = budgets(max_store_bytes=await database_size(store) + 250_000)
    stored = 0
    with pytest.raises(OverBudget) as caught:
        for n in range(1000):
            stored += await store.enqueue([env(n, body=BODY)], now=NOW, quota=quota, sender=(BOB, 1))
    assert caught.value.code == "disk_full"
    assert 100 < stored < 400  # ~1 KB per row: it stopped near the maximum, not before
