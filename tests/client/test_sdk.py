"""The device SDK (client.sdk.Device) end to end against a real node in the same trio run:
registration, texts, exactly-once view, ordering, receipts, typing, linked devices, identity
changes and safety numbers. Fixtures: tests/client/conftest.py (node from tests/node)."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable

import pytest
import trio

import sonet.client.sdk
from sonet.client.connection import Connection, NodeError
from sonet.client.directory import IdentityChanged
from sonet.client.sdk import Device
from sonet.client.state import DeviceState, SentMessage, StateError
from sonet.core.address import parse_address
from sonet.core.client_api import Ack, DeviceMismatch
from sonet.core.content import Content, encode_content
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.device_list import encode_account_identity, sign_device_list
from sonet.core.envelope import Kind
from sonet.core.errors import LocalProtocolError, VerifyError
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, HANG_S, Clock, append_leaf, link_device, node_db, shown, texts

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]


# Registration -----------------------------------------------------------------------------


async def test_register_saves_a_profile_that_survives_reopening(alpha: RunningNode, register: Register, tmp_path) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        before = alice.state.profile()
        assert (before.address, before.device_id, before.node_url, before.node_fingerprint) == (ALICE, 1, alpha.url, alpha.fingerprint)
        assert before.mode is CryptoMode.HYBRID
        # the node knows this device under the same key
        async with alpha.raw(before.identity) as conn:
            assert (conn.welcome.account, conn.welcome.device) == (ALICE, 1)
        alice.state.close()
        reopened = DeviceState(tmp_path / "devices" / "alice", create=False)
        try:
            after = reopened.profile()
            assert after.identity.public == before.identity.public
            assert after.account_key.public == before.account_key.public
            assert after.hpke.public.to_bytes() == before.hpke.public.to_bytes()
            assert after.identity_dh == before.identity_dh
        finally:
            reopened.close()


async def test_register_twice_in_one_home_is_refused(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        with pytest.raises(StateError, match="already holds alice@alpha.example"):
            await alice.register(BOB, alpha.url, await alpha.mint_invite())
        async with alpha.store() as store:
            assert await store.account(BOB) is None


@pytest.mark.parametrize(
    "invite",
    ["bogus", "a" * 32 + ".tooshort", "1" * 32 + "." + "b" * 32],  # the last: a good secret, a fingerprint of digits base32 has not
)
async def test_a_malformed_invite_is_invite_invalid_for_sdk_callers_too(make_device: Callable[..., Device], invite: str) -> None:
    """ux11: core/invite.py raised local_error (the code of a bug) and only the CLI renamed it."""
    with pytest.raises(LocalProtocolError, match="malformed invite token") as err:
        await make_device("carol").register(CAROL, "ws://127.0.0.1:1", invite)
    assert err.value.code == "invite_invalid"


async def test_an_unregistered_home_cannot_send(make_device: Callable[..., Device]) -> None:
    with pytest.raises(StateError, match="no account"):
        await make_device("nobody").send_text(BOB, "hi")


# Texts --------------------------------------------------------------------------------------


async def test_text_arrives_with_sender_and_text_both_ways(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        sent = await alice.send_text(BOB, "hello bob")
        assert (sent.recipient, sent.devices, sent.own_devices) == (BOB, 1, 0)
        assert len(sent.id) == 16
        # what the node holds is one opaque envelope for bob's device, without the text
        [queued] = await alpha.pending(BOB)
        assert queued.id == sent.id and b"hello bob" not in queued.body and ALICE.encode() not in queued.body

        result = await bob.receive()
        assert result.rejected == [] and result.identity_changes == []
        [message] = result.messages
        assert (message.id, message.sender, message.peer, message.type) == (sent.id, ALICE, ALICE, "text")
        assert message.fields == {"text": "hello bob"}
        assert message.sent_at == clock() and message.received_at == queued.stored_at
        shown(bob, result)
        await alpha.settle()
        assert await alpha.pending(BOB) == []

        await bob.send_text(ALICE, "hi alice")
        assert texts(alice, await alice.receive()) == [(BOB, "hi alice")]


async def test_refuses_empty_and_oversized_texts_and_unknown_recipients(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        await register(alpha, "bob")
        with pytest.raises(LocalProtocolError, match="empty"):
            await alice.send_text(BOB, "")
        with pytest.raises(LocalProtocolError, match="longer than"):
            await alice.send_text(BOB, "x" * (64 * 1024 + 1))
        with pytest.raises(NodeError) as info:
            await alice.send_text(CAROL, "anyone there?")
        assert info.value.code == "unknown_account"
        assert await alpha.pending(BOB) == []


async def test_lost_ack_redelivery_is_shown_once_and_the_session_goes_on(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At-least-once on the wire, exactly-once in the user's view."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        first = await alice.send_text(BOB, "only once please")

        dropped: list[Ack] = []
        send = Connection.send

        async def drop_acks(self: Connection, frame) -> None:  # noqa: ANN001
            if isinstance(frame, Ack):
                dropped.append(frame)
                return
            await send(self, frame)

        with monkeypatch.context() as patch:
            patch.setattr(Connection, "send", drop_acks)
            result = await bob.receive()
        assert [a.ids for a in dropped] == [(first.id,)]
        assert texts(bob, result) == [(ALICE, "only once please")]
        await alpha.settle()
        assert [i.id for i in await alpha.pending(BOB)] == [first.id]  # the node still has it

        again = await bob.receive()  # redelivered, recognised, acknowledged, not shown again
        assert again.messages == [] and again.rejected == []
        await alpha.settle()
        assert await alpha.pending(BOB) == []

        following = await alice.send_text(BOB, "and the next one")
        assert texts(bob, await bob.receive()) == [(ALICE, "and the next one")]
        # one delivery receipt per message, although bob received the first one twice
        receipts = [(kind, f["ids"]) for _s, kind, f in shown(alice, await alice.receive())]
        assert receipts == [("receipt", [first.id.hex()]), ("receipt", [following.id.hex()])]


async def test_redelivered_receipt_after_a_lost_ack_is_not_reported_as_rejected(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        sent = await alice.send_text(BOB, "ping")
        await bob.receive()  # sends a delivered receipt back
        send = Connection.send

        async def drop_acks(self: Connection, frame) -> None:  # noqa: ANN001
            if not isinstance(frame, Ack):
                await send(self, frame)

        with monkeypatch.context() as patch:
            patch.setattr(Connection, "send", drop_acks)
            first = await alice.receive()
        assert [(s, k, f["ids"]) for s, k, f in shown(alice, first)] == [(BOB, "receipt", [sent.id.hex()])]
        again = await alice.receive()
        assert again.messages == [] and again.rejected == []
        await alpha.settle()
        assert await alpha.pending(ALICE) == []


@pytest.mark.slow  # many messages: `make test`, not `make check`
async def befriend(sender: Device, recipient: Device, recipient_address: str, sender_address: str) -> None:
    """``recipient`` writes to ``sender`` first: the answer carries its access token, so what
    ``sender`` sends next is a contact's, not capped message requests (core/access.py). Both
    inboxes are emptied (the text, its receipt)."""
    await recipient.send_text(sender_address, "hello, contact")
    for device in (sender, recipient):
        device.state.mark_shown([m.id for m in (await device.receive()).messages])


async def test_sixty_texts_arrive_in_order(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await befriend(alice, bob, BOB, ALICE)
        sent = [await alice.send_text(BOB, f"message {i:03d}") for i in range(60)]
        result = await bob.receive()
        assert result.rejected == []
        assert [m.id for m in result.messages] == [s.id for s in sent]
        assert texts(bob, result) == [(ALICE, f"message {i:03d}") for i in range(60)]
        # one receipt message covers them all
        [(sender, kind, fields)] = shown(alice, await alice.receive())
        assert (sender, kind, fields["receipt"]) == (BOB, "receipt", "delivered")
        assert fields["ids"] == [s.id.hex() for s in sent]


@pytest.mark.slow  # many messages: `make test`, not `make check`
async def test_three_hundred_messages_over_one_connection_arrive_in_order(alpha: RunningNode, register: Register) -> None:
    """The sending path of send_text (Device._deliver) driven on one connection."""
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await befriend(alice, bob, BOB, ALICE)
        profile = alice.state.profile()
        ids = [os.urandom(16) for _ in range(300)]
        async with alice._connect(profile) as conn:
            for i, msg_id in enumerate(ids):
                content = encode_content(Content(type="text", id=msg_id, sent_at=alice._clock(), text=f"n{i}"))
                counts = await alice._deliver(conn, profile, parse_address(BOB), content, None, msg_id, Kind.SEALED)
                assert counts == (1, 0)
        assert len(await alpha.pending(BOB)) == 300
        result = await bob.receive()
        assert result.rejected == []
        assert [m.id for m in result.messages] == ids
        assert [m.fields["text"] for m in result.messages] == [f"n{i}" for i in range(300)]


@pytest.mark.slow  # many ratchet turns: `make test`, not `make check`
async def test_conversation_across_many_ratchet_turns(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        for turn in range(12):
            # a few messages per turn, so both sending chains and DH/KEM ratchet steps advance
            for k in range(turn % 3 + 1):
                await alice.send_text(BOB, f"a{turn}.{k}")
            assert texts(bob, await bob.receive()) == [(ALICE, f"a{turn}.{k}") for k in range(turn % 3 + 1)]
            await bob.send_text(ALICE, f"b{turn}")
            got = shown(alice, await alice.receive())
            assert [(s, f["text"]) for s, kind, f in got if kind == "text"] == [(BOB, f"b{turn}")]
            assert {kind for _s, kind, _f in got} <= {"text", "receipt"}
        assert bob.state.unshown() == [] and alice.state.unshown() == []
        # nothing left behind, nothing rejected on the last round trip
        await alice.send_text(BOB, "bye")
        final = await bob.receive()
        assert final.rejected == [] and texts(bob, final) == [(ALICE, "bye")]


# Receipts -----------------------------------------------------------------------------------


async def test_delivery_and_read_receipts_update_the_sent_status(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        first = await alice.send_text(BOB, "one")
        second = await alice.send_text(BOB, "two")
        assert alice.state.sent_message(first.id) == SentMessage(
            id=first.id, to=BOB, sent_at=clock(), devices=1, state="accepted", code="", message="", delivered_at=None, read_at=None
        )

        assert [t for _s, t in texts(bob, await bob.receive())] == ["one", "two"]
        clock.advance(1000)
        [(sender, kind, fields)] = shown(alice, await alice.receive())
        assert (sender, kind, fields["receipt"]) == (BOB, "receipt", "delivered")
        assert fields["ids"] == [first.id.hex(), second.id.hex()]
        for sent in (first, second):
            status = alice.state.sent_message(sent.id)
            # when alice's node stored the receipt, not when alice fetched it
            assert status is not None and (status.state, status.delivered_at, status.read_at) == ("delivered", clock() - 1000, None)

        third = await alice.send_text(BOB, "three")
        assert texts(bob, await bob.receive(read_receipts=True)) == [(ALICE, "three")]
        got = shown(alice, await alice.receive())
        assert [(s, k, f["receipt"], f["ids"]) for s, k, f in got] == [
            (BOB, "receipt", "delivered", [third.id.hex()]),
            (BOB, "receipt", "read", [third.id.hex()]),
        ]
        assert alice.state.sent_message(third.id).state == "read"  # type: ignore[union-attr]
        assert alice.state.sent_message(first.id).read_at is None  # type: ignore[union-attr]
        # bob does not get receipts for receipts
        assert (await bob.receive()).messages == []


# Typing ---------------------------------------------------------------------------------------


async def _until_connected(at: RunningNode, count: int) -> None:
    while at.node.registry.connected() < count:
        await trio.sleep(0.01)


async def test_typing_reaches_a_waiting_device_and_is_never_stored(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        results = []

        async def wait_for_it() -> None:
            results.append(await bob.receive(wait=5))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_it)
            await _until_connected(alpha, 1)
            assert await alpha.pending(BOB) == []
            await alice.send_typing(BOB)
            assert await alpha.pending(BOB) == []  # pushed, not stored
        [result] = results
        assert result.rejected == []
        got = shown(bob, result)
        assert got and all(item == (ALICE, "typing", {"typing": "started"}) for item in got)
        await alpha.settle()
        assert await alpha.pending(BOB) == []
        # typing goes over the same session: texts still flow afterwards
        await alice.send_text(BOB, "done typing")
        assert texts(bob, await bob.receive()) == [(ALICE, "done typing")]


async def test_typing_is_not_shown_to_a_device_that_connects_later(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_typing(BOB)
        await alice.send_typing(BOB, started=False)
        assert await alpha.pending(BOB) == []
        result = await bob.receive()
        assert result.messages == [] and result.rejected == []
        await alice.send_text(BOB, "hello")
        assert shown(bob, await bob.receive()) == [(ALICE, "text", {"text": "hello"})]


# Devices ------------------------------------------------------------------------------------


async def test_linked_devices_receive_and_own_messages_are_synced(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        bob2 = make_device("bob2")
        assert await link_device(bob2, bob, alpha.url) == 2
        profile = bob2.state.profile()
        assert (profile.address, profile.node_url, profile.node_fingerprint) == (BOB, alpha.url, alpha.fingerprint)
        assert profile.account_key.public == bob.state.profile().account_key.public
        assert profile.identity.public != bob.state.profile().identity.public
        listed = await bob2.devices()
        assert [(d.device, d.this_device) for d in listed] == [(1, False), (2, True)]
        assert [d.fingerprint for d in listed] == [bob.state.profile().identity.public.fingerprint, profile.identity.public.fingerprint]

        # the new device receives the next message to bob
        sent = await alice.send_text(BOB, "to all of bob")
        assert (sent.devices, sent.own_devices) == (2, 0)
        assert texts(bob, await bob.receive()) == [(ALICE, "to all of bob")]
        assert texts(bob2, await bob2.receive()) == [(ALICE, "to all of bob")]

        # alice links a second device: her own messages reach it as "text" with "to"
        alice2 = make_device("alice2")
        assert await link_device(alice2, alice, alpha.url) == 2
        sent = await alice.send_text(BOB, "synced")
        assert (sent.devices, sent.own_devices) == (2, 1)
        [message] = (await alice2.receive()).messages
        assert (message.id, message.sender, message.peer, message.type) == (sent.id, ALICE, BOB, "text")
        assert message.fields == {"text": "synced", "to": BOB}
        alice2.state.mark_shown([message.id])

        # bob's reply from his second device reaches both of alice's devices and bob's first
        reply = await bob2.send_text(ALICE, "reply from bob2")
        assert (reply.devices, reply.own_devices) == (2, 1)
        assert texts(alice, await alice.receive()) == [(BOB, "reply from bob2")]
        assert texts(alice2, await alice2.receive()) == [(BOB, "reply from bob2")]
        got = [(m.sender, m.peer, m.fields) for m in (await bob.receive()).messages if m.type == "text"]
        assert (BOB, ALICE, {"text": "reply from bob2", "to": ALICE}) in got


async def test_sending_to_ones_own_account_reaches_only_the_other_devices(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        alice2 = make_device("alice2")
        await link_device(alice2, alice, alpha.url)
        sent = await alice.send_text(ALICE, "note to self")
        assert (sent.devices, sent.own_devices) == (1, 0)
        assert await alpha.pending(ALICE, 1) == []
        assert texts(alice2, await alice2.receive()) == [(ALICE, "note to self")]


async def test_removed_device_is_cut_off_and_no_longer_receives(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        alice2 = make_device("alice2")
        await link_device(alice2, alice, alpha.url)
        await alice.send_text(ALICE, "hello other me")  # a session alice -> alice2
        assert alice.state.session(ALICE, 2) is not None
        assert texts(alice2, await alice2.receive()) == [(ALICE, "hello other me")]

        with pytest.raises(LocalProtocolError, match="has no device 7"):
            await alice.remove_device(7)

        # a connection alice2 holds open is closed by the removal
        errors: list[BaseException] = []

        async def listen() -> None:
            try:
                await alice2.receive(wait=10)
            except NodeError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            await _until_connected(alpha, 1)
            await alice.remove_device(2)
        [closed] = errors
        assert closed.code == "device_removed"

        assert [(d.device, d.this_device) for d in await alice.devices()] == [(1, True)]
        assert alice.state.session(ALICE, 2) is None
        # from now on every connection of alice2 hears that it was removed
        with pytest.raises(NodeError) as info:
            await alice2.receive()
        assert info.value.code == "device_removed"
        with pytest.raises(NodeError) as info:
            await alice2.send_text(BOB, "still here?")
        assert info.value.code == "device_removed"

        sent = await alice.send_text(BOB, "after removal")
        assert (sent.devices, sent.own_devices) == (1, 0)
        reply = await bob.send_text(ALICE, "to alice")
        assert reply.devices == 1
        assert [i.id for i in await alpha.pending(ALICE, 1)] == [reply.id]
        assert await alpha.pending(ALICE, 2) == []
        assert texts(bob, await bob.receive()) == [(ALICE, "after removal")]
        assert (BOB, "to alice") in texts(alice, await alice.receive())


async def test_the_last_device_cannot_be_removed(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        with pytest.raises(NodeError) as info:
            await alice.remove_device(1)
        assert info.value.code == "last_device"
        assert [d.device for d in await alice.devices()] == [1]


class _StaleDirectory:
    """Makes client.sdk see an old view of one account once (as if fetched just before the
    account changed), and records the node's DeviceMismatch answers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, account: str) -> None:
        self.account = account
        self.stale = None
        self.serve_stale = False
        self.mismatches: list[DeviceMismatch] = []
        real_fetch = sonet.client.sdk.fetch_account
        real_request = Connection.request

        async def fetch(conn, state, address, **kw):  # noqa: ANN001, ANN202
            if str(address) == self.account and self.serve_stale:
                self.serve_stale = False
                return self.stale
            view = await real_fetch(conn, state, address, **kw)
            if str(address) == self.account and self.stale is None:
                self.stale = view
            return view

        async def request(conn, build):  # noqa: ANN001, ANN202
            reply = await real_request(conn, build)
            if isinstance(reply, DeviceMismatch):
                self.mismatches.append(reply)
            return reply

        monkeypatch.setattr(sonet.client.sdk, "fetch_account", fetch)
        monkeypatch.setattr(Connection, "request", request)


async def test_a_stale_device_list_is_corrected_when_a_device_was_added(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        directory = _StaleDirectory(monkeypatch, BOB)
        await alice.send_text(BOB, "while bob has one device")
        assert sorted(directory.stale.devices) == [1]
        bob2 = make_device("bob2")
        await link_device(bob2, bob, alpha.url)

        directory.serve_stale = True
        sent = await alice.send_text(BOB, "after bob linked")
        assert [(m.account, m.missing, m.extra) for m in directory.mismatches] == [(BOB, (2,), ())]
        assert sent.devices == 2
        assert texts(bob, await bob.receive()) == [(ALICE, "while bob has one device"), (ALICE, "after bob linked")]
        assert texts(bob2, await bob2.receive()) == [(ALICE, "after bob linked")]


async def test_a_stale_device_list_is_corrected_when_a_device_was_removed(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        bob2 = make_device("bob2")
        await link_device(bob2, bob, alpha.url)
        directory = _StaleDirectory(monkeypatch, BOB)
        assert (await alice.send_text(BOB, "to both")).devices == 2
        assert alice.state.session(BOB, 2) is not None
        await bob.remove_device(2)

        directory.serve_stale = True
        sent = await alice.send_text(BOB, "to the one left")
        assert [(m.account, m.missing, m.extra) for m in directory.mismatches] == [(BOB, (), (2,))]
        assert sent.devices == 1
        assert alice.state.session(BOB, 2) is None  # the session with the removed device is gone
        assert texts(bob, await bob.receive()) == [(ALICE, "to both"), (ALICE, "to the one left")]


# Identity changes and safety numbers ---------------------------------------------------------


def _replace_account_key(at: RunningNode, account: str, fingerprints: set[str], clock: Clock) -> SigningKey:
    """What a compromised node (or a re-registration) does: serve another account identity
    key with a device list it signed."""
    key = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
    db = node_db(at)
    try:
        version = db.execute("SELECT device_list_version FROM accounts WHERE account = ?", (account,)).fetchone()[0] + 1
        signed = sign_device_list(key, account=account, version=version, devices=fingerprints, now=clock())
        db.execute(
            "UPDATE accounts SET account_identity = ?, device_list = ?, device_list_version = ? WHERE account = ?",
            (encode_account_identity(key), signed, version, account),
        )
        append_leaf(db, account, clock())
    finally:
        db.close()
    return key


async def test_changed_identity_blocks_sending_until_trusted(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "before")
        before = await alice.safety_number(BOB)
        assert not before.changed
        new_key = _replace_account_key(alpha, BOB, {bob.state.profile().identity.public.fingerprint}, clock)

        # bob receives "before" and acknowledges it with a receipt: alice is warned, not blocked
        assert texts(bob, await bob.receive()) == [(ALICE, "before")]
        warned = await alice.receive()
        assert warned.identity_changes == [BOB]
        assert [(s, k) for s, k, _f in shown(alice, warned)] == [(BOB, "receipt")]

        with pytest.raises(IdentityChanged, match=f"identity key of {BOB} changed"):
            await alice.send_text(BOB, "must not go out")
        with pytest.raises(IdentityChanged):
            await alice.send_typing(BOB)
        await alpha.settle()
        assert await alpha.pending(BOB) == []

        after = await alice.safety_number(BOB)
        assert after.changed and after.number != before.number and after.qr != before.qr
        assert re.fullmatch(r"\d{5}( \d{5}){11}", after.number)

        assert alice.trust(BOB) is True
        assert not (await alice.safety_number(BOB)).changed
        assert (await alice.safety_number(BOB)).number == after.number
        sent = await alice.send_text(BOB, "after trusting")
        assert sent.devices == 1
        assert texts(bob, await bob.receive()) == [(ALICE, "after trusting")]
        assert new_key.public != bob.state.profile().account_key.public


async def test_a_device_notices_its_own_account_key_was_replaced(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        await register(alpha, "alice")
        bob = await register(alpha, "bob")
        _replace_account_key(alpha, BOB, {bob.state.profile().identity.public.fingerprint}, clock)
        with pytest.raises(IdentityChanged, match=BOB):
            await bob.send_text(ALICE, "hi")
        assert await alpha.pending(ALICE) == []


async def test_trust_without_a_contact_reports_false(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        assert alice.trust(CAROL) is False


async def test_safety_numbers_match_on_both_sides_and_on_every_device(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        mine = await alice.safety_number(BOB)
        theirs = await bob.safety_number(ALICE)
        assert mine.number == theirs.number
        assert re.fullmatch(r"\d{5}( \d{5}){11}", mine.number)
        assert mine.address == BOB and theirs.address == ALICE
        assert not mine.changed and not theirs.changed
        assert mine.qr.startswith("sonet-safety:") and mine.qr != theirs.qr

        bob2 = make_device("bob2")
        await link_device(bob2, bob, alpha.url)
        assert (await bob2.safety_number(ALICE)).number == mine.number
        # adding a device does not change the number
        assert (await alice.safety_number(BOB)).number == mine.number

        await register(alpha, "carol")
        assert (await alice.safety_number(CAROL)).number != mine.number


async def test_a_rolled_back_device_list_is_refused(alpha: RunningNode, register, make_device, clock: Clock) -> None:
    """A node that serves an older signed list (one still naming a removed device) is caught."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "hello")  # alice now holds bob's list, version 1
        db = node_db(alpha)
        (old_list,) = db.execute("SELECT device_list FROM accounts WHERE account = ?", (BOB,)).fetchone()
        assert await link_device(make_device("bob2"), bob, alpha.url) == 2
        await alice.send_text(BOB, "to both devices")  # alice accepts version 2
        # a consistent old view: version 1 and only device 1 (as if the link never happened)
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM devices WHERE account = ? AND device_id = 2", (BOB,))
        db.execute("UPDATE accounts SET device_list = ?, device_list_version = 1 WHERE account = ?", (old_list, BOB))
        append_leaf(db, BOB, clock())
        with pytest.raises(VerifyError, match="older than version 2"):
            await alice.send_text(BOB, "must not be sent")


async def test_link_begin_gives_up_with_a_clear_error_when_its_code_expires(alpha: RunningNode, make_device, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        new = make_device("late")
        codes: list[str] = []

        def show(code: str) -> None:
            codes.append(code)
            clock.advance(11 * 60 * 1000)  # nobody approves within the slot's 10 minutes

        with pytest.raises(LocalProtocolError, match="link code expired"):
            await new.link_begin(alpha.url, show)
        assert len(codes) == 1 and not new.state.registered()
