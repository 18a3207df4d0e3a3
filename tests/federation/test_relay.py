"""Relaying: alpha and gamma reach each other only through beta (three real nodes in-process).

beta forwards envelopes and lookups between its configured peers, gives relayed items the
same durability (its own outbox), and reports back to the origin what became of them; it
refuses to forward for or to nodes it is not configured with ("not_relaying"), back to where an
item came from ("unroutable"), or past the hop limit ("hop_limit").
"""

from __future__ import annotations

import json

import pytest

from sonet.core.client_api import Accepted, Bundles, Devices, ErrorFrame, FetchDevices, SendBatch
from sonet.core.federation_api import Push, PushResult
from sonet.federation.errors import FederationError
from sonet.node.app import RUNTIME_FILE
from tests.node.conftest import NodeParams, StartNode
from tests.node.kit import opaque_envelope, wall_ms

from .net import ALPHA, BETA, GAMMA, NOWHERE, ask, deliveries, mailbox_ids, new_key, peer_link, pin, pin_node, queue_at, tracked, transit, triangle, until


async def test_a_message_and_its_lookups_go_through_the_relay(start_node: StartNode) -> None:
    net = await triangle(start_node)
    async with net.alpha.raw(net.alice.first) as conn:
        env = opaque_envelope((net.carol.address, 1))
        assert isinstance(await conn.request(lambda n: SendBatch(request=n, envelopes=(env,))), Accepted)
    await until(lambda: _has(net.gamma, net.carol.address, env.id), "the envelope reached gamma")

    async def accepted() -> bool:
        async with net.alpha.store() as store:
            rows = await store.deliveries(net.alice.address, 1, [env.id])
        return [(r.state, r.dest) for r in rows] == [("accepted", GAMMA)]

    await until(accepted, "beta's report made the row accepted at alpha")

    async def report_settled() -> bool:  # beta settles it once alpha's answer is back: just after
        async with net.beta.store() as store:
            return await store.outbox_counts() == {}

    await until(report_settled, "the report went out too")


async def _has(node, account: str, msg_id: bytes) -> bool:  # noqa: ANN001
    return msg_id in await mailbox_ids(node, account)


async def test_lookups_and_node_keys_through_the_relay(start_node: StartNode) -> None:
    net = await triangle(start_node)
    federation = net.alpha.node.federation
    assert federation is not None
    devices = await federation.remote_devices(net.carol.address)
    assert isinstance(devices, Devices) and devices.request == 0
    assert devices.account == net.carol.address and [d.device for d in devices.devices] == [1]
    assert await federation.remote_devices(net.carol.address) is devices  # cached
    bundles = await federation.remote_bundles(net.carol.address, [1])
    assert isinstance(bundles, Bundles) and [b.device for b in bundles.bundles] == [1]
    key = await federation.node_key(GAMMA)
    assert key == net.gamma.identity.public.to_bytes()
    async with net.alpha.store() as store:
        assert {p.name: p.key for p in await store.peers()}[GAMMA] == key  # checked, remembered
    with pytest.raises(FederationError) as info:
        await federation.remote_devices(f"nobody@{GAMMA}")
    assert info.value.code == "unknown_account"
    with pytest.raises(FederationError) as info:
        await federation.remote_devices("zed@zeta.example")
    assert info.value.code == "unknown_node"


async def test_a_node_key_that_is_not_the_pin_is_refused(start_node: StartNode) -> None:
    net = await triangle(start_node)
    async with net.alpha.store() as store:
        await store.remove_peer(GAMMA)
    await pin(net.alpha, GAMMA, fingerprint=new_key().public.fingerprint, via=BETA)
    federation = net.alpha.node.federation
    assert federation is not None
    with pytest.raises(FederationError) as info:
        await federation.node_key(GAMMA)
    assert info.value.code == "wrong_identity"
    async with net.alpha.store() as store:
        assert {p.name: p.key for p in await store.peers()}[GAMMA] is None


async def test_reports_of_refusals_travel_back_to_the_origin(start_node: StartNode) -> None:
    net = await triangle(start_node)
    nobody = tracked(net.alpha, net.alice, f"nobody@{GAMMA}")
    await queue_at(net.alpha, nobody)

    async def failed() -> bool:
        return [(r.state, r.code) for r in await deliveries(net.alpha, net.alice, nobody)] == [("failed", "unknown_account")]

    await until(failed, "alpha learnt from beta's report that gamma refused the item")


async def test_the_relay_refuses_what_it_may_not_forward(start_node: StartNode) -> None:
    net = await triangle(start_node)
    key = new_key()
    await pin(net.beta, "mallory.example", fingerprint=key.public.fingerprint)
    carol = net.carol.address
    items = (
        transit(carol, origin="stranger.example"),  # origin not a peer of beta
        transit("dave@delta.example", origin="mallory.example"),  # destination not a peer of beta
        transit("eve@mallory.example", origin="mallory.example"),  # straight back to the sender
        transit(carol, origin="mallory.example", hops=0),  # no hops left
        transit(carol, origin="mallory.example"),  # fine: both are peers of beta
    )
    async with peer_link(net.beta, key, "mallory.example") as link:
        answer = await ask(link, Push(request=5, items=items))
        assert answer == PushResult(request=5, outcomes=("not_relaying", "not_relaying", "unroutable", "hop_limit", "ok"))
        lookup = await ask(link, FetchDevices(request=6, account="dave@delta.example"))
        assert isinstance(lookup, ErrorFrame) and lookup.request == 6 and lookup.code == "not_relaying"
        relayed = await ask(link, FetchDevices(request=7, account=carol))
        assert isinstance(relayed, Devices) and relayed.request == 7 and relayed.account == carol
    await until(lambda: _has(net.gamma, carol, items[4].envelope.id), "the allowed item reached gamma")  # type: ignore[union-attr]
    assert await mailbox_ids(net.gamma, carol) == [items[4].envelope.id]  # type: ignore[union-attr]


async def test_a_lookup_through_a_relay_that_does_not_know_the_destination_is_refused(start_node: StartNode) -> None:
    net = await triangle(start_node)
    await pin(net.alpha, "delta.example", fingerprint=new_key().public.fingerprint, via=BETA)
    federation = net.alpha.node.federation
    assert federation is not None
    with pytest.raises(FederationError) as info:
        await federation.remote_devices("dave@delta.example")
    assert info.value.code == "not_relaying"


async def test_an_item_that_expires_at_the_relay_is_reported_expired(start_node: StartNode, node_params: NodeParams) -> None:
    node_params.federation.update(expire_interval_s=0.1)
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    await pin_node(alpha, beta)
    await pin(alpha, GAMMA, fingerprint=new_key().public.fingerprint, via=BETA)
    await pin_node(beta, alpha)
    await pin(beta, GAMMA, url=NOWHERE, fingerprint=new_key().public.fingerprint)  # down for good
    alice = await alpha.enroll("alice")
    item = tracked(alpha, alice, f"carol@{GAMMA}", expires=wall_ms() + 3000)
    # queued as an ordinary envelope is, 30 days before its expiry: a disappearing message's
    # delivery row goes at its expiry (node/store/vanishing.py), with no status left to report
    await queue_at(alpha, item, now=item.expires - 30 * 24 * 3600 * 1000)

    async def held_by_beta() -> bool:
        async with beta.store() as store:
            return await store.outbox_counts() == {GAMMA: 1}

    async def handed_on() -> bool:  # alpha deletes it once beta's PushResult arrived
        async with alpha.store() as store:
            return await store.outbox_counts() == {}

    await until(held_by_beta, "beta holds the item for gamma")
    await until(handed_on, "alpha handed the item on: only beta can tell what happens")

    async def expired() -> bool:
        return [(r.state, r.code) for r in await deliveries(alpha, alice, item)] == [("failed", "expired")]

    await until(expired, "beta reported the item expired")
    assert beta.node.federation is not None
    [entry] = [p for p in beta.node.federation.snapshot()["peers"] if p["name"] == GAMMA]
    error = entry["last_error"]
    assert error["code"] == "unreachable" and "cannot connect to ws://127.0.0.1:1/federation: " in error["message"]
    assert not error["message"].endswith(": ") and "\n" not in error["message"]


async def test_the_status_shows_routes_links_and_queues(start_node: StartNode) -> None:
    net = await triangle(start_node)
    await queue_at(net.alpha, tracked(net.alpha, net.alice, net.carol.address))

    def peers() -> dict:
        info = json.loads((net.alpha.data_dir / RUNTIME_FILE).read_text())
        return {p["name"]: p for p in info["federation"]["peers"]}

    await until(lambda: peers().get(BETA, {}).get("link") == "connected", "run.json shows the link to beta")
    entry = peers()
    assert entry[BETA]["route"] == [BETA] and entry[BETA]["via"] is None and entry[BETA]["url"] == net.beta.url
    assert entry[GAMMA]["route"] == [BETA, GAMMA] and entry[GAMMA]["via"] == BETA
    assert entry[GAMMA]["link"] == "connected"  # gamma's items take the link to beta
    for field in ("last_error", "next_attempt_at", "queued", "inbound_links"):
        assert field in entry[BETA] and field in entry[GAMMA]
    text = (net.alpha.data_dir / RUNTIME_FILE).read_text()
    assert net.beta.fingerprint not in text and net.gamma.fingerprint not in text
