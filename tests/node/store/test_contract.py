"""The Store contract (node/store/base.py), run against every backend via the `store` fixture."""

from __future__ import annotations

import pytest

from sonet.node.store import (
    AccountExists,
    AccountRow,
    DeviceRow,
    InviteInvalid,
    NewEnvelope,
    PrekeySet,
    Quota,
    QuotaExceeded,
    RemovedDeviceRow,
    StaleDeviceList,
    Store,
    StoreError,
)

NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000
ROOMY = Quota(max_envelopes=1000, max_bytes=1 << 20)

ALICE = "alice@alpha.example"
BOB = "bob@alpha.example"
CAROL = "carol@alpha.example"


def mid(n: int) -> bytes:
    """A 16-byte envelope id."""
    return n.to_bytes(16, "big")


def env(
    n: int,
    *,
    to: str = ALICE,
    device_id: int = 1,
    body: bytes = b"ciphertext",
    expires: int = NOW + DAY,
    kind: int = 1,
) -> NewEnvelope:
    return NewEnvelope(account=to, device_id=device_id, id=mid(n), expires=expires, kind=kind, body=body)


async def register(store: Store, account: str, *, invite: bytes | None = None, now: int = NOW) -> DeviceRow:
    return await store.register_account(
        account=account,
        fingerprint=f"fp-{account}",
        record=b"record of " + account.encode(),
        account_identity=b"identity of " + account.encode(),
        device_list=b"list v1 of " + account.encode(),
        invite_hash=invite,
        now=now,
    )


async def pending_ids(store: Store, account: str, *, now: int = NOW, after_seq: int = 0) -> list[bytes]:
    items = await store.pending(account, 1, after_seq=after_seq, limit=1000, now=now)
    return [item.id for item in items]


# Accounts and devices ----------------------------------------------------------------


async def test_register_creates_account_with_device_one(store: Store) -> None:
    row = await register(store, ALICE)

    assert row == DeviceRow(
        account=ALICE,
        device_id=1,
        fingerprint=f"fp-{ALICE}",
        record=b"record of " + ALICE.encode(),
        created_at=NOW,
    )
    assert await store.devices(ALICE) == [row]
    assert await store.device_by_fingerprint(f"fp-{ALICE}") == row


async def test_unknown_account_and_fingerprint(store: Store) -> None:
    await register(store, ALICE)

    assert await store.devices(BOB) == []
    assert await store.device_by_fingerprint("fp-nobody") is None


async def test_register_with_invite_consumes_it(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    assert (await store.stats())["invites_open"] == 1

    await register(store, ALICE, invite=b"h1")

    assert [d.account for d in await store.devices(ALICE)] == [ALICE]
    assert (await store.stats())["invites_open"] == 0


async def test_invite_is_single_use(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    await register(store, ALICE, invite=b"h1")

    with pytest.raises(InviteInvalid):
        await register(store, BOB, invite=b"h1")
    assert await store.devices(BOB) == []


async def test_expired_invite_is_invalid(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)

    with pytest.raises(InviteInvalid):
        await register(store, ALICE, invite=b"h1", now=NOW + DAY)  # expired at exactly expires_at
    assert await store.devices(ALICE) == []
    # Just before its expiry it would still have worked:
    await register(store, BOB, invite=b"h1", now=NOW + DAY - 1)
    assert len(await store.devices(BOB)) == 1


async def test_unknown_invite_is_invalid(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)

    with pytest.raises(InviteInvalid):
        await register(store, ALICE, invite=b"not-a-known-hash")
    assert await store.devices(ALICE) == []
    assert (await store.stats())["invites_open"] == 1


async def test_invalid_invite_is_reported_before_existing_account(store: Store) -> None:
    # Without a valid invite nobody learns whether an account exists.
    await register(store, ALICE)

    with pytest.raises(InviteInvalid):
        await register(store, ALICE, invite=b"not-a-known-hash")
    assert len(await store.devices(ALICE)) == 1


async def test_duplicate_invite_hash_is_refused(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)

    with pytest.raises(StoreError):
        await store.add_invite(b"h1", now=NOW, expires_at=NOW + 2 * DAY)
    assert (await store.stats())["invites_open"] == 1


async def test_existing_account_does_not_consume_invite(store: Store) -> None:
    first = await register(store, ALICE)
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)

    with pytest.raises(AccountExists):
        await store.register_account(
            account=ALICE,
            fingerprint="fp-other",
            record=b"r",
            account_identity=b"k",
            device_list=b"l",
            invite_hash=b"h1",
            now=NOW + 1,
        )

    assert await store.devices(ALICE) == [first]
    assert await store.device_by_fingerprint("fp-other") is None
    assert (await store.stats())["invites_open"] == 1
    await register(store, BOB, invite=b"h1")  # the invite still works
    assert len(await store.devices(BOB)) == 1


async def test_duplicate_fingerprint_is_account_exists(store: Store) -> None:
    first = await register(store, ALICE)
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)

    with pytest.raises(AccountExists):
        await store.register_account(
            account=BOB,
            fingerprint=first.fingerprint,
            record=b"r",
            account_identity=b"k",
            device_list=b"l",
            invite_hash=b"h1",
            now=NOW,
        )

    assert await store.devices(BOB) == []
    assert await store.device_by_fingerprint(first.fingerprint) == first
    stats = await store.stats()
    assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (1, 1, 1)


# Enqueue and pending -------------------------------------------------------------------


async def test_pending_is_in_enqueue_order_with_increasing_seq(store: Store) -> None:
    await register(store, ALICE)
    assert await store.enqueue([env(3), env(1), env(2)], now=NOW, quota=ROOMY) == 3
    assert await store.enqueue([env(9, body=b"later", kind=7)], now=NOW + 5, quota=ROOMY) == 1

    items = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW + 5)

    assert [item.id for item in items] == [mid(3), mid(1), mid(2), mid(9)]
    seqs = [item.seq for item in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    last = items[-1]
    assert (last.body, last.kind, last.expires, last.stored_at) == (b"later", 7, NOW + DAY, NOW + 5)


async def test_pending_after_seq_and_limit(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([env(n) for n in range(1, 6)], now=NOW, quota=ROOMY)
    everything = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)

    first_two = await store.pending(ALICE, 1, after_seq=0, limit=2, now=NOW)
    rest = await store.pending(ALICE, 1, after_seq=first_two[-1].seq, limit=10, now=NOW)

    assert first_two == everything[:2]
    assert rest == everything[2:]
    assert await store.pending(ALICE, 1, after_seq=everything[-1].seq, limit=10, now=NOW) == []


async def test_a_pending_read_says_whether_it_held_everything_past_its_start(store: Store) -> None:
    """``complete``: the delivery task does not read again until woken (node/client_session.py)."""
    await register(store, ALICE)
    await store.enqueue([env(n, body=bytes(10)) for n in range(1, 5)], now=NOW, quota=ROOMY)

    async def complete(limit: int, max_bytes: int | None, after_seq: int = 0) -> tuple[int, bool]:
        page = await store.pending(ALICE, 1, after_seq=after_seq, limit=limit, now=NOW, max_bytes=max_bytes)
        return len(page), page.complete

    assert await complete(10, None) == (4, True)
    assert await complete(5, 40) == (4, True)  # exactly at the byte cap, under the count
    assert await complete(4, None) == (4, False)  # stopped at the count: there may be more
    assert await complete(10, 25) == (2, False)  # stopped at the byte cap
    assert await complete(10, 5) == (1, False)  # the first alone, over the cap
    everything = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)
    assert await complete(10, None, after_seq=everything[-1].seq) == (0, True)


async def test_pending_rejects_a_limit_below_one(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([env(1)], now=NOW, quota=ROOMY)

    with pytest.raises(ValueError):
        await store.pending(ALICE, 1, after_seq=0, limit=0, now=NOW)


async def test_seq_increases_across_mailboxes(store: Store) -> None:
    await register(store, ALICE)
    await register(store, BOB)
    await store.enqueue([env(1, to=ALICE), env(2, to=BOB), env(3, to=ALICE)], now=NOW, quota=ROOMY)

    alice = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)
    bob = await store.pending(BOB, 1, after_seq=0, limit=10, now=NOW)

    assert [i.id for i in alice] == [mid(1), mid(3)]
    assert [i.id for i in bob] == [mid(2)]
    assert alice[0].seq < bob[0].seq < alice[1].seq


async def test_enqueue_to_unknown_device_stores_nothing(store: Store) -> None:
    await register(store, ALICE)

    with pytest.raises(StoreError):
        await store.enqueue([env(1), env(2, device_id=2)], now=NOW, quota=ROOMY)

    assert await pending_ids(store, ALICE) == []


async def test_envelope_expired_on_arrival_is_not_stored(store: Store) -> None:
    await register(store, ALICE)

    assert await store.enqueue([env(1, expires=NOW)], now=NOW, quota=ROOMY) == 0
    assert (await store.stats())["envelopes"] == 0


# Deduplication --------------------------------------------------------------------------


async def test_duplicate_within_batch_is_stored_once(store: Store) -> None:
    await register(store, ALICE)

    new = await store.enqueue([env(1, body=b"first"), env(1, body=b"second")], now=NOW, quota=ROOMY)

    assert new == 1
    items = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)
    assert [(i.id, i.body) for i in items] == [(mid(1), b"first")]


async def test_duplicate_across_batches_is_skipped(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([env(1)], now=NOW, quota=ROOMY)

    assert await store.enqueue([env(1), env(2)], now=NOW + 1, quota=ROOMY) == 1
    assert await pending_ids(store, ALICE) == [mid(1), mid(2)]


async def test_same_id_in_different_mailboxes_is_not_a_duplicate(store: Store) -> None:
    await register(store, ALICE)
    await register(store, BOB)

    assert await store.enqueue([env(1, to=ALICE), env(1, to=BOB)], now=NOW, quota=ROOMY) == 2
    assert await pending_ids(store, ALICE) == [mid(1)]
    assert await pending_ids(store, BOB) == [mid(1)]


async def test_acked_id_is_skipped_until_expiry_then_accepted_after_purge(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([env(1, expires=NOW + DAY)], now=NOW, quota=ROOMY)
    assert await store.ack(ALICE, 1, [mid(1)], now=NOW + 1) == 1

    # A retransmission before expiry is recognised and not delivered again.
    assert await store.enqueue([env(1, expires=NOW + DAY)], now=NOW + 2, quota=ROOMY) == 0
    assert await pending_ids(store, ALICE, now=NOW + 2) == []

    # remembered until the end of the (UTC) day the envelope expires, no finer
    later = day_end(NOW + DAY)
    await store.purge_expired(now=later)
    assert await store.enqueue([env(1, expires=later + 3 * DAY)], now=later, quota=ROOMY) == 1
    assert await pending_ids(store, ALICE, now=later) == [mid(1)]


def day_end(at: int) -> int:
    """The end of the UTC day ``at`` falls in (a day's last moment: its next day's start)."""
    return -(-at // DAY) * DAY


async def test_an_ack_record_blocks_until_the_end_of_its_expiry_day_then_no_longer_before_purge(store: Store) -> None:
    await register(store, ALICE)
    expires = NOW + 30 * DAY  # an ordinary envelope's lifetime (a short one's record ends at its expiry: below)
    await store.enqueue([env(1, expires=expires)], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(1)], now=NOW)

    assert await store.enqueue([env(1, expires=expires)], now=expires - 1, quota=ROOMY) == 0
    assert await store.enqueue([env(1, expires=day_end(expires) + DAY)], now=day_end(expires) - 1, quota=ROOMY) == 0
    assert await store.enqueue([env(1, expires=day_end(expires) + DAY)], now=day_end(expires), quota=ROOMY) == 1
    assert await pending_ids(store, ALICE, now=day_end(expires)) == [mid(1)]


async def test_a_short_lived_envelopes_ack_record_ends_at_its_expiry(store: Store) -> None:
    """A disappearing message's id is not kept past its time (node/store/vanishing.py)."""
    await register(store, ALICE)
    await store.enqueue([env(1, expires=NOW + 10)], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(1)], now=NOW)

    assert await store.enqueue([env(1, expires=NOW + DAY)], now=NOW + 9, quota=ROOMY) == 0
    assert await store.enqueue([env(1, expires=NOW + DAY)], now=NOW + 10, quota=ROOMY) == 1


async def test_reacked_envelope_is_deduplicated_again(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([env(1, expires=NOW + 10)], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(1)], now=NOW)
    await store.enqueue([env(1, expires=day_end(NOW) + DAY)], now=day_end(NOW), quota=ROOMY)

    assert await store.ack(ALICE, 1, [mid(1)], now=day_end(NOW) + 1) == 1
    assert await store.enqueue([env(1, expires=day_end(NOW) + DAY)], now=day_end(NOW) + 2, quota=ROOMY) == 0


# Quotas ---------------------------------------------------------------------------------


async def test_quota_by_count(store: Store) -> None:
    await register(store, ALICE)
    quota = Quota(max_envelopes=2, max_bytes=1 << 20)
    assert await store.enqueue([env(1), env(2)], now=NOW, quota=quota) == 2

    with pytest.raises(QuotaExceeded):
        await store.enqueue([env(3)], now=NOW, quota=quota)
    assert await pending_ids(store, ALICE) == [mid(1), mid(2)]


async def test_quota_by_count_rejects_whole_batch(store: Store) -> None:
    await register(store, ALICE)

    with pytest.raises(QuotaExceeded):
        await store.enqueue([env(1), env(2), env(3)], now=NOW, quota=Quota(max_envelopes=2, max_bytes=1 << 20))
    assert await pending_ids(store, ALICE) == []


async def test_quota_by_bytes(store: Store) -> None:
    await register(store, ALICE)
    quota = Quota(max_envelopes=100, max_bytes=10)
    assert await store.enqueue([env(1, body=b"12345"), env(2, body=b"12345")], now=NOW, quota=quota) == 2

    with pytest.raises(QuotaExceeded):
        await store.enqueue([env(3, body=b"1")], now=NOW, quota=quota)
    assert await pending_ids(store, ALICE) == [mid(1), mid(2)]
    assert (await store.stats())["envelope_bytes"] == 10


async def test_quota_by_bytes_counts_the_whole_batch(store: Store) -> None:
    await register(store, ALICE)
    quota = Quota(max_envelopes=100, max_bytes=10)

    with pytest.raises(QuotaExceeded):
        await store.enqueue([env(1, body=b"123456"), env(2, body=b"12345")], now=NOW, quota=quota)
    assert await pending_ids(store, ALICE) == []
    assert await store.enqueue([env(1, body=b"123456"), env(2, body=b"1234")], now=NOW, quota=quota) == 2


async def test_duplicates_in_batch_count_once_against_quota(store: Store) -> None:
    await register(store, ALICE)
    quota = Quota(max_envelopes=1, max_bytes=10)

    assert await store.enqueue([env(1, body=b"1234567890"), env(1, body=b"1234567890")], now=NOW, quota=quota) == 1
    assert await pending_ids(store, ALICE) == [mid(1)]


async def test_retransmission_into_full_mailbox_is_accepted_as_duplicate(store: Store) -> None:
    await register(store, ALICE)
    quota = Quota(max_envelopes=1, max_bytes=1 << 20)
    await store.enqueue([env(1)], now=NOW, quota=quota)

    assert await store.enqueue([env(1)], now=NOW + 1, quota=quota) == 0
    assert await pending_ids(store, ALICE) == [mid(1)]


async def test_quota_overflow_in_one_mailbox_rejects_batch_for_all(store: Store) -> None:
    await register(store, ALICE)
    await register(store, BOB)
    quota = Quota(max_envelopes=2, max_bytes=1 << 20)
    await store.enqueue([env(1, to=BOB), env(2, to=BOB)], now=NOW, quota=quota)

    with pytest.raises(QuotaExceeded):
        await store.enqueue([env(3, to=ALICE), env(4, to=BOB)], now=NOW, quota=quota)

    assert await pending_ids(store, ALICE) == []
    assert await pending_ids(store, BOB) == [mid(1), mid(2)]


async def test_expired_envelopes_do_not_count_against_quota(store: Store) -> None:
    await register(store, ALICE)
    quota = Quota(max_envelopes=1, max_bytes=1 << 20)
    await store.enqueue([env(1, expires=NOW + 10)], now=NOW, quota=quota)

    assert await store.enqueue([env(2)], now=NOW + 10, quota=quota) == 1
    assert await pending_ids(store, ALICE, now=NOW + 10) == [mid(2)]


# Acknowledgement, expiry, purge --------------------------------------------------------------


async def test_ack_deletes_only_given_ids_of_that_mailbox(store: Store) -> None:
    await register(store, ALICE)
    await register(store, BOB)
    await store.enqueue([env(1, to=ALICE), env(2, to=ALICE), env(3, to=ALICE), env(1, to=BOB)], now=NOW, quota=ROOMY)

    acked = await store.ack(ALICE, 1, [mid(1), mid(3), mid(3), mid(99)], now=NOW)

    assert acked == 2  # mid(3) listed twice counts once; mid(99) never existed
    assert await pending_ids(store, ALICE) == [mid(2)]
    assert await pending_ids(store, BOB) == [mid(1)]
    assert await store.ack(ALICE, 1, [mid(1)], now=NOW) == 0  # already gone


async def test_ack_of_expired_envelope_counts_nothing_but_removes_it(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue([env(1, expires=NOW + 10)], now=NOW, quota=ROOMY)

    assert await store.ack(ALICE, 1, [mid(1)], now=NOW + 10) == 0
    assert (await store.stats())["envelopes"] == 0


async def test_expired_envelopes_are_hidden_then_purged(store: Store) -> None:
    await register(store, ALICE)
    await store.enqueue(
        [env(1, expires=NOW + 100, body=b"short"), env(2, expires=NOW + DAY, body=b"long")],
        now=NOW,
        quota=ROOMY,
    )
    assert await pending_ids(store, ALICE, now=NOW + 99) == [mid(1), mid(2)]

    assert await pending_ids(store, ALICE, now=NOW + 100) == [mid(2)]  # hidden at expiry
    assert (await store.stats())["envelopes"] == 2  # still stored until purged
    assert await store.purge_expired(now=NOW + 100) == 1
    stats = await store.stats()
    assert (stats["envelopes"], stats["envelope_bytes"]) == (1, len(b"long"))
    assert await store.purge_expired(now=NOW + 100) == 0


async def test_purge_forgets_expired_invites(store: Store) -> None:
    await store.add_invite(b"old", now=NOW, expires_at=NOW + 10)
    await store.add_invite(b"new", now=NOW, expires_at=NOW + DAY)

    await store.purge_expired(now=NOW + 10)

    assert (await store.stats())["invites_open"] == 1
    with pytest.raises(InviteInvalid):
        await register(store, ALICE, invite=b"old", now=NOW + 10)
    await register(store, BOB, invite=b"new", now=NOW + 10)


async def test_stats_counts(store: Store) -> None:
    empty = await store.stats()
    assert {k: empty[k] for k in ("accounts", "devices", "envelopes", "envelope_bytes", "invites_open")} == {
        "accounts": 0,
        "devices": 0,
        "envelopes": 0,
        "envelope_bytes": 0,
        "invites_open": 0,
    }

    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    await store.add_invite(b"h2", now=NOW, expires_at=NOW + DAY)
    await register(store, ALICE, invite=b"h1")
    await register(store, BOB)
    await store.enqueue([env(1, body=b"abc"), env(2, body=b"defgh"), env(3, to=BOB, body=b"i")], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 1, [mid(2)], now=NOW)

    stats = await store.stats()
    assert stats["accounts"] == 2
    assert stats["devices"] == 2
    assert stats["envelopes"] == 2
    assert stats["envelope_bytes"] == len(b"abc") + len(b"i")
    assert stats["invites_open"] == 1


# Account identity and device lists ----------------------------------------------------


async def add(store: Store, account: str, name: str, *, expected_version: int, now: int = NOW) -> DeviceRow:
    return await store.add_device(
        account=account,
        fingerprint=f"fp-{name}",
        record=b"record of " + name.encode(),
        device_list=f"list v{expected_version + 1}".encode(),
        expected_version=expected_version,
        now=now,
    )


async def test_register_stores_identity_and_list_version_one(store: Store) -> None:
    await register(store, ALICE, now=NOW + 7)

    assert await store.account(ALICE) == AccountRow(
        account=ALICE,
        account_identity=b"identity of " + ALICE.encode(),
        device_list=b"list v1 of " + ALICE.encode(),
        device_list_version=1,
        created_at=NOW + 7,
    )
    assert await store.account(BOB) is None


async def test_add_device_takes_the_next_id_and_replaces_the_list(store: Store) -> None:
    first = await register(store, ALICE)

    second = await add(store, ALICE, "phone", expected_version=1, now=NOW + 5)

    assert second == DeviceRow(
        account=ALICE, device_id=2, fingerprint="fp-phone", record=b"record of phone", created_at=NOW + 5
    )
    assert await store.devices(ALICE) == [first, second]
    assert await store.device_by_fingerprint("fp-phone") == second
    row = await store.account(ALICE)
    assert row is not None
    assert (row.device_list, row.device_list_version) == (b"list v2", 2)
    assert row.account_identity == b"identity of " + ALICE.encode()  # unchanged
    assert (await store.stats())["devices"] == 2


async def test_add_device_with_a_stale_version_writes_nothing(store: Store) -> None:
    await register(store, ALICE)
    await add(store, ALICE, "phone", expected_version=1, now=NOW)

    for version in (1, 3, 0):
        with pytest.raises(StaleDeviceList):
            await add(store, ALICE, "laptop", expected_version=version)

    assert [d.device_id for d in await store.devices(ALICE)] == [1, 2]
    assert await store.device_by_fingerprint("fp-laptop") is None
    row = await store.account(ALICE)
    assert row is not None and (row.device_list, row.device_list_version) == (b"list v2", 2)
    assert StaleDeviceList.code == "stale_device_list"


async def test_add_device_with_a_registered_fingerprint_is_account_exists(store: Store) -> None:
    await register(store, ALICE)
    bob = await register(store, BOB)

    with pytest.raises(AccountExists):
        await store.add_device(
            account=ALICE, fingerprint=bob.fingerprint, record=b"r", device_list=b"l", expected_version=1, now=NOW
        )

    assert [d.device_id for d in await store.devices(ALICE)] == [1]
    assert (await store.account(ALICE)).device_list_version == 1  # type: ignore[union-attr]
    assert await store.device_by_fingerprint(bob.fingerprint) == bob


async def test_add_device_to_an_unknown_account_fails(store: Store) -> None:
    with pytest.raises(StoreError):
        await add(store, ALICE, "phone", expected_version=1, now=NOW)
    assert await store.devices(ALICE) == []


async def test_remove_device_deletes_it_with_its_mailbox_and_prekeys(store: Store) -> None:
    first = await register(store, ALICE)
    await add(store, ALICE, "phone", expected_version=1, now=NOW)
    await store.enqueue([env(1, device_id=1), env(2, device_id=2), env(3, device_id=2)], now=NOW, quota=ROOMY)
    await store.ack(ALICE, 2, [mid(3)], now=NOW)
    await store.publish_prekeys(
        ALICE, 2, signed_prekey=b"spk", pq_last_resort=b"pqlr", one_time=[(1, b"o1")], pq_one_time=[(1, b"p1")], max_one_time=10
    )

    assert await store.remove_device(account=ALICE, device_id=2, device_list=b"list v3", expected_version=2, now=NOW) is True

    assert await store.devices(ALICE) == [first]
    assert await store.device_by_fingerprint("fp-phone") is None
    assert await store.removed_device("fp-phone") == RemovedDeviceRow(account=ALICE, device_id=2, removed_at=NOW)
    assert await store.removed_device(first.fingerprint) is None  # still there, not removed
    row = await store.account(ALICE)
    assert row is not None and (row.device_list, row.device_list_version) == (b"list v3", 3)
    assert await store.pending(ALICE, 2, after_seq=0, limit=10, now=NOW) == []
    assert await pending_ids(store, ALICE) == [mid(1)]  # the other mailbox is untouched
    stats = await store.stats()
    assert (stats["devices"], stats["envelopes"]) == (1, 1)
    assert await store.prekey_counts(ALICE, 2) == (0, 0)
    assert await store.take_bundle(ALICE, 2) == PrekeySet(signed_prekey=None, pq_prekey=None, one_time=None)
    with pytest.raises(StoreError):  # no mailbox any more
        await store.enqueue([env(4, device_id=2)], now=NOW, quota=ROOMY)


async def test_remove_unknown_device_returns_false_and_writes_nothing(store: Store) -> None:
    await register(store, ALICE)

    assert await store.remove_device(account=ALICE, device_id=7, device_list=b"list v2", expected_version=1, now=NOW) is False

    row = await store.account(ALICE)
    assert row is not None and (row.device_list, row.device_list_version) == (b"list v1 of " + ALICE.encode(), 1)
    assert [d.device_id for d in await store.devices(ALICE)] == [1]


async def test_remove_device_with_a_stale_version_writes_nothing(store: Store) -> None:
    await register(store, ALICE)
    await add(store, ALICE, "phone", expected_version=1, now=NOW)
    await store.enqueue([env(1, device_id=2)], now=NOW, quota=ROOMY)

    with pytest.raises(StaleDeviceList):
        await store.remove_device(account=ALICE, device_id=2, device_list=b"list v2'", expected_version=1, now=NOW)

    assert [d.device_id for d in await store.devices(ALICE)] == [1, 2]
    assert await store.removed_device("fp-phone") is None
    assert [i.id for i in await store.pending(ALICE, 2, after_seq=0, limit=10, now=NOW)] == [mid(1)]
    assert (await store.account(ALICE)).device_list == b"list v2"  # type: ignore[union-attr]


async def test_device_ids_are_never_reused(open_backend) -> None:  # noqa: ANN001
    store = await open_backend()
    try:
        await register(store, ALICE)
        await register(store, BOB)
        assert (await add(store, ALICE, "a2", expected_version=1, now=NOW)).device_id == 2
        assert (await add(store, ALICE, "a3", expected_version=2, now=NOW)).device_id == 3
        assert await store.remove_device(account=ALICE, device_id=3, device_list=b"v4", expected_version=3, now=NOW)
        assert (await add(store, ALICE, "a4", expected_version=4, now=NOW)).device_id == 4  # not 3 again
        assert await store.remove_device(account=ALICE, device_id=4, device_list=b"v6", expected_version=5, now=NOW)
        assert await store.remove_device(account=ALICE, device_id=2, device_list=b"v7", expected_version=6, now=NOW)
        # another account's counter is its own
        assert (await add(store, BOB, "b2", expected_version=1, now=NOW)).device_id == 2
    finally:
        await store.close()
    store = await open_backend()  # the counter is durable, not in memory
    try:
        assert (await add(store, ALICE, "a5", expected_version=7, now=NOW)).device_id == 5
        assert [d.device_id for d in await store.devices(ALICE)] == [1, 5]
    finally:
        await store.close()


# Prekeys --------------------------------------------------------------------------------


async def publish(
    store: Store,
    *,
    device_id: int = 1,
    signed: bytes | None = None,
    last_resort: bytes | None = None,
    one_time: list[int] = [],  # noqa: B006 - never mutated
    pq_one_time: list[int] = [],  # noqa: B006
    max_one_time: int = 100,
    tag: bytes = b"",
) -> tuple[int, int]:
    return await store.publish_prekeys(
        ALICE,
        device_id,
        signed_prekey=signed,
        pq_last_resort=last_resort,
        one_time=[(i, b"x%d" % i + tag) for i in one_time],
        pq_one_time=[(i, b"k%d" % i + tag) for i in pq_one_time],
        max_one_time=max_one_time,
    )


async def test_publish_reports_counts_and_take_pops_oldest_first(store: Store) -> None:
    await register(store, ALICE)
    assert await store.prekey_counts(ALICE, 1) == (0, 0)

    assert await publish(store, signed=b"spk", last_resort=b"pqlr", one_time=[5, 3], pq_one_time=[9]) == (2, 1)
    assert await publish(store, one_time=[1], pq_one_time=[2]) == (3, 2)
    assert await store.prekey_counts(ALICE, 1) == (3, 2)

    # in the order they were published, not by id
    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=b"spk", pq_prekey=b"k9", one_time=b"x5")
    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=b"spk", pq_prekey=b"k2", one_time=b"x3")
    assert await store.prekey_counts(ALICE, 1) == (1, 0)
    # one-time ML-KEM keys used up: the last-resort key, as often as needed; X25519: none
    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=b"spk", pq_prekey=b"pqlr", one_time=b"x1")
    for _ in range(2):
        assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=b"spk", pq_prekey=b"pqlr", one_time=None)
    assert await store.prekey_counts(ALICE, 1) == (0, 0)


async def test_take_bundle_without_prekeys(store: Store) -> None:
    await register(store, ALICE)

    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=None, pq_prekey=None, one_time=None)
    await publish(store, one_time=[1])
    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=None, pq_prekey=None, one_time=b"x1")


async def test_signed_and_last_resort_keys_are_replaced_only_when_given(store: Store) -> None:
    await register(store, ALICE)
    await publish(store, signed=b"spk1", last_resort=b"pqlr1")

    await publish(store, signed=b"spk2")
    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=b"spk2", pq_prekey=b"pqlr1", one_time=None)
    await publish(store, last_resort=b"pqlr2")
    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=b"spk2", pq_prekey=b"pqlr2", one_time=None)
    assert await publish(store) == (0, 0)  # all empty: just the counts
    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=b"spk2", pq_prekey=b"pqlr2", one_time=None)


async def test_duplicate_one_time_ids_are_ignored(store: Store) -> None:
    await register(store, ALICE)
    await publish(store, one_time=[1, 2], pq_one_time=[1])

    # stored ids again (with other blobs), and an id twice in one call: the first one counts
    assert await publish(store, one_time=[2, 3, 3], pq_one_time=[1, 1], tag=b"-again") == (3, 1)
    assert [(await store.take_bundle(ALICE, 1)).one_time for _ in range(4)] == [b"x1", b"x2", b"x3-again", None]
    # ids are per kind: X25519 id 1 and ML-KEM id 1 are different keys
    assert await publish(store, one_time=[7], pq_one_time=[7]) == (1, 1)


async def test_a_taken_one_time_key_is_never_handed_out_again(store: Store) -> None:
    await register(store, ALICE)
    await publish(store, one_time=[1], pq_one_time=[1], last_resort=b"pqlr")
    first = await store.take_bundle(ALICE, 1)
    assert (first.one_time, first.pq_prekey) == (b"x1", b"k1")

    # a device republishing the same ids (say, after a crash) does not bring them back
    assert await publish(store, one_time=[1], pq_one_time=[1]) == (0, 0)
    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=None, pq_prekey=b"pqlr", one_time=None)


async def test_too_many_one_time_prekeys_writes_nothing(store: Store) -> None:
    await register(store, ALICE)
    await publish(store, signed=b"spk1", one_time=[1, 2], pq_one_time=[1], max_one_time=3)

    for one_time, pq_one_time in (([3, 4], []), ([3], [2, 3, 4])):
        with pytest.raises(StoreError) as err:
            await publish(store, signed=b"spk2", last_resort=b"pqlr", one_time=one_time, pq_one_time=pq_one_time, max_one_time=3)
        assert err.value.code == "too_many_prekeys"

    assert await store.prekey_counts(ALICE, 1) == (2, 1)
    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=b"spk1", pq_prekey=b"k1", one_time=b"x1")
    # duplicates do not count against the limit, and taken keys no longer do
    assert await publish(store, one_time=[1, 2, 3, 4], max_one_time=3) == (3, 0)


async def test_prekeys_are_per_device(store: Store) -> None:
    await register(store, ALICE)
    await add(store, ALICE, "phone", expected_version=1, now=NOW)
    await publish(store, device_id=1, signed=b"spk-1", one_time=[1])
    await publish(store, device_id=2, signed=b"spk-2", one_time=[1], tag=b"-phone")

    assert await store.prekey_counts(ALICE, 2) == (1, 0)
    assert await store.take_bundle(ALICE, 2) == PrekeySet(signed_prekey=b"spk-2", pq_prekey=None, one_time=b"x1-phone")
    assert await store.take_bundle(ALICE, 1) == PrekeySet(signed_prekey=b"spk-1", pq_prekey=None, one_time=b"x1")


async def test_publish_for_an_unknown_device_fails(store: Store) -> None:
    await register(store, ALICE)

    with pytest.raises(StoreError):
        await publish(store, device_id=2, signed=b"spk", one_time=[1])
    assert await store.prekey_counts(ALICE, 2) == (0, 0)


# Federation peers -------------------------------------------------------------------------

FP_B = "b" * 32
FP_C = "c" * 32


async def test_add_peer_normalises_and_lists_by_name(store: Store) -> None:
    from sonet.node.store import Peer

    added = await store.add_peer(name="Gamma.Example", url="wss://gamma.example/", fingerprint=FP_C.upper(), via=None, now=NOW)
    await store.add_peer(name="beta.example", url="ws://127.0.0.1:7481", fingerprint="-".join([FP_B[:16], FP_B[16:]]), via=None, now=NOW + 1)
    assert added == Peer(name="gamma.example", url="wss://gamma.example", fingerprint=FP_C, via=None, added_at=NOW)
    assert [(p.name, p.fingerprint, p.added_at) for p in await store.peers()] == [
        ("beta.example", FP_B, NOW + 1),
        ("gamma.example", FP_C, NOW),
    ]


async def test_add_peer_refuses_a_duplicate_name(store: Store) -> None:
    from sonet.node.store import PeerExists

    await store.add_peer(name="beta.example", url="ws://b:1", fingerprint=FP_B, via=None, now=NOW)
    with pytest.raises(PeerExists):
        await store.add_peer(name="BETA.example", url="ws://other:2", fingerprint=FP_C, via=None, now=NOW)
    assert [(p.url, p.fingerprint) for p in await store.peers()] == [("ws://b:1", FP_B)]


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "bad name", "url": "ws://b:1", "fingerprint": FP_B},
        {"name": "beta.example", "url": "http://b:1", "fingerprint": FP_B},
        {"name": "beta.example", "url": "ws://", "fingerprint": FP_B},
        {"name": "beta.example", "url": "ws://b:1", "fingerprint": "not-a-fingerprint"},
        {"name": "beta.example", "url": "ws://b:1", "fingerprint": FP_B, "via": "beta.example"},
        {"name": "beta.example", "url": "ws://b:1", "fingerprint": FP_B, "via": "unknown.example"},
    ],
)
async def test_add_peer_refuses_invalid_entries(store: Store, fields: dict) -> None:
    from sonet.node.store import PeerInvalid

    fields = dict(fields)  # a copy: the parameter is shared by the runs of every backend
    with pytest.raises(PeerInvalid):
        await store.add_peer(via=fields.pop("via", None), now=NOW, **fields)
    assert await store.peers() == []


async def test_via_must_name_a_configured_peer_and_blocks_its_removal(store: Store) -> None:
    from sonet.node.store import PeerInvalid

    await store.add_peer(name="relay.example", url="ws://r:1", fingerprint=FP_B, via=None, now=NOW)
    far = await store.add_peer(name="far.example", url="ws://f:1", fingerprint=FP_C, via="Relay.Example", now=NOW)
    assert far.via == "relay.example"
    with pytest.raises(PeerInvalid):
        await store.remove_peer("relay.example")
    assert await store.remove_peer("far.example") is True
    assert await store.remove_peer("relay.example") is True
    assert await store.peers() == []


async def test_remove_unknown_peer_is_false(store: Store) -> None:
    await store.add_peer(name="beta.example", url="ws://b:1", fingerprint=FP_B, via=None, now=NOW)
    assert await store.remove_peer("gamma.example") is False
    assert [p.name for p in await store.peers()] == ["beta.example"]


async def test_adding_and_removing_a_peer_moves_admin_version(store: Store) -> None:
    """A running node polls it (node/admin_watch.py) and then routes by the new peer table."""
    version = await store.admin_version()
    await store.add_peer(name="beta.example", url="ws://b:1", fingerprint=FP_B, via=None, now=NOW)
    assert await store.admin_version() == version + 1
    assert await store.remove_peer("beta.example") is True
    assert await store.admin_version() == version + 2
    assert await store.remove_peer("beta.example") is False  # nothing removed: nothing moved
    assert await store.admin_version() == version + 2


async def test_peers_survive_reopening(open_backend) -> None:  # noqa: ANN001 - fixture
    first = await open_backend()
    try:
        await first.add_peer(name="beta.example", url="ws://b:1", fingerprint=FP_B, via=None, now=NOW)
    finally:
        await first.close()
    second = await open_backend()
    try:
        assert [p.name for p in await second.peers()] == ["beta.example"]
    finally:
        await second.close()
