"""The Store contract for MLS KeyPackages (node/store/base.py), run against every backend: one-time
KeyPackages handed out once, oldest first, then the last-resort one; the per-device cap; removal
of the device takes them along. Blobs are opaque to the store (the node checks them first)."""

from __future__ import annotations

import pytest

from sonet.node.store import Store, StoreError

from .test_contract import ALICE, BOB, NOW, add, register


def kp(n: int) -> tuple[bytes, bytes]:
    """(KeyPackageRef, blob) of a made-up KeyPackage."""
    return n.to_bytes(32, "big"), b"key package %d" % n


async def test_one_per_device_one_time_first_and_each_once_then_the_last_resort(store: Store) -> None:
    await register(store, ALICE)
    await add(store, ALICE, "phone", expected_version=1)
    assert await store.publish_key_packages(ALICE, 1, one_time=[kp(1), kp(2)], last_resort=kp(9), max_one_time=10) == 2
    assert await store.publish_key_packages(ALICE, 2, one_time=[kp(3)], last_resort=None, max_one_time=10) == 1

    assert await store.take_key_packages(ALICE) == [(1, kp(1)[1]), (2, kp(3)[1])]
    assert await store.take_key_packages(ALICE) == [(1, kp(2)[1])]  # device 2 has no last-resort one
    assert await store.take_key_packages(ALICE) == [(1, kp(9)[1])]
    assert await store.take_key_packages(ALICE) == [(1, kp(9)[1])]  # the last-resort one stays
    assert (await store.key_package_count(ALICE, 1), await store.key_package_count(ALICE, 2)) == (0, 0)


async def test_without_one_time_only_last_resort_ones_are_handed_out(store: Store) -> None:
    await register(store, ALICE)
    await store.publish_key_packages(ALICE, 1, one_time=[kp(1)], last_resort=kp(9), max_one_time=10)

    assert await store.take_key_packages(ALICE, one_time=False) == [(1, kp(9)[1])]
    assert await store.key_package_count(ALICE, 1) == 1  # nothing popped
    assert await store.take_key_packages(ALICE) == [(1, kp(1)[1])]


async def test_unknown_account_or_none_published_gives_nothing(store: Store) -> None:
    await register(store, ALICE)
    assert await store.take_key_packages(ALICE) == []
    assert await store.take_key_packages(BOB) == []


async def test_the_last_resort_one_is_replaced_only_when_given(store: Store) -> None:
    await register(store, ALICE)
    await store.publish_key_packages(ALICE, 1, one_time=[], last_resort=kp(8), max_one_time=10)
    await store.publish_key_packages(ALICE, 1, one_time=[], last_resort=None, max_one_time=10)
    assert await store.take_key_packages(ALICE) == [(1, kp(8)[1])]
    await store.publish_key_packages(ALICE, 1, one_time=[], last_resort=kp(9), max_one_time=10)
    assert await store.take_key_packages(ALICE) == [(1, kp(9)[1])]


async def test_a_key_package_is_stored_once_and_never_accepted_again_once_handed_out(store: Store) -> None:
    await register(store, ALICE)
    assert await store.publish_key_packages(ALICE, 1, one_time=[kp(1), kp(1)], last_resort=None, max_one_time=10) == 1
    assert await store.publish_key_packages(ALICE, 1, one_time=[kp(1)], last_resort=None, max_one_time=10) == 1
    assert await store.take_key_packages(ALICE) == [(1, kp(1)[1])]
    # published again after it was handed out: ignored, so never handed out twice
    assert await store.publish_key_packages(ALICE, 1, one_time=[kp(1)], last_resort=None, max_one_time=10) == 0
    assert await store.take_key_packages(ALICE) == []


async def test_over_the_cap_nothing_is_written(store: Store) -> None:
    await register(store, ALICE)
    await store.publish_key_packages(ALICE, 1, one_time=[kp(1), kp(2)], last_resort=kp(8), max_one_time=3)
    with pytest.raises(StoreError) as err:
        await store.publish_key_packages(ALICE, 1, one_time=[kp(3), kp(4)], last_resort=kp(9), max_one_time=3)
    assert err.value.code == "too_many_key_packages"
    assert await store.key_package_count(ALICE, 1) == 2
    assert [await store.take_key_packages(ALICE) for _ in range(3)] == [[(1, kp(n)[1])] for n in (1, 2, 8)]  # not kp(9)


async def test_publishing_for_an_unknown_device_fails(store: Store) -> None:
    await register(store, ALICE)
    with pytest.raises(StoreError):
        await store.publish_key_packages(ALICE, 2, one_time=[kp(1)], last_resort=None, max_one_time=10)


async def test_removing_a_device_deletes_its_key_packages(store: Store) -> None:
    await register(store, ALICE)
    await add(store, ALICE, "phone", expected_version=1)
    await store.publish_key_packages(ALICE, 1, one_time=[kp(1)], last_resort=None, max_one_time=10)
    await store.publish_key_packages(ALICE, 2, one_time=[kp(2)], last_resort=kp(9), max_one_time=10)

    assert await store.remove_device(account=ALICE, device_id=2, device_list=b"list v3", expected_version=2, now=NOW)

    assert await store.key_package_count(ALICE, 2) == 0
    assert await store.take_key_packages(ALICE) == [(1, kp(1)[1])]
    assert await store.take_key_packages(ALICE) == []
