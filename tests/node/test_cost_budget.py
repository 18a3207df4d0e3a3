"""The cost budget of expensive requests on /client (node/cost_budget.py), on a live node.

The budget is shrunk for these tests and the node runs on a clock the test moves, so that the
refusals and the refill are exact; what the defaults allow is shown by every other test (and
tests/e2e/attacks/test_expensive_requests.py against real processes).
"""

from __future__ import annotations

import pytest
import trio

from sonet.core.client_api import FetchDevices, FetchLeaves, Leaves, Ping, Pong, PrekeysPublished, PublishPrekeys
from sonet.core.cost_budget import VERIFY_COST, Budget
from sonet.core.ratelimit import Rate
from sonet.node.budget_settings import BudgetSettings
from sonet.node.config import NodeConfig
from sonet.node.app import now_ms
from sonet.node.cost_budget import answer_bytes

from .conftest import HANG_S, NODE_NAME, NodeParams, RunningNode, StartNode
from .kit import NodeError, prekey

ALICE = f"alice@{NODE_NAME}"
BOB = f"bob@{NODE_NAME}"


class Clock:
    def __init__(self) -> None:
        self.now = now_ms()

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock(node_params: NodeParams) -> Clock:
    node_params.clock_ms = clock = Clock()
    return clock


async def _node(start_node: StartNode, budget: Budget) -> RunningNode:
    """A node whose node.toml ``[budgets]`` gives each device ``budget``."""
    settings = BudgetSettings(
        device_requests_per_second=budget.requests.per_second,
        device_requests_burst=int(budget.requests.burst),
        device_bytes_per_second=int(budget.bytes.per_second),
        device_bytes_burst=int(budget.bytes.burst),
    )
    running = await start_node(budgets=settings)
    assert NodeConfig.load(running.data_dir).budgets == settings  # what node.toml says
    return running


async def test_a_device_paging_through_the_directory_is_refused_at_its_budget_and_others_go_on(
    start_node: StartNode, clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        budget = Budget(requests=Rate(per_second=100, burst=1000), bytes=Rate(per_second=10_000, burst=100_000))
        running = await _node(start_node, budget)
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        async with running.raw(alice.first) as greedy:
            served, pages = 0, 0
            while True:
                try:
                    page = await greedy.request(lambda n: FetchLeaves(request=n, start=0, end=2))
                except NodeError as exc:
                    refusal = exc
                    break
                assert isinstance(page, Leaves) and len(page.leaves) == 2
                served += answer_bytes(page)
                pages += 1
            assert refusal.code == "rate_limited" and "try again in" in str(refusal)
            # the whole burst, and at most one page beyond it
            assert budget.bytes.burst <= served < budget.bytes.burst + answer_bytes(page)
            assert isinstance(await greedy.request(lambda n: Ping(request=n)), Pong)  # still connected
            with pytest.raises(NodeError) as again:  # other expensive requests wait as well
                await greedy.request(lambda n: FetchDevices(request=n, account=BOB))
            assert again.value.code == "rate_limited"
            async with running.raw(bob.first) as other:  # another device has its own budget
                assert isinstance(await other.request(lambda n: FetchLeaves(request=n, start=0, end=2)), Leaves)
            async with running.raw(alice.first) as reconnected:  # reconnecting refills nothing
                with pytest.raises(NodeError) as still:
                    await reconnected.request(lambda n: FetchLeaves(request=n, start=0, end=2))
                assert still.value.code == "rate_limited"
            clock.now += 1000 * (answer_bytes(page) // budget.bytes.per_second + 1)  # refilled enough
            assert isinstance(await greedy.request(lambda n: FetchLeaves(request=n, start=0, end=2)), Leaves)


def _publish(identity, first_id: int, count: int):  # noqa: ANN001, ANN202
    keys = tuple(prekey(identity, "x25519", first_id + i) for i in range(count))
    return lambda n: PublishPrekeys(request=n, signed_prekey=None, pq_last_resort=None, one_time=keys, pq_one_time=())


async def test_prekey_uploads_are_charged_their_signature_checks_before_any_is_made(
    start_node: StartNode, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        budget = Budget(requests=Rate(per_second=100, burst=1000), bytes=Rate(per_second=VERIFY_COST, burst=30 * VERIFY_COST))
        running = await _node(start_node, budget)
        alice = await running.enroll("alice")
        identity = alice.first.identity
        async with running.raw(alice.first) as conn:
            before = conn.welcome.one_time_left
            first = await conn.request(_publish(identity, 100, 20))  # 22 checks' worth
            assert isinstance(first, PrekeysPublished) and first.one_time_left == before + 20
            checked: list[object] = []
            with monkeypatch.context() as patch, pytest.raises(NodeError) as refused:  # 8 left, 22 needed
                patch.setattr("sonet.node.client_keys.check_prekeys", lambda *a: checked.append(a))
                await conn.request(_publish(identity, 200, 20))
            assert refused.value.code == "rate_limited" and "try again in 14.1 s" in str(refused.value)
            assert checked == []  # refused before any signature was checked
            clock.now += 14_100
            again = await conn.request(_publish(identity, 200, 20))
            assert isinstance(again, PrekeysPublished) and again.one_time_left == before + 40
