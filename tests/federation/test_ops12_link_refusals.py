"""ops12, from a newcomer's walkthrough of a federation of nodes: what each side records when a
peer link is refused.

- A node refusing an unpinned dialler recorded ``peer: null`` in ``sonet-node status`` and its
  audit log (neither the name the dialler announced nor where it came from), and its log
  summary said ``ended_unauthenticated`` where the status said ``unknown_peer``.
"""

from __future__ import annotations

import pytest
import trio

from sonet.federation import DialError
from sonet.node.cli import _federation_lines
from tests.node.conftest import HANG_S, RunningNode
from tests.node.test_audit_sites import _entries

from .net import new_key, pin, peer_link, until

STRANGER = "stranger.example"


async def test_a_refused_dialler_is_recorded_with_the_name_it_announced_and_its_address(running: RunningNode) -> None:
    await pin(running, "beta.example", fingerprint=new_key().public.fingerprint)
    with trio.fail_after(HANG_S), pytest.raises(DialError) as info:
        async with peer_link(running, new_key(), STRANGER):
            pytest.fail("admitted an unpinned node")
    assert info.value.code == "unknown_peer"
    status = running.node.federation_status.snapshot()
    [refusal] = status["last_refusals"]
    assert refusal == {"peer": None, "unverified_name": STRANGER, "address": "127.0.0.1", "at": refusal["at"], "reason": "unknown_peer"}
    [entry] = _entries(running, "handshake_refused")
    assert entry == {
        "peer": None, "unverified_name": STRANGER, "address": "127.0.0.1", "code": "unknown_peer", "direction": "inbound", "count": 1,
    }  # fmt: skip
    # the status for people says it too, the name marked as what it is: a claim
    assert running.node.federation is not None
    lines = _federation_lines(running.node.federation.snapshot())
    assert lines[-1].startswith(f"  last refused: a node announcing {STRANGER} (unverified) from 127.0.0.1: unknown_peer at ")
    # and the log summary counts it as the status does
    listening = running.node.listening
    assert listening is not None
    await until(lambda: listening.summary.totals.get("unknown_peer") == 1, "the refusal counted in the log summary")
    assert "ended_unauthenticated" not in listening.summary.totals


async def test_a_dialler_that_announced_no_name_is_recorded_as_such(running: RunningNode) -> None:
    assert running.node.federation is not None
    gate = running.node.federation.gate
    assert await gate.decide(new_key().public.fingerprint, None, address="192.0.2.9") == (
        "unknown_peer", "a peer node must announce its name (the Sonet-Node header)",
    )  # fmt: skip
    status = running.node.federation_status.snapshot()
    [refusal] = status["last_refusals"]
    assert (refusal["unverified_name"], refusal["address"], refusal["peer"]) == (None, "192.0.2.9", None)
    assert _federation_lines(running.node.federation.snapshot())[-1].startswith("  last refused: a node announcing no name from 192.0.2.9: unknown_peer at ")
