"""A device added to a group fetches the ratchet tree its Welcome goes without
(client/groups/tree_fetch.py): from the hub through its own node, then joins. While the hub
cannot answer, the item stays in the device's mailbox (one line in the receive's rejected) and
the next receive joins; a hub that keeps no tree leaves the device out with a clear line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from sonet.client.sdk import Device

from .conftest import BETA, RunningNode
from .loopback import Loopback

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (tests/conftest.py)

ALPHA = "alpha.example"
BOB_B = f"bob@{BETA}"


async def test_a_joiner_waits_for_a_hub_that_cannot_answer_and_joins_later(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Callable[..., Awaitable[Device]]
) -> None:
    alpha, beta = alpha_beta
    alice, bob = await register(alpha, "alice"), await register(beta, "bob")
    await alice.receive()
    await bob.receive()
    view = await alice.group_create("later", [BOB_B])
    await loopback.flush()

    loopback.down[ALPHA] = ("unreachable", f"{ALPHA} did not answer in time")
    result = await bob.receive()
    del loopback.down[ALPHA]
    assert await bob.groups() == []
    assert any("kept group item" in line and "cannot fetch its group tree now" in line for line in result.rejected), result.rejected

    result = await bob.receive()  # the item was kept in the mailbox: this time the hub answers
    [joined] = await bob.groups()
    assert joined.id == view.id and joined.name == "later"


async def test_a_joiner_whose_tree_the_hub_does_not_keep_stays_out_with_a_clear_line(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Callable[..., Awaitable[Device]]
) -> None:
    alpha, beta = alpha_beta
    alice, bob = await register(alpha, "alice"), await register(beta, "bob")
    await alice.receive()
    await bob.receive()
    await alice.group_create("dropped", [BOB_B])
    store = loopback.nodes[ALPHA].store  # the hub dropped its trees (its bounds, or their TTL)
    await store._transaction(lambda conn: conn.execute("DELETE FROM group_trees"))  # type: ignore[attr-defined]
    await loopback.flush()
    result = await bob.receive()
    assert await bob.groups() == []
    assert any("no_group_tree" in line or "keeps no ratchet tree" in line for line in result.rejected), result.rejected
    assert any("could not join group" in line for line in result.rejected), result.rejected
