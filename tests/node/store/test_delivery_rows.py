"""What the sending device learns of its envelopes (``deliveries``) while their items wait in
the outbox and once they leave it. The store writes an envelope's delivery row once, when its
item leaves the outbox (an outbox row is the "queued" state); the answers are those of a row
written at queue time and updated at the end, on both backends."""

from __future__ import annotations

from sonet.node.store import OutboundItem, StatusUpdate, Store, Tracking
from sonet.node.store.vanishing import SHORT_LIVED_MS

from .test_contract import ALICE, DAY, NOW, ROOMY, mid

BETA = "beta.example"
RITA = "rita@beta.example"
ROB = "rob@beta.example"


def item(n: int, *, to: str = RITA, device: int = 1, expires: int = NOW + DAY, key: bytes | None = None) -> OutboundItem:
    tracking = Tracking(sender_account=ALICE, sender_device=1, id=mid(n), account=to, device=device)
    return OutboundItem(dest=BETA, key=key or b"k%d/%s/%d" % (n, to.encode(), device), expires=expires, data=b"transit %d" % n, tracking=tracking)


def status(n: int, state: str, code: str = "", *, at: int, device: int = 1) -> StatusUpdate:
    return StatusUpdate(id=mid(n), account=RITA, device=device, state=state, code=code, at=at)


async def answers(store: Store, *ns: int) -> list[tuple[bytes, str, int, str, str, int, int]]:
    return [
        (r.id, r.dest, r.device, r.state, r.code, r.updated_at, r.expires)
        for r in await store.deliveries(ALICE, 1, [mid(n) for n in ns])
    ]


async def queued_seqs(store: Store) -> list[int]:
    return [i.seq for i in await store.outbox(BETA, limit=100, max_bytes=1 << 20, now=NOW)]


async def test_queued_while_in_the_outbox_then_the_final_state_from_the_push(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1), item(2, device=2)])
    assert await answers(store, 2, 1) == [
        (mid(1), BETA, 1, "queued", "", NOW, NOW + DAY),
        (mid(2), BETA, 2, "queued", "", NOW, NOW + DAY),
    ]

    seqs = await queued_seqs(store)
    accepted, refused = status(1, "accepted", at=NOW + 5), status(2, "failed", "unknown_device", at=NOW + 5, device=2)
    await store.outbox_done(BETA, seqs, now=NOW + 5, statuses=[accepted, refused])

    # a final row is kept from the moment it became final (its expiry drops to then)
    assert await answers(store, 1, 2) == [
        (mid(1), BETA, 1, "accepted", "", NOW + 5, NOW + 5),
        (mid(2), BETA, 2, "failed", "unknown_device", NOW + 5, NOW + 5),
    ]
    assert await answers(store, 3) == []  # never sent: no answer
    assert await store.deliveries("mallory@alpha.example", 1, [mid(1)]) == []  # another sender's id


async def test_handed_to_a_relay_it_stays_queued_until_the_report(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 5)  # no status: a relay holds it
    assert await answers(store, 1) == [(mid(1), BETA, 1, "queued", "", NOW, NOW + DAY)]

    await store.receive([status(1, "failed", "mailbox_full", at=NOW + 9)], now=NOW + 9, quota=ROOMY)
    assert await answers(store, 1) == [(mid(1), BETA, 1, "failed", "mailbox_full", NOW + 9, NOW + 9)]


async def test_a_final_state_stays_final_when_the_envelope_is_sent_again(store: Store) -> None:
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)])
    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 5, statuses=[status(1, "accepted", at=NOW + 5)])

    # the device sends the same envelope again: queued anew, but its answer stays "accepted"
    await store.enqueue([], now=NOW + 6, quota=ROOMY, outbound=[item(1)])
    assert len(await queued_seqs(store)) == 1
    assert await answers(store, 1) == [(mid(1), BETA, 1, "accepted", "", NOW + 5, NOW + 5)]

    await store.outbox_done(BETA, await queued_seqs(store), now=NOW + 7, statuses=[status(1, "failed", "expired", at=NOW + 7)])
    assert await answers(store, 1) == [(mid(1), BETA, 1, "accepted", "", NOW + 5, NOW + 5)]


async def test_one_answer_per_node_and_device_as_the_first_item_queued_says(store: Store) -> None:
    # Delivery rows name the recipient's node and device number, not the account: the same id
    # to two accounts of one node with the same device number is one answer.
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1)])
    await store.enqueue([], now=NOW + 1, quota=ROOMY, outbound=[item(1, to=ROB)])
    assert await answers(store, 1) == [(mid(1), BETA, 1, "queued", "", NOW, NOW + DAY)]

    first, second = await queued_seqs(store)
    await store.outbox_done(BETA, [first], now=NOW + 2, statuses=[status(1, "accepted", at=NOW + 2)])
    assert await answers(store, 1) == [(mid(1), BETA, 1, "accepted", "", NOW + 2, NOW + 2)]
    await store.outbox_done(BETA, [second], now=NOW + 3, statuses=[status(1, "failed", "unknown_account", at=NOW + 3)])
    assert await answers(store, 1) == [(mid(1), BETA, 1, "accepted", "", NOW + 2, NOW + 2)]


async def test_a_disappearing_message_settled_after_its_time_is_gone_at_the_purge(store: Store) -> None:
    expires = NOW + SHORT_LIVED_MS // 2
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1, expires=expires)])
    assert [a[3] for a in await answers(store, 1)] == ["queued"]

    later = expires + 1  # its worker settles the expired item after the envelope's time
    [seq] = [i.seq for i in await store.expired_outbox(BETA, limit=10, max_bytes=1 << 20, now=later)]
    await store.outbox_done(BETA, [seq], now=later, statuses=[status(1, "failed", "expired", at=later)])
    assert [a[3:5] for a in await answers(store, 1)] == [("failed", "expired")]

    await store.purge_expired(now=later)  # no node keeps its id past its time
    assert await answers(store, 1) == []


async def test_rows_go_after_the_grace_and_queued_items_keep_answering(store: Store) -> None:
    from sonet.node.store import DELIVERY_GRACE_MS

    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item(1), item(2)])
    first, _second = await queued_seqs(store)
    await store.outbox_done(BETA, [first], now=NOW + 5, statuses=[status(1, "accepted", at=NOW + 5)])

    await store.expire_outbox(now=NOW + 5 + DELIVERY_GRACE_MS)
    assert [a[0] for a in await answers(store, 1, 2)] == [mid(2)]  # 1's row is gone, 2 still queued


async def test_migration_20_keeps_delivery_rows_and_the_mailbox_quota(db_path) -> None:
    import sqlite3
    from contextlib import closing

    import pytest

    from sonet.node.store import NewEnvelope, Quota, QuotaExceeded, SqliteStore
    from sonet.node.store.migrations import MIGRATIONS

    # A database as the version-19 software left it: a sender's queued and final rows, and a
    # device with a mailbox.
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for migration in MIGRATIONS[:19]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 19")
        conn.execute("INSERT INTO accounts (account, created_at) VALUES (?, ?)", (RITA, NOW))
        conn.execute("INSERT INTO devices (account, device_id, fingerprint, record, created_at) VALUES (?, 1, 'fp', x'', ?)", (RITA, NOW))
        conn.executemany(
            "INSERT INTO deliveries (sender_account, sender_device, id, dest, device, state, code, updated_at, expires)"
            " VALUES (?, 1, ?, ?, 1, ?, ?, ?, ?)",
            [(ALICE, mid(1), BETA, "queued", "", NOW, NOW + DAY), (ALICE, mid(2), BETA, "failed", "mailbox_full", NOW + 1, NOW + 1)],
        )

    one = Quota(max_envelopes=1, max_bytes=1 << 20)
    async with await SqliteStore.open(db_path) as store:
        assert await answers(store, 1, 2) == [
            (mid(1), BETA, 1, "queued", "", NOW, NOW + DAY),
            (mid(2), BETA, 1, "failed", "mailbox_full", NOW + 1, NOW + 1),
        ]
        await store.receive([status(1, "accepted", at=NOW + 2)], now=NOW + 2, quota=ROOMY)
        assert [a[3] for a in await answers(store, 1)] == ["accepted"]
        assert await store.enqueue([NewEnvelope(account=RITA, device_id=1, id=mid(7), expires=NOW + DAY, kind=1, body=b"x")], now=NOW, quota=one) == 1
        with pytest.raises(QuotaExceeded):
            await store.enqueue([NewEnvelope(account=RITA, device_id=1, id=mid(8), expires=NOW + DAY, kind=1, body=b"y")], now=NOW, quota=one)
    with closing(sqlite3.connect(db_path)) as conn:
        indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "mailbox_quota" not in indexes and "deliveries_envelope" not in indexes
