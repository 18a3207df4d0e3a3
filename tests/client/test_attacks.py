"""Regression tests for attacks found in review: each must fail now."""

from __future__ import annotations

import os
import types

import pytest
import trio

import client.sdk as sdk
from core import limits
from core.client_api import Accepted, FetchBundles, SendBatch
from core.content import Content, encode_content
from core.crypto import CryptoMode, CryptoPolicy
from core.device import verify_device_record
from core.envelope import ENVELOPE_VERSION, Envelope, Kind
from core.ratchet import PrekeyBundle, encrypt, initiate, verify_bundle, verify_prekey
from core.sealed_sender import seal

from .conftest import ALICE, BOB, HANG_S, texts


async def test_a_session_with_someone_elses_x25519_identity_key_cannot_pass_as_that_sender(alpha, register, clock, monkeypatch) -> None:
    """Mallory holds Bob's (public) sender certificate and identity key; she starts a PQXDH
    session naming Bob's identity but her own X25519 identity key. Alice must refuse it."""
    with trio.fail_after(HANG_S):
        alice, bob, mallory = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "mallory")
        captured = []
        real_open = sdk.open_sealed

        def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            opened = real_open(*args, **kwargs)
            captured.append(opened[0])
            return opened

        monkeypatch.setattr(sdk, "open_sealed", spy)
        await bob.send_text(f"mallory@{alpha.config.name}", "hi mallory")
        texts(mallory, await mallory.receive())
        monkeypatch.setattr(sdk, "open_sealed", real_open)
        bob_cert = next(c for c in captured if c.account == BOB)

        me = mallory.state.profile()
        async with alpha.raw(me.identity) as conn:
            reply = await conn.request(lambda n: FetchBundles(request=n, account=ALICE, devices=(1,)))
            [b] = reply.bundles
            rec = verify_device_record(b.record, policy=CryptoPolicy(), account=ALICE)
            bundle = verify_bundle(
                PrekeyBundle(
                    mode=rec.identity.mode, identity=rec.identity, identity_dh=rec.identity_dh,
                    signed_prekey=verify_prekey(b.signed_prekey, rec.identity),
                    pq_prekey=verify_prekey(b.pq_prekey, rec.identity),
                    one_time_prekey=verify_prekey(b.one_time, rec.identity) if b.one_time else None,
                )
            )
            fake_bob = types.SimpleNamespace(public=bob_cert.identity, mode=bob_cert.identity.mode)
            _header, state = initiate(mode=rec.identity.mode, identity=fake_bob, identity_dh_secret=me.identity_dh, bundle=bundle, rng=os.urandom)
            msg_id = os.urandom(16)
            message, state = encrypt(state, encode_content(Content(type="text", id=msg_id, sent_at=clock(), text="send 1 BTC to mallory -- Bob")))
            body = seal(certificate=bob_cert.raw, message=message, msg_type=1, to_key=rec.hpke, recipient_fp=rec.fingerprint)
            env = Envelope(v=ENVELOPE_VERSION, id=msg_id, to=ALICE, device=1, expires=clock() + limits.DEFAULT_ENVELOPE_TTL_MS, kind=Kind.SEALED, body=body)
            assert isinstance(await conn.request(lambda n: SendBatch(request=n, envelopes=(env,))), Accepted)

        result = await alice.receive()
        assert texts(alice, result) == []
        assert any("another X25519 identity key" in line for line in result.rejected)
        # the forgery did not replace Alice's session with Bob: they still talk both ways
        await bob.send_text(ALICE, "real bob")
        assert texts(alice, await alice.receive()) == [(BOB, "real bob")]
        await alice.send_text(BOB, "reply to bob")
        assert texts(bob, await bob.receive()) == [(ALICE, "reply to bob")]


@pytest.mark.parametrize("alice_mode, bob_mode", [(CryptoMode.PQ, CryptoMode.HYBRID), (CryptoMode.CLASSICAL, CryptoMode.HYBRID)])
async def test_devices_of_different_modes_talk_in_their_common_mode(clock, start_node, make_device, alice_mode, bob_mode) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=CryptoMode.CLASSICAL)
        alice, bob = make_device("alice"), make_device("bob")
        policy = CryptoPolicy(CryptoMode.CLASSICAL)
        alice._policy = bob._policy = policy  # accept every mode on the device side for this test
        await alice.register(ALICE, alpha.url, await alpha.mint_invite(), mode=alice_mode)
        await bob.register(BOB, alpha.url, await alpha.mint_invite(), mode=bob_mode)
        await bob.send_text(ALICE, "bob to alice")
        received = await alice.receive()
        assert texts(alice, received) == [(BOB, "bob to alice")] and received.rejected == []
        await alice.send_text(BOB, "alice to bob")
        received = await bob.receive()
        assert texts(bob, received) == [(ALICE, "alice to bob")] and received.rejected == []
