"""The running node keeps its peer table in memory (federation reads it before every push it
sends or takes: no store thread on that path). A peer added or removed by another process
(`sonet-node peer add|remove`, here a second connection to the node's database) is seen within
the admin watcher's poll (node/admin_watch.py), which has the store read the table again."""

from __future__ import annotations

import trio

from sonet.node.admin_watch import POLL_S

from .conftest import HANG_S, RunningNode

FP = "c" * 32


async def _routed_peers(running: RunningNode) -> list[str]:
    return [p.name for p in (await running.node.federation.routes()).peers]


async def test_a_peer_added_and_removed_by_another_process_is_seen_within_the_poll(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        assert await _routed_peers(running) == []
        async with running.store() as cli:
            await cli.add_peer(name="gamma.example", url="ws://127.0.0.1:9", fingerprint=FP, via=None, now=0)
            while await _routed_peers(running) != ["gamma.example"]:
                await trio.sleep(POLL_S / 5)
            assert await cli.remove_peer("gamma.example") is True
            while await _routed_peers(running) != []:
                await trio.sleep(POLL_S / 5)

