"""Timed group items on nodes (docs/groups.md "Disappearing messages on nodes"): the hub reads a
message's expiry from its authenticated data, every copy and record of it expires then (mailbox
rows and their shared body, the hub's ref, the submitter's record, the member node's record), so
that after the purge no row of the node names it; a commit with an expiry is refused
``timed_change``; a member node takes a timed copy with its expiry and drops one pushed after it."""

from __future__ import annotations

import dataclasses
import os
import sqlite3

import pytest

from sonet.core.federation_api import OK, Transit
from sonet.core.groups.expiry import expiry_aad
from sonet.core.groups.items import GroupItem, GroupMember, ItemKind
from sonet.federation.records import GroupReceived, Quota
from sonet.federation.transit import relayed_item
from sonet.node.app import DB_FILE

from .conftest import RunningNode
from .group_kit import group_items, mls_device, submit
from .kit import NodeError
from .test_groups_node import HUB, group_of_two, items_of


def tables_naming(node: RunningNode, needle: bytes) -> set[str]:
    """The tables of the node's database with a row that holds ``needle`` in some column."""
    db = sqlite3.connect(node.data_dir / DB_FILE)
    try:
        found = set()
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - table names from the schema
                if any(isinstance(v, bytes) and needle in v for v in row):
                    found.add(table)
                    break
        return found
    finally:
        db.close()


async def test_the_hub_drops_a_timed_message_everywhere_at_its_expiry_and_keeps_the_others(running: RunningNode) -> None:
    group, (alice_account, alice), (bob_account, bob) = await group_of_two(running)
    expires = running.node.clock_ms() + 3_600_000
    timed = bob.g.encrypt(b"gone soon", bob.rng.randbytes, authenticated_data=expiry_aad(expires))
    async with running.raw(bob_account.first) as conn:
        ref = await submit(conn, group, timed, hub=HUB)
        kept = await submit(conn, group, bob.g.encrypt(b"stays", bob.rng.randbytes), hub=HUB)
    for account in (alice.account, bob.account):
        rows = await running.pending(account, 1)
        assert [(r.id, r.expires == expires) for r in rows][1:] == [(ref, True), (kept, False)]
        _, one, two = group_items(rows)
        assert (one.seq, one.expires, one.floor, one.gap_expires) == (2, expires, 1, 0)
        assert (two.seq, two.expires, two.floor, two.gap_expires) == (3, 0, 1, expires)  # 2 may be skipped once expired
    ciphertext = timed.to_bytes()[-64:]
    assert {"mailbox", "hub_refs", "group_submissions"} <= tables_naming(running, ref)
    assert "group_bodies" in tables_naming(running, ciphertext)
    async with running.store() as store:
        assert await store.next_expiry(after=running.node.clock_ms()) == expires  # the expiry loop wakes for it
        await store.purge_expired(now=expires - 1)
        assert "mailbox" in tables_naming(running, ref)  # not a moment early
        await store.purge_expired(now=expires)
    assert tables_naming(running, ref) == set() and tables_naming(running, ciphertext) == set()
    assert {"mailbox", "hub_refs"} <= tables_naming(running, kept)
    assert [i.seq for i in await items_of(running, alice.account, 1)] == [1, 3]
    # the group goes on: the next copy names the untimed item as the floor
    async with running.raw(alice_account.first) as conn:
        await submit(conn, group, alice.g.encrypt(b"later", alice.rng.randbytes), hub=HUB)
    last = (await items_of(running, bob.account))[-1]
    assert (last.seq, last.floor, last.gap_expires) == (4, 3, 0)


async def test_a_commit_with_an_expiry_is_refused_timed_change(running: RunningNode) -> None:
    group, (alice_account, alice), (_, bob) = await group_of_two(running)
    expires = running.node.clock_ms() + 60_000
    _staged, message, _ = alice.g.commit(alice.rng.randbytes, authenticated_data=expiry_aad(expires))
    async with running.raw(alice_account.first) as conn:
        ref = await submit(conn, group, message, hub=HUB)
        # an application message whose authenticated data is not an expiry is not taken at all
        junk = alice.g.encrypt(b"x", alice.rng.randbytes, authenticated_data=b"whenever")
        with pytest.raises(NodeError) as refused:
            await submit(conn, group, junk, hub=HUB)
    assert refused.value.code == "bad_input" and "not an expiry" in str(refused.value)
    verdict = (await items_of(running, alice.account))[-1]
    assert (verdict.kind, verdict.ref, verdict.outcome) == (ItemKind.VERDICT, ref, "timed_change")
    assert [i.seq for i in await items_of(running, bob.account)] == [1]  # nobody else hears of it


async def test_a_member_node_keeps_a_timed_copy_until_its_expiry_and_drops_one_pushed_later(running: RunningNode) -> None:
    alice_account = await running.enroll("alice")
    hub = "beta.example"
    creator = mls_device(alice_account.first)
    creator.create(hub=hub)
    _staged, commit, _ = creator.g.commit(creator.rng.randbytes)
    first = GroupItem(
        kind=ItemKind.ORDERED, ref=os.urandom(16), group=creator.g.group_id, epoch=0, seq=1, message=commit.to_bytes(),
        welcome=b"", members=(GroupMember(account=alice_account.address, device=1),), outcome="", hub=hub,
    )  # fmt: skip
    now = running.node.clock_ms()
    expires = now + 60_000
    timed = GroupItem(
        kind=ItemKind.ORDERED, ref=os.urandom(16), group=creator.g.group_id, epoch=1, seq=2, message=b"\x00\x01" + os.urandom(64),
        welcome=b"", members=(), outcome="", hub=hub, expires=expires, floor=1,
    )  # fmt: skip
    late = dataclasses.replace(timed, ref=os.urandom(16), seq=3, floor=1, gap_expires=expires, expires=expires)
    quota = Quota(max_envelopes=100, max_bytes=1 << 20)
    ttl = running.config.envelope_ttl_ms
    async with running.store() as store:
        pushed = [GroupReceived(item=i, origin=hub, node=HUB, ttl_ms=ttl) for i in (first, timed)]
        assert await store.receive(pushed, now=now, quota=quota) == [OK, OK]
        rows = {r.id: r.expires for r in await store.pending(alice_account.address, 1, after_seq=0, limit=10, now=now)}
        assert rows[timed.ref] == expires and rows[first.ref] == now + ttl
        await store.purge_expired(now=expires)
        # pushed again (or first) after its time: nothing of it is taken
        again = [GroupReceived(item=i, origin=hub, node=HUB, ttl_ms=ttl) for i in (timed, late)]
        assert await store.receive(again, now=expires, quota=quota) == [OK, OK]
        assert again[0].effects.mailboxes == set() and again[1].effects.mailboxes == set()
    assert tables_naming(running, timed.ref) == set() and tables_naming(running, late.ref) == set()
    assert tables_naming(running, timed.message) == set()
    assert [i.seq for i in await items_of(running, alice_account.address)] == [1]


def test_a_relay_holds_a_timed_group_item_until_its_expiry_only() -> None:
    now, ttl = 1_800_000_000_000, 30 * 86_400_000
    item = GroupItem(
        kind=ItemKind.ORDERED, ref=os.urandom(16), group=os.urandom(16), epoch=1, seq=2, message=b"m", welcome=b"", members=(),
        outcome="", hub="alpha.example", floor=1,
    )  # fmt: skip
    for expires, held_until in ((0, now + ttl), (now + 5000, now + 5000), (now + ttl + 1, now + ttl)):
        transit = Transit(origin="alpha.example", dest="gamma.example", hops=3, envelope=None, report=None,
                          group=dataclasses.replace(item, expires=expires))  # fmt: skip
        assert relayed_item(transit, now=now, ttl_ms=ttl).expires == held_until
