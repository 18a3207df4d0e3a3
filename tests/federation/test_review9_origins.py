"""Review of round 9 (rev9): at the destination a message request is charged per (link peer,
origin, mailbox), the origin kept only when it is a configured node (federation/inbound.py,
3650ce4: "a configured origin behind the peer (a relayed node) keeps its own"). Whether the
named origin is behind that peer is not checked: a peer may name every node the destination
has configured, each a fresh allowance for the same mailbox, until the mailbox's own cap
(``MAILBOX_BURST``, 100 a day): the whole stranger allowance of the mailbox instead of the
peer's share (50), which is the harm 3650ce4 meant to end; a genuine message request from one
of those nodes is then refused. Now only a configured node whose `via` is the link peer keeps an
origin of its own; any other name is the peer's own."""

from __future__ import annotations

from sonet.core.federation_api import Push, PushResult
from sonet.federation.message_requests import PER_PEER
from tests.node.conftest import StartNode

from .net import BETA, ask, new_key, peer_link, pin, transit

OTHERS = ("gamma.example", "delta.example", "epsilon.example")


async def test_a_peer_cannot_spend_the_allowance_of_configured_nodes_not_behind_it(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, "peer.example", fingerprint=key.public.fingerprint)
    keys = {name: new_key() for name in OTHERS}
    for name in OTHERS:  # beta's other peers, each dialled directly: none is behind peer.example
        await pin(beta, name, fingerprint=keys[name].public.fingerprint)
    burst = int(PER_PEER.burst)
    own = [transit(bob.address, origin="peer.example") for _ in range(burst)]
    claimed = [transit(bob.address, origin=name) for name in OTHERS for _ in range(burst)]
    async with peer_link(beta, key, "peer.example") as link:
        first = await ask(link, Push(request=1, items=tuple(own)))
        second = await ask(link, Push(request=2, items=tuple(claimed)))
    async with peer_link(beta, keys["gamma.example"], "gamma.example") as link:  # gamma itself, its first request
        genuine = await ask(link, Push(request=3, items=(transit(bob.address, origin="gamma.example"),)))
    assert first == PushResult(request=1, outcomes=("ok",) * burst)
    taken = sum(outcome == "ok" for outcome in second.outcomes)
    assert (taken, genuine.outcomes) == (0, ("ok",)), f"peer.example took {taken} more by naming beta's other peers; gamma's own: {genuine.outcomes}"


async def test_made_up_origins_do_not_add_to_the_peers_own_allowance(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    key = new_key()
    await pin(beta, "peer.example", fingerprint=key.public.fingerprint)
    burst = int(PER_PEER.burst)
    own = [transit(bob.address, origin="peer.example") for _ in range(burst)]
    made_up = [transit(bob.address, origin=f"o{i}.example") for i in range(burst)]
    async with peer_link(beta, key, "peer.example") as link:
        first = await ask(link, Push(request=1, items=tuple(own)))
        second = await ask(link, Push(request=2, items=tuple(made_up)))
    assert first == PushResult(request=1, outcomes=("ok",) * burst)
    taken = sum(outcome == "ok" for outcome in second.outcomes)
    assert taken == 0, f"peer.example took {taken} more of bob's stranger allowance under made-up origins after its own {burst}"
