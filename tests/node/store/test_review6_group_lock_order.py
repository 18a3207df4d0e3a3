"""Review of f326ef9's lock order for group fan-out: a hub's group items (ORDERED copies,
HANDOVER parts, verdicts, forwarded submissions) count towards the ``outbox`` counters of
their destinations like every other outbox row. Applied item by item, in the order the hub
queued them, two pushes handled at once on PostgreSQL could lock two destinations' counters in
opposite orders and wait for each other until the deadlock check aborted one (1 s, retried).
The group items of a write are summed with the rest of it and written once, in (scope, key)
order (sqlite_budgets.UsageChanges.apply)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sonet.core.groups.items import GroupItem, ItemKind
from sonet.federation.records import GroupReceived
from sonet.node.store import Store

from .test_budgets import BETA, GAMMA, relayed
from .test_contract import DAY, NOW, ROOMY
from .test_review6_usage import consistent

HERE = "alpha.example"


def unknown_group_submit() -> GroupItem:
    """A SUBMIT for a group this node neither hosts nor follows: the hub part of the store
    queues a verdict (``unknown_group``) back to the node that pushed it."""
    return GroupItem(
        kind=ItemKind.SUBMIT, ref=os.urandom(16), group=os.urandom(16), epoch=0, seq=0, message=b"m" * 100, welcome=b"",
        members=(), outcome="", hub=HERE,
    )  # fmt: skip


def push_from(peer: str, other: str, n: int) -> list[Any]:
    """What ``peer`` pushes: a submission (its verdict goes back to ``peer``) and an envelope
    it relays for ``other``."""
    submit = GroupReceived(item=unknown_group_submit(), origin=peer, node=HERE, ttl_ms=DAY)
    return [submit, relayed(n, origin=peer, dest=other)]


async def test_a_push_with_a_verdict_and_a_relayed_item_counts_both(store: Store) -> None:
    outcomes = await store.receive(push_from(GAMMA, BETA, 1), now=NOW, quota=ROOMY)
    assert outcomes == ["ok", "ok"]
    held = await consistent(store)
    assert held[("outbox", GAMMA)][0] == 1 and held[("outbox", BETA)][0] == 1 and held[("origin", GAMMA)][0] == 1


async def test_concurrent_pushes_queueing_group_items_never_deadlock(pg_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """gamma pushes a submission (its verdict is queued for gamma) and an envelope for beta,
    while beta pushes the same for gamma: each push queues for both destinations, in opposite
    orders. A deadlock here is made an error instead of a retry, so the test sees every one."""
    import psycopg
    import trio

    from sonet.node.store import postgres
    from sonet.node.store.postgres import PostgresStore

    monkeypatch.setattr(postgres, "_RETRIED", (psycopg.errors.SerializationFailure,))
    async with await PostgresStore.open(pg_cluster.new_database()) as store:

        async def pushes(peer: str, other: str, base: int) -> None:
            for n in range(base, base + 30):
                assert await store.receive(push_from(peer, other, n), now=NOW, quota=ROOMY) == ["ok", "ok"]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pushes, GAMMA, BETA, 0)
            nursery.start_soon(pushes, BETA, GAMMA, 1000)
        held = await consistent(store)
        assert held[("outbox", BETA)][0] == held[("outbox", GAMMA)][0] == 60


async def test_a_serialization_failure_while_ordering_a_pushed_submission_is_retried(pg_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL aborts the write in the middle of a pushed SUBMIT (inside its savepoint): the
    write runs again and its verdict is queued once. The savepoint's RELEASE used to run
    regardless, and the aborted transaction's "current transaction is aborted" error replaced
    the serialization failure: the push failed with a database error instead of a retry."""
    from sonet.node.store import sqlite_groups
    from sonet.node.store.postgres import PostgresStore

    send_verdict = sqlite_groups._send_verdict
    calls: list[str] = []

    def aborted_once(step: Any, verdict: GroupItem, *, to: str) -> None:
        calls.append(to)
        if len(calls) == 1:  # a real server-side failure: the transaction is aborted
            step.conn.execute("DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = 'serialization_failure'; END $$")
        send_verdict(step, verdict, to=to)

    monkeypatch.setattr(sqlite_groups, "_send_verdict", aborted_once)
    async with await PostgresStore.open(pg_cluster.new_database()) as store:
        assert await store.receive(push_from(GAMMA, BETA, 1), now=NOW, quota=ROOMY) == ["ok", "ok"]
        assert calls == [GAMMA, GAMMA]
        held = await consistent(store)
        assert held[("outbox", GAMMA)][0] == 1 and held[("outbox", BETA)][0] == 1
