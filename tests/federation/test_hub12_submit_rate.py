"""A hub takes another node's group submissions at a bounded rate (federation/inbound.py
``group_submit_rate``, node.toml ``[budgets] peer_group_submits_*``): each SUBMIT spends a token
of the node that answers for it; past them that item alone is refused ``rate_limited``, a
RETRY_LATER outcome (the pusher keeps it and pushes it again later), the rest of the push is
taken, other nodes keep their own buckets, and the refusal is in the audit log and metrics.

Before, a member node's SUBMITs were limited only by the peer push rate (20,000 items a second)
while each commit costs the hub about a millisecond to verify."""

from __future__ import annotations

import os
import tomllib

import pytest

from sonet.core import limits
from sonet.core.federation_api import RETRY_LATER, Push, PushResult, Transit
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core.mls.messages import Add
from sonet.federation.ratelimit import Rate
from sonet.federation.settings import FederationSettings
from sonet.node.app import federation_settings
from sonet.node.config import ConfigError, NodeConfig
from sonet.node.audit import read_entries
from tests.core.groups.devices import Device
from tests.node.conftest import NodeParams, RunningNode, StartNode
from tests.node.group_kit import create_group, group_items, mls_device, submit
from tests.node.kit import wall_ms

from .net import ALPHA, BETA, ask, new_key, peer_link, pin, pin_node, transit, until

PEER, OTHER = "peer.example", "other.example"
#: a peer's bucket: two submissions, then one more every 10 s of the node's (test) clock
RATE = Rate(per_second=0.1, burst=2)


class Clock:
    """The nodes' clock: still unless a test moves it (a bucket refills only then)."""

    def __init__(self) -> None:
        self.now = wall_ms()

    def __call__(self) -> int:
        return self.now


def pushed_text(device: Device, group: bytes, *, origin: str, dest: str = BETA) -> Transit:
    """A SUBMIT of an application message of the group's current epoch, as ``origin`` pushes it."""
    item = GroupItem(
        kind=ItemKind.SUBMIT, ref=os.urandom(16), group=group, epoch=device.g.epoch, seq=0,
        message=device.g.encrypt(os.urandom(16), device.rng.randbytes).to_bytes(), welcome=b"", members=(), outcome="", hub="",
    )  # fmt: skip
    return Transit(origin=origin, dest=dest, hops=limits.MAX_HOPS, envelope=None, report=None, group=item)


def ref(item: Transit) -> bytes:
    assert item.group is not None
    return item.group.ref


async def refs_of(node: RunningNode, account: str) -> list[bytes]:
    return [i.ref for i in group_items(await node.pending(account))]


def audited(node: RunningNode) -> list[dict]:
    node.node.audit_stream.write()
    return [e.fields for e in read_entries(node.data_dir) if e.kind == "rate_limited"]


async def test_a_peer_over_its_submit_rate_is_refused_for_now_and_taken_after_the_refill(
    start_node: StartNode, node_params: NodeParams
) -> None:
    clock = Clock()
    node_params.clock_ms = clock
    node_params.federation.update(group_submit_rate=RATE)
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    device = mls_device(bob.first)
    eve, fay = Device.new(f"eve@{PEER}"), Device.new(f"fay@{OTHER}")
    async with beta.raw(bob.first) as conn:  # bob's group at beta; peer and other are member nodes
        group = await create_group(conn, device)
        staged, message, welcome = device.g.commit(device.rng.randbytes, proposals=[Add(eve.key_package), Add(fay.key_package)])
        await submit(conn, group, message, hub=BETA, welcome=welcome)
        device.g.merge(staged)
    peer_key, other_key = new_key(), new_key()
    await pin(beta, PEER, fingerprint=peer_key.public.fingerprint)
    await pin(beta, OTHER, fingerprint=other_key.public.fingerprint)
    before = await refs_of(beta, bob.address)

    first = [pushed_text(device, group, origin=PEER) for _ in range(3)]
    envelope = transit(bob.address, origin=PEER)  # not a submission: no token spent, taken
    async with peer_link(beta, peer_key, PEER) as link:
        answer = await ask(link, Push(request=1, items=(*first, envelope)))
        # under its rate: taken; the third past it: refused for now, the rest of the push taken
        assert answer == PushResult(request=1, outcomes=("ok", "ok", "rate_limited", "ok"))
        assert "rate_limited" in RETRY_LATER
        again = await ask(link, Push(request=2, items=(first[2],)))
        assert again == PushResult(request=2, outcomes=("rate_limited",)), "the bucket refilled without the clock moving"

    # another member node has its own bucket: untouched by peer's
    others = [pushed_text(device, group, origin=OTHER) for _ in range(2)]
    async with peer_link(beta, other_key, OTHER) as link:
        answer = await ask(link, Push(request=1, items=tuple(others)))
    assert answer == PushResult(request=1, outcomes=("ok", "ok"))
    # a peer naming another node's origin spends its own bucket, not that node's
    async with peer_link(beta, peer_key, PEER) as link:
        lying = await ask(link, Push(request=3, items=(pushed_text(device, group, origin=OTHER),)))
    assert lying == PushResult(request=3, outcomes=("rate_limited",))

    # the refused one was not ordered: bob has the others' items only
    assert await refs_of(beta, bob.address) == before + [ref(first[0]), ref(first[1]), ref(others[0]), ref(others[1])]
    async with beta.store() as store:
        kept = await store._read(lambda conn: conn.execute("SELECT count(*) FROM hub_refs WHERE ref = ?", (ref(first[2]),)).fetchone())
    assert kept[0] == 0
    entries = audited(beta)
    assert [(e["peer"], e["limit"]) for e in entries] == [(PEER, "peer_group_submits")] and entries[0]["count"] == 3, entries

    clock.now += 10_000  # one token back: peer's push of it again is taken
    async with peer_link(beta, peer_key, PEER) as link:
        answer = await ask(link, Push(request=4, items=(first[2], pushed_text(device, group, origin=PEER))))
    assert answer == PushResult(request=4, outcomes=("ok", "rate_limited"))
    assert (await refs_of(beta, bob.address))[-1] == ref(first[2])


async def test_a_member_nodes_submissions_past_the_rate_wait_in_its_outbox_and_arrive_in_order(
    start_node: StartNode, node_params: NodeParams
) -> None:
    """Real nodes: bob@beta sends four texts to his group at alpha, whose bucket for beta holds
    two. Beta's outbox keeps the other two (and nothing of them is lost or reordered) and pushes
    them again at its expiry ticks; once alpha's clock has refilled the bucket they are ordered,
    after the first two."""
    clock = Clock()
    node_params.clock_ms = clock
    node_params.federation.update(group_submit_rate=RATE, expire_interval_s=0.2)  # beta tries again this often
    alpha = await start_node(name=ALPHA, registration="open")
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    alice_mls, bob_mls = mls_device(alice.first), mls_device(bob.first)
    async with alpha.raw(alice.first) as conn:
        group = await create_group(conn, alice_mls)
        staged, message, welcome = alice_mls.g.commit(alice_mls.rng.randbytes, proposals=[Add(bob_mls.key_package)])
        await submit(conn, group, message, hub=ALPHA, welcome=welcome)
    alice_mls.g.merge(staged)

    async def welcomed() -> bool:
        items = group_items(await beta.pending(bob.address))
        return bool(items) and bool(items[0].welcome)

    await until(welcomed, "bob's Welcome")
    bob_mls.join(group_items(await beta.pending(bob.address))[0].welcome)

    texts = [f"text {n}".encode() for n in range(4)]
    async with beta.raw(bob.first) as conn:
        sent = [await submit(conn, group, bob_mls.g.encrypt(text, bob_mls.rng.randbytes), hub=ALPHA) for text in texts]

    async def ordered(count: int) -> bool:
        return len([r for r in await refs_of(alpha, alice.address) if r in sent]) >= count

    await until(lambda: ordered(2), "the first two texts at the hub")
    await until(lambda: any(e["peer"] == BETA for e in audited(alpha)), "alpha refused beta's submissions past its rate")
    async with beta.store() as store:
        waiting = await store.outbox(ALPHA, limit=100, max_bytes=limits.MAX_PUSH_BYTES, now=clock(), after=0)
    assert len(waiting) == 2, "beta's outbox no longer holds the two submissions alpha refused for now"
    assert [r for r in await refs_of(alpha, alice.address) if r in sent] == sent[:2]

    clock.now += 20_000  # alpha's bucket for beta refills (two tokens)
    await until(lambda: ordered(4), "the last two texts at the hub")
    items = [i for i in group_items(await alpha.pending(alice.address)) if i.ref in sent]
    assert [i.ref for i in items] == sent
    assert [i.seq for i in items] == sorted(i.seq for i in items)
    assert [alice_mls.g.process(i.message).data for i in items] == texts  # type: ignore[union-attr]


def test_the_rate_is_a_budgets_key_reaching_the_federation_settings() -> None:
    base = {"name": "alpha.example", "listen": "127.0.0.1:0"}
    assert federation_settings(NodeConfig.from_dict(base)).group_submit_rate == FederationSettings().group_submit_rate == Rate(100, 10_000)
    tuned = NodeConfig.from_dict({**base, "budgets": {"peer_group_submits_per_second": 2.5, "peer_group_submits_burst": 40}})
    assert NodeConfig.from_dict(tomllib.loads(tuned.to_toml())) == tuned
    assert federation_settings(tuned).group_submit_rate == Rate(per_second=2.5, burst=40)
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_dict({**base, "budgets": {"peer_group_submits_burst": 0}}, source="node.toml")
    assert str(info.value).startswith("node.toml: budgets.peer_group_submits_burst = 0 is not allowed (a whole number from 1 to")
