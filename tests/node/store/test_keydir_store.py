"""The key-directory part of the Store contract (node/store/base.py): the log appended by account
changes, this node's heads and their cosignatures, witnessed heads and splits, run against every
backend via the `store` fixture."""

from __future__ import annotations

import hashlib

import pytest

from sonet.core.keydir import decode_entry, leaf_hash
from sonet.node.store import (
    AccountExists,
    HeadRow,
    InviteInvalid,
    SplitRow,
    StaleDeviceList,
    Store,
    StoreError,
    WitnessRow,
)

from .test_contract import ALICE, BOB, CAROL, DAY, NOW, add, register


def root(n: int) -> bytes:
    """A stand-in 32-byte root (the store does not check roots, only compares them)."""
    return hashlib.sha256(b"root %d" % n).digest()


async def leaves(store: Store) -> list[bytes]:
    """Every leaf in order."""
    return await store.directory_leaves(0, 2**63 - 1)


async def remove(store: Store, account: str, device_id: int, *, expected_version: int, now: int = NOW) -> bool:
    return await store.remove_device(
        account=account, device_id=device_id, device_list=b"list after removal", expected_version=expected_version, now=now
    )


# The log ------------------------------------------------------------------------------------


async def test_an_empty_store_has_no_leaves_and_no_heads(store: Store) -> None:
    assert await store.directory_hashes(0) == []
    assert await store.directory_leaves(0, 10) == []
    assert await store.directory_latest(ALICE) is None
    assert await store.latest_head() is None
    assert await store.cosigned_head(min_size=0) is None


async def test_each_account_change_appends_a_leaf_chained_to_the_accounts_previous_one(store: Store) -> None:
    await register(store, ALICE, now=NOW)
    await register(store, BOB, now=NOW + 1)
    await add(store, ALICE, "phone", expected_version=1, now=NOW + 2)
    assert await remove(store, ALICE, 2, expected_version=2, now=NOW + 3)

    found = await leaves(store)
    entries = [decode_entry(leaf) for leaf in found]
    assert [(e.account, e.prev, e.at) for e in entries] == [
        (ALICE, -1, NOW),
        (BOB, -1, NOW + 1),
        (ALICE, 0, NOW + 2),
        (ALICE, 2, NOW + 3),
    ]
    # each leaf holds the identity key and device list the account had from then on
    identity = b"identity of " + ALICE.encode()
    assert [(e.identity, e.device_list) for e in entries if e.account == ALICE] == [
        (identity, b"list v1 of " + ALICE.encode()),
        (identity, b"list v2"),
        (identity, b"list after removal"),
    ]
    row = await store.account(ALICE)
    assert row is not None and (row.account_identity, row.device_list) == (entries[3].identity, entries[3].device_list)
    assert await store.directory_latest(ALICE) == (3, found[3])
    assert await store.directory_latest(BOB) == (1, found[1])
    assert await store.directory_latest(CAROL) is None


async def test_hashes_are_the_rfc_9162_leaf_hashes_from_any_start(store: Store) -> None:
    for account in (ALICE, BOB, CAROL):
        await register(store, account)
    found = await leaves(store)
    hashes = [leaf_hash(leaf) for leaf in found]

    assert await store.directory_hashes(0) == hashes
    assert await store.directory_hashes(1) == hashes[1:]
    assert await store.directory_hashes(3) == []
    assert await store.directory_hashes(10) == []


async def test_leaves_are_read_by_index_range(store: Store) -> None:
    for account in (ALICE, BOB, CAROL):
        await register(store, account)
    found = await leaves(store)
    assert [decode_entry(leaf).account for leaf in found] == [ALICE, BOB, CAROL]

    assert await store.directory_leaves(0, 3) == found
    assert await store.directory_leaves(1, 2) == found[1:2]
    assert await store.directory_leaves(2, 10) == found[2:]  # the log ends first
    for start, end in ((3, 10), (1, 1), (2, 1)):
        assert await store.directory_leaves(start, end) == []


async def test_refused_account_changes_append_no_leaf(store: Store) -> None:
    await store.add_invite(b"h1", now=NOW, expires_at=NOW + DAY)
    await register(store, ALICE)
    await add(store, ALICE, "phone", expected_version=1)
    await register(store, CAROL)
    before = await leaves(store)

    with pytest.raises(AccountExists):  # the name is taken (by another device key)
        await store.register_account(
            account=ALICE, fingerprint="fp-other", record=b"r", account_identity=b"k", device_list=b"l", invite_hash=None, now=NOW
        )
    with pytest.raises(InviteInvalid):
        await register(store, BOB, invite=b"unknown")
    with pytest.raises(StaleDeviceList):
        await add(store, ALICE, "tablet", expected_version=1)
    with pytest.raises(AccountExists):  # the fingerprint is another account's device
        await add(store, ALICE, CAROL, expected_version=2)
    with pytest.raises(StaleDeviceList):
        await remove(store, ALICE, 2, expected_version=1)
    assert await remove(store, ALICE, 9, expected_version=2) is False
    with pytest.raises(StoreError):
        await add(store, "dave@" + ALICE.split("@")[1], "laptop", expected_version=1)

    assert await leaves(store) == before
    assert len(before) == 3


async def test_backfill_with_every_account_in_the_log_appends_nothing(store: Store) -> None:
    await register(store, ALICE)
    assert await store.directory_backfill(now=NOW + 5) == 0
    assert len(await leaves(store)) == 1


async def test_the_log_survives_reopening(open_backend) -> None:  # noqa: ANN001
    store = await open_backend()
    try:
        await register(store, ALICE)
        await store.put_head(size=1, root=root(1), head=b"head 1")
        hashes = await store.directory_hashes(0)
    finally:
        await store.close()
    store = await open_backend()
    try:
        assert await store.directory_hashes(0) == hashes
        assert await store.latest_head() == HeadRow(size=1, root=root(1), head=b"head 1", cosignatures=())
        await add(store, ALICE, "phone", expected_version=1)
        assert decode_entry((await leaves(store))[1]).prev == 0
    finally:
        await store.close()


# This node's heads ------------------------------------------------------------------------


async def test_latest_head_is_the_largest_with_its_cosignatures(store: Store) -> None:
    await store.put_head(size=0, root=root(0), head=b"head 0")
    await store.put_head(size=2, root=root(2), head=b"head 2")
    await store.put_head(size=1, root=root(1), head=b"head 1")
    await store.add_cosignature(size=2, witness="gamma.example", cosignature=b"by gamma")
    await store.add_cosignature(size=2, witness="beta.example", cosignature=b"by beta")
    await store.add_cosignature(size=1, witness="beta.example", cosignature=b"beta of 1")

    latest = await store.latest_head()
    assert latest is not None and (latest.size, latest.root, latest.head) == (2, root(2), b"head 2")
    assert sorted(latest.cosignatures) == [b"by beta", b"by gamma"]


async def test_put_head_replaces_a_head_of_the_same_tree_and_keeps_its_cosignatures(store: Store) -> None:
    await store.put_head(size=3, root=root(3), head=b"signed at t1")
    await store.add_cosignature(size=3, witness="beta.example", cosignature=b"cosig")

    await store.put_head(size=3, root=root(3), head=b"signed at t2")

    assert await store.latest_head() == HeadRow(size=3, root=root(3), head=b"signed at t2", cosignatures=(b"cosig",))


async def test_put_head_refuses_another_root_for_a_stored_size(store: Store) -> None:
    await store.put_head(size=3, root=root(3), head=b"head")
    await store.add_cosignature(size=3, witness="beta.example", cosignature=b"cosig")

    with pytest.raises(StoreError):
        await store.put_head(size=3, root=root(99), head=b"a fork")

    assert await store.latest_head() == HeadRow(size=3, root=root(3), head=b"head", cosignatures=(b"cosig",))


async def test_a_cosignature_needs_a_head_and_one_per_witness_is_kept(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.add_cosignature(size=1, witness="beta.example", cosignature=b"of nothing")
    await store.put_head(size=1, root=root(1), head=b"head 1")

    await store.add_cosignature(size=1, witness="beta.example", cosignature=b"first")
    await store.add_cosignature(size=1, witness="beta.example", cosignature=b"newer")
    with pytest.raises(StoreError):
        await store.add_cosignature(size=2, witness="beta.example", cosignature=b"of nothing")

    assert await store.latest_head() == HeadRow(size=1, root=root(1), head=b"head 1", cosignatures=(b"newer",))


async def test_cosigned_head_is_the_largest_cosigned_one_covering_min_size(store: Store) -> None:
    for size in (1, 2, 3, 4):
        await store.put_head(size=size, root=root(size), head=b"head %d" % size)
    assert await store.cosigned_head(min_size=1) is None  # no cosignature at all yet

    await store.add_cosignature(size=1, witness="beta.example", cosignature=b"c1")
    await store.add_cosignature(size=3, witness="beta.example", cosignature=b"c3")

    def size_of(row: HeadRow | None) -> int | None:
        return None if row is None else row.size

    assert size_of(await store.cosigned_head(min_size=0)) == 3  # the largest, not the first
    assert size_of(await store.cosigned_head(min_size=3)) == 3
    assert size_of(await store.cosigned_head(min_size=4)) is None  # size 4 has no cosignature
    head = await store.cosigned_head(min_size=2)
    assert head == HeadRow(size=3, root=root(3), head=b"head 3", cosignatures=(b"c3",))


# Witnessing and splits ------------------------------------------------------------------------


async def test_witnessed_rows_are_replaced_per_node(store: Store) -> None:
    beta = WitnessRow(node="beta.example", size=1, root=root(1), head=b"beta 1", at=NOW)
    gamma = WitnessRow(node="gamma.example", size=5, root=root(5), head=b"gamma 5", at=NOW + 1)
    assert await store.witnessed("beta.example") is None
    assert await store.witnessed_all() == []

    await store.set_witnessed(gamma)
    await store.set_witnessed(beta)
    newer = WitnessRow(node="beta.example", size=4, root=root(4), head=b"beta 4", at=NOW + 2)
    await store.set_witnessed(newer)

    assert await store.witnessed("beta.example") == newer
    assert await store.witnessed_all() == [newer, gamma]


async def test_a_split_is_kept_once_per_node_oldest_first(store: Store) -> None:
    def split(node: str, kind: str, at: int) -> SplitRow:
        return SplitRow(node=node, kind=kind, first=b"held", second=b"contradicting", source="witness", detected_at=at)

    assert await store.splits() == []
    assert await store.record_split(split("gamma.example", "fork", NOW + 5)) is True
    assert await store.record_split(split("beta.example", "inconsistent", NOW + 9)) is True
    assert await store.record_split(split("gamma.example", "inconsistent", NOW + 1)) is False  # evidence already held

    assert await store.splits() == [split("gamma.example", "fork", NOW + 5), split("beta.example", "inconsistent", NOW + 9)]
