"""Attack round 9: anybody can dial ``/federation``, claim any node name and be refused, and each
refusal was an INFO line (221 lines in 6 s from one unpinned stranger against a real node). The
gate (federation/link.py ``PeerGate``) now counts them in one summary line per 10 s; the last
refusals stay in ``sonet-node status`` (FederationStatus) and events go to the audit log."""

from __future__ import annotations

import logging

import pytest

from sonet.federation.link import PeerGate, refusals_summary
from sonet.federation.peers import Peer
from sonet.federation.status import FederationStatus

BETA = Peer(name="beta.example", url="ws://127.0.0.1:1", fingerprint="b" * 32, via=None, added_at=0)


async def test_refused_links_are_counted_not_logged_one_by_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sonet.federation")

    async def peers() -> list[Peer]:
        return [BETA]

    status = FederationStatus()
    gate = PeerGate(load_peers=peers, status=status, clock_ms=lambda: 1)
    before = sum(refusals_summary.totals.values())
    for i in range(100):
        assert (await gate.decide("s" * 32, f"evil{i}.example"))[0] == "unknown_peer"
        assert (await gate.decide("s" * 32, "beta.example"))[0] == "wrong_identity"
        assert (await gate.decide("s" * 32, None))[0] == "unknown_peer"
    assert await gate.decide("b" * 32, "beta.example") is None  # the peer still gets in
    assert len(caplog.records) <= 1, [r.getMessage() for r in caplog.records[:3]]
    assert sum(refusals_summary.totals.values()) - before == 300
    assert status.refused == {"unknown_peer": 200, "wrong_identity": 100}
