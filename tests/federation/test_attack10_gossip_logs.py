"""Attack round 10: a pinned peer gossiping forged directory heads made the node write one WARNING
line per head it checked ("ignored a directory head of NODE from gossip:PEER: ..."), as fast
as the peer's request budget let it (20 Gossip frames a second after a burst of 100, each
with a head of every configured node: ~50 lines a second against a real node with one other
peer). Now the first such line per source each 10 s is written in full, the rest are counted
in one summary line per interval (transport/log_summary.py), the detail at DEBUG."""

from __future__ import annotations

import logging

import pytest
import trio

from sonet.core.client_api import SignedHead
from sonet.core.federation_api import Gossip, Noted, SeenHead
from sonet.core.keydir import sign_head
from tests.node.conftest import StartNode
from tests.node.kit import wall_ms

from .net import ALPHA, BETA, ask, new_key, peer_link, pin, pin_node, until
from .transparency import cosigned_by

FRAMES = 100


def ignored(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("ignored a directory head")]


async def test_forged_heads_gossiped_in_a_flood_are_logged_once_per_interval(start_node: StartNode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sonet.federation")
    alpha = await start_node(name=ALPHA, registration="open")
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    await beta.enroll("bob")
    await until(lambda: cosigned_by(beta, alpha, 1), "alpha cosigned beta's head")
    third = new_key()
    await pin(alpha, "third.example", fingerprint=third.public.fingerprint)
    async with peer_link(alpha, third, "third.example") as link:
        for n in range(FRAMES):  # a fresh forgery each time: none is a repeat of the last
            forged = sign_head(new_key(), node=BETA, size=1, root=bytes(32), at=wall_ms() + n)
            heads = (SeenHead(node=BETA, head=SignedHead(head=forged, cosignatures=())),)
            assert await ask(link, Gossip(request=n + 1, heads=heads)) == Noted(request=n + 1)
            await trio.sleep(0.01)  # each one checked before the next comes (no coalescing)
        await until(lambda: ignored(caplog), "the first forged head was logged")
    await trio.sleep(0.2)
    lines = ignored(caplog)
    assert len(lines) == 1, f"{len(lines)} lines for {FRAMES} forged heads from one peer"
    assert "from gossip:third.example" in lines[0]


async def test_heads_of_an_unreachable_node_gossiped_in_a_flood_are_not_a_line_each(start_node: StartNode, caplog: pytest.LogCaptureFixture) -> None:
    """A head of a configured node whose key this node has not fetched yet makes it ask that
    node for its key (dialled whatever the backoff: a lookup); while that node is unreachable
    every gossiped head was two INFO lines, "federation with NODE: cannot reach ..." and
    "witnessing NODE: ...; trying again later" (1,058 lines in 8 s against a real node from one
    peer naming two such nodes). Now one line per backoff (or change of error) and one per node
    each interval, the rest counted."""
    caplog.set_level(logging.INFO, logger="sonet.federation")
    alpha = await start_node(name=ALPHA, registration="open")
    third = new_key()
    await pin(alpha, "third.example", fingerprint=third.public.fingerprint)
    await pin(alpha, "gone.example", fingerprint=new_key().public.fingerprint)  # never reachable: NOWHERE
    async with peer_link(alpha, third, "third.example") as link:
        for n in range(FRAMES):
            forged = sign_head(new_key(), node="gone.example", size=1, root=bytes(32), at=wall_ms() + n)
            heads = (SeenHead(node="gone.example", head=SignedHead(head=forged, cosignatures=())),)
            assert await ask(link, Gossip(request=n + 1, heads=heads)) == Noted(request=n + 1)
            await trio.sleep(0.01)
    await trio.sleep(0.2)
    about = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and "gone.example" in r.getMessage()]
    assert len(about) <= 10, f"{len(about)} lines about gone.example for {FRAMES} gossiped heads: {about[:4]}"
