"""Attack round 9: at the destination, message requests from other nodes are charged per (link
peer, origin node, mailbox), and the origin is only what the pushing peer says. A pinned peer
naming a new made-up origin for each envelope got a fresh allowance each time (and filled the
bucket table, whose least recently used entries start full again), taking a mailbox's whole
stranger allowance instead of its share. Names that are not configured nodes now share one
bucket per (peer, mailbox); a configured origin behind the peer keeps its own."""

from __future__ import annotations

from sonet.core.federation_api import Push, PushResult
from sonet.federation.message_requests import PER_PEER
from tests.node.conftest import StartNode

from .net import BETA, ask, new_key, peer_link, pin, transit


async def test_made_up_origins_share_one_allowance(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, "peer.example", fingerprint=key.public.fingerprint)
    burst = int(PER_PEER.burst)
    made_up = [transit(bob.address, origin=f"o{i}.example") for i in range(burst + 3)]
    async with peer_link(beta, key, "peer.example") as link:
        first = await ask(link, Push(request=1, items=tuple(made_up)))
        # made-up names are the peer's own: its own name finds that bucket spent too (review 9:
        # a second bucket there doubled the peer's share of the mailbox)
        second = await ask(link, Push(request=2, items=(transit(bob.address, origin="peer.example"),)))
    assert first == PushResult(request=1, outcomes=("ok",) * burst + ("message_request_limit",) * 3)
    assert second == PushResult(request=2, outcomes=("message_request_limit",))
