"""Linking a new device to an account, and removing devices, against a live node.

The new device and the approving device are two raw connections. The provisioning payload is
random bytes: the node only carries it from one to the other.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio

from sonet.core import limits
from sonet.core.client_api import (
    Accepted,
    DeviceMismatch,
    DeviceRemoved,
    Devices,
    Drained,
    FetchDevices,
    LinkApprove,
    LinkApproved,
    LinkBegin,
    LinkComplete,
    LinkFetch,
    LinkOffer,
    LinkPending,
    LinkSlot,
    Ping,
    Pong,
    Registered,
    RemoveDevice,
    SendBatch,
)
from sonet.core.device_list import verify_device_list
from sonet.node.app import now_ms

from .conftest import HANG_S, NODE_NAME, RunningNode, next_deliver
from .kit import Member, NodeError, RawConnection, new_identity, opaque_envelope, record_for

ALICE = f"alice@{NODE_NAME}"
BOB = f"bob@{NODE_NAME}"
TEN_MINUTES = 10 * 60 * 1000
POLICY_VIOLATION = 1008


class _Clock:
    def __init__(self) -> None:
        self.now = now_ms()

    def __call__(self) -> int:
        return self.now


@pytest.fixture
async def clocked(start_node, node_params) -> tuple[RunningNode, _Clock]:  # noqa: ANN001
    clock = _Clock()
    node_params.clock_ms = clock  # the clock of the nodes started from now on
    return await start_node(), clock


async def _device_count(at: RunningNode, account: str) -> int:
    async with at.store() as store:
        return len(await store.devices(account))


@dataclass
class Waiting:
    """A new device waiting in a link slot."""

    member: Member
    conn: RawConnection
    slot: LinkSlot
    ephemeral: bytes


@asynccontextmanager
async def waiting(at: RunningNode, account: str = ALICE) -> AsyncIterator[Waiting]:
    member = Member.new(account)
    ephemeral = os.urandom(1200)
    async with at.raw(member) as conn:
        slot = await conn.request(lambda n: LinkBegin(request=n, ephemeral=ephemeral))
        assert isinstance(slot, LinkSlot)
        yield Waiting(member=member, conn=conn, slot=slot, ephemeral=ephemeral)


async def approve(conn: RawConnection, slot: bytes, provisioning: bytes = b"sealed provisioning") -> None:
    assert isinstance(await conn.request(lambda n: LinkApprove(request=n, slot=slot, provisioning=provisioning)), LinkApproved)


def complete(w: Waiting, device_list: bytes, *, record: bytes | None = None):  # noqa: ANN201
    return lambda n: LinkComplete(request=n, slot=w.slot.slot, record=w.member.record if record is None else record, device_list=device_list, keys=w.member.keys)


# Linking ------------------------------------------------------------------------------


async def test_link_a_new_device(clocked: tuple[RunningNode, _Clock]) -> None:
    at, clock = clocked
    with trio.fail_after(HANG_S):
        alice, bob = await at.enroll("alice"), await at.enroll("bob")
        async with at.store() as store:
            stored_v1 = (await store.account(ALICE)).device_list  # type: ignore[union-attr]
        provisioning = os.urandom(500)
        async with waiting(at) as w, at.raw(alice.first) as old:
            assert len(w.slot.slot) == limits.LINK_SLOT_LEN
            assert w.slot.expires == clock.now + TEN_MINUTES
            pending = await old.request(lambda n: LinkFetch(request=n, slot=w.slot.slot))
            assert isinstance(pending, LinkPending) and pending.ephemeral == w.ephemeral
            await approve(old, w.slot.slot, provisioning)
            offer = await w.conn.next_push()
            assert isinstance(offer, LinkOffer)
            assert (offer.slot, offer.account, offer.provisioning, offer.device_list) == (w.slot.slot, ALICE, provisioning, stored_v1)
            new_list = alice.list_with(w.member)
            reply = await w.conn.request(complete(w, new_list))
            assert isinstance(reply, Registered) and (reply.account, reply.device) == (ALICE, 2)
            # the connection is now that device: deliveries start, requests are served
            assert isinstance(await w.conn.deliveries.receive(), Drained)
            note = opaque_envelope((ALICE, 2))
            async with at.raw(bob.first) as sender:
                sent = await sender.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope((ALICE, 1)), note)))
                assert isinstance(sent, Accepted) and sent.stored == 2
            pushed = await next_deliver(w.conn)
            assert [i.envelope.id for i in pushed.items] == [note.id]
            devices = await w.conn.request(lambda n: FetchDevices(request=n, account=ALICE))
            assert isinstance(devices, Devices) and [(d.device, d.record) for d in devices.devices] == [(1, alice.first.record), (2, w.member.record)]
            assert devices.device_list == new_list
            # the slot is used up
            with pytest.raises(NodeError) as err:
                await old.request(lambda n: LinkFetch(request=n, slot=w.slot.slot))
            assert err.value.code == "link_unknown"
        listed = verify_device_list(new_list, account_key=alice.key.public, account=ALICE)
        async with at.store() as store:
            row = await store.account(ALICE)
        assert row is not None and (row.device_list, row.device_list_version) == (new_list, 2) and listed.version == 2
        async with at.raw(w.member) as conn:
            assert (conn.welcome.account, conn.welcome.device) == (ALICE, 2)


async def test_link_requests_from_the_wrong_side(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        async with waiting(running) as w:
            for build in (
                lambda n: LinkFetch(request=n, slot=w.slot.slot),
                lambda n: LinkApprove(request=n, slot=w.slot.slot, provisioning=b"p"),
            ):
                with pytest.raises(NodeError) as err:
                    await w.conn.request(build)
                assert err.value.code == "not_registered"
            async with running.raw(alice.first) as old:
                for build in (
                    lambda n: LinkBegin(request=n, ephemeral=b"e" * 32),
                    complete(w, alice.list_with(w.member)),
                ):
                    with pytest.raises(NodeError) as err:
                        await old.request(build)
                    assert err.value.code == "already_registered"
                # none of that disturbed the slot
                await approve(old, w.slot.slot)
            assert isinstance(await w.conn.next_push(), LinkOffer)
            assert isinstance(await w.conn.request(complete(w, alice.list_with(w.member))), Registered)


async def test_unknown_slots(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        slot = os.urandom(limits.LINK_SLOT_LEN)
        async with running.raw(alice.first) as old:
            for build in (
                lambda n: LinkFetch(request=n, slot=slot),
                lambda n: LinkApprove(request=n, slot=slot, provisioning=b"p"),
                lambda n: LinkFetch(request=n, slot=b""),
            ):
                with pytest.raises(NodeError) as err:
                    await old.request(build)
                assert err.value.code == "link_unknown"
        newcomer = Member.new(ALICE)
        async with running.raw(newcomer) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: LinkComplete(request=n, slot=slot, record=newcomer.record, device_list=alice.list_with(newcomer), keys=newcomer.keys))
            assert err.value.code == "link_unknown"
        assert await _device_count(running, ALICE) == 1


async def test_expired_slots_are_unknown(clocked: tuple[RunningNode, _Clock]) -> None:
    at, clock = clocked
    with trio.fail_after(HANG_S):
        alice = await at.enroll("alice")
        async with at.raw(alice.first) as old:
            async with waiting(at) as w:
                clock.now += TEN_MINUTES - 1
                assert isinstance(await old.request(lambda n: LinkFetch(request=n, slot=w.slot.slot)), LinkPending)
                clock.now += 1
                for build in (
                    lambda n: LinkFetch(request=n, slot=w.slot.slot),
                    lambda n: LinkApprove(request=n, slot=w.slot.slot, provisioning=b"p"),
                ):
                    with pytest.raises(NodeError) as err:
                        await old.request(build)
                    assert err.value.code == "link_unknown"
                # the expired slot no longer counts as this connection's: it may begin again
                again = await w.conn.request(lambda n: LinkBegin(request=n, ephemeral=w.ephemeral))
                assert isinstance(again, LinkSlot) and again.slot != w.slot.slot
            # approved in time but completed too late
            async with waiting(at) as w:
                await approve(old, w.slot.slot)
                assert isinstance(await w.conn.next_push(), LinkOffer)
                clock.now += TEN_MINUTES
                with pytest.raises(NodeError) as err:
                    await w.conn.request(complete(w, alice.list_with(w.member)))
                assert err.value.code == "link_unknown"
        assert await _device_count(at, ALICE) == 1


async def test_complete_needs_approval_and_the_own_slot(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        async with waiting(running) as w, waiting(running) as other, running.raw(alice.first) as old:
            with pytest.raises(NodeError) as err:
                await w.conn.request(complete(w, alice.list_with(w.member)))
            assert err.value.code == "link_not_approved"
            # one slot per connection
            with pytest.raises(NodeError) as err:
                await w.conn.request(lambda n: LinkBegin(request=n, ephemeral=w.ephemeral))
            assert err.value.code == "link_in_progress"
            await approve(old, w.slot.slot)
            with pytest.raises(NodeError) as err:
                await old.request(lambda n: LinkApprove(request=n, slot=w.slot.slot, provisioning=b"again"))
            assert err.value.code == "link_already_approved"
            # another waiting device cannot complete with this (approved) slot
            with pytest.raises(NodeError) as err:
                await other.conn.request(
                    lambda n: LinkComplete(request=n, slot=w.slot.slot, record=other.member.record, device_list=alice.list_with(other.member), keys=other.member.keys)
                )
            assert err.value.code == "link_unknown"
            assert await _device_count(running, ALICE) == 1
            offer = await w.conn.next_push()
            assert isinstance(offer, LinkOffer) and offer.provisioning == b"sealed provisioning"
            assert isinstance(await w.conn.request(complete(w, alice.list_with(w.member))), Registered)


def _refused_completions() -> list[tuple[str, str]]:
    return [
        ("record names another account", "wrong_account"),
        ("record of another key", "wrong_identity"),
        ("record not self-signed", "verify_failed"),
        ("list version skips one", "stale_device_list"),
        ("list version unchanged", "stale_device_list"),
        ("list signed by another key", "device_list_forged"),
        ("list signed by another account's key", "device_list_forged"),
        ("list for another account", "device_list_mismatch"),
        ("list without the new device", "bad_device_list"),
        ("list without the old device", "bad_device_list"),
        ("list with a stranger", "bad_device_list"),
    ]


@pytest.mark.parametrize(("case", "code"), _refused_completions(), ids=[c for c, _ in _refused_completions()])
async def test_complete_refuses_a_wrong_record_or_list(running: RunningNode, case: str, code: str) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        async with waiting(running) as w, running.raw(alice.first) as old:
            await approve(old, w.slot.slot)
            assert isinstance(await w.conn.next_push(), LinkOffer)
            new, old_fp, stranger = w.member.fingerprint, alice.first.fingerprint, new_identity().public.fingerprint
            record, fps, version, key, account = None, {old_fp, new}, 2, alice.key, ALICE
            if case == "record names another account":
                record = record_for(BOB, w.member.identity)
            elif case == "record of another key":
                record = Member.new(ALICE).record
            elif case == "record not self-signed":
                record = w.member.record[:-1] + bytes([w.member.record[-1] ^ 1])
            elif case == "list version skips one":
                version = 3
            elif case == "list version unchanged":
                version = 1
            elif case == "list signed by another key":
                key = new_identity()
            elif case == "list signed by another account's key":
                key = bob.key
            elif case == "list for another account":
                account = BOB
            elif case == "list without the new device":
                fps = {old_fp}
            elif case == "list without the old device":
                fps = {new}
            elif case == "list with a stranger":
                fps = {old_fp, new, stranger}
            bad_list = alice.sign_list(fps, version=version, key=key, account=account)
            with pytest.raises(NodeError) as err:
                await w.conn.request(complete(w, bad_list, record=record))
            assert err.value.code == code
            assert await _device_count(running, ALICE) == 1
            async with running.store() as store:
                assert (await store.account(ALICE)).device_list_version == 1  # type: ignore[union-attr]
            # the slot is still there for a correct completion
            reply = await w.conn.request(complete(w, alice.list_with(w.member)))
            assert isinstance(reply, Registered) and reply.device == 2


async def test_a_slot_approved_by_another_account_links_to_that_account_only(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        async with waiting(running, ALICE) as w, running.raw(bob.first) as bobs:
            await approve(bobs, w.slot.slot)
            offer = await w.conn.next_push()
            assert isinstance(offer, LinkOffer) and offer.account == BOB
            # a record and list for alice do not get in through bob's approval
            with pytest.raises(NodeError) as err:
                await w.conn.request(complete(w, alice.list_with(w.member)))
            assert err.value.code == "wrong_account"
        assert await _device_count(running, ALICE) == 1
        assert await _device_count(running, BOB) == 1


async def test_approve_after_the_new_device_left(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        async with waiting(running) as w:
            slot = w.slot.slot
        await running.settle()  # the node has finished with the new device's connection
        async with running.raw(alice.first) as old:
            for build in (
                lambda n: LinkFetch(request=n, slot=slot),
                lambda n: LinkApprove(request=n, slot=slot, provisioning=b"p"),
            ):
                with pytest.raises(NodeError) as err:
                    await old.request(build)
                assert err.value.code == "link_unknown"


async def test_link_size_limits(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        async with running.raw(Member.new(ALICE)) as conn:
            for ephemeral in (b"", b"e" * (limits.MAX_LINK_EPHEMERAL_BYTES + 1)):
                with pytest.raises(NodeError) as err:
                    await conn.request(lambda n: LinkBegin(request=n, ephemeral=ephemeral))
                assert err.value.code == "bad_input"
        async with waiting(running) as w, running.raw(alice.first) as old:
            with pytest.raises(NodeError) as err:
                await old.request(
                    lambda n: LinkApprove(request=n, slot=w.slot.slot, provisioning=b"p" * (limits.MAX_PROVISIONING_BYTES + 1))
                )
            assert err.value.code == "bad_input"
            await approve(old, w.slot.slot, b"p" * limits.MAX_PROVISIONING_BYTES)


async def test_an_account_holds_a_bounded_number_of_devices(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        async with running.store() as store:  # fill the account directly; the node reads the count
            for version in range(1, limits.MAX_DEVICES_PER_ACCOUNT):
                await store.add_device(
                    account=ALICE, fingerprint=f"fp{version}", record=b"r", device_list=b"l", expected_version=version, now=1
                )
        async with waiting(running) as w, running.raw(alice.first) as old:
            with pytest.raises(NodeError) as err:
                await old.request(lambda n: LinkApprove(request=n, slot=w.slot.slot, provisioning=b"p"))
            assert err.value.code == "too_many_devices"


# Removing devices -----------------------------------------------------------------------


async def test_remove_a_connected_device(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        phone = await running.link(alice)
        async with running.raw(bob.first) as conn:
            sent = await conn.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope((ALICE, 1)), opaque_envelope((ALICE, 2)))))
            assert isinstance(sent, Accepted) and sent.stored == 2
        assert len(await running.pending(ALICE, 2)) == 1
        async with running.raw(phone) as gone, running.raw(alice.first) as old:
            assert len((await next_deliver(gone)).items) == 1  # its queued message
            new_list = alice.list_without(2)
            reply = await old.request(lambda n: RemoveDevice(request=n, device=2, device_list=new_list))
            assert isinstance(reply, DeviceRemoved) and reply.device == 2
            await gone.closed.wait()
            assert isinstance(gone.error, NodeError) and gone.error.code == "device_removed"
            assert gone.close_reason is not None
            assert (gone.close_reason.code, gone.close_reason.reason) == (POLICY_VIOLATION, "device_removed")
            # the remover's own connection goes on
            assert isinstance(await old.request(lambda n: Ping(request=n)), Pong)
            devices = await old.request(lambda n: FetchDevices(request=n, account=ALICE))
            assert isinstance(devices, Devices) and [d.device for d in devices.devices] == [1]
            assert devices.device_list == new_list
        alice.devices.pop(2)
        alice.version += 1
        assert await running.pending(ALICE, 2) == []  # its mailbox is gone
        # coming back later, it hears that it was removed (not "not registered")
        async with running.raw(phone) as back:
            await back.closed.wait()
            assert isinstance(back.error, NodeError) and back.error.code == "device_removed"
            assert back.close_reason is not None and back.close_reason.reason == "device_removed"
        assert len(await running.pending(ALICE, 1)) == 1
        async with running.store() as store:
            assert (await store.account(ALICE)).device_list_version == 3  # type: ignore[union-attr]
            assert await store.device_by_fingerprint(phone.fingerprint) is None
        # senders learn the device is gone
        async with running.raw(bob.first) as conn:
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope((ALICE, 1)), opaque_envelope((ALICE, 2)))))
            assert isinstance(reply, DeviceMismatch) and (reply.missing, reply.extra) == ((), (2,))
        # the removed key is just an unregistered device now
        async with running.raw(phone) as conn:
            assert (conn.welcome.account, conn.welcome.device) == (None, None)
        # and the next linked device does not get id 2 again
        tablet = await running.link(alice)
        assert tablet.device_id == 3


async def test_a_message_sent_between_the_removal_and_the_close_is_refused(running: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: the removal has committed but the removed device's connection is not closed
    yet (held here, deterministically). Its batch must not be stored."""
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        phone = await running.link(alice)
        held: list[str] = []
        close = running.node.connections.removed
        monkeypatch.setattr(running.node.connections, "removed", held.append)
        async with running.raw(phone) as gone, running.raw(alice.first) as old:
            reply = await old.request(lambda n: RemoveDevice(request=n, device=2, device_list=alice.list_without(2)))
            assert isinstance(reply, DeviceRemoved) and held == [phone.fingerprint]
            assert not gone.closed.is_set()  # still open: the close is held
            with pytest.raises(NodeError) as err:
                await gone.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope((BOB, 1)),)))
            assert err.value.code == "device_removed"
            close(held[0])  # now the removal closes it, as it would have
            await gone.closed.wait()
            assert isinstance(gone.error, NodeError) and gone.error.code == "device_removed"
        assert await running.pending(BOB, 1) == []
        async with running.store() as store:
            stats = await store.stats()
        assert (stats["envelopes"], stats["outbox"]) == (0, 0)
        # bob is still reachable from alice's remaining device
        async with running.raw(alice.first) as conn:
            sent = await conn.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope((BOB, 1)),)))
            assert isinstance(sent, Accepted) and sent.stored == 1


async def test_a_device_can_remove_itself(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        phone = await running.link(alice)
        async with running.raw(phone) as conn:
            reply = await conn.request(lambda n: RemoveDevice(request=n, device=2, device_list=alice.list_without(2)))
            assert isinstance(reply, DeviceRemoved)  # answered first, then closed
            await conn.closed.wait()
            assert isinstance(conn.error, NodeError) and conn.error.code == "device_removed"
        assert await _device_count(running, ALICE) == 1


def _refused_removals() -> list[tuple[str, str]]:
    return [
        ("unknown device", "unknown_device"),
        ("the last device", "last_device"),
        ("list version skips one", "stale_device_list"),
        ("list version unchanged", "stale_device_list"),
        ("list signed by another key", "device_list_forged"),
        ("list still holds it", "bad_device_list"),
        ("list drops another device", "bad_device_list"),
    ]


@pytest.mark.parametrize(("case", "code"), _refused_removals(), ids=[c for c, _ in _refused_removals()])
async def test_remove_refusals(running: RunningNode, case: str, code: str) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        solo = await running.enroll("solo")
        phone = await running.link(alice)
        requester, device, fps, version, key = alice.first, 2, {alice.first.fingerprint}, 3, alice.key
        if case == "unknown device":
            device = 7
        elif case == "the last device":
            requester, device, fps, version, key = solo.first, 1, set(), 2, solo.key
        elif case == "list version skips one":
            version = 4
        elif case == "list version unchanged":
            version = 2
        elif case == "list signed by another key":
            key = new_identity()
        elif case == "list still holds it":
            fps = alice.fingerprints()
        elif case == "list drops another device":
            fps = {phone.fingerprint}
        owner = solo if requester is solo.first else alice
        device_list = owner.sign_list(fps, version=version, key=key) if fps else b"\xa0"
        async with running.raw(requester) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: RemoveDevice(request=n, device=device, device_list=device_list))
            assert err.value.code == code
        assert await _device_count(running, ALICE) == 2
        assert await _device_count(running, solo.address) == 1


async def test_unregistered_device_cannot_remove(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        await running.link(alice)
        async with running.raw(new_identity()) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: RemoveDevice(request=n, device=2, device_list=alice.list_without(2)))
            assert err.value.code == "not_registered"
        assert await _device_count(running, ALICE) == 2


async def test_a_new_connection_after_drained(running: RunningNode) -> None:
    """A linked device's later connections behave as any registered device's."""
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        phone = await running.link(alice)
        async with running.raw(phone) as conn:
            assert isinstance(await conn.deliveries.receive(), Drained)
            assert isinstance(await conn.request(lambda n: FetchDevices(request=n, account=ALICE)), Devices)
