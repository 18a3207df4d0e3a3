"""docs/security.md, "Disappearing messages", "In groups": "Nodes do not: the group submission
carries no expiry yet, so the hub, the member nodes and relays keep the group item (its
ciphertext, unreadable to them, and its ref) for the node's envelope TTL like any group item".

The code does otherwise (and the section's own "On nodes" bullet, docs/groups.md "Disappearing
messages on nodes" and tests/node/test_group_expiry_nodes.py say so): a device writing under a
group timer puts the message's expiry in the MLS authenticated data (client/groups/ops.py), the
hub reads it and every copy of the item expires at the message's time. The claim is FALSE as
written: this test asserts it, and is a strict xfail until the sentence goes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client.sdk import Device
from sonet.core import limits
from tests.node.conftest import RunningNode

from .conftest import CAROL, HANG_S, Clock
from .test_group_timer import FIVE_S, _group_of_three

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]
DAY_MS = 86_400_000


@pytest.mark.xfail(
    strict=True,
    reason="docs/security.md 'In groups' says nodes keep a timed group item for the envelope TTL; "
    "the hub gives it the message's expiry (client/groups/ops.py expiry_aad, tests/node/test_group_expiry_nodes.py)",
)
async def test_nodes_keep_a_timed_group_item_for_the_envelope_ttl(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob, carol, group = await _group_of_three(alpha, register)
        await bob.set_timer("hikers", FIVE_S)
        for device in (alice, bob, carol):
            await device.receive()
        clock.advance(10)
        await alice.group_send(group, "gone in five seconds")
        # carol has not received it: the hub (her node) holds the item for her
        rows = await alpha.pending(CAROL, 1)
        assert rows
        # what the sentence claims: kept for the envelope TTL (more than 29 days from now), like any group item
        soonest = min(r.expires for r in rows)
        assert soonest > clock() + limits.DEFAULT_ENVELOPE_TTL_MS - DAY_MS, (soonest - clock(), "ms to live")
