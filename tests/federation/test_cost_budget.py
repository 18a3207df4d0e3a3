"""A peer's lookups spend its cost budget (federation/inbound.py, ``lookup_budget``).

An in-process node with a small budget; two pinned peers dial it as peer nodes do
(``dial_peer``) and ask for an account's devices: the one that keeps asking is refused
``rate_limited`` once its bytes are spent, the other is still answered.
"""

from __future__ import annotations

import trio

from sonet.core.client_api import Devices, ErrorFrame, FetchDevices, Ping, Pong
from sonet.core.cost_budget import Budget
from sonet.core.ratelimit import Rate
from sonet.core.wire import encode_frame
from tests.node.conftest import HANG_S, NODE_NAME, NodeParams, StartNode

from .test_link import add_peer, dial, new_key

BUDGET = Budget(requests=Rate(per_second=1000, burst=1000), bytes=Rate(per_second=1, burst=50_000))


async def test_a_peer_pulling_lookups_is_refused_at_its_budget_and_another_is_answered(
    start_node: StartNode, node_params: NodeParams
) -> None:
    # lookups and bundles counted generously, so that only the cost budget refuses
    node_params.federation = {"lookup_budget": BUDGET, "query_rate": Rate(per_second=1000, burst=1000)}
    with trio.fail_after(HANG_S):
        running = await start_node()
        await running.enroll("alice")
        greedy, other = new_key(), new_key()
        await add_peer(running, greedy)
        await add_peer(running, other, name="other.example")
        ask = FetchDevices(request=1, account=f"alice@{NODE_NAME}")
        async with dial(running, greedy) as link:
            served, size = 0, 0
            for _ in range(1000):
                await link.send(ask)
                answer = await link.receive()
                if isinstance(answer, ErrorFrame):
                    break
                assert isinstance(answer, Devices)
                size = len(encode_frame(answer))
                served += size
            assert isinstance(answer, ErrorFrame) and answer.request == 1
            assert answer.code == "rate_limited" and "try again in" in answer.message
            assert BUDGET.bytes.burst <= served < BUDGET.bytes.burst + size  # one answer into debt at most
            await link.send(Ping(request=2))
            assert isinstance(await link.receive(), Pong)  # the link stays
            async with dial(running, other, name="other.example") as second:
                await second.send(ask)
                assert isinstance(await second.receive(), Devices)
