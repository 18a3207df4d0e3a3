"""docs/security.md, "Groups: what the hub and the other nodes learn": "Every other
participating node learns which of its own devices are in the group (`group_members`, its own
accounts only), the group id, the size and time of each message, and which node is the hub ...
Not the members on other nodes, not the sender of a message." (docs/groups.md says the same.)

No test scanned a member node's database in a group. Here alice@alpha (the hub) creates a group
with bob@beta and carol@alpha:
- once bob's device has taken everything, beta's database names neither alice nor carol (holds);
- while the commit that added them waits in bob's mailbox on beta, its body (an MLS
  PublicMessage: signed, not encrypted) carries the added members' KeyPackages, whose
  credentials name carol@alpha.example in the clear: beta holds a member on another node until
  bob's device took it. The audit found the claim false there; both documents now say so, and
  the test below pins what beta holds then. (bob's device also asks beta for the device lists
  of alice and carol as it joins: beta sees those lookups too.)
- "Name and topic are end-to-end encrypted ... so no node reads them": in no file of the hub's
  or the member node's data directory, while bob's copies wait and after.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client.sdk import Device
from sonet.node.app import DB_FILE
from tests.metadata_scan import dump, values_naming
from tests.node.conftest import RunningNode

from .conftest import CAROL, HANG_S
from .loopback import Loopback
from .test_groups_sdk import BOB_B

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]


def _names(*devices: Device) -> list[str]:
    """What would name these devices' users: address and device fingerprint."""
    out: list[str] = []
    for device in devices:
        profile = device.state.profile()
        out += [profile.address, profile.identity.public.fingerprint]
    return out


async def _group_across(alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register) -> tuple[Device, Device, Device, RunningNode]:
    alpha, beta = alpha_beta
    alice, bob, carol = await register(alpha, "alice"), await register(beta, "bob"), await register(alpha, "carol")
    for device in (alice, bob, carol):
        await device.receive()  # KeyPackages go up
    await loopback.flush()
    view = await alice.group_create("far apart", [BOB_B, CAROL])
    assert view.hub == alpha.config.name
    await loopback.flush()  # the hub's copies for bob reach beta
    return alice, bob, carol, beta


async def test_a_member_node_keeps_no_name_of_the_members_on_other_nodes(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob, carol, beta = await _group_across(alpha_beta, loopback, register)
        await bob.receive()
        await alice.group_send((await bob.groups())[0].id, "hello bob")
        await loopback.flush()
        await bob.receive()
        await loopback.flush()
        await beta.settle()
        db = beta.data_dir / DB_FILE
        found = values_naming(db, _names(alice, carol))
        assert found == [], f"beta names alice or carol: {found}\n{dump(db)}"


async def test_while_the_commit_waits_a_member_node_holds_only_the_added_members_credentials(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register
) -> None:
    # docs/groups.md and docs/security.md: while a commit waits in one of its devices'
    # mailboxes, a member node holds what that PublicMessage shows, the credentials of the
    # members an Add brings in; nothing else of theirs, and nothing of the committer
    with trio.fail_after(HANG_S * 2):
        alice, _bob, carol, beta = await _group_across(alpha_beta, loopback, register)
        db = beta.data_dir / DB_FILE
        found = values_naming(db, _names(alice, carol))
        assert found, "the waiting commit's Add of carol should be on beta"
        assert {table for table, _column, _value in found} == {"group_bodies"}, found
        assert values_naming(db, _names(alice)) == [], "the committer is named by leaf index, not credential"


async def test_no_node_reads_a_groups_name_or_topic(alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register) -> None:
    # "Name and topic are end-to-end encrypted application messages (group_state), not group
    # context, so no node reads them": not the hub (alpha) nor the member node (beta), whatever
    # they keep, while the items wait and after
    name, topic = "ridge walkers 7f3c9a", "meet at the north trailhead 5e1d"
    with trio.fail_after(HANG_S * 2):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        for device in (alice, bob):
            await device.receive()
        await loopback.flush()
        view = await alice.group_create(name, [BOB_B])
        await alice.group_set(view.id, topic=topic)
        await loopback.flush()

        def seen() -> list[str]:
            return [f"{node.config.name}:{path}" for node in (alpha, beta) for path, data in node.file_contents().items()
                    if any(text.encode() in data for text in (name, topic))]  # fmt: skip

        assert seen() == []  # while bob's copies wait on beta
        await bob.receive()
        assert [(g.name, g.topic) for g in [await bob.group_info(view.id)]] == [(name, topic)]
        await loopback.flush()
        assert seen() == []
