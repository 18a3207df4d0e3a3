"""Routing decisions from the peer table (pure; ARCHITECTURE §6).

A destination node is reached directly when it is a configured peer without ``via``, or
through its ``via`` relay, which must itself be a direct peer: a via of a via is not supported
(such a destination has no route; the relay's own configuration decides how it forwards, so
longer chains are built one relay at a time, each with its own ``via``). A node relays only
between nodes that are all its configured peers: the item's origin, the peer it came from and
its destination.
"""

from __future__ import annotations

from collections.abc import Iterable

from .peers import Peer

__all__ = ["Routes"]


class Routes:
    """An immutable view of the peer table of node ``name``."""

    def __init__(self, name: str, peers: Iterable[Peer]) -> None:
        self.name = name
        self._peers = {p.name: p for p in peers if p.name != name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Routes) and other.name == self.name and other._peers == self._peers

    @property
    def peers(self) -> list[Peer]:
        return sorted(self._peers.values(), key=lambda p: p.name)

    def peer(self, name: str) -> Peer | None:
        return self._peers.get(name)

    def direct(self) -> list[Peer]:
        """The peers this node dials itself."""
        return [p for p in self.peers if p.via is None]

    def next_hop(self, dest: str) -> Peer | None:
        """The direct peer to hand items for ``dest`` to; None if there is no route."""
        peer = self._peers.get(dest)
        if peer is None or peer.via is None:
            return peer
        relay = self._peers.get(peer.via)
        if relay is None or relay.via is not None:
            return None
        return relay

    def route(self, dest: str) -> list[str]:
        """The node names an item for ``dest`` passes through, ending with ``dest``; [] if none."""
        hop = self.next_hop(dest)
        if hop is None:
            return []
        return [dest] if hop.name == dest else [hop.name, dest]

    def may_relay(self, *, origin: str, link_peer: str, dest: str) -> bool:
        """Whether this node forwards an item from ``origin``, received from ``link_peer``,
        towards ``dest``."""
        return all(n in self._peers for n in (origin, link_peer, dest))

    def through(self, hop: str) -> list[str]:
        """Every destination whose next hop is ``hop`` (``hop`` itself included), sorted."""
        return sorted(d for d in self._peers if (h := self.next_hop(d)) is not None and h.name == hop)

    def queued(self, name: str, counts: dict[str, int]) -> int:
        """Items waiting for peer ``name``, from the outbox ``counts`` per destination: for a
        direct peer, those of every destination routed through it; for a peer behind a relay,
        its own."""
        peer = self._peers.get(name)
        dests = [name] if peer is None or peer.via is not None else self.through(name)
        return sum(counts.get(d, 0) for d in dests)
