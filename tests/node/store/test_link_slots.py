"""node/linking.py over the store (node/store/sqlite_links.py), on SQLite and PostgreSQL:
slots, expiry, bounds, ownership, the one-shot approval, and the offer reaching a connection
that waits in another process (two registries on one database)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from sonet.core.client_api import LinkOffer
from sonet.node.linking import LinkError, LinkRegistry
from sonet.node.store import Store

NOW = 1_700_000_000_000
TTL = 600_000
SLOT_LEN = 16


def counter_rng(start: int = 1) -> Callable[[int], bytes]:
    """Deterministic 'random' bytes: 0001.., 0002.., ... (slots and connection tokens)."""
    numbers = itertools.count(start)
    return lambda n: next(numbers).to_bytes(n, "big")


class Owner:
    """A waiting connection: collects what is pushed to it; ``accepting`` False = gone/full."""

    def __init__(self, accepting: bool = True) -> None:
        self.accepting = accepting
        self.offers: list[LinkOffer] = []

    def push(self, offer: LinkOffer) -> bool:
        if self.accepting:
            self.offers.append(offer)
        return self.accepting


def offer(slot: bytes, account: str = "alice@alpha.example") -> LinkOffer:
    return LinkOffer(slot=slot, account=account, provisioning=b"sealed", device_list=b"list")


def registry(store: Store, *, rng: Callable[[int], bytes] | None = None, now: int = NOW, **kwargs: int) -> LinkRegistry:
    links = LinkRegistry(rng=rng or counter_rng(), ttl_ms=TTL, **kwargs)
    links.use(store, lambda: now)
    return links


async def count(store: Store) -> int:
    return len(await _all_slots(store))


async def _all_slots(store: Store) -> list[bytes]:
    rows = await store._read(lambda conn: conn.execute("SELECT slot FROM link_slots").fetchall())
    return [bytes(r[0]) for r in rows]


async def test_open_get_and_expiry(store: Store) -> None:
    links, owner = registry(store), Owner()
    slot = await links.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW)
    assert (slot.expires, slot.approved_for, len(slot.slot)) == (NOW + TTL, None, SLOT_LEN)

    assert (await links.get(slot.slot, now=NOW + TTL - 1)).ephemeral == b"eph"
    with pytest.raises(LinkError) as err:
        await links.get(slot.slot, now=NOW + TTL)
    assert err.value.code == "link_unknown"
    assert await links.purge(NOW + TTL) == 1 and await count(store) == 0


async def test_approve_pushes_once_and_binds_the_account(store: Store) -> None:
    links, owner = registry(store), Owner()
    slot = await links.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW)

    await links.approve(slot.slot, account="alice@alpha.example", offer=offer(slot.slot), now=NOW)
    assert owner.offers == [offer(slot.slot)]
    assert (await links.get(slot.slot, now=NOW)).approved_for == "alice@alpha.example"
    with pytest.raises(LinkError) as err:
        await links.approve(slot.slot, account="bob@alpha.example", offer=offer(slot.slot, "bob@alpha.example"), now=NOW)
    assert err.value.code == "link_already_approved"
    assert len(owner.offers) == 1 and (await links.get(slot.slot, now=NOW)).approved_for == "alice@alpha.example"
    # an expired slot cannot be approved
    other = Owner()
    late = await links.open(ephemeral=b"eph", owner=other, push=other.push, now=NOW)
    with pytest.raises(LinkError) as err:
        await links.approve(late.slot, account="alice@alpha.example", offer=offer(late.slot), now=NOW + TTL)
    assert err.value.code == "link_unknown" and other.offers == []


async def test_approve_when_the_waiting_connection_cannot_take_it(store: Store) -> None:
    links, owner = registry(store), Owner(accepting=False)
    slot = await links.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW)

    with pytest.raises(LinkError) as err:
        await links.approve(slot.slot, account="alice@alpha.example", offer=offer(slot.slot), now=NOW)
    assert err.value.code == "link_unknown"
    assert await count(store) == 0


async def test_one_live_slot_per_owner_and_ownership(store: Store) -> None:
    links, owner, other = registry(store), Owner(), Owner()
    slot = await links.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW)

    with pytest.raises(LinkError) as err:
        await links.open(ephemeral=b"eph2", owner=owner, push=owner.push, now=NOW)
    assert err.value.code == "link_in_progress"
    assert (await links.owned_by(slot.slot, owner, now=NOW)).slot == slot.slot
    with pytest.raises(LinkError) as err:
        await links.owned_by(slot.slot, other, now=NOW)
    assert err.value.code == "link_unknown"
    # once expired, the owner may open a new one
    assert (await links.open(ephemeral=b"eph3", owner=owner, push=owner.push, now=NOW + TTL)).ephemeral == b"eph3"


async def test_another_connection_of_the_same_device_key_may_complete_the_slot(store: Store) -> None:
    """A LinkComplete sent again after a lost answer comes on a new connection of the same key,
    maybe to another process of the node."""
    links, first, retry, stranger = registry(store), Owner(), Owner(), Owner()
    elsewhere = registry(store, rng=counter_rng(1000))
    elsewhere.elsewhere = lambda slot: None  # one of several processes (node/cluster.py)
    slot = await links.open(ephemeral=b"eph", owner=first, push=first.push, now=NOW, device="fp-new")

    assert (await links.owned_by(slot.slot, retry, now=NOW, device="fp-new")).slot == slot.slot
    assert (await elsewhere.owned_by(slot.slot, retry, now=NOW, device="fp-new")).slot == slot.slot
    for device in ("fp-other", ""):
        with pytest.raises(LinkError) as err:
            await links.owned_by(slot.slot, stranger, now=NOW, device=device)
        assert err.value.code == "link_unknown"
    await links.close(first)  # the first connection ended: its slot goes with it
    with pytest.raises(LinkError):
        await elsewhere.owned_by(slot.slot, retry, now=NOW, device="fp-new")


async def test_a_slot_left_by_a_crashed_run_cannot_be_completed(store: Store) -> None:
    """A node without other processes that was killed and started again: the slot is still in
    the store, approved, but its connection died with the old run (a slot dies with its
    connection and with the node, docs/protocol.md). The device's retry of LinkComplete finds
    it unknown and the slot goes; on a node of several processes the same retry completes it
    (the first connection may wait on another process)."""
    crashed, restarted, first, retry = registry(store), registry(store, rng=counter_rng(1000)), Owner(), Owner()
    slot = await crashed.open(ephemeral=b"eph", owner=first, push=first.push, now=NOW, device="fp-new")
    await crashed.approve(slot.slot, account="alice@alpha.example", offer=offer(slot.slot), now=NOW)
    assert first.offers == [offer(slot.slot)]

    several = registry(store, rng=counter_rng(2000))
    several.elsewhere = lambda slot: None
    assert (await several.owned_by(slot.slot, retry, now=NOW, device="fp-new")).approved_for == "alice@alpha.example"

    with pytest.raises(LinkError) as err:
        await restarted.owned_by(slot.slot, retry, now=NOW, device="fp-new")
    assert err.value.code == "link_unknown" and await count(store) == 0
    with pytest.raises(LinkError):  # gone for every process
        await several.owned_by(slot.slot, retry, now=NOW, device="fp-new")


async def test_a_used_slot_is_gone(store: Store) -> None:
    links, owner = registry(store), Owner()
    slot = await links.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW, device="fp-new")
    await links.approve(slot.slot, account="alice@alpha.example", offer=offer(slot.slot), now=NOW)
    await links.used(slot.slot)
    for call in (links.get(slot.slot, now=NOW), links.owned_by(slot.slot, owner, now=NOW, device="fp-new")):
        with pytest.raises(LinkError) as err:
            await call
        assert err.value.code == "link_unknown"


async def test_slots_are_bounded_and_released(store: Store) -> None:
    links = registry(store, max_slots=2)
    owners = [Owner() for _ in range(3)]
    slots = [await links.open(ephemeral=b"e", owner=o, push=o.push, now=NOW + i) for i, o in enumerate(owners[:2])]
    for slot in slots:
        await links.approve(slot.slot, account="alice@alpha.example", offer=offer(slot.slot), now=NOW)
    # only approved slots: none is taken away (their devices are about to complete)
    with pytest.raises(LinkError) as err:
        await links.open(ephemeral=b"e", owner=owners[2], push=owners[2].push, now=NOW)
    assert err.value.code == "link_busy"
    await links.close(owners[0])
    with pytest.raises(LinkError):
        await links.get(slots[0].slot, now=NOW)
    third = await links.open(ephemeral=b"e", owner=owners[2], push=owners[2].push, now=NOW)
    assert (await links.owned_by(third.slot, owners[2], now=NOW)).slot == third.slot
    # expired slots make room too
    assert await links.purge(NOW + TTL + 1) == 2 and await count(store) == 0


async def test_one_address_holds_a_bounded_share_its_oldest_slot_making_room(store: Store) -> None:
    links = registry(store, max_slots=8, max_slots_per_source=2)
    flood = [Owner() for _ in range(5)]
    slots = [await links.open(ephemeral=b"e", owner=o, push=o.push, now=NOW + i, source="198.51.100.7") for i, o in enumerate(flood)]
    assert sorted(await _all_slots(store)) == sorted(s.slot for s in slots[3:])  # only its own replaced
    with pytest.raises(LinkError) as err:
        await links.get(slots[0].slot, now=NOW)
    assert err.value.code == "link_unknown"


async def test_a_full_registry_takes_room_from_the_address_holding_the_most(store: Store) -> None:
    links = registry(store, max_slots=4, max_slots_per_source=3)
    honest = Owner()
    mine = await links.open(ephemeral=b"e", owner=honest, push=honest.push, now=NOW, source="203.0.113.9")
    flood = [
        await links.open(ephemeral=b"e", owner=o, push=o.push, now=NOW + 1 + i, source="198.51.100.7")
        for i, o in enumerate([Owner() for _ in range(3)])
    ]
    newcomer = Owner()
    new = await links.open(ephemeral=b"e", owner=newcomer, push=newcomer.push, now=NOW + 10, source="192.0.2.5")
    # the flooding address gave up its oldest
    assert sorted(await _all_slots(store)) == sorted([mine.slot, new.slot, flood[1].slot, flood[2].slot])


async def test_slot_collisions_draw_again(store: Store) -> None:
    slots = iter([b"A" * SLOT_LEN, b"A" * SLOT_LEN, b"B" * SLOT_LEN])
    tokens = counter_rng()
    links = registry(store, rng=lambda n: next(slots) if n == SLOT_LEN else tokens(n))
    first, second = Owner(), Owner()
    assert (await links.open(ephemeral=b"e", owner=first, push=first.push, now=NOW)).slot == b"A" * SLOT_LEN
    assert (await links.open(ephemeral=b"e", owner=second, push=second.push, now=NOW)).slot == b"B" * SLOT_LEN


async def test_an_offer_approved_on_another_process_reaches_the_waiting_connection(store: Store) -> None:
    """Two registries on one database are two processes of one node: the approval is in the
    store, the approving side says so (``elsewhere``: a NOTIFY in node/cluster.py) and the
    waiting side reads the offer and pushes it, once."""
    waiting_side, approving_side = registry(store), registry(store, rng=counter_rng(1000))
    told: list[bytes] = []
    approving_side.elsewhere = told.append
    owner = Owner()
    slot = await waiting_side.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW, device="fp-new")

    assert (await approving_side.get(slot.slot, now=NOW)).ephemeral == b"eph"
    await approving_side.deliver(slot.slot)  # not waiting there: nothing happens
    await waiting_side.deliver(slot.slot)  # not approved yet: nothing to push
    assert owner.offers == []
    await approving_side.approve(slot.slot, account="alice@alpha.example", offer=offer(slot.slot), now=NOW)
    assert told == [slot.slot] and owner.offers == []
    await waiting_side.deliver_all([slot.slot, b"\x00" * SLOT_LEN])
    await waiting_side.deliver(slot.slot)  # a re-check: not pushed twice
    assert owner.offers == [offer(slot.slot)]
    assert waiting_side.waiting() == [slot.slot]
    # one-shot across processes too
    with pytest.raises(LinkError) as err:
        await waiting_side.approve(slot.slot, account="bob@alpha.example", offer=offer(slot.slot, "bob@alpha.example"), now=NOW)
    assert err.value.code == "link_already_approved"
    assert (await waiting_side.owned_by(slot.slot, owner, now=NOW)).approved_for == "alice@alpha.example"


async def test_an_approval_for_a_connection_gone_elsewhere_is_refused(store: Store) -> None:
    waiting_side, approving_side = registry(store), registry(store, rng=counter_rng(1000))
    approving_side.elsewhere = lambda slot: None
    owner = Owner()
    slot = await waiting_side.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW)
    await waiting_side.close(owner)
    with pytest.raises(LinkError) as err:
        await approving_side.approve(slot.slot, account="alice@alpha.example", offer=offer(slot.slot), now=NOW)
    assert err.value.code == "link_unknown"


async def test_a_single_process_refuses_an_approval_nobody_here_waits_for(store: Store) -> None:
    """Without other processes (``elsewhere`` None) a slot nobody here waits in is stale."""
    links, stale = registry(store), registry(store, rng=counter_rng(1000))
    owner = Owner()
    slot = await stale.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW)
    with pytest.raises(LinkError) as err:
        await links.approve(slot.slot, account="alice@alpha.example", offer=offer(slot.slot), now=NOW)
    assert err.value.code == "link_unknown" and await count(store) == 0
