"""What the node knows about its federation links right now, for ``sonet-node status``.

Pure and in-memory (lost on restart): counters plus the last few refusals. Times are passed in.
``peer_entry`` is the status of one configured peer, the same shape whether the node runs
(with its link state) or not; ``directory_section`` what it witnessed of its peers' key
directories and the split views it caught (from the store's rows, or the witness's copy).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .peers import Peer
from .routes import Routes

__all__ = ["FederationStatus", "Refusal", "MAX_REFUSALS", "peer_entry", "directory_section", "NO_LINK"]

#: the link fields of a peer without link state (the node is not running, or no route)
NO_LINK = {"link": None, "last_error": None, "next_attempt_at": None, "inbound_links": 0}

#: how many recent refusals are kept
MAX_REFUSALS = 16


@dataclass(frozen=True, kw_only=True, slots=True)
class Refusal:
    peer: str | None  # the configured peer's name when known, else None
    #: the node name the dialler announced (its Sonet-Node header): anyone can announce any
    #: name, so it is not checked; None if it announced none (or a malformed one)
    unverified_name: str | None
    address: str | None  # its source address (IP, or an IPv6 /64), None if not known
    at: int  # ms since the epoch
    reason: str  # "unknown_peer" / "wrong_identity" / ...


class FederationStatus:
    def __init__(self) -> None:
        self.admitted = 0
        self.refused: dict[str, int] = {}
        self.links_open = 0
        self.last_refusals: deque[Refusal] = deque(maxlen=MAX_REFUSALS)
        #: bumped on every change, so a writer can tell whether to persist a new snapshot
        self.version = 0

    def record_admitted(self) -> None:
        self.admitted += 1
        self.version += 1

    def record_refusal(
        self, *, peer: str | None, reason: str, at: int, unverified_name: str | None = None, address: str | None = None
    ) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        self.last_refusals.append(Refusal(peer=peer, unverified_name=unverified_name, address=address, at=at, reason=reason))
        self.version += 1

    def link_opened(self) -> None:
        self.links_open += 1
        self.version += 1

    def link_closed(self) -> None:
        self.links_open -= 1
        self.version += 1

    def snapshot(self) -> dict:
        return {
            "links_open": self.links_open,
            "admitted": self.admitted,
            "refused": sum(self.refused.values()),
            "refused_by_reason": dict(sorted(self.refused.items())),
            "last_refusals": [asdict(r) for r in self.last_refusals],
        }


def peer_entry(
    routes: Routes, peer: Peer, counts: dict[str, int], link: dict, *, witnessed_size: int | None = None, split: str | None = None
) -> dict:
    """name, url, via, route (node names), the ``link`` fields (link, last_error,
    next_attempt_at, inbound_links), queued (outbox items waiting for it), witnessed_size (of
    the last head of its key directory this node cosigned) and split (the kind of split view
    it showed, if any)."""
    return {
        "name": peer.name,
        "url": peer.url,
        "via": peer.via,
        "route": routes.route(peer.name),
        **link,
        "queued": routes.queued(peer.name, counts),
        "witnessed_size": witnessed_size,
        "split": split,
    }


def directory_section(witnessed: Iterable[Any], splits: Iterable[Any]) -> dict:
    """``witnessed``: WitnessRow-like (node, size, root, at); ``splits``: SplitRow-like."""
    return {
        "witnessed": [{"node": w.node, "tree_size": w.size, "root_hash": w.root.hex(), "at": w.at} for w in witnessed],
        "splits": [{"node": s.node, "kind": s.kind, "source": s.source, "detected_at": s.detected_at} for s in splits],
    }
