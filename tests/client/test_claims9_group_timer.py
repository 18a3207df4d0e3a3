"""docs/security.md, "Disappearing messages", "In groups", said: "Nodes do not: the group
submission carries no expiry yet, so the hub, the member nodes and relays keep the group item
(its ciphertext, unreadable to them, and its ref) for the node's envelope TTL like any group
item". It now says nodes drop the item at the message's time.

The code did otherwise (docs/groups.md "Disappearing messages on nodes" and
tests/node/test_group_expiry_nodes.py said so): a device writing under a group timer puts the
message's expiry in the MLS authenticated data (client/groups/ops.py), the hub reads it and
every copy of the item expires at the message's time. The claims audit found the sentence
stale; it says so now, and this test holds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client.sdk import Device
from tests.node.conftest import RunningNode

from .conftest import CAROL, HANG_S, Clock
from .test_group_timer import FIVE_S, _group_of_three

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]


async def test_nodes_drop_a_timed_group_item_at_the_messages_time(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob, carol, group = await _group_of_three(alpha, register)
        await bob.set_timer("hikers", FIVE_S)
        for device in (alice, bob, carol):
            await device.receive()
        clock.advance(10)
        await alice.group_send(group, "gone in five seconds")
        # carol has not received it: the hub (her node) holds the item for her, until its time
        rows = await alpha.pending(CAROL, 1)
        assert rows
        assert max(r.expires for r in rows) <= clock() + FIVE_S, (max(r.expires for r in rows) - clock(), "ms to live")
