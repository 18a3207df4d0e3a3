"""hubfill9: what a device's group submissions made its OWN node store, when that node is the
group's hub, counted towards nobody's stored-bytes budget (node/store/sqlite_groups.py). Now the
body stored there (once) and the copies queued for other nodes count towards the submitting
device's and account's budgets (migration 24: group_bodies names its submitter), and the tests
below, strict xfails before, pass. What follows is how it was.

A device submitting for another node's hub is charged for its SUBMIT in the outbox like its
envelopes (``sender_full`` past its budget). At the hub, ``_group_submit`` orders the item in
place: its ORDERED copy goes into the member devices' mailboxes (``_deliver``: one shared body
in ``group_bodies``, rows without a sender) and to other nodes' outboxes (``_Step.queue``
without a sender), both held only to the recipients' group allowance and the disk reserve. So
one account whose groups' member devices never drain (its own 16 devices, each alone in a group
of its own, their copies never acknowledged) makes its node hold 16 x 512 MiB = 8 GiB of
default group allowance, uncharged; its 512 MiB account budget never applies.

The group here has one member, the submitting device; what it holds is its own never-read copy.
A second member on another node that takes nothing (down, or its device at its allowance:
``group_full``) shows the hub's fan-out: its copies wait in the hub's outbox, held to neither
the submitter's budgets nor that outbox's, only to the disk reserve (docs/security.md, by
design so that one such node does not stop the group): at the per-account submission rate
(2 a second) of 2.5 MiB texts, ~5 MiB a second for the envelope TTL.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.messages import Add
from sonet.federation.records import Quota
from sonet.node.store import OverBudget, SqliteStore
from tests.core.groups.devices import GROUP_ID, Device

from .store.outbox_rows import outbox_rows
from .store.pg_cluster import PgCluster, running_cluster

ALPHA, BETA = "alpha.example", "beta.example"
TTL_MS = 24 * 3600 * 1000
MIB = 1 << 20
#: the sender budgets 1 MiB; the device's group allowance far above what is submitted
QUOTA = Quota(
    max_envelopes=1000, max_bytes=64 * MIB, group_bytes=64 * MIB, sender_device_bytes=MIB, sender_account_bytes=MIB, outbox_bytes=MIB
)
#: each submission's plaintext; 16 of them are 4 MiB, four times the sender budgets
TEXT = 256 * 1024


@pytest.fixture(scope="module")
def pg_cluster() -> Any:
    with running_cluster("the hubfill9 PostgreSQL test") as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    if request.param == "sqlite":
        opened = await SqliteStore.open(tmp_path / "alpha.db")
    else:
        from sonet.node.store.postgres import PostgresStore

        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        opened = await PostgresStore.open(cluster.new_database())
    try:
        yield opened
    finally:
        await opened.close()


async def alice_hosting_her_group(store: SqliteStore, now: int) -> Device:
    """alice@alpha, device 1, alone in a group alpha hosts."""
    alice = Device.new(f"alice@{ALPHA}")
    await store.register_account(
        account=alice.account, fingerprint=alice.identity.public.fingerprint, record=b"record", account_identity=b"identity",
        device_list=b"device list", invite_hash=None, now=now,
    )  # fmt: skip
    info, tree = alice.create(hub=ALPHA)
    hub = HubGroup.create(node=ALPHA, group=GROUP_ID, group_info=info, ratchet_tree=tree)
    assert await store.create_group(account=alice.account, device_id=1, group=GROUP_ID, state=hub.to_bytes(), now=now)
    return alice


async def with_bob_at_beta(store: SqliteStore, alice: Device, now: int) -> None:
    """alice adds bob@beta (a device of another node: its copies go to alpha's outbox)."""
    bob = Device.new(f"bob@{BETA}")
    staged, message, welcome = alice.g.commit(alice.rng.randbytes, proposals=[Add(bob.key_package)])
    assert welcome is not None
    item = GroupItem(
        kind=ItemKind.SUBMIT, ref=os.urandom(16), group=GROUP_ID, epoch=alice.g.epoch, seq=0, message=message.to_bytes(),
        welcome=MLSMessage(WireFormat.WELCOME, welcome).to_bytes(), members=(), outcome="", hub="",
    )  # fmt: skip
    await store.group_submit(item, account=alice.account, device_id=1, hub=ALPHA, node=ALPHA, now=now, ttl_ms=TTL_MS, quota=QUOTA)
    alice.g.merge(staged)
    await store.ack(alice.account, 1, [i.id for i in await store.pending(alice.account, 1, after_seq=0, limit=100, now=now)], now=now)


def text_item(alice: Device) -> GroupItem:
    message = alice.g.encrypt(os.urandom(TEXT), alice.rng.randbytes).to_bytes()
    return GroupItem(
        kind=ItemKind.SUBMIT, ref=os.urandom(16), group=GROUP_ID, epoch=alice.g.epoch, seq=0, message=message, welcome=b"",
        members=(), outcome="", hub="",
    )  # fmt: skip


async def submit_until_refused(store: SqliteStore, alice: Device, *, hub: str, now: int, count: int = 16) -> tuple[int, str]:
    """alice's device submits ``count`` texts for ``hub``: how many were taken before the first
    refusal, and its code ("" if none was refused)."""
    for n in range(count):
        try:
            await store.group_submit(
                text_item(alice), account=alice.account, device_id=1, hub=hub, node=ALPHA, now=now, ttl_ms=TTL_MS, quota=QUOTA
            )
        except OverBudget as refused:
            return n, refused.code
    return count, ""


async def outbox_bytes(store: SqliteStore) -> int:
    read: Callable[[Any], int] = lambda conn: sum(row[6] for row in outbox_rows(conn))  # (size)
    return await store._read(read)


async def group_body_bytes(store: SqliteStore) -> int:
    read: Callable[[Any], int] = lambda conn: conn.execute("SELECT coalesce(sum(size), 0) FROM group_bodies").fetchone()[0]
    return await store._read(read)


async def test_a_submission_for_another_nodes_hub_is_charged_to_the_submitter(store: SqliteStore) -> None:
    """The control: the SUBMIT waits in alpha's outbox towards beta, charged to alice's device."""
    now = int(time.time() * 1000)
    alice = await alice_hosting_her_group(store, now)  # (alpha hosts it; the hub named is beta: only routing)
    taken, code = await submit_until_refused(store, alice, hub=BETA, now=now)
    assert code == "sender_full" and taken <= MIB // TEXT


async def test_what_a_submission_stores_at_its_own_nodes_hub_is_charged_to_the_submitter(store: SqliteStore) -> None:
    """At the hub the same texts are ordered and their copies kept in alice's mailbox (never
    read): 4 MiB stored against a 1 MiB budget, refused by nothing but the group allowance."""
    now = int(time.time() * 1000)
    alice = await alice_hosting_her_group(store, now)
    taken, code = await submit_until_refused(store, alice, hub=ALPHA, now=now)
    stored = await group_body_bytes(store)
    assert code == "sender_full" and taken <= MIB // TEXT, f"{taken} submissions taken, {stored:,} bytes of group bodies stored, refusal {code!r}"


async def test_what_a_submission_queues_at_its_own_nodes_hub_for_other_nodes_is_charged_to_the_submitter(store: SqliteStore) -> None:
    """alice's texts at alpha for a group with bob@beta, who takes nothing: each copy for
    beta waits in alpha's outbox; alice reads her own copies, so nothing is left in her
    mailbox and the outbox is all alpha holds of them."""
    now = int(time.time() * 1000)
    alice = await alice_hosting_her_group(store, now)
    await with_bob_at_beta(store, alice, now)
    queued_before = await outbox_bytes(store)
    for _ in range(16):
        try:
            await store.group_submit(
                text_item(alice), account=alice.account, device_id=1, hub=ALPHA, node=ALPHA, now=now, ttl_ms=TTL_MS, quota=QUOTA
            )
        except OverBudget as refused:
            assert refused.code in ("sender_full", "outbox_full")
            break
        await store.ack(alice.account, 1, [i.id for i in await store.pending(alice.account, 1, after_seq=0, limit=100, now=now)], now=now)
    queued = await outbox_bytes(store) - queued_before
    assert queued <= 2 * MIB, f"{queued:,} bytes of alice's texts queued for beta against 1 MiB budgets"
