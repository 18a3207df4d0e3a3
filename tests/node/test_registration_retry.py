"""Register and LinkComplete against a live node: a device is committed with its first
prekeys or not at all, and the same request sent again after a lost answer is answered with
the same Registered (node/client_registration.py).

A lost answer is played out with two connections of the same device key: the request goes
out on one, and the device "did not hear" the answer; the retry goes out on the other, opened
after the commit (its Welcome names the device) or before it (the commit lands between its
Welcome and its request).
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import trio

from sonet.core.client_api import (
    Bundles,
    DeviceKeys,
    FetchBundles,
    LinkApprove,
    LinkApproved,
    LinkBegin,
    LinkComplete,
    LinkFetch,
    LinkOffer,
    LinkPending,
    LinkSlot,
    Register,
    Registered,
)
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.invite import parse_invite
from sonet.core.ratchet.prekeys import MLKEM768, X25519

from .conftest import HANG_S, NODE_NAME, RunningNode
from .kit import Account, Member, NodeError, RawConnection, first_keys, prekey, record_for

ALICE = f"alice@{NODE_NAME}"


def register_frame(account: Account, member: Member, secret: str, *, keys: DeviceKeys | None = None):  # noqa: ANN201
    device_list = account.sign_list([member.fingerprint], version=1)
    return lambda n: Register(
        request=n,
        user=account.address.split("@")[0],
        invite=secret,
        record=member.record,
        account_identity=account.identity_bytes,
        device_list=device_list,
        keys=member.keys if keys is None else keys,
    )


async def _stats(at: RunningNode) -> dict[str, int]:
    async with at.store() as store:
        return await store.stats()


async def _leaves(at: RunningNode) -> int:
    async with at.store() as store:
        return len(await store.directory_leaves(0, 2**63 - 1))


async def _bundle(conn: RawConnection, account: str, device: int):  # noqa: ANN202
    reply = await conn.request(lambda n: FetchBundles(request=n, account=account, devices=(device,)))
    assert isinstance(reply, Bundles)
    [bundle] = reply.bundles
    return bundle


# Keys travel with the device ---------------------------------------------------------------


async def test_a_registered_device_can_be_reached_at_once(running: RunningNode) -> None:
    """No PublishPrekeys: the bundle right after Register holds every part the mode needs."""
    with trio.fail_after(HANG_S):
        account = Account(address=ALICE)
        member = Member.new(ALICE)
        secret = parse_invite(await running.mint_invite())[1]
        keys = first_keys(member.identity, one_time=2, pq_one_time=1)
        async with running.raw(member) as conn:
            reply = await conn.request(register_frame(account, member, secret, keys=keys))
            assert isinstance(reply, Registered)
        bob = await running.enroll("bob")
        async with running.raw(bob.first) as conn:
            bundle = await _bundle(conn, ALICE, 1)
        assert bundle.signed_prekey == keys.signed_prekey
        assert bundle.one_time == keys.one_time[0]
        assert bundle.pq_prekey == keys.pq_one_time[0]


@pytest.mark.parametrize(
    "case, code",
    [
        ("no signed prekey", "prekeys_missing"),
        ("no last-resort key", "prekeys_missing"),
        ("a prekey of another key", "verify_failed"),
        ("a one-time key in the last-resort slot", "wrong_prekey_kind"),
    ],
)
async def test_register_without_usable_keys_writes_nothing(running: RunningNode, case: str, code: str) -> None:
    with trio.fail_after(HANG_S):
        account = Account(address=ALICE)
        member = Member.new(ALICE)
        secret = parse_invite(await running.mint_invite())[1]
        keys = member.keys
        if case == "no signed prekey":
            keys = replace(keys, signed_prekey=None)
        elif case == "no last-resort key":
            keys = replace(keys, pq_last_resort=None)
        elif case == "a prekey of another key":
            keys = replace(keys, signed_prekey=prekey(SigningKey.generate(CryptoMode.HYBRID, os.urandom), X25519, 7))
        else:
            keys = replace(keys, pq_last_resort=prekey(member.identity, MLKEM768, 7))
        async with running.raw(member) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame(account, member, secret, keys=keys))
            assert err.value.code == code
            stats = await _stats(running)
            assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (0, 0, 1)
            # the same connection and invite register once the keys are right
            assert isinstance(await conn.request(register_frame(account, member, secret)), Registered)


async def test_a_classical_device_brings_no_ml_kem_key(start_node) -> None:  # noqa: ANN001
    """prekeys_missing follows the device's mode: a classical device needs only its X25519
    signed prekey (on a node whose minimum allows classical devices)."""
    node = await start_node(minimum_crypto_mode=CryptoMode.CLASSICAL)
    with trio.fail_after(HANG_S):
        identity = SigningKey.generate(CryptoMode.CLASSICAL, os.urandom)
        member = Member(account=ALICE, identity=identity, record=record_for(ALICE, identity))
        assert member.keys.pq_last_resort is None and member.keys.signed_prekey is not None
        account = Account(address=ALICE)
        secret = parse_invite(await node.mint_invite())[1]
        async with node.raw(member) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame(account, member, secret, keys=replace(member.keys, signed_prekey=None)))
            assert err.value.code == "prekeys_missing"
            assert isinstance(await conn.request(register_frame(account, member, secret)), Registered)


# A lost Register answer ----------------------------------------------------------------------


async def test_register_sent_again_after_the_commit_is_answered_the_same(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        account = Account(address=ALICE)
        member = Member.new(ALICE)
        secret = parse_invite(await running.mint_invite())[1]
        build = register_frame(account, member, secret)
        async with running.raw(member) as lost:
            first = await lost.request(build)  # the answer the device never heard
        assert isinstance(first, Registered)
        leaves, stats = await _leaves(running), await _stats(running)

        async with running.raw(member) as retry:
            assert (retry.welcome.account, retry.welcome.device) == (ALICE, first.device)
            again = await retry.request(build)
            assert isinstance(again, Registered) and (again.account, again.device) == (ALICE, first.device)
            # and the connection is the registered device's: it can fetch bundles
            assert (await _bundle(retry, ALICE, first.device)).signed_prekey == member.keys.signed_prekey

        assert (await _leaves(running), await _stats(running)) == (leaves, stats)
        assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (1, 1, 0)


async def test_register_retry_opened_before_the_commit_is_answered_the_same(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        account = Account(address=ALICE)
        member = Member.new(ALICE)
        secret = parse_invite(await running.mint_invite())[1]
        build = register_frame(account, member, secret)
        async with running.raw(member) as retry:
            assert retry.welcome.account is None  # connected before the first try committed
            async with running.raw(member) as lost:
                first = await lost.request(build)
            again = await retry.request(build)
        assert isinstance(first, Registered) and isinstance(again, Registered)
        assert again.device == first.device == 1
        stats = await _stats(running)
        assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (1, 1, 0)


async def test_the_invite_and_the_name_stay_taken_for_any_other_key(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        account = Account(address=ALICE)
        member = Member.new(ALICE)
        secret = parse_invite(await running.mint_invite())[1]
        async with running.raw(member) as conn:
            assert isinstance(await conn.request(register_frame(account, member, secret)), Registered)

        thief = Member.new(ALICE)
        async with running.raw(thief) as conn:
            with pytest.raises(NodeError) as err:  # the same request, another device key
                await conn.request(register_frame(account, thief, secret))
            assert err.value.code == "invite_invalid"
            other = Member(account=f"mallory@{NODE_NAME}", identity=thief.identity, record=record_for(f"mallory@{NODE_NAME}", thief.identity))
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame(Account(address=other.account), other, secret))
            assert err.value.code == "invite_invalid"
        # the registered device asking for another name is refused as before
        async with running.raw(member) as conn:
            other = Member(account=f"alice2@{NODE_NAME}", identity=member.identity, record=record_for(f"alice2@{NODE_NAME}", member.identity))
            fresh = parse_invite(await running.mint_invite())[1]
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame(Account(address=other.account), other, fresh))
            assert err.value.code == "already_registered"
        stats = await _stats(running)
        assert (stats["accounts"], stats["devices"]) == (1, 1)


# A lost LinkComplete answer ------------------------------------------------------------------


async def _approved_slot(running: RunningNode, approver: Member, new: RawConnection) -> bytes:
    slot = await new.request(lambda n: LinkBegin(request=n, ephemeral=os.urandom(1200)))
    assert isinstance(slot, LinkSlot)
    async with running.raw(approver) as old:
        assert isinstance(await old.request(lambda n: LinkFetch(request=n, slot=slot.slot)), LinkPending)
        assert isinstance(await old.request(lambda n: LinkApprove(request=n, slot=slot.slot, provisioning=b"sealed")), LinkApproved)
    assert isinstance(await new.next_push(), LinkOffer)
    return slot.slot


@pytest.mark.parametrize("retry_opened", ["after the commit", "before the commit"])
async def test_link_complete_sent_again_is_answered_the_same(running: RunningNode, retry_opened: str) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        member = Member.new(ALICE)
        list_v2 = alice.list_with(member)

        def build(slot: bytes):  # noqa: ANN202
            return lambda n: LinkComplete(request=n, slot=slot, record=member.record, device_list=list_v2, keys=member.keys)

        async with running.raw(member) as early:
            async with running.raw(member) as lost:
                slot = await _approved_slot(running, alice.first, lost)
                first = await lost.request(build(slot))  # the answer the device never heard
            assert isinstance(first, Registered) and first.device == 2
            leaves, stats = await _leaves(running), await _stats(running)
            if retry_opened == "before the commit":
                assert early.welcome.account is None
                again = await early.request(build(slot))
            else:
                async with running.raw(member) as retry:
                    assert (retry.welcome.account, retry.welcome.device) == (ALICE, 2)
                    again = await retry.request(build(slot))
        assert isinstance(again, Registered) and (again.account, again.device) == (ALICE, 2)
        assert (await _leaves(running), await _stats(running)) == (leaves, stats)
        async with running.raw(alice.first) as conn:
            assert (await _bundle(conn, ALICE, 2)).signed_prekey == member.keys.signed_prekey


async def test_link_complete_before_any_commit_needs_the_slot(running: RunningNode) -> None:
    """Nothing committed and the slot gone with its connection: the retry is link_unknown
    (the device begins again); no device was added."""
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        member = Member.new(ALICE)
        async with running.raw(member) as lost:
            slot = await _approved_slot(running, alice.first, lost)
        async with running.raw(member) as retry:
            with pytest.raises(NodeError) as err:
                await retry.request(
                    lambda n: LinkComplete(request=n, slot=slot, record=member.record, device_list=alice.list_with(member), keys=member.keys)
                )
            assert err.value.code == "link_unknown"
        async with running.store() as store:
            assert len(await store.devices(ALICE)) == 1


async def test_link_complete_without_keys_adds_no_device(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        member = Member.new(ALICE)
        async with running.raw(member) as new:
            slot = await _approved_slot(running, alice.first, new)
            build = lambda keys: lambda n: LinkComplete(  # noqa: E731
                request=n, slot=slot, record=member.record, device_list=alice.list_with(member), keys=keys
            )
            with pytest.raises(NodeError) as err:
                await new.request(build(replace(member.keys, pq_last_resort=None)))
            assert err.value.code == "prekeys_missing"
            async with running.store() as store:
                assert len(await store.devices(ALICE)) == 1
            assert isinstance(await new.request(build(member.keys)), Registered)  # the slot is still there


async def test_a_registered_device_cannot_link_itself_elsewhere(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        await running.enroll("bob")
        bob_record = record_for(f"bob@{NODE_NAME}", alice.first.identity)
        async with running.raw(alice.first) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(
                    lambda n: LinkComplete(request=n, slot=bytes(16), record=bob_record, device_list=b"", keys=alice.first.keys)
                )
            assert err.value.code == "already_registered"


async def test_link_complete_sent_again_while_the_first_is_still_open(running: RunningNode) -> None:
    """The device gave up on its first connection, which the node still holds (its request may
    still be in flight): the same device key completes the slot from a new connection, and the
    first request, arriving after, is answered with the same device."""
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        member = Member.new(ALICE)
        list_v2 = alice.list_with(member)
        build = lambda slot: lambda n: LinkComplete(  # noqa: E731
            request=n, slot=slot, record=member.record, device_list=list_v2, keys=member.keys
        )
        async with running.raw(member) as first:
            slot = await _approved_slot(running, alice.first, first)
            async with running.raw(member) as retry:
                again = await retry.request(build(slot))
            late = await first.request(build(slot))
        assert isinstance(again, Registered) and isinstance(late, Registered)
        assert again.device == late.device == 2
        async with running.store() as store:
            assert len(await store.devices(ALICE)) == 2
