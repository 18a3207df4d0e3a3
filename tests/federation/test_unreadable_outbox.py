"""An outbox row whose bytes no longer decode (a damaged database) is dropped by its worker
(federation/outbox.py), and a sending device's envelope dropped so is not left "queued" for
ever: its delivery row is failed ``outbox_damaged`` in the transaction that deletes the row,
while the other items of the push (or of the expiry batch) go on as usual (real nodes)."""

from __future__ import annotations

import logging

import msgspec
import pytest

from sonet.core.client_api import FetchStatus, Statuses
from sonet.core.errors import CODES
from sonet.federation.outbox import UNREADABLE
from sonet.federation.records import OutboundItem
from sonet.node.store import Quota
from sonet.node.store.vanishing import SHORT_LIVED_MS
from tests.node.conftest import NodeParams, RunningNode, StartNode
from tests.node.kit import wall_ms

from .net import ALPHA, BETA, NOWHERE, deliveries, mailbox_ids, new_key, notice_outbox_writes, pin, pin_node, tracked, until

#: bytes no Transit decodes from (msgpack's "never used" byte, then garbage)
GARBAGE = b"\xc1\x00\xff"


async def queue_unwoken(node: RunningNode, *items: OutboundItem, now: int | None = None) -> None:
    """Commit items to ``node``'s outbox through another connection (an unreadable one among
    them: ``damaged``), which the node then reads (its workers are woken by that, not by the
    test as net.queue_at does). ``now``: when they were queued."""
    quota = Quota(max_envelopes=node.config.mailbox_max_envelopes, max_bytes=node.config.mailbox_max_bytes)
    async with node.store() as store:
        await store.enqueue([], now=wall_ms() if now is None else now, quota=quota, outbound=items)
    await notice_outbox_writes(node)


def damaged(item: OutboundItem) -> OutboundItem:
    """``item`` with bytes that no longer decode, as a damaged database would hand them to the
    worker (queued so: the SQLite store keeps its outboxes in memory as well as in batch rows,
    node/store/outbox_log.py, so a row damaged under a running node is read at its next reload)."""
    return msgspec.structs.replace(item, data=GARBAGE)


async def outbox_counts(node: RunningNode) -> dict[str, int]:
    async with node.store() as store:
        return await store.outbox_counts()


async def test_a_damaged_row_in_a_push_fails_its_delivery_and_the_others_go(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    alpha = await start_node(name=ALPHA, registration="open")
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    alice = await alpha.enroll("alice")
    bob = await beta.enroll("bob")
    before, damaged_item, after = (tracked(alpha, alice, bob.address) for _ in range(3))
    await queue_unwoken(alpha, before, damaged(damaged_item), after)
    caplog.set_level(logging.ERROR, logger="sonet.federation")
    assert alpha.node.federation is not None
    alpha.node.federation.wake({BETA})

    async def settled() -> bool:
        rows = await deliveries(alpha, alice, before, damaged_item, after)
        return await outbox_counts(alpha) == {} and all(r.state != "queued" for r in rows)

    await until(settled, "alpha's outbox towards beta settled")
    states = {r.id: (r.state, r.code) for r in await deliveries(alpha, alice, before, damaged_item, after)}
    assert states == {
        before.tracking.id: ("accepted", ""),  # type: ignore[union-attr]
        damaged_item.tracking.id: ("failed", UNREADABLE),  # type: ignore[union-attr]
        after.tracking.id: ("accepted", ""),  # type: ignore[union-attr]
    }
    assert await mailbox_ids(beta, bob.address) == [before.tracking.id, after.tracking.id]  # type: ignore[union-attr]
    # what the sending device is told: failed, the code and its meaning
    async with alpha.raw(alice.first) as conn:
        status = await conn.request(lambda n: FetchStatus(request=n, ids=(damaged_item.tracking.id,)))  # type: ignore[union-attr]
    assert isinstance(status, Statuses)
    assert [(s.state, s.code, s.message) for s in status.items] == [("failed", UNREADABLE, CODES[UNREADABLE])]
    assert any("dropping an unreadable outbox item" in r.getMessage() for r in caplog.records)
    assert alpha.alive and beta.alive


async def test_a_damaged_row_among_expired_ones_fails_its_delivery_with_its_own_code(
    start_node: StartNode, node_params: NodeParams
) -> None:
    node_params.federation = {"expire_interval_s": 3600.0}  # the expiry scheduler (node/expiry.py) runs it
    alpha = await start_node(name=ALPHA, registration="open")
    await pin(alpha, BETA, url=NOWHERE, fingerprint=new_key().public.fingerprint)  # beta is down
    alice = await alpha.enroll("alice")
    expires = wall_ms() + 1_500
    damaged_item, expiring = (tracked(alpha, alice, f"bob@{BETA}", expires=expires) for _ in range(2))
    keep = tracked(alpha, alice, f"bob@{BETA}")
    # queued long enough ago that they are not disappearing messages (whose rows go at expiry)
    await queue_unwoken(alpha, damaged(damaged_item), expiring, keep, now=expires - SHORT_LIVED_MS - 60_000)

    async def expired() -> bool:
        return await outbox_counts(alpha) == {BETA: 1}

    await until(expired, "alpha's expired items settled")
    states = {r.id: (r.state, r.code) for r in await deliveries(alpha, alice, damaged_item, expiring, keep)}
    assert states == {
        damaged_item.tracking.id: ("failed", UNREADABLE),  # type: ignore[union-attr]
        expiring.tracking.id: ("failed", "expired"),  # type: ignore[union-attr]
        keep.tracking.id: ("queued", ""),  # type: ignore[union-attr]
    }
    assert alpha.alive
