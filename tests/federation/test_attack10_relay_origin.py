"""Attack round 10: what a relay holds on behalf of one origin node counts towards that node's
relay budget (``relay_origin_max_bytes``), and the origin was the pusher's word: any pinned peer
naming another configured node as the origin of the items it asked beta to relay spent that
node's budget, and that node's own items were then refused ``relay_full``. Now the origin is
charged only when the pushing peer is it or its relay (`via`), else the peer itself."""

from __future__ import annotations

from sonet.core.client_api import ErrorFrame
from sonet.core.federation_api import Push, PushResult
from tests.node.conftest import StartNode

from .net import BETA, ask, new_key, peer_link, pin, transit

MIB = 1 << 20
MALLORY, GAMMA, DEST = "mallory.example", "gamma.example", "dest.example"


async def test_a_peer_cannot_spend_another_origins_relay_budget(start_node: StartNode) -> None:
    beta = await start_node(name=BETA, storage_relay_origin_max_bytes=MIB)
    mallory, gamma = new_key(), new_key()
    await pin(beta, MALLORY, fingerprint=mallory.public.fingerprint)
    await pin(beta, GAMMA, fingerprint=gamma.public.fingerprint)
    await pin(beta, DEST, fingerprint=new_key().public.fingerprint)  # never reachable: the items stay at beta
    refusal = ""
    async with peer_link(beta, mallory, MALLORY) as link:
        for n in range(1, 200):  # items for dest.example "from gamma", until beta takes no more
            answer = await ask(link, Push(request=n, items=tuple(transit(f"u{n}_{i}@{DEST}", origin=GAMMA) for i in range(16))))
            if isinstance(answer, ErrorFrame):
                refusal = answer.code
                break
    async with peer_link(beta, gamma, GAMMA) as link:  # gamma's own item
        own = await ask(link, Push(request=1, items=(transit(f"carol@{DEST}", origin=GAMMA),)))
    assert refusal == "relay_full"
    assert own == PushResult(request=1, outcomes=("ok",)), f"gamma's own item: {own}"
