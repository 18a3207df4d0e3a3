"""Regression tests for attacks found in review: each must fail now."""

from __future__ import annotations

import os
import types

import pytest
import trio

import sonet.core.certs as certs
import sonet.client.sdk as sdk
from sonet.core import limits
from sonet.core.certs import issue_certificate
from sonet.core.client_api import Accepted, FetchBundles, FetchDevices, SendBatch
from sonet.core.content import Content, encode_content
from sonet.core.crypto import CryptoMode, CryptoPolicy, SigningKey
from sonet.core.device import verify_device_record
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.ratchet import PrekeyBundle, encrypt, initiate, verify_bundle, verify_prekey
from sonet.core.sealed_sender import seal

from .conftest import ALICE, BOB, HANG_S, texts

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)


async def test_a_session_with_someone_elses_x25519_identity_key_cannot_pass_as_that_sender(alpha, register, clock, monkeypatch) -> None:
    """Mallory holds Bob's (public) sender certificate and identity key; she starts a PQXDH
    session naming Bob's identity but her own X25519 identity key. Alice must refuse it."""
    with trio.fail_after(HANG_S):
        alice, bob, mallory = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "mallory")
        captured = []
        real_verify = certs.verify_certificate

        def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            cert = real_verify(*args, **kwargs)
            captured.append(cert)
            return cert

        monkeypatch.setattr(certs, "verify_certificate", spy)
        await bob.send_text(f"mallory@{alpha.config.name}", "hi mallory")
        texts(mallory, await mallory.receive())
        monkeypatch.setattr(certs, "verify_certificate", real_verify)
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
        # minimum classical: each device takes sessions in any mode its keys run
        await alice.register(ALICE, alpha.url, await alpha.mint_invite(), mode=alice_mode, minimum=CryptoMode.CLASSICAL)
        await bob.register(BOB, alpha.url, await alpha.mint_invite(), mode=bob_mode, minimum=CryptoMode.CLASSICAL)
        await bob.send_text(ALICE, "bob to alice")
        received = await alice.receive()
        assert texts(alice, received) == [(BOB, "bob to alice")] and received.rejected == []
        await alice.send_text(BOB, "alice to bob")
        received = await bob.receive()
        assert texts(bob, received) == [(ALICE, "alice to bob")] and received.rejected == []


async def test_a_flood_of_typing_indicators_cannot_hang_a_send(alpha, register, monkeypatch) -> None:
    """Deliveries nobody reads during a send must not block the connection's reader."""
    alice, bob, mallory = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "mallory")
    await mallory.send_text(ALICE, "hello")
    texts(alice, await alice.receive())
    flooded = trio.Event()
    real_fetch = sdk.fetch_account
    first = [True]

    async def slow_fetch(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if first[0]:
            first[0] = False
            await flooded.wait()  # alice's send sits between two requests while the flood arrives
        return await real_fetch(*args, **kwargs)

    monkeypatch.setattr(sdk, "fetch_account", slow_fetch)
    outcome: list[bool] = []

    async def alice_sends() -> None:
        with trio.move_on_after(HANG_S) as scope:
            await alice.send_text(BOB, "hi bob")
        outcome.append(scope.cancelled_caught)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(alice_sends)
        await trio.sleep(0.3)
        for _ in range(80):
            await mallory.send_typing(ALICE)
        flooded.set()
    assert outcome == [False]
    assert texts(bob, await bob.receive()) == [(ALICE, "hi bob")]


async def test_a_brief_identity_swap_does_not_unpin_the_device_list(tmp_path) -> None:
    """A node serving another account key once (during a recv) must not make an older list of
    the real key acceptable afterwards."""
    from sonet.client.directory import fetch_account
    from sonet.client.state import DeviceState
    from sonet.core.address import parse_address
    from sonet.core.client_api import DeviceEntry
    from sonet.core.crypto import HpkePrivateKey, SigningKey
    from sonet.core.device import make_device_record
    from sonet.core.errors import VerifyError

    from .fake_directory import FakeConnection, FakeLog

    real, rogue = (SigningKey.generate(CryptoMode.HYBRID, os.urandom) for _ in range(2))
    keys = [SigningKey.generate(CryptoMode.HYBRID, os.urandom) for _ in range(2)]
    records = [
        make_device_record(account=BOB, identity=k, hpke=HpkePrivateKey.generate(CryptoMode.HYBRID, os.urandom).public, created=1)
        for k in keys
    ]
    fps = [k.public.fingerprint for k in keys]
    # the node's directory log: every answer below is a properly proven new leaf
    log = FakeLog(BOB.split("@", 1)[1])

    def publish(key: SigningKey, version: int, count: int) -> None:
        log.append(BOB, key, devices=tuple(fps[:count]), version=version)
        log.records[BOB] = tuple(DeviceEntry(device=i + 1, record=records[i]) for i in range(count))

    state, conn, bob, policy = DeviceState(tmp_path / "h"), FakeConnection(log), parse_address(BOB), CryptoPolicy()
    publish(real, 3, 1)
    assert (await fetch_account(conn, state, bob, policy=policy, now=1)).device_list.version == 3
    publish(rogue, 1, 1)
    await fetch_account(conn, state, bob, policy=policy, now=2, require_trusted=False)  # e.g. during recv
    publish(real, 2, 2)
    with pytest.raises(VerifyError, match="older than version 3"):
        await fetch_account(conn, state, bob, policy=policy, now=3)
    state.close()


async def test_junk_whose_certificate_names_an_unknown_node_is_dropped_not_kept(alpha, register, clock) -> None:  # noqa: ANN001
    """A definite lookup failure (unknown_node) must not keep the envelope in the mailbox: junk
    that names a made-up node would otherwise sit there until it expires and fill the quota."""
    with trio.fail_after(HANG_S):
        alice, mallory = await register(alpha, "alice"), await register(alpha, "mallory")
        me = mallory.state.profile()
        fake_node = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
        async with alpha.raw(me.identity) as conn:
            devices = await conn.request(lambda n: FetchDevices(request=n, account=ALICE))
            record = verify_device_record(devices.devices[0].record, policy=CryptoPolicy(), account=ALICE)
            envelopes = []
            for _ in range(5):
                cert = issue_certificate(fake_node, node="nowhere.example", account="m@nowhere.example", device=1,
                                         identity=me.identity.public, now=clock())
                body = seal(certificate=cert, message=b"junk", msg_type=1, to_key=record.hpke, recipient_fp=record.fingerprint)
                envelopes.append(Envelope(v=ENVELOPE_VERSION, id=os.urandom(16), to=ALICE, device=1,
                                          expires=clock() + limits.DEFAULT_ENVELOPE_TTL_MS, kind=Kind.SEALED, body=body))
            assert isinstance(await conn.request(lambda n: SendBatch(request=n, envelopes=tuple(envelopes))), Accepted)
        result = await alice.receive()
        assert len(result.rejected) == 5 and all("dropped envelope" in line for line in result.rejected), result.rejected
        assert result.messages == []
        assert await alpha.pending(ALICE) == []
