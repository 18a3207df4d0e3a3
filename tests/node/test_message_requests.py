"""Inbox protection: message requests (federation/message_requests.py, node/client_access.py),
and the allowance of one-time prekeys (node/client_limits.py).

A sender that presents the recipient account's access token (core/access.py) is a contact;
any other envelope is a message request, within a small allowance per sending device and per
mailbox. An account fetching another's bundles gets one-time prekeys within an allowance, then
bundles without them. Real nodes, raw device connections (tests/node/kit.py).
"""

from __future__ import annotations

import pytest
import trio

from sonet.core.client_api import Accepted, AccessToken, Bundles, FetchBundles, SendBatch
from sonet.federation.ratelimit import Rate
from sonet.federation.message_requests import PER_DEVICE
from sonet.node.client_limits import ClientLimits

from .conftest import HANG_S, NODE_NAME, RunningNode
from .kit import NodeError, access_token, opaque_envelope

ALICE, BOB = f"alice@{NODE_NAME}", f"bob@{NODE_NAME}"
STRANGER_BURST = int(PER_DEVICE.burst)


async def _send(conn, to, *, access: tuple[AccessToken, ...] = (), count: int = 1) -> None:  # noqa: ANN001
    envs = tuple(opaque_envelope(to) for _ in range(count))
    reply = await conn.request(lambda n: SendBatch(request=n, envelopes=envs, access=access))
    assert isinstance(reply, Accepted) and reply.stored == count, reply


async def _refused(conn, to, *, access: tuple[AccessToken, ...] = ()) -> str:  # noqa: ANN001
    with pytest.raises(NodeError) as info:
        await _send(conn, to, access=access)
    assert info.value.code == "message_request_limit"
    return str(info.value)


async def test_a_stranger_gets_a_small_allowance_while_a_contact_and_other_strangers_get_through(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        mallory, carol = await running.enroll("mallory"), await running.enroll("carol")
        async with running.raw(bob.first) as conn:
            bobs = (await access_token(conn, BOB),)
        async with running.raw(mallory.first) as flood:
            for _ in range(STRANGER_BURST):
                await _send(flood, bob.first)
            message = await _refused(flood, bob.first)
            assert message == (
                f"message_request_limit: this device sent too many message requests to {BOB} device 1: "
                "they are not your contact yet; wait for an answer"
            )
            # a contact is not limited by the flood (only by the quota and its own rate)
            async with running.raw(alice.first) as contact:
                await _send(contact, bob.first, access=bobs, count=3 * STRANGER_BURST)
            # another stranger still has its own share of bob's requests
            async with running.raw(carol.first) as other:
                await _send(other, bob.first)
            # mallory's requests to someone else are not spent either
            await _send(flood, alice.first)
        assert len(await running.pending(BOB)) == STRANGER_BURST + 3 * STRANGER_BURST + 1


async def test_strangers_together_cannot_fill_a_mailbox(start_node) -> None:  # noqa: ANN001
    with trio.fail_after(HANG_S):
        at = await start_node(mailbox_max_envelopes=40)  # message requests: at most 10 at once
        alice, bob = await at.enroll("alice"), await at.enroll("bob")
        strangers = [await at.enroll(f"s{n}") for n in range(3)]
        async with at.raw(bob.first) as conn:
            bobs = (await access_token(conn, BOB),)
        async with at.raw(strangers[0].first) as conn:
            await _send(conn, bob.first, count=6)
        async with at.raw(strangers[1].first) as conn:
            await _send(conn, bob.first, count=4)
        async with at.raw(strangers[2].first) as conn:
            message = await _refused(conn, bob.first)
            assert "too many message requests are waiting for" in message
        # the contact has the rest of the quota
        async with at.raw(alice.first) as conn:
            await _send(conn, bob.first, access=bobs, count=30)
            with pytest.raises(NodeError) as info:
                await _send(conn, bob.first, access=bobs)
            assert info.value.code == "mailbox_full"


async def test_tampered_or_borrowed_tokens_make_no_contact(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        mallory = await running.enroll("mallory")
        async with running.raw(alice.first) as conn:
            alices = await access_token(conn, ALICE)
        tampered = AccessToken(account=ALICE, token=alices.token[:-1] + bytes([alices.token[-1] ^ 1]))
        borrowed = AccessToken(account=BOB, token=alices.token)  # alice's token replayed for bob
        async with running.raw(mallory.first) as conn:
            for _ in range(STRANGER_BURST):
                await _send(conn, alice.first, access=(tampered,))
            await _refused(conn, alice.first, access=(tampered,))
            for _ in range(STRANGER_BURST):
                await _send(conn, bob.first, access=(borrowed,))
            await _refused(conn, bob.first, access=(borrowed,))
            # the genuine token makes mallory alice's contact (she wrote to mallory)
            await _send(conn, alice.first, access=(alices,), count=STRANGER_BURST)


# One-time prekeys ---------------------------------------------------------------------------


async def test_a_drainer_gets_bundles_without_one_time_prekeys_past_its_allowance(start_node, node_params) -> None:  # noqa: ANN001
    with trio.fail_after(HANG_S):
        node_params.client_limits = ClientLimits(one_time_per_account=Rate(per_second=1e-9, burst=3))
        at = await start_node()
        _bob, mallory, carol = await at.enroll("bob"), await at.enroll("mallory"), await at.enroll("carol")
        async with at.store() as store:
            await store.publish_prekeys(
                BOB, 1, signed_prekey=None, pq_last_resort=None,
                one_time=[(100 + i, b"x%d" % i) for i in range(20)], pq_one_time=[], max_one_time=200,
            )  # fmt: skip
        async with at.raw(mallory.first) as conn:
            bundles = [await conn.request(lambda n: FetchBundles(request=n, account=BOB, devices=(1,))) for _ in range(6)]
        assert all(isinstance(b, Bundles) for b in bundles)
        one_time = [b.bundles[0].one_time for b in bundles]  # type: ignore[union-attr]
        assert one_time == [b"x0", b"x1", b"x2", None, None, None]
        assert all(b.bundles[0].signed_prekey is not None for b in bundles)  # type: ignore[union-attr]
        # the rest stays for others
        async with at.raw(carol.first) as conn:
            reply = await conn.request(lambda n: FetchBundles(request=n, account=BOB, devices=(1,)))
        assert isinstance(reply, Bundles) and reply.bundles[0].one_time == b"x3"
        async with at.store() as store:
            assert (await store.prekey_counts(BOB, 1))[0] == 16
