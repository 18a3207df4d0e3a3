"""A SendBatch's envelopes for another node become outbox items by splicing (federation/
transit.py ``spliced_transit``, issue 14 item 2): on a real node, what is queued is byte for byte
the Transit the full encoder makes, and every envelope Transit.check would refuse is still
refused, with one clear error and nothing stored."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
import trio

from sonet.core import limits
from sonet.core.access import ACCESS_TOKEN_LEN
from sonet.core.client_api import Accepted, AccessToken, SendBatch
from sonet.core.envelope import Envelope, Kind
from sonet.core.federation_api import Transit
from sonet.core.wire import encode_struct, packb
from sonet.federation.transit import envelope_item
from sonet.node.store import OutboundItem

from .conftest import HANG_S, NODE_NAME
from .kit import NodeError, opaque_envelope, wall_ms
from .test_federation_client_api import BETA, BOB, FakeFederation, remote_account, start_federated  # noqa: F401 (a fixture)

TOKEN = bytes(range(ACCESS_TOKEN_LEN))


@dataclass
class IntakeFederation(FakeFederation):
    """The fake federation, making outbox items as federation/service.py does."""

    def outbound(
        self, env: Envelope, *, sender_account: str, sender_device: int, now: int, access: bytes = b"", checked: bool = False
    ) -> OutboundItem:
        self.calls.append(("outbound", env, sender_account, sender_device, now))
        return envelope_item(
            env, origin=NODE_NAME, sender_account=sender_account, sender_device=sender_device, now=now, ttl_ms=3600_000,
            access=access, checked=checked,
        )  # fmt: skip


async def queued(at: Any) -> list[bytes]:
    async with at.store() as store:
        return [item.data for item in await store.outbox(BETA, limit=1000, max_bytes=10**9, now=wall_ms())]


def raw_batch(envelope: list[Any], access: list[Any] | None = None) -> bytes:
    """A SendBatch built by hand: the encoder refuses to make what the node must refuse."""
    return packb([SendBatch.TAG, 1, [envelope], access or []])


def wire(env: Envelope) -> list[Any]:
    return [env.v, env.id, env.to, env.device, env.expires, env.kind, env.body]


async def test_a_batch_for_another_node_queues_the_bytes_the_full_encoder_makes(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        fake = IntakeFederation()
        _bob, fake.devices[BOB] = remote_account()
        alpha = await start_federated(fake, envelope_ttl_ms=3600_000)
        alice = await alpha.node.enroll("alice")
        far = wall_ms() + limits.DEFAULT_ENVELOPE_TTL_MS
        envs = [opaque_envelope(("  BOB@Beta.Example ", 1), expires=far), opaque_envelope((BOB, 2), body=b"")]
        async with alpha.node.raw(alice.first) as conn:
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=tuple(envs), access=(AccessToken(account=BOB, token=TOKEN),)))
        assert isinstance(reply, Accepted)
        made = [call[1] for call in fake.calls if call[0] == "outbound"]  # normalised by the handler
        assert [e.to for e in made] == [BOB, BOB] and made[0].expires < far
        expected = [
            encode_struct(Transit(origin=NODE_NAME, dest=BETA, hops=limits.MAX_HOPS, envelope=env, report=None, access=TOKEN))
            for env in made
        ]
        assert sorted(await queued(alpha.node)) == sorted(expected)


GOOD = opaque_envelope((BOB, 1))
REFUSED = [
    ("short access token", raw_batch(wire(GOOD), [[BOB, TOKEN[:-1]]]), "bad_input"),
    ("long access token", raw_batch(wire(GOOD), [[BOB, TOKEN + b"x"]]), "bad_input"),
    ("unknown kind", raw_batch(wire(replace(GOOD, kind=9))), "bad_input"),
    ("body over the cap", raw_batch(wire(replace(GOOD, body=bytes(limits.MAX_ENVELOPE_BODY + 1)))), "bad_input"),
    ("bad address", raw_batch(wire(replace(GOOD, to="bob@beta..example"))), "bad_input"),
    ("short id", raw_batch(wire(replace(GOOD, id=b"short"))), "bad_input"),
]


@pytest.mark.parametrize("why, data, code", REFUSED, ids=[r[0] for r in REFUSED])
async def test_a_batch_with_an_envelope_no_node_takes_is_refused_and_nothing_queued(
    start_federated: Callable[..., Any], why: str, data: bytes, code: str
) -> None:
    with trio.fail_after(HANG_S):
        fake = IntakeFederation()
        _bob, fake.devices[BOB] = remote_account(devices=1)
        alpha = await start_federated(fake)
        alice = await alpha.node.enroll("alice")
        async with alpha.node.raw(alice.first) as conn:
            await conn.send_encoded(data)
            await conn.closed.wait()
            assert isinstance(conn.error, NodeError) and conn.error.code == code
            assert "\n" not in str(conn.error)
        assert await queued(alpha.node) == [] and not [c for c in fake.calls if c[0] == "outbound"]


async def test_group_and_ephemeral_envelopes_never_become_outbox_items(start_federated: Callable[..., Any]) -> None:
    with trio.fail_after(HANG_S):
        fake = IntakeFederation()
        _bob, fake.devices[BOB] = remote_account(devices=1)
        alpha = await start_federated(fake)
        alice = await alpha.node.enroll("alice")
        async with alpha.node.raw(alice.first) as conn:
            with pytest.raises(NodeError) as refused:
                await conn.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope((BOB, 1), kind=Kind.GROUP),)))
            assert refused.value.code == "bad_input" and "GroupSubmit" in str(refused.value)
            typing = opaque_envelope((BOB, 1), kind=Kind.EPHEMERAL, body=os.urandom(16))
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(typing,)))
            assert isinstance(reply, Accepted) and reply.stored == 0
        assert fake.ephemeral == [typing]  # sent on at once, never queued
        assert await queued(alpha.node) == [] and not [c for c in fake.calls if c[0] == "outbound"]
