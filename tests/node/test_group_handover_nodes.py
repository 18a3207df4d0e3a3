"""A hub hand-over in parts between nodes (node/store/sqlite_groups.py, sqlite_handover.py):
three nodes are three real SQLite stores, and this test is their federation, moving each
outbox's items into the destination's ``receive`` in the order it chooses. The members are real
MLS devices.

alpha hosts a group of alice@alpha, bob@beta and carol@gamma and hands it over to beta; the
state goes in several HANDOVER parts (1 KiB each here, so a small group's state takes several:
what a 1,500-device state does with 1 MiB parts, bench/groups_bench.py). Submissions that reach
beta before its last part (carol's from gamma, bob's on beta itself, alice's forwarded by alpha)
are held, ordered right after the adoption in the order they came, each once: nothing is lost
or reordered. Parts come reordered and twice; a submission that comes before beta even knows it
is the next hub waits in the pusher's outbox (``hub_pending``).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sonet.core.federation_api import OK, RETRY_LATER
from sonet.core.groups import handover as handover_module
from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import GroupItem, ItemKind, handover_part
from sonet.core.groups.state import GroupExtension, group_context_extensions
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.group import ApplicationMessage, StagedCommit
from sonet.core.mls.messages import Add, GroupContextExtensions
from sonet.core.wire import decode_struct
from sonet.federation.records import GroupReceived, QueuedItem, Quota
from sonet.federation.transit import decode_transit
from sonet.node.store import SqliteStore
from tests.core.groups.devices import GROUP_ID, Device

ALPHA, BETA, GAMMA = "alpha.example", "beta.example", "gamma.example"
TTL_MS = 24 * 3600 * 1000
QUOTA = Quota(max_envelopes=1000, max_bytes=1 << 26)


class Nodes:
    def __init__(self, stores: dict[str, SqliteStore]) -> None:
        self.stores = stores
        self.now = int(time.time() * 1000)

    async def submit(self, device: Device, message: MLSMessage, *, hub: str, welcome: bytes = b"") -> bytes:
        """``device`` submits ``message`` to its home node for ``hub``; its ref."""
        ref = os.urandom(16)
        item = GroupItem(
            kind=ItemKind.SUBMIT, ref=ref, group=GROUP_ID, epoch=device.g.epoch, seq=0, message=message.to_bytes(), welcome=welcome,
            members=(), outcome="", hub="",
        )  # fmt: skip
        await self.stores[device.node].group_submit(
            item, account=device.account, device_id=1, hub=hub, node=device.node, now=self.now, ttl_ms=TTL_MS, quota=QUOTA
        )
        return ref

    async def queued(self, origin: str, dest: str) -> list[QueuedItem]:
        return await self.stores[origin].outbox(dest, limit=1024, max_bytes=64 << 20, now=self.now)

    async def push(self, origin: str, dest: str, items: list[QueuedItem]) -> list[str]:
        """Push ``items`` of ``origin``'s outbox to ``dest`` as the outbox worker does: what
        ``dest`` took is settled, what it refused for now stays queued."""
        received = []
        for queued in items:
            transit = decode_transit(queued.data)
            assert transit.group is not None and transit.dest == dest
            received.append(GroupReceived(item=transit.group, origin=transit.origin, node=dest, ttl_ms=TTL_MS))
        outcomes = await self.stores[dest].receive(received, now=self.now, quota=QUOTA)
        done = [q.seq for q, o in zip(items, outcomes) if o not in RETRY_LATER]
        await self.stores[origin].outbox_done(dest, done, now=self.now)
        return outcomes

    async def flush(self) -> None:
        """Every outbox pushed until nothing moves."""
        moved = True
        while moved:
            moved = False
            for origin in self.stores:
                for dest in self.stores:
                    if dest != origin and (items := await self.queued(origin, dest)):
                        assert all(o == OK for o in await self.push(origin, dest, items))
                        moved = True

    async def mailbox(self, device: Device) -> list[GroupItem]:
        items = await self.stores[device.node].pending(device.account, 1, after_seq=0, limit=1000, now=self.now)
        return [decode_struct(GroupItem, i.body) for i in items if i.kind == 3]

    async def hosts(self, node: str) -> bool:
        row = await self.stores[node]._read(
            lambda conn: conn.execute("SELECT moved_to FROM hosted_groups WHERE grp = ?", (GROUP_ID,)).fetchone()
        )
        return row is not None and row[0] is None


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    stores = {node: await SqliteStore.open(tmp_path / f"{node}.db") for node in (ALPHA, BETA, GAMMA)}
    try:
        yield Nodes(stores)
    finally:
        for store in stores.values():
            await store.close()


def process(device: Device, item: GroupItem) -> None:
    result = device.g.process(item.message)
    assert isinstance(result, StagedCommit)
    device.g.merge(result)


def text(device: Device, item: GroupItem) -> bytes:
    result = device.g.process(item.message)
    assert isinstance(result, ApplicationMessage)
    return result.data


async def group_of_three(nodes: Nodes) -> tuple[Device, Device, Device]:
    """alice@alpha (the hub) has added bob@beta and carol@gamma: seq 1."""
    alice, bob, carol = Device.new(f"alice@{ALPHA}"), Device.new(f"bob@{BETA}"), Device.new(f"carol@{GAMMA}")
    for device in (alice, bob, carol):
        await nodes.stores[device.node].register_account(
            account=device.account, fingerprint=device.identity.public.fingerprint, record=b"record", account_identity=b"identity",
            device_list=b"device list", invite_hash=None, now=nodes.now,
        )  # fmt: skip
    info, tree = alice.create()
    hub = HubGroup.create(node=ALPHA, group=GROUP_ID, group_info=info, ratchet_tree=tree)
    await nodes.stores[ALPHA].create_group(account=alice.account, device_id=1, group=GROUP_ID, state=hub.to_bytes(), now=nodes.now)
    staged, message, welcome = alice.g.commit(alice.rng.randbytes, proposals=[Add(bob.key_package), Add(carol.key_package)])
    assert welcome is not None
    await nodes.submit(alice, message, hub=ALPHA, welcome=MLSMessage(WireFormat.WELCOME, welcome).to_bytes())
    await nodes.flush()
    alice.g.merge(staged)
    for device in (bob, carol):
        device.join((await nodes.mailbox(device))[-1].welcome)
    return alice, bob, carol


async def move_to_beta(nodes: Nodes, alice: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    """alice moves the hub to beta: alpha's outbox holds the commit's copies and the parts (of
    1 KiB: several)."""
    monkeypatch.setattr(handover_module, "HANDOVER_PART_BYTES", 1024)
    move = group_context_extensions(GroupExtension(BETA, (alice.account,)))
    staged, message, _ = alice.g.commit(alice.rng.randbytes, proposals=[GroupContextExtensions(move)])
    await nodes.submit(alice, message, hub=ALPHA)
    alice.g.merge(staged)


async def test_a_hand_over_in_parts_with_submissions_before_its_last_part(nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, carol = await group_of_three(nodes)
    await move_to_beta(nodes, alice, monkeypatch)
    to_beta = await nodes.queued(ALPHA, BETA)
    kinds = [decode_transit(q.data).group.kind for q in to_beta]  # type: ignore[union-attr]
    copy, parts = to_beta[0], to_beta[1:]
    assert kinds[0] == ItemKind.ORDERED and set(kinds[1:]) == {ItemKind.HANDOVER} and len(parts) > 3
    state_bytes = sum(len(decode_transit(q.data).group.message) for q in parts)  # type: ignore[union-attr]
    assert state_bytes > 3 * 1024 and all(handover_part(decode_transit(q.data).group)[1] == len(parts) for q in parts)  # type: ignore[arg-type]

    # gamma gets the move first: carol sends to beta, which does not know yet that it is the hub
    await nodes.push(ALPHA, GAMMA, await nodes.queued(ALPHA, GAMMA))
    process(carol, (await nodes.mailbox(carol))[-1])
    said = [await nodes.submit(carol, carol.g.encrypt(b"c1", carol.rng.randbytes), hub=BETA)]
    assert await nodes.push(GAMMA, BETA, await nodes.queued(GAMMA, BETA)) == ["hub_pending"]  # stays in gamma's outbox

    # beta gets the commit's copy and some parts, reordered and twice
    assert await nodes.push(ALPHA, BETA, [copy, parts[2], parts[0], parts[2]]) == [OK] * 4
    process(bob, (await nodes.mailbox(bob))[-1])
    assert not await nodes.hosts(BETA)
    # now carol's submission is held at beta (taken: gamma's outbox is done with it)
    assert await nodes.push(GAMMA, BETA, await nodes.queued(GAMMA, BETA)) == [OK]
    said.append(await nodes.submit(bob, bob.g.encrypt(b"b1", bob.rng.randbytes), hub=BETA))  # held on beta itself
    said.append(await nodes.submit(carol, carol.g.encrypt(b"c2", carol.rng.randbytes), hub=BETA))
    again = await nodes.queued(GAMMA, BETA)
    assert await nodes.push(GAMMA, BETA, again + again) == [OK, OK]  # a retried push holds it once
    said.append(await nodes.submit(alice, alice.g.encrypt(b"a1", alice.rng.randbytes), hub=ALPHA))  # a late one at alpha
    forwarded = await nodes.queued(ALPHA, BETA)
    assert forwarded[-1].seq > parts[-1].seq  # alpha forwards it behind the parts
    rest = [q for q in forwarded if q.seq in {p.seq for p in parts[:-1]}]  # every part but the last
    assert len(rest) == len(parts) - 3 and await nodes.push(ALPHA, BETA, rest) == [OK] * len(rest)
    assert not await nodes.hosts(BETA)
    for device in (alice, bob, carol):
        assert [i.seq for i in await nodes.mailbox(device)][-1] == 2  # nothing ordered yet

    # the last part: beta adopts the group and orders what it held, in the order it came
    await nodes.flush()
    assert await nodes.hosts(BETA) and not await nodes.hosts(ALPHA)
    for device in (alice, bob, carol):
        later = [i for i in await nodes.mailbox(device) if i.seq > 2]
        assert [(i.seq, i.ref, i.hub) for i in later] == [(3 + n, ref, BETA) for n, ref in enumerate(said)]
        senders = dict(zip(said, [carol, bob, carol, alice]))
        texts = dict(zip(said, [b"c1", b"b1", b"c2", b"a1"]))
        assert [text(device, i) for i in later if senders[i.ref] is not device] == [texts[i.ref] for i in later if senders[i.ref] is not device]

    # a part pushed again changes nothing; the group goes on at beta
    assert await nodes.push(ALPHA, BETA, [parts[-1]]) == [OK]
    ref = await nodes.submit(bob, bob.g.encrypt(b"b2", bob.rng.randbytes), hub=BETA)
    await nodes.flush()
    for device in (alice, bob, carol):
        assert [(i.seq, i.ref) for i in await nodes.mailbox(device)][-1] == (7, ref)
    kept = await nodes.stores[BETA]._read(
        lambda conn: conn.execute("SELECT (SELECT count(*) FROM handover_parts) + (SELECT count(*) FROM held_submits)").fetchone()[0]
    )
    assert kept == 0  # the parts and held submissions are gone once adopted and ordered


async def test_held_submissions_a_device_has_no_room_for_wait_and_keep_their_order(nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, carol = await group_of_three(nodes)
    await move_to_beta(nodes, alice, monkeypatch)
    *taken, last = await nodes.queued(ALPHA, BETA)
    assert await nodes.push(ALPHA, BETA, taken) == [OK] * len(taken)  # the commit's copy, every part but one
    await nodes.push(ALPHA, GAMMA, await nodes.queued(ALPHA, GAMMA))
    for device in (bob, carol):
        process(device, (await nodes.mailbox(device))[-1])
    said = []
    for n in range(3):
        said.append(await nodes.submit(carol, carol.g.encrypt(b"c%d" % n, carol.rng.randbytes), hub=BETA))
    assert await nodes.push(GAMMA, BETA, await nodes.queued(GAMMA, BETA)) == [OK] * 3  # held
    # bob's mailbox (2 items) may hold 2 more: the third held submission waits, and is not lost
    tight = Quota(max_envelopes=2, max_bytes=1 << 26)
    received = [GroupReceived(item=decode_transit(last.data).group, origin=ALPHA, node=BETA, ttl_ms=TTL_MS)]  # type: ignore[arg-type]
    assert await nodes.stores[BETA].receive(received, now=nodes.now, quota=tight) == [OK]
    assert await nodes.hosts(BETA)
    assert [(i.seq, i.ref) for i in await nodes.mailbox(bob) if i.seq > 2] == [(3, said[0]), (4, said[1])]
    # bob reads his mailbox; the group's next submission orders the waiting one first
    items = await nodes.stores[BETA].pending(bob.account, 1, after_seq=0, limit=100, now=nodes.now)
    await nodes.stores[BETA].ack(bob.account, 1, [i.id for i in items], now=nodes.now)
    said.append(await nodes.submit(bob, bob.g.encrypt(b"b", bob.rng.randbytes), hub=BETA))
    await nodes.flush()
    for device in (alice, carol):
        assert [(i.seq, i.ref) for i in await nodes.mailbox(device) if i.seq > 2] == [(3 + n, ref) for n, ref in enumerate(said)]
    assert [(i.seq, i.ref) for i in await nodes.mailbox(bob)] == [(5, said[2]), (6, said[3])]


async def test_only_the_hub_the_node_follows_hands_it_the_group(nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer that is not the hub beta follows cannot hand beta a group (its own parts, or the
    real ones replayed), before or after the real hand-over commit's copy named beta."""
    alice, bob, carol = await group_of_three(nodes)
    await move_to_beta(nodes, alice, monkeypatch)
    to_beta = await nodes.queued(ALPHA, BETA)
    copy, parts = to_beta[0], to_beta[1:]

    async def from_gamma(items: list[QueuedItem]) -> list[str]:
        received = [GroupReceived(item=decode_transit(q.data).group, origin=GAMMA, node=BETA, ttl_ms=TTL_MS) for q in items]  # type: ignore[arg-type]
        return await nodes.stores[BETA].receive(received, now=nodes.now, quota=QUOTA)

    assert await from_gamma(parts) == ["invalid"] * len(parts)  # beta follows alpha, not gamma
    # the real parts before the commit's copy: they wait in alpha's outbox
    assert set(await nodes.push(ALPHA, BETA, parts[:1])) == {"hub_pending"}
    assert await nodes.push(ALPHA, BETA, [copy]) == [OK]
    assert await from_gamma(parts) == ["invalid"] * len(parts)  # named by alpha: only alpha's count
    assert not await nodes.hosts(BETA)
    await nodes.flush()
    assert await nodes.hosts(BETA) and not await nodes.hosts(ALPHA)
