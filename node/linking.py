"""Provisioning slots for linking a new device to an existing account.

A new, not yet registered device opens a slot for its ephemeral HPKE key (``LinkBegin``) and
waits on its connection. A registered device that was shown the slot out of band (a QR code or
a typed code) fetches the key (``LinkFetch``) and hands over the sealed provisioning payload
(``LinkApprove``); the node pushes it to the waiting connection and remembers which account
approved the slot, so that the new device's ``LinkComplete`` can only join that account.

The slots live in the store (node/store/sqlite_links.py), so that every process of a node
serving one database sees them: the new device may wait on one process while the approving
device talks to another. What stays in this process is who waits here: each waiting
connection has a random token (the slot's ``owner``) and a ``Push`` for its offer. Approving is
one statement that binds the slot only while it is unbound (one-shot, across processes); the
offer then goes to the waiting connection directly when it is here, or through ``elsewhere``
(node/cluster.py: a NOTIFY naming the slot; the process where it waits reads the offer from the
store, ``deliver``). A restart forgets who waited, and the new device begins again (in a
node without other processes, a slot a crashed run left in the store cannot be completed:
``owned_by``).

Slots are bounded in number (``limits.MAX_LINK_SLOTS``), expire after ``ttl_ms`` (ten minutes)
and belong to exactly one connection (while it lives, another connection of the same device key
may complete the slot: a ``LinkComplete`` sent again after a lost answer, maybe to another
process). They are shared fairly between the addresses connections come from (new keys cost
nothing, addresses do): one address holds at most ``max_slots_per_source`` (its oldest slot
makes room for its newest), and when all slots are taken a new one replaces the oldest slot of
the address that holds the most, so a flood from one address never stops devices elsewhere
from linking. Approved slots go last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import trio

from sonet.core import limits
from sonet.core.client_api import LinkOffer
from sonet.core.errors import Refusal
from sonet.core.wire import decode_frame, encode_frame

from .store import SqliteStore, StoreError
from .store.sqlite_links import ALREADY_APPROVED, BUSY, TAKEN, UNKNOWN, LinkSlotRow

__all__ = ["LinkError", "LinkSlot", "LinkRegistry", "Push"]

log = logging.getLogger("sonet.node.linking")

#: hands a LinkOffer to the waiting connection without blocking; False if it cannot take it
Push = Callable[[LinkOffer], bool]

LinkSlot = LinkSlotRow
#: bytes of a waiting connection's token (the slot's ``owner``)
_TOKEN_LEN = 12


class LinkError(Refusal):
    """A link request the node refuses; ``code`` goes into the ErrorFrame."""


@dataclass(slots=True)
class _Waiter:
    """A connection of this process waiting in a slot."""

    token: str
    slot: bytes
    expires: int
    push: Push
    delivered: bool = False


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
        self._store: SqliteStore | None = None
        self._clock_ms: Callable[[], int] | None = None
        self._by_owner: dict[object, _Waiter] = {}
        self._by_slot: dict[bytes, _Waiter] = {}
        #: tells the node's other processes that these slots were approved (node/cluster.py);
        #: None while this process is the node's only one
        self.elsewhere: Callable[[bytes], None] | None = None

    def use(self, store: SqliteStore, clock_ms: Callable[[], int]) -> None:
        """The store the slots are kept in (the node's, once ``run`` opened it) and the
        node's clock (``deliver``)."""
        self._store, self._clock_ms = store, clock_ms

    @property
    def store(self) -> SqliteStore:
        if self._store is None:
            raise RuntimeError("LinkRegistry.use(store) was not called")
        return self._store

    def waiting(self) -> list[bytes]:
        """The slots a connection of this process waits in."""
        return list(self._by_slot)

    async def purge(self, now: int) -> int:
        """Forget expired slots; return how many."""
        for waiter in [w for w in self._by_slot.values() if w.expires <= now]:
            self._forget(waiter.slot)
        return await self.store.purge_link_slots(now=now)

    async def open(self, *, ephemeral: bytes, owner: object, push: Push, now: int, source: str = "", device: str = "") -> LinkSlot:
        """A new slot for ``owner`` (one live slot per connection) coming from ``source``, a
        connection of the device key ``device``."""
        mine = self._by_owner.get(owner)
        if mine is not None and mine.expires <= now:  # it may begin again
            self._forget(mine.slot)
        elif mine is not None:
            raise LinkError("link_in_progress", "this connection already waits in a link slot")
        while True:
            row = LinkSlotRow(
                slot=self._rng(self._slot_len), ephemeral=ephemeral, expires=now + self._ttl_ms,
                owner=self._rng(_TOKEN_LEN).hex(), source=source, device=device,
            )  # fmt: skip
            opened = await self.store.open_link_slot(row, now=now, max_slots=self._max_slots, max_per_source=self._max_per_source)
            if opened != TAKEN:  # 128 random bits: taken never in practice
                break
        if opened == BUSY:
            raise LinkError("link_busy", "too many devices are linking right now; try again in a few minutes")
        if owner in self._by_owner:  # a second LinkBegin of the connection raced this one
            await self.store.drop_link_slot(row.slot)
            raise LinkError("link_in_progress", "this connection already waits in a link slot")
        waiter = _Waiter(token=row.owner, slot=row.slot, expires=row.expires, push=push)
        self._by_owner[owner] = waiter
        self._by_slot[row.slot] = waiter
        return row

    async def get(self, key: bytes, *, now: int) -> LinkSlot:
        slot = await self.store.link_slot(key, now=now)
        if slot is None:
            raise LinkError("link_unknown", "no such link slot (mistyped, expired or already used)")
        return slot

    async def approve(self, key: bytes, *, account: str, offer: LinkOffer, now: int) -> None:
        """Bind the slot to ``account`` (once) and push ``offer`` to the waiting connection."""
        found = await self.store.approve_link_slot(key, account=account, offer=encode_frame(offer), now=now)
        if found == ALREADY_APPROVED:
            raise LinkError("link_already_approved", "this link slot was already approved")
        if found == UNKNOWN:
            raise LinkError("link_unknown", "no such link slot (mistyped, expired or already used)")
        waiter = self._by_slot.get(key)
        if waiter is not None:
            waiter.delivered = True
            if waiter.push(offer):
                return
        elif self.elsewhere is not None:
            self.elsewhere(key)  # where it waits, the offer is read from the store
            return
        # the waiting connection is gone (its slot is about to be released) or full
        self._forget(key)
        await self.store.drop_link_slot(key)
        raise LinkError("link_unknown", "the new device is no longer waiting")

    async def deliver(self, key: bytes) -> None:
        """Push the offer of ``key`` to its connection here, if it waits here and the slot was
        approved on another process (woken by node/cluster.py; at most once)."""
        waiter = self._by_slot.get(key)
        if waiter is None or waiter.delivered:
            return
        try:
            slot = await self.store.link_slot(key, now=self._clock_ms() if self._clock_ms else 0)
        except StoreError as exc:  # the next re-check tries again
            log.warning("cannot read a link slot approved elsewhere: %s", exc)
            return
        if slot is None or slot.offer is None or slot.owner != waiter.token or waiter.delivered:
            return
        offer = decode_frame(slot.offer)
        assert isinstance(offer, LinkOffer)  # encoded by approve
        waiter.delivered = True
        if not waiter.push(offer):
            self._forget(key)
            await self.store.drop_link_slot(key)

    async def deliver_all(self, keys: Iterable[bytes]) -> None:
        for key in keys:
            await self.deliver(key)

    async def owned_by(self, key: bytes, owner: object, *, now: int, device: str = "") -> LinkSlot:
        """The slot, if ``owner`` opened it or another connection of the same device key
        ``device`` did (a LinkComplete sent again after a lost answer, while the first
        connection's request may still be in flight: the store makes the two one device),
        while that connection waits here or, in a node of several processes, maybe on another.
        link_unknown otherwise: slots are not guessable and not shared, so another device's
        slot is as unknown as a missing one; and a slot of a node's only process that nobody
        here waits in was left by a run that crashed (its connection died with it)."""
        slot = await self.get(key, now=now)
        waiter = self._by_owner.get(owner)
        if waiter is not None and waiter.token == slot.owner:
            return slot
        if not (device and slot.device == device):
            raise LinkError("link_unknown", "no such link slot for this connection")
        if key not in self._by_slot and self.elsewhere is None:
            await self.store.drop_link_slot(key)
            raise LinkError("link_unknown", "no such link slot (its connection ended with the node's last run)")
        return slot

    async def used(self, key: bytes) -> None:
        """The slot's device linked: nobody may complete it again."""
        self._forget(key)
        await self.store.drop_link_slot(key)

    def release(self, owner: object) -> bytes | None:
        """``owner`` no longer waits here (it registered, or its connection ends); return the
        slot it waited in, if any."""
        waiter = self._by_owner.pop(owner, None)
        if waiter is None:
            return None
        self._by_slot.pop(waiter.slot, None)
        return waiter.slot

    async def close(self, owner: object) -> None:
        """``owner``'s connection ended: its slot goes (an approval now answers link_unknown)."""
        key = self.release(owner)
        if key is None:
            return
        with trio.CancelScope(shield=True):  # a node stopping still tidies up its slots
            try:
                await self.store.drop_link_slot(key)
            except StoreError as exc:  # it expires on its own
                log.warning("cannot drop a link slot (it expires on its own): %s", exc)

    def _forget(self, key: bytes) -> None:
        waiter = self._by_slot.pop(key, None)
        if waiter is not None:
            self._by_owner = {o: w for o, w in self._by_owner.items() if w is not waiter}
