"""Provisioning slots for linking a new device to an existing account (in memory only).

A new, not yet registered device opens a slot for its ephemeral HPKE key (``LinkBegin``) and
waits on its connection. A registered device that was shown the slot out of band (a QR code or
a typed code) fetches the key (``LinkFetch``) and hands over the sealed provisioning payload
(``LinkApprove``); the node pushes it to the waiting connection and remembers which account
approved the slot, so that the new device's ``LinkComplete`` can only join that account.

Slots live in this process only: a restart forgets them, and the new device begins again.
They are bounded in number (``limits.MAX_LINK_SLOTS``), expire after ``ttl_ms`` (ten minutes)
and belong to exactly one connection (while it lives, another connection of the same device key
may complete the slot: a ``LinkComplete`` sent again after a lost answer). They are shared fairly between the addresses connections
come from (new keys cost nothing, addresses do): one address holds at most
``max_slots_per_source`` (its oldest slot makes room for its newest), and when all slots are
taken a new one replaces the oldest slot of the address that holds the most, so a flood from one
address never stops devices elsewhere from linking. Approved slots go last. The registry is plain synchronous code driven by the sessions (one trio thread), with the time
passed in, so every check-and-update below is atomic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sonet.core import limits
from sonet.core.client_api import LinkOffer
from sonet.core.errors import Refusal

__all__ = ["LinkError", "LinkSlot", "LinkRegistry", "Push"]

#: hands a LinkOffer to the waiting connection without blocking; False if it cannot take it
Push = Callable[[LinkOffer], bool]


class LinkError(Refusal):
    """A link request the node refuses; ``code`` goes into the ErrorFrame."""


@dataclass(kw_only=True, slots=True)
class LinkSlot:
    slot: bytes
    ephemeral: bytes
    expires: int
    #: the waiting connection: identifies it and delivers the LinkOffer to it
    owner: object
    push: Push
    #: the account whose device approved the slot, once one did
    approved_for: str | None = None
    #: the address the waiting connection comes from (fair shares between addresses)
    source: str = ""
    #: the fingerprint of the device key the waiting connection authenticated with
    device: str = ""


class LinkRegistry:
    def __init__(
        self,
        *,
        rng: Callable[[int], bytes],
        slot_len: int = limits.LINK_SLOT_LEN,
        ttl_ms: int = limits.LINK_SLOT_TTL_MS,
        max_slots: int = limits.MAX_LINK_SLOTS,
        max_slots_per_source: int = limits.MAX_LINK_SLOTS // 16,
    ) -> None:
        self._max_per_source = max(1, max_slots_per_source)
        self._rng = rng
        self._slot_len = slot_len
        self._ttl_ms = ttl_ms
        self._max_slots = max_slots
        self._slots: dict[bytes, LinkSlot] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def purge(self, now: int) -> int:
        """Forget expired slots; return how many."""
        expired = [key for key, slot in self._slots.items() if slot.expires <= now]
        for key in expired:
            del self._slots[key]
        return len(expired)

    def open(self, *, ephemeral: bytes, owner: object, push: Push, now: int, source: str = "", device: str = "") -> LinkSlot:
        """A new slot for ``owner`` (one live slot per connection) coming from ``source``, a
        connection of the device key ``device``."""
        self.purge(now)
        if any(slot.owner is owner for slot in self._slots.values()):
            raise LinkError("link_in_progress", "this connection already waits in a link slot")
        mine = [slot for slot in self._slots.values() if slot.source == source]
        if len(mine) >= self._max_per_source:
            self._evict(mine)
        elif len(self._slots) >= self._max_slots:
            self._evict_from_largest()
        if len(self._slots) >= self._max_slots:  # only approved slots left to make room
            raise LinkError("link_busy", "too many devices are linking right now; try again in a few minutes")
        key = self._rng(self._slot_len)
        while key in self._slots:  # 128 random bits: never in practice
            key = self._rng(self._slot_len)
        slot = LinkSlot(
            slot=key, ephemeral=ephemeral, expires=now + self._ttl_ms, owner=owner, push=push, source=source, device=device
        )
        self._slots[key] = slot
        return slot

    def _evict(self, slots: list[LinkSlot]) -> None:
        """Forget the oldest slot of ``slots`` not yet approved (its device, still waiting,
        begins again if it is still there)."""
        waiting = [slot for slot in slots if slot.approved_for is None]
        if waiting:
            oldest = min(waiting, key=lambda slot: slot.expires)
            del self._slots[oldest.slot]

    def _evict_from_largest(self) -> None:
        by_source: dict[str, list[LinkSlot]] = {}
        for slot in self._slots.values():
            if slot.approved_for is None:
                by_source.setdefault(slot.source, []).append(slot)
        if by_source:
            self._evict(max(by_source.values(), key=len))

    def get(self, key: bytes, *, now: int) -> LinkSlot:
        self.purge(now)
        slot = self._slots.get(key)
        if slot is None:
            raise LinkError("link_unknown", "no such link slot (mistyped, expired or already used)")
        return slot

    def approve(self, key: bytes, *, account: str, offer: LinkOffer, now: int) -> LinkSlot:
        """Push ``offer`` to the waiting connection and bind the slot to ``account``."""
        slot = self.get(key, now=now)
        if slot.approved_for is not None:
            raise LinkError("link_already_approved", "this link slot was already approved")
        if not slot.push(offer):
            # the waiting connection is gone (its slot is about to be released) or full
            self._slots.pop(key, None)
            raise LinkError("link_unknown", "the new device is no longer waiting")
        slot.approved_for = account
        return slot

    def owned_by(self, key: bytes, owner: object, *, now: int, device: str = "") -> LinkSlot:
        """The slot, if ``owner`` opened it or another connection of the same device key
        ``device`` did (a LinkComplete sent again after a lost answer, while the first
        connection's request may still be in flight: the store makes the two one device).
        link_unknown otherwise: slots are not guessable and not shared, so another device's
        slot is as unknown as a missing one."""
        slot = self.get(key, now=now)
        if slot.owner is not owner and not (device and slot.device == device):
            raise LinkError("link_unknown", "no such link slot for this connection")
        return slot

    def release(self, owner: object) -> None:
        """Drop every slot of ``owner`` (its connection ended, or the link completed)."""
        for key in [key for key, slot in self._slots.items() if slot.owner is owner]:
            del self._slots[key]
