"""A push's group items are applied group by group, in the order of their group ids
(node/store/sqlite_federation.py ``_receive``): a hub orders each SUBMIT by updating its
group's ``hosted_groups`` row (and the group's ``member_groups`` row for its devices here),
so two pushes handled at once on PostgreSQL, each with submissions for groups G1 and G2 in
opposite orders, locked the two rows in opposite orders and waited for each other until the
deadlock check aborted one (1 s, retried). Within a group the items keep their push order."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.federation.records import GroupReceived
from sonet.node.store import Store
from tests.core.groups import devices
from tests.core.groups.devices import Device

from .test_budgets import BETA, GAMMA
from .test_contract import DAY, NOW, ROOMY, register
from .test_review6_usage import consistent

HERE = "alpha.example"
PUSHES = 30


class Hosted:
    """A group this node hosts, created by a device of this node, which submits to it."""

    def __init__(self, device: Device) -> None:
        self.device = device

    @classmethod
    async def create(cls, store: Store, account: str, monkeypatch: pytest.MonkeyPatch) -> Hosted:
        await register(store, account)
        device = Device.new(account)
        monkeypatch.setattr(devices, "GROUP_ID", os.urandom(16))  # (Device.create takes the module's)
        info, tree = device.create(hub=HERE)
        state = HubGroup.create(node=HERE, group=device.g.group_id, group_info=info, ratchet_tree=tree).to_bytes()
        assert await store.create_group(account=account, device_id=1, group=device.g.group_id, state=state, now=NOW)
        return cls(device)

    @property
    def id(self) -> bytes:
        return self.device.g.group_id

    def submit(self) -> GroupItem:
        """An application message of the creator's, as a node pushes it to the hub."""
        message = self.device.g.encrypt(b"hello", self.device.rng.randbytes)
        return GroupItem(
            kind=ItemKind.SUBMIT, ref=os.urandom(16), group=self.id, epoch=self.device.g.epoch, seq=0, message=message.to_bytes(),
            welcome=b"", members=(), outcome="", hub="",
        )  # fmt: skip


def pushed(peer: str, *items: GroupItem) -> list[Any]:
    return [GroupReceived(item=item, origin=peer, node=HERE, ttl_ms=DAY) for item in items]


async def hosted_seqs(store: Store) -> dict[bytes, int]:
    return await store._read(lambda conn: {bytes(g): s for g, s in conn.execute("SELECT grp, seq FROM hosted_groups")})  # type: ignore[attr-defined]


async def test_a_push_orders_each_group_s_submissions_in_push_order(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = [await Hosted.create(store, f"creator{n}@{HERE}", monkeypatch) for n in (1, 2)]
    later, first = sorted((one, two), key=lambda g: g.id, reverse=True)  # the push names the later id first
    items = [later.submit(), first.submit(), later.submit(), first.submit()]
    assert await store.receive(pushed(GAMMA, *items), now=NOW, quota=ROOMY) == ["ok"] * 4
    assert await hosted_seqs(store) == {first.id: 2, later.id: 2}
    for group in (first, later):  # each creator's mailbox: its group's items, in push order
        account = group.device.account
        delivered = [i.id for i in await store.pending(account, 1, after_seq=0, limit=100, now=NOW)]
        assert delivered == [i.ref for i in items if i.group == group.id]
    await consistent(store)


async def test_concurrent_pushes_with_submissions_for_two_groups_never_deadlock(pg_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """gamma pushes submissions for G1 then G2 while beta pushes G2 then G1. A deadlock here is
    made an error instead of a retry, so the test sees every one."""
    import psycopg
    import trio

    from sonet.node.store import postgres
    from sonet.node.store.postgres import PostgresStore

    monkeypatch.setattr(postgres, "_RETRIED", (psycopg.errors.SerializationFailure,))
    async with await PostgresStore.open(pg_cluster.new_database()) as store:
        one, two = [await Hosted.create(store, f"creator{n}@{HERE}", monkeypatch) for n in (1, 2)]

        async def pushes(peer: str, groups: tuple[Hosted, Hosted]) -> None:
            for _ in range(PUSHES):
                items = [g.submit() for g in groups]
                assert await store.receive(pushed(peer, *items), now=NOW, quota=ROOMY) == ["ok", "ok"]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pushes, GAMMA, (one, two))
            nursery.start_soon(pushes, BETA, (two, one))
        assert await hosted_seqs(store) == {one.id: 2 * PUSHES, two.id: 2 * PUSHES}
        await consistent(store)
