"""Attack round 10: a member node notes which of its devices an ORDERED item still has to reach
(``group_waiting``, until the item expires) when they are at their allowance of group items.
Any pinned peer may start a group naming a device of the node (its first commit makes it the
group's hub: trust on first use), and once that device is full every later item it pushed was
one more row, counted towards nothing: 18,999 rows from 38 pushes in 1.5 s of CPU. Then (313a5af)
they counted towards the pushing hub's relay budget, and past it the hub's whole push was refused
``relay_full``, other devices' items and envelopes too (rev10). Now they are held to a cap of the
hub's own (sqlite_budgets.py WAITING_FACTOR): past it an item adds no row, it is answered
``group_full`` and the hub keeps it, and nothing of the push is refused."""

from __future__ import annotations

import logging

import pytest

from sonet.core import limits
from sonet.core.federation_api import Push, PushResult, Transit
from sonet.core.groups.items import GroupItem, GroupMember
from sonet.federation.records import STORED_ROW_OVERHEAD
from sonet.node import group_budgets
from sonet.node.budget_settings import BudgetSettings
from sonet.node.store import sqlite_budgets, sqlite_groups
from sonet.transport.log_summary import OncePer
from tests.node.conftest import StartNode
from tests.node.group_kit import mls_device
from tests.node.test_groups_robust import ordered

from .net import BETA, ask, new_key, peer_link, pin, transit


@pytest.fixture(autouse=True)
def _one_hub_fills_the_whole_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests fill a device's whole allowance of group items from one hub: its share
    (node/group_budgets.py HUB_SHARE; tests/node/store/test_hub12_hub_share.py) is all of it here."""
    monkeypatch.setattr(group_budgets, "HUB_SHARE", 1)

MIB = 1 << 20
MALLORY = "mallory.example"
PER_PUSH = 500


def pushed(item: GroupItem) -> Transit:
    return Transit(origin=MALLORY, dest=BETA, hops=limits.MAX_HOPS, envelope=None, report=None, group=item)


async def test_a_full_devices_waiting_rows_count_towards_the_hub_that_pushed_the_items(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sqlite_budgets, "WAITING_FACTOR", 1)  # the cap: 1 MiB of rows, 4,096
    monkeypatch.setattr(sqlite_groups, "_CAPPED_SAID", OncePer(60_000))  # (said already by another test in this process: not here)
    budgets = BudgetSettings(message_requests_per_mailbox=1_000_000, group_items_per_device=2)
    beta = await start_node(name=BETA, budgets=budgets, storage_relay_origin_max_bytes=MIB)
    bob = await beta.enroll("bob")
    device = mls_device(bob.first)
    device.create(hub=MALLORY)
    _, commit, _ = device.g.commit(device.rng.randbytes)
    group, app = device.g.group_id, device.g.encrypt(b"x", device.rng.randbytes).to_bytes()
    key = new_key()
    await pin(beta, MALLORY, fingerprint=key.public.fingerprint)
    first = ordered(group, 1, commit.to_bytes(), hub=MALLORY, members=(GroupMember(account=bob.address, device=1),))
    answers: list[object] = []
    seq = 2
    async with peer_link(beta, key, MALLORY) as link:
        assert await ask(link, Push(request=1, items=(pushed(first),))) == PushResult(request=1, outcomes=("ok",))
        for n in range(2, 40):
            answers.append(await ask(link, Push(request=n, items=tuple(pushed(ordered(group, seq + i, app, hub=MALLORY)) for i in range(PER_PUSH)))))
            seq += PER_PUSH
    async with beta.store() as store:
        rows = await store._read(lambda conn: conn.execute("SELECT count(*) FROM group_waiting").fetchone()[0])
    # bob's allowance takes one more item; past that every item waits, at mallory, past the cap
    refused = [a for a in answers if not (isinstance(a, PushResult) and set(a.outcomes) <= {"ok", "group_full"})]
    assert not refused and rows == MIB // STORED_ROW_OVERHEAD, f"{rows} rows kept for bob, answers {refused[:1]!r}"
    said = [r for r in caplog.records if r.levelno == logging.WARNING and "past its cap of waiting rows" in r.getMessage()]
    assert len(said) == 1 and MALLORY in said[0].getMessage()  # once a minute, not once an item


async def test_past_the_hubs_cap_its_push_of_another_devices_item_and_an_envelope_is_taken(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """rev10: bob never reads, carol reads everything. Once bob's waiting rows filled the hub's
    relay budget, its next push (an item carol has room for and a 1:1 envelope for her) was
    refused relay_full as a whole. Now the rows have a cap of their own (here 4, the relay
    budget's worth), and past it the push is taken: carol gets both."""
    monkeypatch.setattr(sqlite_budgets, "WAITING_FACTOR", 1)
    budgets = BudgetSettings(message_requests_per_mailbox=1_000_000, group_items_per_device=2)
    beta = await start_node(name=BETA, budgets=budgets, storage_relay_origin_max_bytes=4 * STORED_ROW_OVERHEAD)
    bob, carol = await beta.enroll("bob"), await beta.enroll("carol")
    device = mls_device(bob.first)
    device.create(hub=MALLORY)
    _, commit, _ = device.g.commit(device.rng.randbytes)
    group, app = device.g.group_id, device.g.encrypt(b"x", device.rng.randbytes).to_bytes()
    key = new_key()
    await pin(beta, MALLORY, fingerprint=key.public.fingerprint)
    members = tuple(GroupMember(account=a.address, device=1) for a in (bob, carol))
    items = [ordered(group, 1, commit.to_bytes(), hub=MALLORY, members=members), *(ordered(group, seq, app, hub=MALLORY) for seq in range(2, 8))]

    async def carol_reads() -> list[bytes]:
        async with beta.store() as store:
            now = beta.node.clock_ms()
            ids = [i.id for i in await store.pending(carol.address, 1, after_seq=0, limit=100, now=now)]
            await store.ack(carol.address, 1, ids, now=now)
        return ids

    async with peer_link(beta, key, MALLORY) as link:
        # bob holds 1 and 2, then 3..6 wait for him: 4 rows, the cap
        for n, item in enumerate(items[:6], start=1):
            assert await ask(link, Push(request=n, items=(pushed(item),))) == PushResult(request=n, outcomes=("ok" if n <= 2 else "group_full",))
            assert await carol_reads() == [item.ref]
        envelope = transit(carol.address, origin=MALLORY)
        answer = await ask(link, Push(request=7, items=(pushed(items[6]), envelope)))
    assert answer == PushResult(request=7, outcomes=("group_full", "ok")), answer  # before: ErrorFrame relay_full
    assert envelope.envelope is not None and sorted(await carol_reads()) == sorted([items[6].ref, envelope.envelope.id])
    async with beta.store() as store:
        assert await store._read(lambda conn: conn.execute("SELECT count(*) FROM group_waiting").fetchone()[0]) == 4
