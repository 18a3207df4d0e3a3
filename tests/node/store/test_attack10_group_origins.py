"""Attack round 10, the store half (both backends): what a group's hub stores for submissions
pushed by other nodes counts towards the pushing node's relay budget (migration 25:
``group_bodies.origin``, ``hub_refs.origin``, the outbox's ``origin`` on its fan-out), and the
hub orders a submission only from a member's node, under an origin its pusher may speak for; a
member node's ``group_waiting`` rows count towards the hub that pushed the items (migration 27);
the hub's ``hub_refs`` records of another node's submissions count apart (migration 28).

alice@alpha hosts a group at alpha with bob@beta (tests/node/test_hubfill9_hub_submitter.py
builds it); beta pushes texts. Before: bodies and copies of 16 texts of 256 KiB (8 MiB) were
taken against a 1 MiB relay budget, gamma (no member) had its text ordered, and beta could
name gamma as the origin."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sonet.core.federation_api import OK
from sonet.core.groups.items import GroupItem, GroupMember, ItemKind
from sonet.federation.records import STORED_ROW_OVERHEAD, GroupReceived, NewEnvelope, Quota
from sonet.node.store import OverBudget, SqliteStore, sqlite_budgets
from tests.core.groups.devices import Device
from tests.node.test_hubfill9_hub_submitter import ALPHA, BETA, MIB, TEXT, TTL_MS, alice_hosting_her_group, text_item, with_bob_at_beta

from .old_versions import at_version

GAMMA = "gamma.example"
#: beta's relay budget 1 MiB; everything else far above what is submitted
QUOTA = Quota(max_envelopes=1000, max_bytes=64 * MIB, group_bytes=64 * MIB, relay_origin_bytes=MIB)


def pushed(item: GroupItem, *, origin: str, by: str) -> GroupReceived:
    """``item`` as link peer ``by`` pushes it in the name of ``origin`` (federation/inbound.py
    charges ``origin`` only when ``by`` is it or its relay, else ``by``)."""
    return GroupReceived(item=item, origin=origin, node=ALPHA, ttl_ms=TTL_MS, charged=by)


async def origin_usage(store: SqliteStore, origin: str, scope: str = "origin") -> tuple[int, int]:
    """(rows, bytes) held for ``origin``: what it relays ("origin"), or records of its group
    submissions ("origin_refs")."""

    def read(conn: Any) -> tuple[int, int]:
        row = conn.execute("SELECT count, bytes FROM storage_usage WHERE scope = ? AND key = ?", (scope, origin)).fetchone()
        return (0, 0) if row is None else (row[0], row[1])

    return await store._read(read)


async def hub_outcome(store: SqliteStore, ref: bytes) -> str | None:
    def read(conn: Any) -> str | None:
        row = conn.execute("SELECT outcome FROM hub_refs WHERE ref = ?", (ref,)).fetchone()
        return None if row is None else str(row[0])

    return await store._read(read)


async def test_a_member_nodes_submissions_count_towards_its_relay_budget(store: SqliteStore) -> None:
    now = int(time.time() * 1000)
    alice = await alice_hosting_her_group(store, now)
    await with_bob_at_beta(store, alice, now)
    taken, code = 0, ""
    for _ in range(16):
        try:
            assert await store.receive([pushed(text_item(alice), origin=BETA, by=BETA)], now=now, quota=QUOTA) == [OK]
        except OverBudget as refused:
            code = refused.code
            break
        taken += 1
    count, size = await origin_usage(store, BETA)
    assert code == "relay_full" and taken <= MIB // TEXT, f"{taken} taken, {size:,} bytes held for beta, refusal {code!r}"
    # per text: its body (alice's copy), its copy for beta; and its hub_refs row apart
    assert (count, await origin_usage(store, BETA, "origin_refs")) == (2 * taken, (taken, 0)), count
    await store.ack(alice.account, 1, [i.id for i in await store.pending(alice.account, 1, after_seq=0, limit=100, now=now)], now=now)
    assert (await origin_usage(store, BETA))[0] == taken  # the bodies went with alice's copies
    assert await origin_usage(store, BETA, "origin_refs") == (taken, 0)  # records stay until the items expire


async def test_a_node_with_no_member_device_is_refused_not_member(store: SqliteStore) -> None:
    now = int(time.time() * 1000)
    alice = await alice_hosting_her_group(store, now)
    await with_bob_at_beta(store, alice, now)
    before = len(await store.pending(alice.account, 1, after_seq=0, limit=100, now=now))
    item = text_item(alice)
    assert await store.receive([pushed(item, origin=GAMMA, by=GAMMA)], now=now, quota=QUOTA) == [OK]
    assert await hub_outcome(store, item.ref) == "not_member"
    assert len(await store.pending(alice.account, 1, after_seq=0, limit=100, now=now)) == before


async def test_a_pushed_submission_under_an_origin_its_pusher_may_not_name_is_held_back(store: SqliteStore) -> None:
    # hub_pending, not invalid (rev10): a relay named --via on one side only loses nothing, and
    # the item is neither ordered nor charged until it comes from a peer that may name its origin
    now = int(time.time() * 1000)
    alice = await alice_hosting_her_group(store, now)
    await with_bob_at_beta(store, alice, now)
    item = text_item(alice)
    assert await store.receive([pushed(item, origin=BETA, by=GAMMA)], now=now, quota=QUOTA) == ["hub_pending"]
    assert await hub_outcome(store, item.ref) is None and await origin_usage(store, GAMMA) == (0, 0)
    assert await origin_usage(store, GAMMA, "origin_refs") == (0, 0)
    # for a group not hosted here the pusher may be its old hub, the hand-over on its way: later
    elsewhere = dataclasses.replace(item, group=os.urandom(16))
    assert await store.receive([pushed(elsewhere, origin=BETA, by=GAMMA)], now=now, quota=QUOTA) == ["hub_pending"]


async def test_a_local_device_that_is_not_a_member_is_refused_not_member(store: SqliteStore) -> None:
    now = int(time.time() * 1000)
    alice = await alice_hosting_her_group(store, now)
    carol = Device.new(f"carol@{ALPHA}")
    await store.register_account(
        account=carol.account, fingerprint=carol.identity.public.fingerprint, record=b"record", account_identity=b"identity",
        device_list=b"device list", invite_hash=None, now=now,
    )  # fmt: skip
    item = dataclasses.replace(text_item(alice), ref=os.urandom(16))  # alice's ciphertext, carol's submission
    await store.group_submit(item, account=carol.account, device_id=1, hub=ALPHA, node=ALPHA, now=now, ttl_ms=TTL_MS, quota=QUOTA)
    assert await hub_outcome(store, item.ref) == "not_member"
    refs = {i.id for i in await store.pending(alice.account, 1, after_seq=0, limit=100, now=now)}
    assert item.ref not in refs
    verdicts = await store.pending(carol.account, 1, after_seq=0, limit=100, now=now)
    assert [v.id for v in verdicts] == [item.ref]  # carol is told


async def test_a_retried_push_is_not_charged_twice(store: SqliteStore) -> None:
    now = int(time.time() * 1000)
    alice = await alice_hosting_her_group(store, now)
    await with_bob_at_beta(store, alice, now)
    item = text_item(alice)
    assert await store.receive([pushed(item, origin=BETA, by=BETA)], now=now, quota=QUOTA) == [OK]
    once = await origin_usage(store, BETA), await origin_usage(store, BETA, "origin_refs")
    assert await store.receive([pushed(item, origin=BETA, by=BETA)], now=now, quota=QUOTA) == [OK]
    assert (await origin_usage(store, BETA), await origin_usage(store, BETA, "origin_refs")) == once


async def registered(store: SqliteStore, name: str, now: int) -> Device:
    device = Device.new(f"{name}@{ALPHA}")
    await store.register_account(
        account=device.account, fingerprint=device.identity.public.fingerprint, record=b"record", account_identity=b"identity",
        device_list=b"device list", invite_hash=None, now=now,
    )  # fmt: skip
    return device


def ordered_by_beta(alice: Device, seq: int, message: bytes, members: tuple[GroupMember, ...] = ()) -> GroupItem:
    return GroupItem(
        kind=ItemKind.ORDERED, ref=os.urandom(16), group=alice.g.group_id, epoch=0, seq=seq, message=message, welcome=b"",
        members=members, outcome="", hub=BETA,
    )  # fmt: skip


async def test_a_full_devices_waiting_rows_count_towards_the_hub_that_pushed_them(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """alice@alpha follows beta for a group; at her allowance (one item), each later item beta
    pushes waits for her (group_waiting), a row counted towards beta's cap of such rows (not
    its relay budget) until she is reached; past the cap no row is added."""
    monkeypatch.setattr(sqlite_budgets, "WAITING_FACTOR", 1)  # the cap: as many rows as the relay budget holds
    now = int(time.time() * 1000)
    alice = await registered(store, "alice", now)
    alice.create(hub=BETA)
    _, commit, _ = alice.g.commit(alice.rng.randbytes)
    quota = dataclasses.replace(QUOTA, group_envelopes=1)

    def item(seq: int, message: bytes, members: tuple[GroupMember, ...] = ()) -> GroupItem:
        return ordered_by_beta(alice, seq, message, members)

    first = item(1, commit.to_bytes(), (GroupMember(account=alice.account, device=1),))
    assert await store.receive([pushed(first, origin=BETA, by=BETA)], now=now, quota=quota) == [OK]
    later = [item(seq, alice.g.encrypt(b"x", alice.rng.randbytes).to_bytes()) for seq in (2, 3, 4)]
    assert await store.receive([pushed(i, origin=BETA, by=BETA) for i in later], now=now, quota=quota) == ["group_full"] * 3
    assert (await origin_usage(store, BETA, "group_waiting"), await origin_usage(store, BETA)) == ((3, 0), (0, 0))
    over = dataclasses.replace(quota, relay_origin_bytes=3 * STORED_ROW_OVERHEAD)
    # a fourth row would be past beta's cap: none is written, the item waits at beta, nothing is refused
    assert await store.receive([pushed(item(5, later[0].message), origin=BETA, by=BETA)], now=now, quota=over) == ["group_full"]
    assert await origin_usage(store, BETA, "group_waiting") == (3, 0)
    await store.ack(alice.account, 1, [first.ref], now=now)  # she drains: the next push reaches her
    assert await store.receive([pushed(later[0], origin=BETA, by=BETA)], now=now, quota=quota) == [OK]
    assert await origin_usage(store, BETA, "group_waiting") == (2, 0)


async def test_past_the_hubs_cap_of_waiting_rows_its_other_items_and_envelopes_are_taken(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """rev10: the waiting rows counted towards the pushing hub's relay budget, and past it every
    push of that hub was refused relay_full as a whole: other devices' group items and 1:1
    envelopes too. Here beta's cap holds 2 rows; alice never reads, carol reads everything. Once
    alice is reached, each item comes to her once and in order, and carol gets none twice."""
    monkeypatch.setattr(sqlite_budgets, "WAITING_FACTOR", 1)
    quota = dataclasses.replace(QUOTA, group_envelopes=1, relay_origin_bytes=2 * STORED_ROW_OVERHEAD)
    now = int(time.time() * 1000)
    alice, carol = await registered(store, "alice", now), await registered(store, "carol", now)
    alice.create(hub=BETA)
    _, commit, _ = alice.g.commit(alice.rng.randbytes)
    members = tuple(GroupMember(account=d.account, device=1) for d in (alice, carol))
    items = [ordered_by_beta(alice, 1, commit.to_bytes(), members)]
    items += [ordered_by_beta(alice, seq, alice.g.encrypt(b"x", alice.rng.randbytes).to_bytes()) for seq in (2, 3, 4)]
    seq_of = {i.ref: i.seq for i in items}
    got: dict[str, list[bytes]] = {alice.account: [], carol.account: []}

    async def read(device: Device) -> None:
        ids = [i.id for i in await store.pending(device.account, 1, after_seq=0, limit=100, now=now)]
        got[device.account] += ids
        await store.ack(device.account, 1, ids, now=now)

    assert await store.receive([pushed(items[0], origin=BETA, by=BETA)], now=now, quota=quota) == [OK]
    await read(carol)
    for i in items[1:3]:  # alice's allowance is full: a row each, beta's cap reached
        assert await store.receive([pushed(i, origin=BETA, by=BETA)], now=now, quota=quota) == ["group_full"]
        await read(carol)
    assert await origin_usage(store, BETA, "group_waiting") == (2, 0)
    envelope = NewEnvelope(account=carol.account, device_id=1, id=os.urandom(16), expires=now + TTL_MS, kind=1, body=b"hi carol")
    # before: OverBudget relay_full, neither taken
    assert await store.receive([pushed(items[3], origin=BETA, by=BETA), envelope], now=now, quota=quota) == ["group_full", OK]
    assert await origin_usage(store, BETA, "group_waiting") == (2, 0)  # none for alice past the cap
    await read(carol)
    # alice reads; beta pushes what it keeps each expiry tick, in its order, until all is taken
    kept = items[1:]
    while kept:
        await read(alice)
        outcomes = await store.receive([pushed(i, origin=BETA, by=BETA) for i in kept], now=now, quota=quota)
        kept = [i for i, outcome in zip(kept, outcomes, strict=True) if outcome == "group_full"]
    await read(alice)
    await read(carol)
    assert [seq_of[i] for i in got[alice.account]] == [1, 2, 3, 4]
    assert [seq_of[i] for i in got[carol.account] if i in seq_of] == [1, 2, 3, 4]
    assert sorted(got[carol.account]) == sorted([*seq_of, envelope.id])  # each once
    assert await origin_usage(store, BETA, "group_waiting") == (0, 0)


_WAITING = [(b"g" * 16, seq, f"alice@{ALPHA}", 1, BETA, 5_000) for seq in (1, 2)]
_INSERT_WAITING = "INSERT INTO group_waiting (grp, seq, account, device_id, origin, expires) VALUES ({marks})"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migration_27_counts_the_waiting_rows_kept_already(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    opener = at_version(request, tmp_path, 26, [(_INSERT_WAITING, _WAITING)], backend=backend, unchecked=True)
    async with await opener() as store:  # (counted in "origin" by 27, moved apart by 29)
        assert (await origin_usage(store, BETA, "group_waiting"), await origin_usage(store, BETA)) == ((2, 0), (0, 0))
        await store.purge_expired(now=5_000)  # they go at their expiry, and so does their count
        assert await origin_usage(store, BETA, "group_waiting") == (0, 0)


_ALICE_DEVICE = [
    ("INSERT INTO accounts (account, created_at) VALUES ({marks})", [(f"alice@{ALPHA}", 0)]),
    ("INSERT INTO devices (account, device_id, fingerprint, record, created_at) VALUES ({marks})", [(f"alice@{ALPHA}", 1, "fp", b"r", 0)]),
]
# beta's relay budget also holds a row of 100 bytes it relays (it stays there)
_RELAYED = ("INSERT INTO storage_usage (scope, key, count, bytes) VALUES ({marks})", [("origin", BETA, 1, 100)])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migration_29_moves_the_waiting_rows_kept_to_their_own_count(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    opener = at_version(request, tmp_path, 28, [*_ALICE_DEVICE, _RELAYED, (_INSERT_WAITING, _WAITING)], backend=backend)
    async with await opener() as store:
        assert (await origin_usage(store, BETA, "group_waiting"), await origin_usage(store, BETA)) == ((2, 0), (1, 100))
        await store.purge_expired(now=5_000)
        assert await origin_usage(store, BETA, "group_waiting") == (0, 0)


async def test_a_hubs_records_of_a_nodes_submissions_are_held_to_their_own_budget(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """hub_refs rows stay until their items expire, however soon they were delivered: counted
    apart ("origin_refs", ORIGIN_REFS_FACTOR times the relay budget), here made room for 3."""
    monkeypatch.setattr(sqlite_budgets, "ORIGIN_REFS_FACTOR", 3 * STORED_ROW_OVERHEAD / (64 * MIB))
    now = int(time.time() * 1000)
    alice = await alice_hosting_her_group(store, now)
    await with_bob_at_beta(store, alice, now)
    small = dataclasses.replace(QUOTA, relay_origin_bytes=64 * MIB)  # room for the texts themselves
    for _ in range(3):
        assert await store.receive([pushed(text_item(alice), origin=BETA, by=BETA)], now=now, quota=small) == [OK]
        await store.ack(alice.account, 1, [i.id for i in await store.pending(alice.account, 1, after_seq=0, limit=100, now=now)], now=now)
    with pytest.raises(OverBudget) as refused:
        await store.receive([pushed(text_item(alice), origin=BETA, by=BETA)], now=now, quota=small)
    assert refused.value.code == "relay_full" and await origin_usage(store, BETA, "origin_refs") == (3, 0)


_REFS = [(b"g" * 16, bytes([n]) * 16, "ok", 5_000, BETA) for n in (1, 2)]
_INSERT_REFS = "INSERT INTO hub_refs (grp, ref, outcome, expires, origin) VALUES ({marks})"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migration_28_moves_the_records_kept_to_their_own_count(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    opener = at_version(request, tmp_path, 27, [(_INSERT_REFS, _REFS)], backend=backend)
    async with await opener() as store:
        assert (await origin_usage(store, BETA), await origin_usage(store, BETA, "origin_refs")) == ((0, 0), (2, 0))
        await store.purge_expired(now=5_000)
        assert await origin_usage(store, BETA, "origin_refs") == (0, 0)
