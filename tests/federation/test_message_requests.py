"""Message requests between nodes (federation/message_requests.py): the access token travels
with the envelope to the recipient's node, which alone checks it; envelopes without a valid
one are charged to the sending device at its home node and to (link peer, origin) and the
mailbox at the destination, whose refusal becomes the sender's failed status. A peer gets
one-time prekeys of an account within its allowance, then bundles without them."""

from __future__ import annotations

import dataclasses

import pytest

from sonet.core.client_api import Accepted, AccessToken, Bundles, FetchBundles, SendBatch
from sonet.core.federation_api import Push, PushResult
from sonet.federation.message_requests import PER_DEVICE, PER_PEER, MessageRequests, RequestAllowance
from sonet.federation.ratelimit import Rate
from tests.node.conftest import NodeParams, StartNode
from tests.node.kit import NodeError, access_token, opaque_envelope

from .net import ALPHA, BETA, ask, mailbox_ids, new_key, peer_link, pin, pin_node, transit


async def test_a_devices_requests_to_another_node_are_charged_at_home(start_node: StartNode) -> None:
    alpha = await start_node(name=ALPHA, registration="open")
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    mallory, alice, bob = await alpha.enroll("mallory"), await alpha.enroll("alice"), await beta.enroll("bob")
    async with beta.raw(bob.first) as conn:
        bobs = (await access_token(conn, bob.address),)

    async def send(conn, access: tuple[AccessToken, ...] = ()) -> None:  # noqa: ANN001
        env = opaque_envelope((bob.address, 1))
        reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(env,), access=access))
        assert isinstance(reply, Accepted)

    async with alpha.raw(mallory.first) as conn:
        for _ in range(int(PER_DEVICE.burst)):
            await send(conn)
        with pytest.raises(NodeError) as info:
            await send(conn)
        assert info.value.code == "message_request_limit"
    # another device of alpha still has its share of bob's requests, and a contact is not limited
    async with alpha.raw(alice.first) as conn:
        await send(conn)
        for _ in range(2 * int(PER_DEVICE.burst)):
            await send(conn, bobs)


async def test_the_destination_checks_the_token_and_bounds_each_peers_requests(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    async with beta.raw(bob.first) as conn:
        token = (await access_token(conn, bob.address)).token
    key = new_key()
    await pin(beta, "peer.example", fingerprint=key.public.fingerprint)
    burst = int(PER_PEER.burst)
    strangers = [transit(bob.address, origin="peer.example") for _ in range(burst + 3)]
    forged = dataclasses.replace(transit(bob.address, origin="peer.example"), access=token[:-1] + bytes([token[-1] ^ 1]))
    contacts = [dataclasses.replace(transit(bob.address, origin="peer.example"), access=token) for _ in range(burst)]
    async with peer_link(beta, key, "peer.example") as link:
        first = await ask(link, Push(request=1, items=tuple(strangers)))
        second = await ask(link, Push(request=2, items=(forged, *contacts)))
        # within one push a token is judged per (address, token): a valid one does not vouch for
        # a forged one for the same account, nor a forged one spoil it
        mixed = [dataclasses.replace(transit(bob.address, origin="peer.example"), access=t.access) for t in (contacts[0], forged, contacts[1])]
        third = await ask(link, Push(request=3, items=tuple(mixed)))
    assert first == PushResult(request=1, outcomes=("ok",) * burst + ("message_request_limit",) * 3)
    assert second == PushResult(request=2, outcomes=("message_request_limit",) + ("ok",) * burst)
    assert third == PushResult(request=3, outcomes=("ok", "message_request_limit", "ok"))
    ids = await mailbox_ids(beta, bob.address)
    assert len(ids) == 2 * burst + 2 and forged.envelope.id not in ids  # type: ignore[union-attr]


async def test_a_peer_gets_one_time_prekeys_within_its_allowance(start_node: StartNode, node_params: NodeParams) -> None:
    node_params.federation = {"one_time_rate": Rate(per_second=1e-9, burst=2)}
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    async with beta.store() as store:
        await store.publish_prekeys(
            bob.address, 1, signed_prekey=None, pq_last_resort=None,
            one_time=[(100 + i, b"x%d" % i) for i in range(10)], pq_one_time=[], max_one_time=200,
        )  # fmt: skip
    key = new_key()
    await pin(beta, "peer.example", fingerprint=key.public.fingerprint)
    async with peer_link(beta, key, "peer.example") as link:
        answers = [await ask(link, FetchBundles(request=n, account=bob.address, devices=(1,))) for n in range(1, 5)]
        # a node asking without them (its device is over its own allowance) gets none either
        unasked = await ask(link, FetchBundles(request=5, account=bob.address, devices=(1,), one_time=False))
    assert [a.bundles[0].one_time for a in answers] == [b"x0", b"x1", None, None]  # type: ignore[attr-defined]
    assert isinstance(unasked, Bundles) and unasked.bundles[0].one_time is None
    async with beta.store() as store:
        assert (await store.prekey_counts(bob.address, 1))[0] == 8


def test_the_allowance_counts_envelopes_and_bytes_per_sender_and_per_mailbox() -> None:
    allowance = RequestAllowance(
        per_device=Rate(per_second=1e-9, burst=3),
        per_device_bytes=Rate(per_second=1e-9, burst=1000),
        per_mailbox=Rate(per_second=1e-9, burst=5),
        per_mailbox_bytes=Rate(per_second=1e-9, burst=10_000),
    )
    requests = MessageRequests(secret=b"s" * 32, allowance=allowance)
    bob = ("bob@alpha.example", 1)
    assert requests.from_device("mallory", bob, 600, now=0) is None
    refusal = requests.from_device("mallory", bob, 600, now=0)  # 1200 bytes > 1000
    assert refusal == "this device sent too many message requests to bob@alpha.example device 1"
    # mallory's refusals spent nothing of bob's mailbox: the others have its 4 remaining
    for sender in ("carol", "dave", "erin"):
        assert requests.from_device(sender, bob, 10, now=0) is None
    assert requests.from_peer("beta.example", "beta.example", bob, 10, now=0)
    assert not requests.from_peer("beta.example", "beta.example", bob, 10, now=0)  # mailbox: 5 taken
    assert requests.from_device("frank", bob, 10, now=0) == "too many message requests are waiting for bob@alpha.example device 1"
    # another node's mailbox: only the sending device's share is charged here
    for _ in range(3):
        assert requests.from_device("frank", ("zoe@beta.example", 1), 10, now=0, local=False) is None
    assert requests.from_device("frank", ("zoe@beta.example", 1), 10, now=0, local=False) is not None


async def test_requests_the_destination_refuses_fail_at_the_origin_and_block_nothing(start_node: StartNode) -> None:
    """The destination answers ``message_request_limit`` for items over a peer's allowance: the
    origin settles them as failed (the sender's status says why) instead of taking the whole
    answer for invalid and pushing the same items for ever, and later items still go."""
    from tests.node.kit import wall_ms

    from .net import deliveries, queue_at, tracked, until

    alpha = await start_node(name=ALPHA, registration="open")
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    burst = int(PER_PEER.burst)
    items = [tracked(alpha, alice, bob.address) for _ in range(burst + 3)]  # queued as the home node allowed them
    await queue_at(alpha, *items)

    async def settled() -> bool:
        return all(row.state != "queued" for row in await deliveries(alpha, alice, *items))

    await until(settled, "every request settled at alpha")
    rows = await deliveries(alpha, alice, *items)
    assert sorted((r.state, r.code) for r in rows).count(("failed", "message_request_limit")) == 3
    assert len(await mailbox_ids(beta, bob.address)) == burst
    async with beta.raw(bob.first) as conn:  # a contact of bob's (his token) still gets through
        token = (await access_token(conn, bob.address)).token
    federation = alpha.node.federation
    assert federation is not None
    later = federation.outbound(opaque_envelope((bob.address, 1)), sender_account=alice.address, sender_device=1, now=wall_ms(), access=token)
    await queue_at(alpha, later)
    await until(lambda: _in_mailbox(beta, bob.address, later.tracking.id), "a later item delivered")  # type: ignore[union-attr]


async def _in_mailbox(node, account: str, msg_id: bytes) -> bool:  # noqa: ANN001
    return msg_id in await mailbox_ids(node, account)
