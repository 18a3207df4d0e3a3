"""Disappearing messages leave every node at their expiry (issue 17 item 4, node/expiry.py):
alpha's outbox while the destination is down, and a relay's queue while the next hop is down,
not at the next minute's expiry tick (``expire_interval_s`` is an hour here)."""

from __future__ import annotations

import sqlite3

import trio

from sonet.node.expiry import CHECK_S
from tests.node.conftest import NodeParams, RunningNode, StartNode
from tests.node.kit import Account, wall_ms

from .net import ALPHA, BETA, GAMMA, NOWHERE, new_key, pin, pin_node, queue_at, tracked, until

LIFETIME_MS = 2_500


async def _sleep_past(expires: int) -> None:
    await trio.sleep(max(0.0, (expires - wall_ms()) / 1000) + CHECK_S + 0.3)


async def _outbox(node: RunningNode) -> dict[str, int]:
    async with node.store() as store:
        return await store.outbox_counts()


def _rows_hold(node: RunningNode, needle: bytes) -> bool:
    """Whether a row of the node's database holds ``needle``."""
    db = sqlite3.connect(node.data_dir / "node.db")
    try:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - names from the schema
                if any(isinstance(v, bytes) and needle in v for v in row):
                    return True
        return False
    finally:
        db.close()


async def test_alpha_drops_an_expired_item_from_its_outbox_while_the_destination_is_down(
    start_node: StartNode, node_params: NodeParams
) -> None:
    node_params.federation = {"expire_interval_s": 3600.0}
    alpha = await start_node(name=ALPHA, registration="open")
    await pin(alpha, BETA, url=NOWHERE, fingerprint=new_key().public.fingerprint)  # beta is down
    alice = await alpha.enroll("alice")
    expires = wall_ms() + LIFETIME_MS
    item = tracked(alpha, alice, f"bob@{BETA}", expires=expires)
    keep = tracked(alpha, alice, f"bob@{BETA}")
    await queue_at(alpha, item, keep)
    assert await _outbox(alpha) == {BETA: 2}
    await _sleep_past(expires)
    assert await _outbox(alpha) == {BETA: 1}  # the other item still waits for beta
    assert not _rows_hold(alpha, item.data) and _rows_hold(alpha, keep.data)


async def test_a_relay_drops_an_expired_item_while_the_next_hop_is_down(start_node: StartNode, node_params: NodeParams) -> None:
    node_params.federation = {"expire_interval_s": 3600.0}
    alpha = await start_node(name=ALPHA, registration="open")
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin(alpha, GAMMA, url=NOWHERE, fingerprint=new_key().public.fingerprint, via=BETA)
    await pin_node(beta, alpha)
    await pin(beta, GAMMA, url=NOWHERE, fingerprint=new_key().public.fingerprint)  # gamma is down
    alice: Account = await alpha.enroll("alice")
    expires = wall_ms() + LIFETIME_MS
    item = tracked(alpha, alice, f"carol@{GAMMA}", expires=expires)
    await queue_at(alpha, item)

    async def relayed() -> bool:
        return await _outbox(alpha) == {} and await _outbox(beta) == {GAMMA: 1}

    await until(relayed, "beta holds the item for gamma")
    await _sleep_past(expires)
    assert await _outbox(beta) == {}
    assert not _rows_hold(beta, item.data) and not _rows_hold(alpha, item.data)
