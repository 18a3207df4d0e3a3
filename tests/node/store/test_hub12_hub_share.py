"""One hub holds at most its share of a device's allowance of group items (both backends;
node/group_budgets.py ``HUB_SHARE``, migration 30: ``mailbox.hub`` counted per device and hub,
scope "group_hub").

Before, any pinned peer could make itself the hub of a new group naming a device here (trust on
first use) and fill that device's whole allowance (512 MiB by default), charged to no one. Now
past its share the device is full for that hub's items only: they wait for it (``group_full``,
the hub pushes them again) while the other member devices get them, another hub's items still
reach it, and once it has read them the hub's next push reaches it. Not charged to the hub's
relay budget: an offline device would then stop every push of that hub (docs/groups.md)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sonet.core.federation_api import OK
from sonet.core.groups.items import GroupItem, GroupMember
from sonet.node.group_budgets import HUB_SHARE, hub_share
from sonet.node.store import SqliteStore
from sonet.node.store.migrations import LATEST_VERSION
from tests.core.groups.devices import Device
from tests.node.test_hubfill9_hub_submitter import ALPHA, BETA, TTL_MS

from .old_versions import at_version
from .test_attack10_group_origins import GAMMA, QUOTA, ordered_by_beta, pushed, registered

#: a device's allowance: 8 group items, so one hub's share is 2
SMALL = dataclasses.replace(QUOTA, group_envelopes=2 * HUB_SHARE)


async def hub_usage(store: SqliteStore, device: Device, hub: str) -> tuple[int, int]:
    key = f"{device.account}/1/{hub}"

    def read(conn: Any) -> tuple[int, int]:
        row = conn.execute("SELECT count, bytes FROM storage_usage WHERE scope = 'group_hub' AND key = ?", (key,)).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    return await store._read(read)


def test_a_hubs_share_is_a_quarter_of_the_allowance_and_always_holds_one_item() -> None:
    assert hub_share(SMALL) == (2, 64 * (1 << 20) // HUB_SHARE)
    # an allowance of one item (or 1 MiB): one hub may fill it, else no item could ever go
    assert hub_share(dataclasses.replace(QUOTA, group_envelopes=1, group_bytes=1 << 20)) == (1, 1 << 20)


async def test_one_hub_fills_only_its_share_of_a_device_and_holds_nothing_else_back(store: SqliteStore) -> None:
    now = int(time.time() * 1000)
    alice, carol = await registered(store, "alice", now), await registered(store, "carol", now)
    alice.create(hub=BETA)
    _, commit, _ = alice.g.commit(alice.rng.randbytes)
    members = tuple(GroupMember(account=d.account, device=1) for d in (alice, carol))

    def text(seq: int) -> GroupItem:
        return ordered_by_beta(alice, seq, alice.g.encrypt(b"x", alice.rng.randbytes).to_bytes())

    beta_items = [ordered_by_beta(alice, 1, commit.to_bytes(), members), text(2), text(3)]
    got: dict[str, list[bytes]] = {alice.account: [], carol.account: []}

    async def read(device: Device) -> None:
        ids = [i.id for i in await store.pending(device.account, 1, after_seq=0, limit=100, now=now)]
        got[device.account] += ids
        await store.ack(device.account, 1, ids, now=now)

    async def push(item: GroupItem, hub: str = BETA) -> str:
        (outcome,) = await store.receive([pushed(item, origin=hub, by=hub)], now=now, quota=SMALL)
        return outcome

    for item in beta_items[:2]:
        assert await push(item) == OK
        await read(carol)
    # alice (who never reads) holds beta's share: beta's third item waits for her alone
    assert await push(beta_items[2]) == "group_full"
    await read(carol)
    assert got[carol.account] == [i.ref for i in beta_items]
    assert [i.id for i in await store.pending(alice.account, 1, after_seq=0, limit=100, now=now)] == [i.ref for i in beta_items[:2]]
    count, size = await hub_usage(store, alice, BETA)
    assert count == 2 and size > 0, (count, size)

    # another hub's group still reaches her: she has room in her allowance beyond beta's share
    other = os.urandom(16)
    gamma_items = [dataclasses.replace(i, group=other, hub=GAMMA, ref=os.urandom(16)) for i in beta_items[:2]]
    gamma_items[0] = dataclasses.replace(gamma_items[0], members=members[:1])  # alice's group alone
    assert [await push(i, GAMMA) for i in gamma_items] == [OK, OK]
    assert await hub_usage(store, alice, GAMMA) == (2, (await hub_usage(store, alice, GAMMA))[1])
    assert await push(beta_items[2]) == "group_full"  # pushed again by beta: still waits

    # she reads: beta's next push reaches her, and its rows of her are counted from there
    await read(alice)
    assert await hub_usage(store, alice, BETA) == (0, 0) and await hub_usage(store, alice, GAMMA) == (0, 0)
    assert await push(beta_items[2]) == OK
    await read(alice)
    await read(carol)
    assert got[alice.account] == [*(i.ref for i in beta_items[:2]), *(i.ref for i in gamma_items), beta_items[2].ref]
    assert got[carol.account] == [i.ref for i in beta_items]  # each once


async def test_a_hubs_count_goes_with_the_rows_that_expire(store: SqliteStore) -> None:
    now = int(time.time() * 1000)
    alice = await registered(store, "alice", now)
    alice.create(hub=BETA)
    _, commit, _ = alice.g.commit(alice.rng.randbytes)
    first = ordered_by_beta(alice, 1, commit.to_bytes(), (GroupMember(account=alice.account, device=1),))
    assert await store.receive([pushed(first, origin=BETA, by=BETA)], now=now, quota=SMALL) == [OK]
    assert (await hub_usage(store, alice, BETA))[0] == 1
    await store.purge_expired(now=now + TTL_MS + 1)
    assert await hub_usage(store, alice, BETA) == (0, 0)


_ALICE_DEVICE = [
    ("INSERT INTO accounts (account, created_at) VALUES ({marks})", [(f"alice@{ALPHA}", 0)]),
    ("INSERT INTO devices (account, device_id, fingerprint, record, created_at) VALUES ({marks})", [(f"alice@{ALPHA}", 1, "fp", b"r", 0)]),
]
_GROUP_ROW = (
    "INSERT INTO mailbox (account, device_id, id, expires, kind, body, size, stored_at) VALUES ({marks})",
    [(f"alice@{ALPHA}", 1, b"i" * 16, 10**15, 3, b"item", 4, 0)],
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_rows_stored_before_the_migration_count_for_no_hub(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    opener = at_version(request, tmp_path, LATEST_VERSION - 1, [*_ALICE_DEVICE, _GROUP_ROW], backend=backend)
    async with await opener() as store:
        alice = Device.new(f"alice@{ALPHA}")
        assert await hub_usage(store, alice, BETA) == (0, 0)
        assert await store.ack(alice.account, 1, [b"i" * 16], now=1) == 1  # its going changes no count
        assert await store._read(lambda conn: conn.execute("SELECT count(*) FROM storage_usage WHERE scope = 'group_hub'").fetchone()[0]) == 0
