"""One stored body per group item per node (node/store/sqlite_group_bodies.py): the mailbox rows of
the member devices name it, each device is delivered the item's bytes as before, the device's
group allowance counts its items while the disk reserve counts the body once, and the body goes
with its last row (acknowledged, expired, device removed) or is never stored (a refused push)."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path

import pytest

from sonet.core.federation_api import OK
from sonet.core.groups.items import GroupItem, GroupMember, ItemKind
from sonet.node.group_budgets import GROUP_FULL
from sonet.node.group_routing import mailbox_envelope
from sonet.federation.records import GroupReceived
from sonet.node.store import STORED_ROW_OVERHEAD, OverBudget, Quota, SqliteStore
from sonet.node.store.migrations import LATEST_VERSION, MIGRATIONS
from tests.core.groups.devices import Device

from .test_contract import DAY, NOW, ROOMY, register

HERE, HUB = "alpha.example", "beta.example"
ACCOUNTS = [f"m{n}@{HERE}" for n in range(5)]
BIG = 40_000  # an application message's plaintext: the body dominates what is stored


class Group:
    """A group hosted by beta with the devices of ACCOUNTS on this node (alpha); the node checks
    who pushes items and to whom, not their MLS."""

    def __init__(self) -> None:
        self.device = Device.new(f"creator@{HUB}")
        self.device.create(hub=HUB)
        self.seq = 0

    def item(self, *, commit: bool = False, members: list[str] = ACCOUNTS) -> GroupItem:
        rng = self.device.rng.randbytes
        message = self.device.g.commit(rng)[1] if commit else self.device.g.encrypt(os.urandom(BIG), rng)
        self.seq += 1
        return GroupItem(
            kind=ItemKind.ORDERED, ref=os.urandom(16), group=self.device.g.group_id, epoch=self.device.g.epoch, seq=self.seq,
            message=message.to_bytes(), welcome=b"", members=tuple(GroupMember(account=a, device=1) for a in members) if commit else (),
            outcome="", hub=HUB,
        )  # fmt: skip


async def push(store: SqliteStore, item: GroupItem, *, quota: Quota = ROOMY, now: int = NOW) -> str:
    (outcome,) = await store.receive([GroupReceived(item=item, origin=HUB, node=HERE, ttl_ms=DAY)], now=now, quota=quota)
    return outcome


async def joined(store: SqliteStore, group: Group, **kwargs: object) -> GroupItem:
    """Every account registered and in the group (the first commit names them)."""
    for account in ACCOUNTS:
        await register(store, account)
    first = group.item(commit=True)
    assert await push(store, first, **kwargs) == OK  # type: ignore[arg-type]
    return first


async def bodies(store: SqliteStore) -> list[int]:
    """The sizes of the stored group bodies."""
    return await store._read(lambda conn: [row[0] for row in conn.execute("SELECT size FROM group_bodies ORDER BY id")])


async def delivered(store: SqliteStore, account: str, *, now: int = NOW) -> list[bytes]:
    return [i.body for i in await store.pending(account, 1, after_seq=0, limit=100, now=now)]


async def ack_all(store: SqliteStore, account: str, *, now: int = NOW) -> None:
    items = await store.pending(account, 1, after_seq=0, limit=100, now=now)
    await store.ack(account, 1, [i.id for i in items], now=now)


@pytest.fixture
async def store(db_path: Path):  # noqa: ANN201
    async with await SqliteStore.open(db_path) as opened:
        yield opened


async def test_an_item_for_many_devices_is_stored_once_and_each_device_gets_its_bytes(store: SqliteStore) -> None:
    group = Group()
    first = await joined(store, group)
    second = group.item()
    assert await push(store, second) == OK
    wire = [mailbox_envelope(item, (ACCOUNTS[0], 1), now=NOW, ttl_ms=DAY).body for item in (first, second)]
    for account in ACCOUNTS:  # what a Deliver frame carries is unchanged
        assert await delivered(store, account) == wire
    assert await bodies(store) == [len(wire[0]), len(wire[1])]
    rows = await store._read(lambda conn: conn.execute("SELECT count(*), sum(length(body)), sum(size) FROM mailbox").fetchone())
    assert rows == (2 * len(ACCOUNTS), 0, len(ACCOUNTS) * (len(wire[0]) + len(wire[1])))
    # a retried push stores nothing again
    assert await push(store, second) == OK
    assert len(await bodies(store)) == 2


async def test_the_body_goes_with_its_last_row_however_it_goes(store: SqliteStore) -> None:
    group = Group()
    await joined(store, group)
    assert await push(store, group.item()) == OK
    # acknowledged by some: the others still read it
    for account in ACCOUNTS[:3]:
        await ack_all(store, account)
    assert len(await bodies(store)) == 2
    assert len(await delivered(store, ACCOUNTS[3])) == 2
    # the fourth acknowledges, the fifth device is removed: both bodies go
    await ack_all(store, ACCOUNTS[3])
    row = await store.account(ACCOUNTS[4])
    assert row is not None
    assert await store.remove_device(account=ACCOUNTS[4], device_id=1, device_list=b"v2", expected_version=row.device_list_version, now=NOW)
    assert await bodies(store) == []
    # expiry: one more item, purged after its TTL with nobody having read it
    assert await push(store, group.item(commit=True, members=ACCOUNTS[:4])) == OK
    assert len(await bodies(store)) == 1
    await store.purge_expired(now=NOW + DAY + 1)
    assert await bodies(store) == []
    assert await store._read(lambda conn: conn.execute("SELECT count(*) FROM mailbox").fetchone()[0]) == 0


async def test_the_allowance_counts_each_devices_items_and_the_disk_reserve_the_body_once(db_path: Path) -> None:
    free = [0]
    async with await SqliteStore.open(db_path, disk_free=lambda: free[0]) as store:
        group = Group()
        await joined(store, group)
        big = group.item()
        size = len(mailbox_envelope(big, (ACCOUNTS[0], 1), now=NOW, ttl_ms=DAY).body)
        # room for the body once (and the rows), not once per device
        reserve, charged = 1 << 20, size + (len(ACCOUNTS) + 1) * STORED_ROW_OVERHEAD
        free[0] = reserve + charged
        assert size * len(ACCOUNTS) > free[0] - reserve
        # each device may hold its first items and one big one, not two
        (first_size,) = await bodies(store)
        quota = dataclasses.replace(ROOMY, reserve_bytes=reserve, group_bytes=first_size + size + size // 2)
        assert await push(store, big, quota=quota) == OK
        free[0] += charged
        second = group.item()
        assert await push(store, second, quota=quota) == GROUP_FULL  # every device at its allowance
        assert len(await bodies(store)) == 2  # nothing stored for nobody
        await ack_all(store, ACCOUNTS[0])
        assert await push(store, second, quota=quota) == GROUP_FULL  # pushed again: the first device takes it
        assert len(await delivered(store, ACCOUNTS[0])) == 1 and len(await delivered(store, ACCOUNTS[1])) == 2
        for account in ACCOUNTS[1:]:
            await ack_all(store, account)
        assert await push(store, second, quota=quota) == OK  # the others take it: the same stored body
        assert len(await bodies(store)) == 1
        for account in ACCOUNTS:
            assert len(await delivered(store, account)) == 1


async def test_a_refused_push_stores_no_body(db_path: Path) -> None:
    async with await SqliteStore.open(db_path, disk_free=lambda: 0) as store:
        group = Group()
        for account in ACCOUNTS:
            await register(store, account)
        with pytest.raises(OverBudget) as caught:
            await push(store, group.item(commit=True), quota=dataclasses.replace(ROOMY, reserve_bytes=1))
        assert caught.value.code == "disk_full"
        assert await bodies(store) == []
        assert await delivered(store, ACCOUNTS[0]) == []


async def test_group_items_stored_before_the_migration_are_still_delivered(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    for statement in (s for migration in MIGRATIONS[:-1] for s in migration):
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION - 1}")
    conn.execute(f"INSERT INTO accounts (account, created_at) VALUES ('{ACCOUNTS[0]}', 0)")
    conn.execute(f"INSERT INTO devices (account, device_id, fingerprint, record, created_at) VALUES ('{ACCOUNTS[0]}', 1, 'fp', x'00', 0)")
    conn.execute(
        "INSERT INTO mailbox (account, device_id, id, expires, kind, body, size, stored_at) VALUES (?, 1, ?, ?, 3, x'0102', 2, 0)",
        (ACCOUNTS[0], bytes(16), NOW + DAY),
    )
    conn.close()
    async with await SqliteStore.open(db_path) as store:
        assert await delivered(store, ACCOUNTS[0]) == [b"\x01\x02"]
        assert await store.ack(ACCOUNTS[0], 1, [bytes(16)], now=NOW) == 1
        assert await delivered(store, ACCOUNTS[0]) == []
