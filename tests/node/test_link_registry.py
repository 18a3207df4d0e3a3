"""node/linking.py on its own: slots, expiry, bounds, ownership, pushing the offer."""

from __future__ import annotations

import itertools

import pytest

from sonet.core.client_api import LinkOffer
from sonet.node.linking import LinkError, LinkRegistry

NOW = 1_700_000_000_000
TTL = 600_000


def counter_rng():  # noqa: ANN201
    """Deterministic 'random' slots: 0001.., 0002.., ..."""
    numbers = itertools.count(1)
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


def registry(**kwargs: int) -> LinkRegistry:
    return LinkRegistry(rng=counter_rng(), ttl_ms=TTL, **kwargs)


def test_open_get_and_expiry() -> None:
    links, owner = registry(), Owner()
    slot = links.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW)
    assert (slot.slot, slot.expires, slot.approved_for) == ((1).to_bytes(16, "big"), NOW + TTL, None)

    assert links.get(slot.slot, now=NOW + TTL - 1).ephemeral == b"eph"
    with pytest.raises(LinkError) as err:
        links.get(slot.slot, now=NOW + TTL)
    assert err.value.code == "link_unknown"
    assert len(links) == 0  # purged on the way


def test_approve_pushes_once_and_binds_the_account() -> None:
    links, owner = registry(), Owner()
    slot = links.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW)

    links.approve(slot.slot, account="alice@alpha.example", offer=offer(slot.slot), now=NOW)
    assert owner.offers == [offer(slot.slot)]
    assert links.get(slot.slot, now=NOW).approved_for == "alice@alpha.example"
    with pytest.raises(LinkError) as err:
        links.approve(slot.slot, account="bob@alpha.example", offer=offer(slot.slot, "bob@alpha.example"), now=NOW)
    assert err.value.code == "link_already_approved"
    assert len(owner.offers) == 1 and links.get(slot.slot, now=NOW).approved_for == "alice@alpha.example"


def test_approve_when_the_waiting_connection_cannot_take_it() -> None:
    links, owner = registry(), Owner(accepting=False)
    slot = links.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW)

    with pytest.raises(LinkError) as err:
        links.approve(slot.slot, account="alice@alpha.example", offer=offer(slot.slot), now=NOW)
    assert err.value.code == "link_unknown"
    assert len(links) == 0


def test_one_live_slot_per_owner_and_ownership() -> None:
    links, owner, other = registry(), Owner(), Owner()
    slot = links.open(ephemeral=b"eph", owner=owner, push=owner.push, now=NOW)

    with pytest.raises(LinkError) as err:
        links.open(ephemeral=b"eph2", owner=owner, push=owner.push, now=NOW)
    assert err.value.code == "link_in_progress"
    assert links.owned_by(slot.slot, owner, now=NOW) is slot
    with pytest.raises(LinkError) as err:
        links.owned_by(slot.slot, other, now=NOW)
    assert err.value.code == "link_unknown"
    # once expired, the owner may open a new one
    assert links.open(ephemeral=b"eph3", owner=owner, push=owner.push, now=NOW + TTL).ephemeral == b"eph3"


def test_another_connection_of_the_same_device_key_may_complete_the_slot() -> None:
    """A LinkComplete sent again after a lost answer comes on a new connection of the same key."""
    links, first, retry, stranger = registry(), Owner(), Owner(), Owner()
    slot = links.open(ephemeral=b"eph", owner=first, push=first.push, now=NOW, device="fp-new")

    assert links.owned_by(slot.slot, retry, now=NOW, device="fp-new") is slot
    for device in ("fp-other", ""):
        with pytest.raises(LinkError) as err:
            links.owned_by(slot.slot, stranger, now=NOW, device=device)
        assert err.value.code == "link_unknown"
    links.release(first)  # the first connection ended: its slot goes with it
    with pytest.raises(LinkError):
        links.owned_by(slot.slot, retry, now=NOW, device="fp-new")


def test_slots_are_bounded_and_released() -> None:
    links = registry(max_slots=2)
    owners = [Owner() for _ in range(3)]
    slots = [links.open(ephemeral=b"e", owner=o, push=o.push, now=NOW + i) for i, o in enumerate(owners[:2])]
    links.approve(slots[0].slot, account="alice@alpha.example", offer=offer(slots[0].slot), now=NOW)
    links.approve(slots[1].slot, account="alice@alpha.example", offer=offer(slots[1].slot), now=NOW)
    # only approved slots: none is taken away (their devices are about to complete)
    with pytest.raises(LinkError) as err:
        links.open(ephemeral=b"e", owner=owners[2], push=owners[2].push, now=NOW)
    assert err.value.code == "link_busy"
    links.release(owners[0])
    with pytest.raises(LinkError):
        links.get(slots[0].slot, now=NOW)
    assert links.open(ephemeral=b"e", owner=owners[2], push=owners[2].push, now=NOW).owner is owners[2]
    # expired slots make room too
    assert links.purge(NOW + TTL + 1) == 2 and len(links) == 0


def test_one_address_holds_a_bounded_share_its_oldest_slot_making_room() -> None:
    links = registry(max_slots=8, max_slots_per_source=2)
    flood = [Owner() for _ in range(5)]
    slots = [links.open(ephemeral=b"e", owner=o, push=o.push, now=NOW + i, source="198.51.100.7") for i, o in enumerate(flood)]
    assert len(links) == 2  # the flood only ever replaced its own slots
    assert [links.get(s.slot, now=NOW).owner for s in slots[3:]] == flood[3:]
    with pytest.raises(LinkError) as err:
        links.get(slots[0].slot, now=NOW)
    assert err.value.code == "link_unknown"


def test_a_full_registry_takes_room_from_the_address_holding_the_most() -> None:
    links = registry(max_slots=4, max_slots_per_source=3)
    honest = Owner()
    mine = links.open(ephemeral=b"e", owner=honest, push=honest.push, now=NOW, source="203.0.113.9")
    flood = [Owner() for _ in range(3)]
    for i, o in enumerate(flood):
        links.open(ephemeral=b"e", owner=o, push=o.push, now=NOW + 1 + i, source="198.51.100.7")
    newcomer = Owner()
    links.open(ephemeral=b"e", owner=newcomer, push=newcomer.push, now=NOW + 10, source="192.0.2.5")
    assert len(links) == 4
    assert links.get(mine.slot, now=NOW).owner is honest  # the flooding address gave up its oldest
    owners = {slot.owner for slot in links._slots.values()}
    assert flood[0] not in owners and {honest, newcomer, flood[1], flood[2]} == owners


def test_slot_collisions_draw_again() -> None:
    draws = iter([b"A" * 16, b"A" * 16, b"B" * 16])
    links = LinkRegistry(rng=lambda n: next(draws), ttl_ms=TTL)
    first, second = Owner(), Owner()
    assert links.open(ephemeral=b"e", owner=first, push=first.push, now=NOW).slot == b"A" * 16
    assert links.open(ephemeral=b"e", owner=second, push=second.push, now=NOW).slot == b"B" * 16
