"""``/client`` connections that authenticated but have no account yet, counted per source
address and node-wide.

Such a key costs an attacker one handshake and may send records of up to
``limits.MAX_UNREGISTERED_RECORD_BYTES`` (a Register with its first prekeys), which the
WebSocket buffers until the record is complete. So besides the deadline each one has
(node/client_session.py), their number is capped: at a cap the OLDEST such connection (of that
address, else anywhere) is told to close, as for pending connections (transport/admission.py):
a device that registers or links is gone from here within a second, one that lingers is the
likeliest throwaway key. A connection waiting in a link slot counts as well.
"""

from __future__ import annotations

from collections import defaultdict

from .mailbox import Signal

__all__ = ["Unregistered"]


class Unregistered:
    def __init__(self, *, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        # insertion order is age; the value is the connection's ``evicted`` event
        self._all: dict[object, Signal] = {}
        self._by_address: dict[str, dict[object, None]] = defaultdict(dict)
        self._address: dict[object, str] = {}

    def __len__(self) -> int:
        return len(self._all)

    def add(self, owner: object, address: str, evicted: Signal) -> None:
        """Count ``owner`` (a connection without an account from ``address``) until
        ``done(owner)``; ``evicted`` is set if newer ones push it out."""
        mine = self._by_address.get(address, {})
        if len(mine) >= self.max_per_address:
            self._evict(next(iter(mine)))
        if len(self._all) >= self.max_total:
            self._evict(next(iter(self._all)))
        self._all[owner] = evicted
        self._by_address[address][owner] = None
        self._address[owner] = address

    def done(self, owner: object) -> None:
        """``owner`` has an account now (or ended): it no longer counts (idempotent)."""
        if self._all.pop(owner, None) is None:
            return
        address = self._address.pop(owner)
        mine = self._by_address[address]
        del mine[owner]
        if not mine:
            del self._by_address[address]

    def _evict(self, owner: object) -> None:
        event = self._all[owner]
        self.done(owner)
        event.set()
