"""ops12, from a newcomer's walkthrough of a federation of nodes: what each side records when a
peer link is refused.

- A node refusing an unpinned dialler recorded ``peer: null`` in ``sonet-node status`` and its
  audit log (neither the name the dialler announced nor where it came from), and its log
  summary said ``ended_unauthenticated`` where the status said ``unknown_peer``.
- A dialled node whose key the dialler refused (``wrong_identity``: it pins another) recorded
  ``handshake_refused``, though it refused nothing.
- The dialler's gossip failure was a second line of the link failure the pool logged.
- The dialler's status showed a refused peer's link ``idle``, with no next attempt.
"""

from __future__ import annotations

import logging

import pytest
import trio

from sonet.cli_output import iso_ms
from sonet.federation import DialError
from sonet.node.cli import _federation_lines
from tests.node.conftest import HANG_S, RunningNode, StartNode
from tests.node.test_audit_sites import _entries

from .net import ALPHA, BETA, new_key, peer_link, pin, until

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


async def test_a_dialled_node_whose_key_the_dialler_refused_records_that_it_was_refused(start_node: StartNode) -> None:
    """ops12 item 2: alpha pins another key for beta; when alpha dials beta, beta's audit said
    ``handshake_refused`` (as if beta had refused something) and its summary counted it as its
    own refusal. Now each side records what happened: alpha (``wrong_identity``, outbound, with
    the peer's name) refused beta's key; beta was refused by the dialler (``refused_by_initiator``)."""
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    await pin(alpha, BETA, url=beta.url, fingerprint=new_key().public.fingerprint)  # not beta's key
    federation = alpha.node.federation
    assert federation is not None
    # alpha reads its peer table again (every refresh_s) and greets a new direct peer at once: it
    # dials beta and refuses its key (not refresh_routes() from here: the test task's context
    # would be the dial's, and alpha's audit log does not hear events emitted there)
    await until(lambda: [p for p in federation.snapshot()["peers"] if p["last_error"]], "alpha dialled beta")
    [mine] = _entries(alpha, "wrong_identity")
    assert mine == {"peer": BETA, "url": beta.url, "direction": "outbound", "code": "wrong_identity", "count": mine["count"]}
    beta_summary = beta.node.listening
    assert beta_summary is not None
    await until(lambda: beta_summary.summary.totals.get("refused_by_initiator"), "beta counted the dialler's refusal")
    [theirs] = _entries(beta, "refused_by_initiator")
    assert theirs == {"address": "127.0.0.1", "code": "wrong_identity", "count": theirs["count"]}
    assert _entries(beta, "handshake_refused") == [] and _entries(beta, "wrong_identity") == []
    assert "wrong_identity" not in beta_summary.summary.totals
    assert beta.node.federation_status.snapshot()["refused"] == 0  # beta's gate refused nothing


async def test_a_failed_gossip_is_not_a_second_line_of_the_links_failure(start_node: StartNode, caplog: pytest.LogCaptureFixture) -> None:
    """ops12 item 3: alpha's gossip to a peer that refuses its link wrote the pool's line
    ("federation with beta.example: beta.example refused the link, saying: ...") and, in the
    same millisecond, "could not gossip directory heads to beta.example: <the same words>"."""
    caplog.set_level(logging.DEBUG, logger="sonet.federation")
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)  # beta does not pin alpha: it refuses alpha's link
    await pin(alpha, BETA, url=beta.url, fingerprint=beta.fingerprint)  # alpha greets beta (gossip) at once

    def gossip_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith(f"could not gossip directory heads to {BETA}")]

    await until(gossip_lines, "alpha's gossip to beta failed")
    said = f"{BETA} refused the link, saying: {ALPHA} is not a configured peer of this node"
    assert [r.levelno for r in gossip_lines()] == [logging.DEBUG] * len(gossip_lines())
    assert said in gossip_lines()[0].getMessage()
    pool = [r for r in caplog.records if r.getMessage() == f"federation with {BETA}: {said} (unknown_peer)"]
    assert [r.levelno for r in pool] == [logging.INFO]  # the failure's one line


async def test_a_peer_that_refused_the_link_shows_refused_why_and_when_the_next_attempt_is(start_node: StartNode) -> None:
    """ops12 item 4: once the backoff after beta's refusal ended, alpha's status showed beta's
    link ``idle`` with no next attempt (only the last error said why). Now ``refused``, and the
    next attempt: the next witness round, which dials beta whatever the backoff."""
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)  # beta does not pin alpha: it refuses alpha's link
    await pin(alpha, BETA, url=beta.url, fingerprint=beta.fingerprint)
    federation = alpha.node.federation
    assert federation is not None

    def entry() -> dict:
        return next((p for p in federation.snapshot()["peers"] if p["name"] == BETA), {})

    await until(lambda: (entry().get("last_error") or {}).get("code") == "unknown_peer", "beta refused alpha")
    await until(lambda: not federation._pool.backing_off(BETA), "alpha's backoff towards beta ended")  # nothing queued: no dial
    beta_entry = entry()
    assert beta_entry["link"] == "refused" and beta_entry["queued"] == 0
    assert beta_entry["next_attempt_at"] is not None and beta_entry["next_attempt_at"] == federation._witness.next_round_at
    said = f"{BETA} refused the link, saying: {ALPHA} is not a configured peer of this node"
    assert beta_entry["last_error"]["message"] == said
    line = f"  {BETA}: route {BETA}, link refused, queued 0, last error: {said} (unknown_peer), next attempt at {iso_ms(beta_entry['next_attempt_at'])}"
    assert line in _federation_lines(federation.snapshot())
    # nothing planned (no witness round ahead, nothing queued): said so, not left out
    assert _federation_lines({"outbox": 0, "peers": [beta_entry | {"next_attempt_at": None}]})[1].endswith(
        "(unknown_peer), no attempt planned (an item queued for it, or a lookup, dials it)"
    )
