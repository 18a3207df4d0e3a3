"""Event-driven witnessing (federation/witness.py ``greet``, federation/gossip.py ``hello``): a
node that starts greets its peers with its head, and they witness it at once - a head it signed
while they could not be told (it was killed right after) gets their cosignature now, not at
their next periodic round; a peer that keeps saying hello starts at most one round per
``GREET_GAP_S``."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from sonet.core.client_api import FetchHead
from sonet.core.wire import Frame
from sonet.federation.errors import FederationError
from sonet.federation.routes import Routes
from sonet.federation.settings import FederationSettings
from sonet.federation.witness import GREET_GAP_S, Witness
from sonet.node.app import Node, federation_settings
from sonet.node.config import NodeConfig
from tests.node.conftest import NodeParams, RunningNode, StartNode
from tests.node.kit import wall_ms

from .net import ALPHA, BETA, new_key, pin_node, until
from .transparency import cosigned_by, every, federation, witnessed_size

#: longer than any test's hang guard: a head witnessed here was not witnessed by a periodic round
NO_PERIODIC_ROUND_S = 3600.0


@asynccontextmanager
async def serving(data: Path, config: NodeConfig, node_params: NodeParams) -> AsyncIterator[RunningNode]:
    """A node over ``data`` until the block ends (then stopped, as by a kill: nothing more is
    sent); started again over the same directory and port, it is that node restarted."""
    settings = dataclasses.replace(federation_settings(config), **node_params.federation)
    app = Node(data, config, clock_ms=node_params.clock_ms, federation=settings)
    stopped = trio.Event()
    async with trio.open_nursery() as nursery:

        async def run(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await app.run(task_status=task_status)
            finally:
                stopped.set()

        url = await nursery.start(run)
        yield RunningNode(node=app, url=url, data_dir=data, config=config, identity=app.identity, stopped=stopped)
        nursery.cancel_scope.cancel()


async def test_a_restarted_peer_is_witnessed_at_once(
    start_node: StartNode,
    make_node_dir: Callable[..., tuple[Path, NodeConfig]],
    node_params: NodeParams,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every(node_params, witness_interval_s=NO_PERIODIC_ROUND_S)
    alpha = await start_node(name=ALPHA, registration="open")
    data, config = make_node_dir(name=BETA, registration="open")
    async with serving(data, config, node_params) as beta:
        await pin_node(alpha, beta)
        await pin_node(beta, alpha)
        bob = await beta.enroll("bob")  # size 1, gossiped to alpha at once
        await until(lambda: cosigned_by(beta, alpha, 1), "alpha cosigned beta's head of size 1")
        # beta signs a head of size 2 and is killed before it could tell alpha
        monkeypatch.setattr(federation(beta), "directory_changed", lambda: None)
        await beta.link(bob)
        assert (await witnessed_size(alpha, BETA), await cosigned_by(beta, alpha, 2)) == (1, False)
    port = beta.url.rsplit(":", 1)[1]
    # the same node, at the same address: alpha's peer table does not change
    async with serving(data, dataclasses.replace(config, listen=f"127.0.0.1:{port}"), node_params) as beta:
        await until(lambda: cosigned_by(beta, alpha, 2), "alpha cosigned the restarted beta's head of size 2")
        assert await witnessed_size(alpha, BETA) == 2


async def test_hellos_start_at_most_one_round_per_gap(autojump_clock: trio.testing.MockClock) -> None:
    asked: list[float] = []

    async def ask(node: str, frame: Frame) -> Frame:
        assert isinstance(frame, FetchHead) and node == BETA
        asked.append(trio.current_time())
        raise FederationError("unreachable", f"{BETA} is down")  # the round ends here

    async def unused(node: str) -> bytes:
        raise AssertionError("no head to verify")

    async def no_peers() -> Routes:
        return Routes(ALPHA, [])

    class Empty:  # a store with nothing witnessed and no split
        async def witnessed_all(self) -> list:
            return []

        async def splits(self) -> list:
            return []

    witness = Witness(
        name=ALPHA,
        identity=new_key(),
        store=Empty(),  # type: ignore[arg-type]
        ask=ask,
        node_key=unused,
        routes=no_peers,
        clock_ms=wall_ms,
        settings=FederationSettings(witness_interval_s=NO_PERIODIC_ROUND_S),
        cosigned=lambda node, head: None,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(witness.run)
        start = trio.current_time()
        witness.greet(BETA)
        for _ in range(20):  # a peer that reconnects every 0.1 s
            await trio.sleep(0.1)
            witness.greet(BETA)
        await trio.sleep(3 * GREET_GAP_S)
        assert [t - start for t in asked] == pytest.approx([0, GREET_GAP_S])  # at once, then once after the gap
        later = trio.current_time()
        witness.greet(BETA)  # quiet for longer than the gap: at once again
        await trio.testing.wait_all_tasks_blocked()
        assert asked[2:] == [later]
        nursery.cancel_scope.cancel()
