"""A device is created together with its first prekeys, in one transaction, and creating it
again with the same key (a retry after a lost answer) returns the stored row and writes
nothing (node/store/base.py register_account, add_device, invite_usable); run against every
backend via the `store` fixture."""

from __future__ import annotations

import pytest

from sonet.core import limits
from sonet.node.store import AccountExists, DeviceKeySet, InviteInvalid, StaleDeviceList, Store, StoreError

from .test_contract import ALICE, BOB, DAY, NOW, register


def keys(one_time: int = 3, pq_one_time: int = 2, *, first_id: int = 10) -> DeviceKeySet:
    """Stand-in prekey blobs (the store does not read them; the node checked them)."""
    return DeviceKeySet(
        signed_prekey=b"signed prekey",
        pq_last_resort=b"last resort",
        one_time=[(first_id + i, b"x25519 %d" % i) for i in range(one_time)],
        pq_one_time=[(first_id + i, b"mlkem %d" % i) for i in range(pq_one_time)],
    )


async def register_with(
    store: Store, account: str, *, fingerprint: str = "fp-first", identity: bytes = b"account key",
    invite: bytes | None = b"h1", with_keys: DeviceKeySet | None = None, now: int = NOW,
):  # noqa: ANN201
    return await store.register_account(
        account=account,
        fingerprint=fingerprint,
        record=b"record of " + fingerprint.encode(),
        account_identity=identity,
        device_list=b"list v1",
        invite_hash=invite,
        now=now,
        keys=keys() if with_keys is None else with_keys,
    )


async def link_with(store: Store, account: str, fingerprint: str, *, version: int = 1, with_keys: DeviceKeySet | None = None):  # noqa: ANN201
    return await store.add_device(
        account=account,
        fingerprint=fingerprint,
        record=b"record of " + fingerprint.encode(),
        device_list=b"list v%d" % (version + 1),
        expected_version=version,
        now=NOW,
        keys=keys() if with_keys is None else with_keys,
    )


async def leaf_count(store: Store) -> int:
    return len(await store.directory_leaves(0, 2**63 - 1))


# Committed together --------------------------------------------------------------------


async def test_register_stores_the_device_with_its_keys(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    row = await register_with(store, ALICE)

    assert await store.prekey_counts(ALICE, row.device_id) == (3, 2)
    bundle = await store.take_bundle(ALICE, row.device_id)
    assert (bundle.signed_prekey, bundle.one_time) == (b"signed prekey", b"x25519 0")
    assert bundle.pq_prekey == b"mlkem 0"


async def test_keys_the_store_refuses_leave_no_device_and_keep_the_invite(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    too_many = keys(one_time=limits.MAX_ONE_TIME_PREKEYS + 1)

    with pytest.raises(StoreError) as err:
        await register_with(store, ALICE, with_keys=too_many)

    assert err.value.code == "too_many_prekeys"
    assert await store.account(ALICE) is None
    assert await store.device_by_fingerprint("fp-first") is None
    stats = await store.stats()
    assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (0, 0, 1)
    assert await leaf_count(store) == 0
    assert (await register_with(store, ALICE)).device_id == 1  # the invite still works


async def test_add_device_stores_the_device_with_its_keys_or_nothing(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    await register_with(store, ALICE)

    with pytest.raises(StoreError):
        await link_with(store, ALICE, "fp-phone", with_keys=keys(pq_one_time=limits.MAX_ONE_TIME_PREKEYS + 1))
    assert await store.device_by_fingerprint("fp-phone") is None
    assert (await store.account(ALICE)).device_list_version == 1  # type: ignore[union-attr]
    assert await leaf_count(store) == 1

    phone = await link_with(store, ALICE, "fp-phone")
    assert phone.device_id == 2
    assert await store.prekey_counts(ALICE, 2) == (3, 2)
    assert (await store.take_bundle(ALICE, 2)).signed_prekey == b"signed prekey"


# Retried with the same key ---------------------------------------------------------------


async def test_register_again_with_the_same_key_returns_the_same_row_and_writes_nothing(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    first = await register_with(store, ALICE)
    before = (await store.stats(), await leaf_count(store), await store.prekey_counts(ALICE, 1))

    again = await register_with(store, ALICE, with_keys=keys(first_id=500), now=NOW + 5)

    assert again == first
    assert (await store.stats(), await leaf_count(store), await store.prekey_counts(ALICE, 1)) == before


async def test_register_again_differently_is_refused(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    await store.add_invite(b"h2", now=NOW, expires_at=NOW + DAY)
    await register_with(store, ALICE)
    leaves = await leaf_count(store)

    with pytest.raises(InviteInvalid):  # another invite than the one it used
        await register_with(store, ALICE, invite=b"h2")
    with pytest.raises(AccountExists):  # another account key
        await register_with(store, ALICE, identity=b"another account key")
    with pytest.raises(InviteInvalid):  # the same key for another name: the used invite is spent
        await register_with(store, BOB)
    assert await leaf_count(store) == leaves
    assert (await store.stats())["invites_open"] == 1  # h2 was not consumed


async def test_a_used_invite_stays_used_for_any_other_key(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    await register_with(store, ALICE)

    with pytest.raises(InviteInvalid):
        await register_with(store, ALICE, fingerprint="fp-thief")
    with pytest.raises(InviteInvalid):
        await register_with(store, BOB, fingerprint="fp-thief")
    assert await store.device_by_fingerprint("fp-thief") is None
    assert await store.account(BOB) is None


async def test_open_registration_retry_and_a_taken_name(store: Store) -> None:
    first = await register_with(store, ALICE, invite=None)
    assert await register_with(store, ALICE, invite=None) == first
    with pytest.raises(AccountExists):
        await register_with(store, ALICE, invite=None, fingerprint="fp-other")


async def test_add_device_again_with_the_same_key_returns_the_same_row_and_writes_nothing(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    await register_with(store, ALICE)
    phone = await link_with(store, ALICE, "fp-phone")
    leaves = await leaf_count(store)

    # the retry signed the same list version as the first try, which the store now holds
    assert await link_with(store, ALICE, "fp-phone", version=1) == phone
    assert await link_with(store, ALICE, "fp-phone", version=2) == phone
    assert await leaf_count(store) == leaves
    assert (await store.account(ALICE)).device_list_version == 2  # type: ignore[union-attr]
    assert await store.prekey_counts(ALICE, 2) == (3, 2)
    with pytest.raises(StaleDeviceList):  # another new device still needs the current version
        await link_with(store, ALICE, "fp-laptop", version=1)


async def test_add_device_with_another_accounts_device_key_is_account_exists(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    await register_with(store, ALICE)
    bob = await register(store, BOB)

    with pytest.raises(AccountExists):
        await link_with(store, ALICE, bob.fingerprint)
    assert [d.device_id for d in await store.devices(ALICE)] == [1]


# invite_usable ------------------------------------------------------------------------------


async def test_invite_usable(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    await store.add_invite(b"old", now=NOW, expires_at=NOW + 10)

    assert await store.invite_usable(b"h1", account=ALICE, now=NOW)
    assert not await store.invite_usable(b"unknown", account=ALICE, now=NOW)
    assert not await store.invite_usable(b"old", account=ALICE, now=NOW + 10)  # expired
    await register_with(store, ALICE)
    assert await store.invite_usable(b"h1", account=ALICE, now=NOW + 2 * DAY)  # the retry of its registration
    assert not await store.invite_usable(b"h1", account=BOB, now=NOW)  # used, for anyone else
