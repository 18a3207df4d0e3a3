"""rev10b, reviewing 5689ab1/a141521 (both backends): an ORDERED item taken past its hub's cap
of waiting rows keeps no row, and the hub's push of it again is a first take once more. That
take must not move the group back: here the items past the cap are a text, a commit adding dave
and one removing carol, and beta pushes them again one by one while alice reads. The node's
member list, applied commit, last item and hub stay those of the last commit (the commit adding
dave, pushed again, does not bring carol back); alice and carol get each item once and in order;
dave gets the text too, after his commit (below his first item: his device drops it,
docs/groups.md "Not yet")."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from sonet.core.federation_api import OK
from sonet.core.groups.items import GroupItem, GroupMember
from sonet.node.store import SqliteStore, sqlite_budgets
from tests.core.groups.devices import Device

from .test_attack10_group_origins import BETA, QUOTA, ordered_by_beta, pushed, registered

Followed = tuple[tuple[str, int, int], list[tuple[str, int]], int]


async def followed(store: SqliteStore, group: bytes) -> Followed:
    """(hub, applied commit, last item), the member devices, and the waiting rows."""

    def read(conn: Any) -> Followed:
        hub, applied, last = conn.execute("SELECT hub, applied_seq, last_seq FROM member_groups WHERE grp = ?", (group,)).fetchone()
        members = sorted((str(a), int(d)) for a, d in conn.execute("SELECT account, device_id FROM group_members WHERE grp = ?", (group,)))
        (rows,) = conn.execute("SELECT count(*) FROM group_waiting").fetchone()
        return (str(hub), int(applied), int(last)), members, int(rows)

    return await store._read(read)


async def test_items_past_the_cap_pushed_again_do_not_move_the_group_back(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_budgets, "WAITING_FACTOR", 0)  # no room for waiting rows at all
    quota = dataclasses.replace(QUOTA, group_envelopes=1)
    now = int(time.time() * 1000)
    alice, carol, dave = [await registered(store, name, now) for name in ("alice", "carol", "dave")]
    alice.create(hub=BETA)

    def member(*devices: Device) -> tuple[GroupMember, ...]:
        return tuple(GroupMember(account=d.account, device=1) for d in devices)

    def commit(seq: int, *devices: Device) -> GroupItem:
        _, made, _ = alice.g.commit(alice.rng.randbytes)
        return ordered_by_beta(alice, seq, made.to_bytes(), member(*devices))

    items = [commit(1, alice, carol), ordered_by_beta(alice, 2, alice.g.encrypt(b"x", alice.rng.randbytes).to_bytes())]
    items += [commit(3, alice, carol, dave), commit(4, alice, dave)]  # dave added, then carol removed
    seq_of = {i.ref: i.seq for i in items}
    got: dict[str, list[int]] = {d.account: [] for d in (alice, carol, dave)}

    async def read(*devices: Device) -> None:
        for device in devices:
            ids = [i.id for i in await store.pending(device.account, 1, after_seq=0, limit=100, now=now)]
            got[device.account] += [seq_of[i] for i in ids]
            await store.ack(device.account, 1, ids, now=now)

    async def push(item: GroupItem) -> str:
        (outcome,) = await store.receive([pushed(item, origin=BETA, by=BETA)], now=now, quota=quota)
        return outcome

    assert await push(items[0]) == OK
    for item in items[1:]:  # alice full: past the cap, no row; the others read each
        await read(carol, dave)
        assert await push(item) == "group_full"
    last = ((BETA, 4, 4), sorted((d.account, 1) for d in (alice, dave)), 0)
    assert await followed(store, alice.g.group_id) == last
    await read(carol, dave)
    kept = items[1:]
    while kept:  # beta pushes what it keeps (here one item a push), alice reading between
        for item in kept:
            await push(item)
            assert await followed(store, alice.g.group_id) == last  # (commit 3 again: carol not back)
        await read(alice)
        kept = [i for i in kept if seq_of[i.ref] not in got[alice.account]]
    await read(alice, carol, dave)
    # each once, in order; dave gets the text before his commit too, after it (his device drops it)
    assert got == {alice.account: [1, 2, 3, 4], carol.account: [1, 2, 3, 4], dave.account: [3, 4, 2]}
