"""Sender certificates by reference (client/cert_refs.py) as the SDK runs them against a real
node: a box carries the full certificate until the session shows the peer holds it, then a
32-byte reference; a reference that does not resolve, resolves to someone else's certificate or
to an expired one is refused and nothing is stored."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client import cert_refs
from sonet.client.sdk import RATCHET_MESSAGE, Device
from sonet.client.sessions import Sessions
from sonet.core import limits
from sonet.core.certs import certificate_ref
from sonet.core.client_api import Accepted, SendBatch
from sonet.core.content import Content, encode_content
from sonet.core.crypto import CryptoPolicy
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.sealed_sender import Unsealed, seal, unseal
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, HANG_S, Clock, texts

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (tests/conftest.py)

Register = Callable[..., Awaitable[Device]]


async def _queued(at: RunningNode, recipient: Device) -> list[tuple[int, Unsealed]]:
    """(body size, opened box) of what waits for ``recipient``, as its node will deliver it."""
    me = recipient.state.profile()
    return [
        (len(item.body), unseal(item.body, my_key=me.hpke, my_fp=me.identity.public.fingerprint))
        for item in await at.pending(me.address)
    ]


def _held(device: Device, peer: Device) -> list[bytes]:
    """The references ``device`` holds certificates under for ``peer``'s device 1."""
    address = peer.state.profile().address
    raw = device.state.get(f"peer_cert_refs/{address}/1") or b""
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


async def _send_by_ref(at: RunningNode, sender: Device, recipient: Device, ref: bytes, text: str, now: int) -> bytes:
    """A ratchet message of ``sender``'s session with ``recipient``, boxed with ``ref`` of our
    choosing instead of what the SDK would pick; returns the message id."""
    me, to = sender.state.profile(), recipient.state.profile()
    msg_id = os.urandom(limits.ENVELOPE_ID_LEN)
    message = Sessions(sender.state, me, os.urandom, CryptoPolicy()).encrypt(
        to.address, to.device_id, encode_content(Content(type="text", id=msg_id, sent_at=now, text=text))
    )
    body = seal(certificate_ref=ref, message=message, msg_type=RATCHET_MESSAGE, to_key=to.hpke.public, recipient_fp=to.identity.public.fingerprint)
    envelope = Envelope(
        v=ENVELOPE_VERSION, id=msg_id, to=to.address, device=to.device_id,
        expires=now + limits.DEFAULT_ENVELOPE_TTL_MS, kind=Kind.SEALED, body=body,
    )  # fmt: skip
    async with at.raw(me.identity) as conn:
        reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(envelope,)))
    assert isinstance(reply, Accepted) and reply.stored == 1
    return msg_id


async def _refused(at: RunningNode, recipient: Device, msg_id: bytes, reason: str) -> None:
    result = await recipient.receive()
    assert result.messages == []
    [line] = result.rejected
    assert msg_id.hex() in line and reason in line
    assert not recipient.state.has_message(msg_id)
    await at.settle()
    assert await at.pending(recipient.state.profile().address) == []


async def _established(alpha: RunningNode, alice: Device, bob: Device) -> None:
    """alice writes, bob reads (and receipts), alice reads the receipt: bob holds alice's
    certificate and alice knows it."""
    await alice.send_text(BOB, "hello")
    assert texts(bob, await bob.receive()) == [(alice.state.profile().address, "hello")]
    await alice.receive()


async def test_the_full_certificate_until_the_peer_answered_then_a_reference(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        cert = alice.state.get("sender_certificate")
        assert cert is None  # fetched with the first message
        await alice.send_text(BOB, "first")
        await alice.send_text(BOB, "second, before bob has read anything")
        cert = alice.state.get("sender_certificate")
        assert cert is not None
        [(first_size, first), (second_size, second)] = await _queued(alpha, bob)
        assert first.certificate_raw == cert and second.certificate_raw == cert
        assert texts(bob, await bob.receive()) == [(ALICE, "first"), (ALICE, "second, before bob has read anything")]
        assert _held(bob, alice) == [certificate_ref(cert)]

        # bob's receipt starts a new chain: alice learns that bob holds her certificate
        await alice.receive()
        await alice.send_text(BOB, "third")
        [(third_size, third)] = await _queued(alpha, bob)
        assert third.certificate_raw is None and third.certificate_ref == certificate_ref(cert)
        assert cert.hex() not in (await alpha.pending(BOB))[0].body.hex()  # sealed: not even the reference shows
        assert second_size - third_size > len(cert) - 200  # ~5.5 KB less in hybrid mode (padding buckets aside)
        result = await bob.receive()
        assert result.rejected == [] and texts(bob, result) == [(ALICE, "third")]


async def test_a_renewed_certificate_goes_in_full_again(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await _established(alpha, alice, bob)
        old = alice.state.get("sender_certificate")
        clock.advance(limits.DEFAULT_SENDER_CERT_VALIDITY_MS)  # alice fetches a new one
        await alice.send_text(BOB, "renewed")
        new = alice.state.get("sender_certificate")
        assert new != old
        [(_, box)] = await _queued(alpha, bob)
        assert box.certificate_raw == new
        assert texts(bob, await bob.receive()) == [(ALICE, "renewed")]
        assert _held(bob, alice) == [certificate_ref(new), certificate_ref(old)]


async def test_a_reference_the_recipient_does_not_hold_is_refused(alpha: RunningNode, register: Register) -> None:
    """Lost state: bob's device no longer holds alice's certificate (a restored backup, say).
    Nothing from an unverified sender is accepted: the message is dropped, never stored."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await _established(alpha, alice, bob)
        for ref in _held(bob, alice):
            bob.state.delete(f"peer_cert/{ref.hex()}")
        sent = await alice.send_text(BOB, "by reference")
        [(_, box)] = await _queued(alpha, bob)
        assert box.certificate_ref is not None
        await _refused(alpha, bob, sent.id, "a reference this device does not hold")


async def test_a_reference_to_another_senders_certificate_does_not_impersonate(alpha: RunningNode, register: Register) -> None:
    """carol knows alice's certificate (bob holds it) and names it in a message of her own
    session with bob: the certificate resolves, but the message does not decrypt as alice's."""
    with trio.fail_after(HANG_S * 2):
        alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
        await _established(alpha, alice, bob)
        await _established(alpha, carol, bob)
        alice_ref = certificate_ref(alice.state.get("sender_certificate") or b"")
        assert alice_ref in _held(bob, alice)
        msg_id = await _send_by_ref(alpha, carol, bob, alice_ref, "I am alice", alpha.node.clock_ms())
        await _refused(alpha, bob, msg_id, "decryption failed")
        # and a reference bob holds for nobody
        msg_id = await _send_by_ref(alpha, carol, bob, os.urandom(32), "I am nobody", alpha.node.clock_ms())
        await _refused(alpha, bob, msg_id, "a reference this device does not hold")
        # carol's honest messages still arrive
        await carol.send_text(BOB, "carol here")
        assert texts(bob, await bob.receive()) == [(CAROL, "carol here")]


async def test_a_held_certificate_is_checked_for_expiry_at_use(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice_clock = Clock()  # alice's clock stops: she keeps her certificate past its expiry
        alice_clock.now_ms = clock()
        alice, bob = await register(alpha, "alice", clock=alice_clock), await register(alpha, "bob")
        await _established(alpha, alice, bob)
        clock.advance(limits.DEFAULT_SENDER_CERT_VALIDITY_MS + 3600 * 1000)
        late = await alice.send_text(BOB, "by reference to an expired certificate")
        [(_, box)] = await _queued(alpha, bob)
        assert box.certificate_ref is not None
        await _refused(alpha, bob, late.id, "expired")


async def test_what_each_side_knows_survives_a_restart(alpha: RunningNode, register: Register, make_device: Callable[..., Device]) -> None:
    """Both halves are in the device state, not only in memory."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await _established(alpha, alice, bob)
        sent = cert_refs.load_sent(alice.state, BOB, 1)
        assert sent is not None and sent.known
        alice2, bob2 = make_device("alice"), make_device("bob")
        await alice2.send_text(BOB, "after a restart")
        [(_, box)] = await _queued(alpha, bob)
        assert box.certificate_ref is not None
        assert texts(bob2, await bob2.receive()) == [(ALICE, "after a restart")]
