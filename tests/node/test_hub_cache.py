"""The hub keeps its decoded group states between submissions (node/hub_cache.py): a kept state
is used only while it is the stored one (its tag), so a rolled-back ordering, another writer and
a refusal all leave the hub ordering from the right state; the cache is bounded (LRU)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core.wire import decode_struct
from sonet.node.hub_cache import HubCache, new_tag
from sonet.node.store import Quota, SqliteStore, StoreError
from tests.core.groups.devices import Device, submit

from .store.test_contract import DAY, NOW, register

HERE = "alpha.example"
ALICE = f"alice@{HERE}"


def hub(name: str) -> HubGroup:
    return cast(HubGroup, name)  # the cache holds states by identity; any object stands in


# ---- the cache alone ---------------------------------------------------------------------------


def test_a_state_is_taken_only_with_its_tag_and_only_once() -> None:
    cache = HubCache()
    tag = new_tag()
    cache.keep(b"g", tag, hub("state"), 10)
    assert cache.take(b"g", new_tag()) is None  # another stored state: decode it
    assert cache.take(b"g", tag) is None  # a miss drops the entry
    cache.keep(b"g", tag, hub("state"), 10)
    assert cache.take(b"g", None) is None  # a stored state without a tag is never kept's
    cache.keep(b"g", tag, hub("state"), 10)
    assert cache.take(b"g", tag) == "state"
    assert cache.take(b"g", tag) is None  # taken out while in use
    assert (len(cache), cache.bytes) == (0, 0)


def test_the_least_recently_used_states_go_beyond_the_bounds() -> None:
    cache = HubCache(max_groups=2, max_bytes=100)
    tags = {g: new_tag() for g in (b"a", b"b", b"c", b"d")}
    cache.keep(b"a", tags[b"a"], hub("a"), 40)
    cache.keep(b"b", tags[b"b"], hub("b"), 40)
    cache.keep(b"c", tags[b"c"], hub("c"), 40)  # three groups: a goes
    assert cache.take(b"a", tags[b"a"]) is None
    cache.keep(b"b", tags[b"b"], hub("b"), 40)  # b used again: c is the oldest now
    cache.keep(b"d", tags[b"d"], hub("d"), 50)  # 130 bytes: c goes
    assert cache.take(b"c", tags[b"c"]) is None
    assert (len(cache), cache.bytes) == (2, 90)
    cache.keep(b"e", new_tag(), hub("e"), 101)  # larger than the whole cache: not kept
    assert (len(cache), cache.bytes) == (2, 90)
    assert cache.take(b"d", tags[b"d"]) == "d" and cache.take(b"b", tags[b"b"]) == "b"
    with pytest.raises(ValueError):
        HubCache(max_groups=0)


# ---- the hub ordering with it ------------------------------------------------------------------


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> HubCache:
    fresh = HubCache()
    monkeypatch.setattr("sonet.node.store.sqlite_groups.HUBS", fresh)
    return fresh


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the hub states decoded."""
    calls: list[int] = []
    original = HubGroup.from_bytes

    def counting(cls: type[HubGroup], data: bytes) -> HubGroup:
        calls.append(len(data))
        return original(data)

    monkeypatch.setattr(HubGroup, "from_bytes", classmethod(counting))
    return calls


class Hosted:
    """alice's group, hosted here; she sends application messages and commits."""

    def __init__(self, store: SqliteStore) -> None:
        self.store, self.alice, self.ref = store, Device.new(ALICE), 0

    async def create(self) -> None:
        await register(self.store, ALICE)
        info, tree = self.alice.create()
        state = HubGroup.create(node=HERE, group=self.alice.g.group_id, group_info=info, ratchet_tree=tree).to_bytes()
        assert await self.store.create_group(account=ALICE, device_id=1, group=self.alice.g.group_id, state=state, now=NOW)

    async def send(self, item: GroupItem | None = None, *, quota: Quota = Quota(max_envelopes=100, max_bytes=1 << 20)) -> None:
        self.ref += 1
        if item is None:
            item = submit(self.alice.g.encrypt(b"hi", self.alice.rng.randbytes), epoch=self.alice.g.epoch, ref=self.ref)
        await self.store.group_submit(item, account=ALICE, device_id=1, hub=HERE, node=HERE, now=NOW, ttl_ms=DAY, quota=quota)

    async def commit(self) -> GroupItem:
        staged, message, _ = self.alice.g.commit(self.alice.rng.randbytes)
        self.alice.g.merge(staged)
        self.ref += 1
        return submit(message, epoch=self.alice.g.epoch - 1, ref=self.ref)

    async def seqs(self) -> list[int]:
        items = await self.store.pending(ALICE, 1, after_seq=0, limit=100, now=NOW)
        return [item.seq for item in (decode_struct(GroupItem, i.body) for i in items) if item.kind == ItemKind.ORDERED]

    async def drain(self) -> None:
        items = await self.store.pending(ALICE, 1, after_seq=0, limit=100, now=NOW)
        await self.store.ack(ALICE, 1, [i.id for i in items], now=NOW)


async def test_the_hub_decodes_its_state_once_for_many_submissions(tmp_path: Path, cache: HubCache, decoded: list[int]) -> None:
    async with await SqliteStore.open(tmp_path / "node.db") as store:
        group = Hosted(store)
        await group.create()
        for _ in range(3):
            await group.send()
        await group.send(await group.commit())  # a commit writes the state: still kept
        await group.send()
        assert len(decoded) == 1 and cache.hits == 4
        refused = submit(b"not a message", epoch=0, ref=99)  # a refusal changes nothing
        await group.send(refused)  # (its verdict goes to alice's mailbox)
        await group.send()
        assert len(decoded) == 1
        assert await group.seqs() == [1, 2, 3, 4, 5, 6]
    # a restart (the process's cache is empty then) decodes the stored state, seq included
    cache.clear()
    async with await SqliteStore.open(tmp_path / "node.db") as store:
        group.store = store
        await group.send()
        assert len(decoded) == 2
        assert (await group.seqs())[-1] == 7


async def test_a_rolled_back_ordering_or_another_writer_makes_the_hub_decode_again(
    tmp_path: Path, cache: HubCache, decoded: list[int]
) -> None:
    async with await SqliteStore.open(tmp_path / "node.db") as store:
        group = Hosted(store)
        await group.create()
        full = Quota(max_envelopes=100, max_bytes=1 << 20, group_envelopes=2)
        await group.send(quota=full)
        await group.send(quota=full)
        # ordered, then undone: alice has no room for the copy (the kept state had moved on)
        with pytest.raises(StoreError) as caught:
            await group.send(quota=full)
        assert caught.value.code == "group_full"
        await group.drain()
        await group.send(quota=full)
        assert await group.seqs() == [3]  # not 4: the undone ordering left no trace
        assert len(decoded) == 2
        # another writer of the database rewrites the state: its tag goes, the hub decodes
        await store._transaction(lambda conn: conn.execute("UPDATE hosted_groups SET state = state"))
        await group.send(quota=full)
        assert len(decoded) == 3
        assert await group.seqs() == [3, 4]
