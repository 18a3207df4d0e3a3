"""What a live node offers devices for end-to-end sessions: account identity and device lists
at registration, prekeys and bundles, sender certificates, and DeviceMismatch on SendBatch."""

from __future__ import annotations

import os

import pytest
import trio

from sonet.core import limits
from sonet.core.certs import verify_certificate
from sonet.core.client_api import (
    Accepted,
    Bundles,
    DeviceMismatch,
    Devices,
    FetchBundles,
    FetchDevices,
    GetSenderCertificate,
    Ping,
    Pong,
    PrekeysPublished,
    PublishPrekeys,
    Register,
    Registered,
    SendBatch,
    SenderCertificate,
)
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.device_list import encode_account_identity, verify_device_list
from sonet.core.envelope import Kind
from sonet.core.invite import parse_invite
from sonet.core.ratchet.prekeys import MLKEM768, X25519, verify_prekey
from sonet.node.app import now_ms

from .conftest import HANG_S, NODE_NAME, RunningNode
from .kit import Account, Member, NodeError, RawConnection, new_identity, opaque_envelope, prekey

ALICE = f"alice@{NODE_NAME}"
BOB = f"bob@{NODE_NAME}"
CAROL = f"carol@{NODE_NAME}"


async def _stats(at: RunningNode) -> dict[str, int]:
    async with at.store() as store:
        return await store.stats()


def publish(
    *,
    signed: bytes | None = None,
    last_resort: bytes | None = None,
    one_time: tuple[bytes, ...] = (),
    pq_one_time: tuple[bytes, ...] = (),
):  # noqa: ANN201
    return lambda n: PublishPrekeys(
        request=n, signed_prekey=signed, pq_last_resort=last_resort, one_time=one_time, pq_one_time=pq_one_time
    )


async def counts(conn: RawConnection) -> tuple[int, int]:
    """The one-time prekeys the node holds for the device (a PublishPrekeys with nothing)."""
    reply = await conn.request(publish())
    assert isinstance(reply, PrekeysPublished)
    return reply.one_time_left, reply.pq_one_time_left


# Registration with an account identity and a device list -------------------------------


async def test_registration_stores_account_identity_and_device_list(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        await running.enroll("bob")
        async with running.store() as store:
            row = await store.account(ALICE)
        assert row is not None and row.device_list_version == 1
        assert row.account_identity == alice.identity_bytes
        async with running.raw((await running.enroll("carol")).first) as conn:
            reply = await conn.request(lambda n: FetchDevices(request=n, account=ALICE))
        assert isinstance(reply, Devices)
        assert (reply.account, reply.account_identity, reply.device_list) == (ALICE, alice.identity_bytes, row.device_list)
        listed = verify_device_list(reply.device_list, account_key=alice.key.public, account=ALICE)
        assert (listed.version, listed.devices) == (1, (alice.first.fingerprint,))
        assert [(d.device, d.record) for d in reply.devices] == [(1, alice.first.record)]


def _refused_registrations() -> list[tuple[str, str]]:
    return [
        ("list signed by another key", "device_list_forged"),
        ("list for another account", "device_list_mismatch"),
        ("list version 2", "bad_device_list"),
        ("list without the device", "bad_device_list"),
        ("list with another device too", "bad_device_list"),
        ("garbage account identity", "bad_input"),
        ("classical account identity", "crypto_mode_refused"),
        ("garbage device list", "device_list_malformed"),
    ]


@pytest.mark.parametrize(("case", "code"), _refused_registrations(), ids=[c for c, _ in _refused_registrations()])
async def test_registration_refuses_a_bad_identity_or_list(running: RunningNode, case: str, code: str) -> None:
    with trio.fail_after(HANG_S):
        secret = parse_invite(await running.mint_invite())[1]
        account, member, stranger = Account(address=ALICE), Member.new(ALICE), new_identity()
        identity, fps, version = account.identity_bytes, [member.fingerprint], 1
        list_key, list_account = account.key, ALICE
        if case == "list signed by another key":
            list_key = stranger
        elif case == "list for another account":
            list_account = BOB
        elif case == "list version 2":
            version = 2
        elif case == "list without the device":
            fps = [stranger.public.fingerprint]
        elif case == "list with another device too":
            fps = [member.fingerprint, stranger.public.fingerprint]
        elif case == "garbage account identity":
            identity = b"\xa1\x01\x02"
        elif case == "classical account identity":
            list_key = SigningKey.generate(CryptoMode.CLASSICAL, os.urandom)
            identity = encode_account_identity(list_key)
        device_list = account.sign_list(fps, version=version, key=list_key, account=list_account)
        if case == "garbage device list":
            device_list = b"\x00not a list"
        async with running.raw(member) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(
                    lambda n: Register(
                        request=n, user="alice", invite=secret, record=member.record, account_identity=identity, device_list=device_list,
                        keys=member.keys,
                    )
                )
            assert err.value.code == code
            stats = await _stats(running)
            assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (0, 0, 1)  # nothing written
            # the same connection and invite still register with a correct list
            good = account.sign_list([member.fingerprint], version=1)
            reply = await conn.request(
                lambda n: Register(
                    request=n, user="alice", invite=secret, record=member.record, account_identity=account.identity_bytes, device_list=good,
                    keys=member.keys,
                )
            )
            assert isinstance(reply, Registered) and reply.account == ALICE


# Prekeys ------------------------------------------------------------------------------


async def test_publish_prekeys_and_counts_in_welcome(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        me = alice.first.identity
        async with running.raw(alice.first) as conn:
            assert (conn.welcome.one_time_left, conn.welcome.pq_one_time_left) == (0, 0)
            reply = await conn.request(
                publish(
                    signed=prekey(me, X25519, 100),
                    last_resort=prekey(me, MLKEM768, 100, last_resort=True),
                    one_time=tuple(prekey(me, X25519, i) for i in range(3)),
                    pq_one_time=tuple(prekey(me, MLKEM768, i) for i in range(2)),
                )
            )
            assert isinstance(reply, PrekeysPublished) and (reply.one_time_left, reply.pq_one_time_left) == (3, 2)
            # more one-time keys are added; an id already held is ignored
            reply = await conn.request(publish(one_time=(prekey(me, X25519, 2), prekey(me, X25519, 3))))
            assert (reply.one_time_left, reply.pq_one_time_left) == (4, 2)
            assert await counts(conn) == (4, 2)
        async with running.raw(alice.first) as conn:
            assert (conn.welcome.one_time_left, conn.welcome.pq_one_time_left) == (4, 2)


def _refused_prekeys() -> list[tuple[str, str]]:
    return [
        ("signed by another key", "verify_failed"),
        ("signature flipped", "verify_failed"),
        ("one-time key signed by another key", "verify_failed"),
        ("not a prekey", "bad_input"),
        ("ML-KEM as signed prekey", "wrong_prekey_kind"),
        ("X25519 as last resort", "wrong_prekey_kind"),
        ("last resort not marked", "wrong_prekey_kind"),
        ("ML-KEM as one-time X25519", "wrong_prekey_kind"),
        ("X25519 as one-time ML-KEM", "wrong_prekey_kind"),
        ("last resort as one-time ML-KEM", "wrong_prekey_kind"),
        ("signed prekey marked last resort", "wrong_prekey_kind"),
        ("one-time id of the signed prekey", "bad_prekey_id"),
    ]


@pytest.mark.parametrize(("case", "code"), _refused_prekeys(), ids=[c for c, _ in _refused_prekeys()])
async def test_publish_refuses_forged_or_misplaced_prekeys(running: RunningNode, case: str, code: str) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        me, other = alice.first.identity, new_identity()
        good_signed = prekey(me, X25519, 50)
        fields: dict[str, object] = {
            "signed": good_signed,
            "last_resort": prekey(me, MLKEM768, 50, last_resort=True),
            "one_time": (prekey(me, X25519, 1),),
            "pq_one_time": (prekey(me, MLKEM768, 1),),
        }
        if case == "signed by another key":
            fields["signed"] = prekey(other, X25519, 50)
        elif case == "signature flipped":
            fields["signed"] = good_signed[:-1] + bytes([good_signed[-1] ^ 1])
        elif case == "one-time key signed by another key":
            fields["one_time"] = (prekey(me, X25519, 1), prekey(other, X25519, 2))
        elif case == "not a prekey":
            fields["pq_one_time"] = (b"\xa0",)
        elif case == "ML-KEM as signed prekey":
            fields["signed"] = prekey(me, MLKEM768, 50)
        elif case == "X25519 as last resort":
            fields["last_resort"] = prekey(me, X25519, 50, last_resort=True)
        elif case == "last resort not marked":
            fields["last_resort"] = prekey(me, MLKEM768, 50)
        elif case == "ML-KEM as one-time X25519":
            fields["one_time"] = (prekey(me, MLKEM768, 1),)
        elif case == "X25519 as one-time ML-KEM":
            fields["pq_one_time"] = (prekey(me, X25519, 1),)
        elif case == "last resort as one-time ML-KEM":
            fields["pq_one_time"] = (prekey(me, MLKEM768, 1, last_resort=True),)
        elif case == "signed prekey marked last resort":
            fields["signed"] = prekey(me, X25519, 50, last_resort=True)
        elif case == "one-time id of the signed prekey":
            fields["one_time"] = (prekey(me, X25519, 50),)
        async with running.raw(alice.first) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(publish(**fields))  # type: ignore[arg-type]
            assert err.value.code == code
            assert await counts(conn) == (0, 0)  # nothing of the request was stored
        async with running.raw((await running.enroll("bob")).first) as conn:
            reply = await conn.request(lambda n: FetchBundles(request=n, account=ALICE, devices=()))
        assert isinstance(reply, Bundles)
        first = alice.first.keys  # what the device registered with, and nothing of the refused request
        assert [(b.signed_prekey, b.pq_prekey, b.one_time) for b in reply.bundles] == [(first.signed_prekey, first.pq_last_resort, None)]


async def test_publish_limits_one_time_prekeys(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        me, cap = alice.first.identity, limits.MAX_ONE_TIME_PREKEYS
        keys = [prekey(me, X25519, i) for i in range(cap + 1)]
        async with running.raw(alice.first) as conn:
            # more than the cap in one request: refused before anything is verified or stored
            with pytest.raises(NodeError) as err:
                await conn.request(publish(one_time=tuple(keys)))
            assert err.value.code == "too_many_prekeys"
            with pytest.raises(NodeError) as err:
                await conn.request(publish(pq_one_time=(prekey(me, MLKEM768, 1),) * (cap + 1)))
            assert err.value.code == "too_many_prekeys"
            assert await counts(conn) == (0, 0)
            # up to the cap across requests, then the store refuses the request that would exceed it
            assert (await conn.request(publish(one_time=tuple(keys[: cap - 1])))).one_time_left == cap - 1  # type: ignore[attr-defined]
            with pytest.raises(NodeError) as err:
                await conn.request(publish(one_time=tuple(keys[cap - 1 :]), pq_one_time=(prekey(me, MLKEM768, 1),)))
            assert err.value.code == "too_many_prekeys"
            assert await counts(conn) == (cap - 1, 0)
            assert (await conn.request(publish(one_time=(keys[cap - 1],)))).one_time_left == cap  # type: ignore[attr-defined]


async def test_unregistered_device_cannot_use_session_requests(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        await running.enroll("alice")
        stranger = new_identity()
        async with running.raw(stranger) as conn:
            for build in (
                publish(one_time=(prekey(stranger, X25519, 1),)),
                lambda n: FetchBundles(request=n, account=ALICE, devices=()),
                lambda n: GetSenderCertificate(request=n),
            ):
                with pytest.raises(NodeError) as err:
                    await conn.request(build)
                assert err.value.code == "not_registered"
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)


# Bundles --------------------------------------------------------------------------------


async def test_one_time_prekeys_are_handed_out_once_then_last_resort(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        me = alice.first.identity
        signed, last_resort = prekey(me, X25519, 100), prekey(me, MLKEM768, 100, last_resort=True)
        one_time = (prekey(me, X25519, 1), prekey(me, X25519, 2))
        pq_one_time = (prekey(me, MLKEM768, 1),)
        async with running.raw(alice.first) as conn:
            await conn.request(publish(signed=signed, last_resort=last_resort, one_time=one_time, pq_one_time=pq_one_time))
        got = []
        async with running.raw(bob.first) as conn:
            for _ in range(4):
                reply = await conn.request(lambda n: FetchBundles(request=n, account=ALICE, devices=()))
                assert isinstance(reply, Bundles)
                assert (reply.account, reply.account_identity) == (ALICE, alice.identity_bytes)
                [bundle] = reply.bundles
                assert (bundle.device, bundle.record, bundle.signed_prekey) == (1, alice.first.record, signed)
                got.append((bundle.one_time, bundle.pq_prekey))
        # each one-time key exactly once, oldest first; then ML-KEM falls back, X25519 has none
        assert got == [
            (one_time[0], pq_one_time[0]),
            (one_time[1], last_resort),
            (None, last_resort),
            (None, last_resort),
        ]
        assert verify_prekey(got[0][1], me.public).kind == MLKEM768  # what was stored is what was signed
        async with running.raw(alice.first) as conn:
            assert (conn.welcome.one_time_left, conn.welcome.pq_one_time_left) == (0, 0)


async def test_bundles_for_chosen_devices_and_unknown_ones(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        phone = await running.link(alice)
        for member in (alice.first, phone):
            async with running.raw(member) as conn:
                await conn.request(publish(one_time=(prekey(member.identity, X25519, 1), prekey(member.identity, X25519, 2))))
        async with running.raw(bob.first) as conn:
            reply = await conn.request(lambda n: FetchBundles(request=n, account=ALICE, devices=()))
            assert isinstance(reply, Bundles) and [(b.device, b.record) for b in reply.bundles] == [(1, alice.first.record), (2, phone.record)]
            listed = verify_device_list(reply.device_list, account_key=alice.key.public, account=ALICE)
            assert (listed.version, set(listed.devices)) == (2, alice.fingerprints())
            reply = await conn.request(lambda n: FetchBundles(request=n, account=ALICE, devices=(2, 2)))
            assert [b.device for b in reply.bundles] == [2]  # type: ignore[attr-defined]
            # an unknown device refuses the whole request: no key of device 1 is handed out
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: FetchBundles(request=n, account=ALICE, devices=(1, 9)))
            assert err.value.code == "unknown_recipient"
            for account, code in ((f"nobody@{NODE_NAME}", "unknown_account"), ("alice@beta.example", "unknown_node")):
                with pytest.raises(NodeError) as err:
                    await conn.request(lambda n: FetchBundles(request=n, account=account, devices=()))
                assert err.value.code == code
        async with running.raw(alice.first) as conn:
            assert conn.welcome.one_time_left == 1
        async with running.raw(phone) as conn:
            assert conn.welcome.one_time_left == 0


# Sender certificates ------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = now_ms()

    def __call__(self) -> int:
        return self.now


async def test_sender_certificate_names_the_authenticated_device(start_node, node_params) -> None:
    with trio.fail_after(HANG_S):
        clock = _Clock()
        node_params.clock_ms = clock
        at = await start_node()
        alice = await at.enroll("alice")
        phone = await at.link(alice)
        async with at.raw(phone) as conn:
            reply = await conn.request(lambda n: GetSenderCertificate(request=n))
        assert isinstance(reply, SenderCertificate)
        cert = verify_certificate(reply.certificate, node_key=at.identity.public, node=NODE_NAME, now=clock.now)
        assert (cert.account, cert.device, cert.identity) == (ALICE, 2, phone.identity.public)
        assert (cert.issued, cert.expires) == (clock.now, clock.now + 24 * 3600 * 1000)


# DeviceMismatch ---------------------------------------------------------------------------


def _batch(*targets: tuple[str, int]):  # noqa: ANN202
    envelopes = tuple(opaque_envelope(t) for t in targets)
    return envelopes, (lambda n: SendBatch(request=n, envelopes=envelopes))


async def _nothing_stored(at: RunningNode, *mailboxes: tuple[str, int]) -> None:
    for account, device in mailboxes:
        assert await at.pending(account, device) == []


async def test_batch_must_cover_exactly_the_recipients_devices(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        await running.link(alice)
        mailboxes = [(ALICE, 1), (ALICE, 2), (BOB, 1)]
        async with running.raw(bob.first) as conn:
            for targets, missing, extra in (
                ([(ALICE, 1)], (2,), ()),  # a device missing
                ([(ALICE, 1), (ALICE, 2), (ALICE, 5)], (), (5,)),  # one too many
                ([(ALICE, 9), (ALICE, 1), (ALICE, 7)], (2,), (7, 9)),  # both, sorted
            ):
                _, build = _batch(*targets)
                reply = await conn.request(build)
                assert isinstance(reply, DeviceMismatch)
                assert (reply.account, reply.missing, reply.extra) == (ALICE, missing, extra)
                await _nothing_stored(running, *mailboxes)
            # a mismatch for one account stores nothing for the others in the batch either
            await running.enroll("carol")
            _, build = _batch((f"carol@{NODE_NAME}", 1), (ALICE, 2))
            reply = await conn.request(build)
            assert isinstance(reply, DeviceMismatch) and (reply.account, reply.missing) == (ALICE, (1,))
            await _nothing_stored(running, (f"carol@{NODE_NAME}", 1), *mailboxes)
            # exactly the devices: stored
            envelopes, build = _batch((ALICE, 2), (ALICE, 1))
            reply = await conn.request(build)
            assert isinstance(reply, Accepted) and reply.stored == 2
        assert [i.id for i in await running.pending(ALICE, 1)] == [envelopes[1].id]


async def test_own_account_is_covered_without_the_sending_device(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        await running.enroll("bob")
        await running.link(alice)
        async with running.raw(alice.first) as conn:
            # to bob only: alice's own other device is not required
            _, build = _batch((BOB, 1))
            assert isinstance(await conn.request(build), Accepted)
            # to bob and alice's other devices: fine; the sending device itself is extra
            _, build = _batch((BOB, 1), (ALICE, 2))
            assert isinstance(await conn.request(build), Accepted)
            _, build = _batch((BOB, 1), (ALICE, 2), (ALICE, 1))
            reply = await conn.request(build)
            assert isinstance(reply, DeviceMismatch) and (reply.account, reply.missing, reply.extra) == (ALICE, (), (1,))
            # an account with one device cannot write to itself: there is nobody to write to
        async with running.raw((await running.enroll("carol")).first) as conn:
            _, build = _batch((CAROL, 1))
            reply = await conn.request(build)
            assert isinstance(reply, DeviceMismatch) and (reply.missing, reply.extra) == ((), (1,))
        assert len(await running.pending(BOB)) == 2
        assert len(await running.pending(ALICE, 2)) == 1
        assert await running.pending(ALICE, 1) == []
        assert await running.pending(CAROL) == []


async def test_ephemeral_batches_are_checked_too(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        await running.link(alice)
        typing = opaque_envelope(alice.first, kind=Kind.EPHEMERAL)
        async with running.raw(bob.first) as conn:
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(typing,)))
        assert isinstance(reply, DeviceMismatch) and reply.missing == (2,)
