"""docs/security.md, "What each node keeps": "Federation counters and the last refusals
(`sonet-node status`) name nodes, not people." No test looked for people in the status: here,
after items that were accepted and refused (unknown account, unknown device) between alpha and
beta, and a refused link, neither node's `sonet-node status --json` names an account or a
device fingerprint."""

from __future__ import annotations

import json

import pytest
import trio

from sonet.node.cli import main
from sonet.transport import DialError
from tests.node.conftest import StartNode

from .net import ALPHA, BETA, deliveries, new_key, peer_link, pin_node, queue_at, tracked, until


async def test_the_status_of_both_nodes_names_no_account_or_device(start_node: StartNode, capsys: pytest.CaptureFixture[str]) -> None:
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    nobody = f"nobody@{BETA}"
    items = [tracked(alpha, alice, bob.address), tracked(alpha, alice, nobody), tracked(alpha, alice, bob.address, 9)]
    await queue_at(alpha, *items)

    async def settled() -> bool:
        return all(r.state != "queued" for r in await deliveries(alpha, alice, *items))

    await until(settled, "the three items settled")
    assert sorted((r.state, r.code) for r in await deliveries(alpha, alice, *items)) == [
        ("accepted", ""), ("failed", "unknown_account"), ("failed", "unknown_device")
    ]  # fmt: skip
    with pytest.raises(DialError):  # a refused link too: alpha's name with another key
        async with peer_link(beta, new_key(), ALPHA):
            pass

    def status(node) -> dict:  # noqa: ANN001
        capsys.readouterr()
        assert main(["status", "--data", str(node.data_dir), "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    async def refusal_shown() -> bool:
        return (await trio.to_thread.run_sync(status, beta))["federation"]["refused"] == 1

    await until(refusal_shown, "beta's status shows the refused link")
    people = [alice.address, bob.address, nobody, alice.first.fingerprint, bob.first.fingerprint, "alice", "bob", "nobody"]
    for node, other in ((alpha, BETA), (beta, ALPHA)):
        text = json.dumps(await trio.to_thread.run_sync(status, node))
        assert other in text  # nodes are named
        assert [p for p in people if p in text] == [], (node.config.name, text)
