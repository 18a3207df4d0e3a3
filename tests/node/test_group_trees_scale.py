"""A 200-device group over three nodes in one process (bench/groups_bench.py at a test's size;
`make bench` runs it at 1,500): every device its own keys, added 64 at a time by commits whose
Welcomes go without the tree; a joiner of each commit fetches the tree from the hub's store in
chunks and joins; one message reaches every member mailbox exactly once, one copy per other node
in transit; a member's commit with a path to every other device is ordered and processed."""

from __future__ import annotations

from pathlib import Path

from bench.groups_bench import NODES, run
from sonet.core.groups.items import MAX_ADDS_PER_COMMIT, MAX_GROUP_MESSAGE_BYTES

DEVICES = 200


async def test_a_200_device_group_over_three_nodes(tmp_path: Path) -> None:
    figures = await run(DEVICES, tmp_path)
    assert figures["groups_add_commits"] == -(-(DEVICES - 1) // MAX_ADDS_PER_COMMIT)
    # one message: one copy to each other node, one envelope per member device at each node
    assert figures["groups_transit_copies"] == len(NODES) - 1
    for node in NODES:
        name = node.split(".")[0]
        assert figures[f"groups_envelopes_{name}"] == DEVICES // 3 + (1 if NODES.index(node) < DEVICES % 3 else 0)
        assert figures[f"groups_bytes_{name}"] < 1024 * figures[f"groups_envelopes_{name}"]  # a short text's item each
    # the tree went by reference: ~1.5 KB per device, more than a Welcome would carry
    assert 1400 * DEVICES < figures["groups_tree_bytes"] < 2000 * DEVICES
    # a path to 199 others: ~1.18 KB each, within the message cap
    assert 1100 * (DEVICES - 1) < figures["groups_path_commit_bytes"] < MAX_GROUP_MESSAGE_BYTES
    assert figures["groups_commit_process_ms"] > 0 and figures["groups_path_commit_process_ms"] > 0
