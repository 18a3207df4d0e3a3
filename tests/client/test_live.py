"""The long-lived connection (client/live.py, ``Device.live()``) against a real node in the
test's trio run: pushed deliveries without polling, stored before they are acknowledged,
sends over the session, receipts and sent states as events, and a node that goes away and
comes back (through tests/e2e/proxy.py's TCP proxy, which can refuse and drop connections).
Fixtures: tests/client/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

from sonet.client.connection import ConnectError, NodeError
from sonet.client.live import LiveEvent, LiveSession, Notice, Offline, Online, Received, SentChanged
from sonet.client.sdk import Device
from sonet.client.state import StateError
from sonet.core.errors import LocalProtocolError
from tests.e2e.proxy import TcpProxy
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, HANG_S, link_device, texts

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)


class Events:
    """The session's events as they come, read by one task; ``until`` waits for a kind."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.seen: list[LiveEvent] = []
        self._iter: AsyncIterator[LiveEvent] = session.events().__aiter__()

    async def until(self, kind: type, match: Callable[[LiveEvent], bool] = lambda _e: True) -> LiveEvent:
        while True:
            event = await self._iter.__anext__()
            self.seen.append(event)
            if isinstance(event, kind) and match(event):
                return event


def received_texts(event: LiveEvent) -> list[tuple[str, str]]:
    assert isinstance(event, Received)
    return [(m.sender, m.fields["text"]) for m in event.messages if m.type == "text"]


async def test_a_live_session_gets_pushed_messages_without_polling_and_sends_over_the_same_connection(
    alpha: RunningNode, register: Register
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        async with alice.live() as session:
            events = Events(session)
            online = await events.until(Online)
            assert online == Online(node=alpha.config.name) and session.online
            for n in range(3):
                await bob.send_text(ALICE, f"hello {n}")
                got = await events.until(Received, lambda e: bool(received_texts(e)))
                assert received_texts(got) == [(BOB, f"hello {n}")]
                alice.state.mark_shown([m.id for m in got.messages])  # the consumer shows them
            # alice's reply goes over the live connection; bob's receipt comes back as events
            sent = await session.send_text(BOB, "hi bob")
            assert sent.state == "accepted"
            await bob.receive()
            changed = await events.until(SentChanged, lambda e: sent.id in e.ids)
            assert changed.ids == (sent.id,)
            message = alice.state.sent_message(sent.id)
            assert message is not None and message.state == "delivered"
            assert session.connections == 1  # one connection all along: nothing polled or reconnected
        assert not session.online
        # nothing waits on the node for alice: each batch was acknowledged. The last ack may
        # still be on its way into the node's store when the session has closed, so wait for
        # it (a lost ack would leave the receipt pending and fail at HANG_S).
        while await alpha.pending(ALICE):
            await trio.sleep(0.05)


async def test_a_batch_is_acknowledged_only_after_it_is_stored(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")

        def broken(_messages: object) -> None:
            raise StateError("the device state cannot be written (disk full)")

        async with alice.live() as session:
            events = Events(session)
            await events.until(Online)
            monkeypatch.setattr(alice.state, "store_received", broken)
            await bob.send_text(ALICE, "kept by the node")
            with pytest.raises(StateError, match="disk full"):
                await events.until(Received)  # the session ends with the device's own error
        assert len(await alpha.pending(ALICE)) == 1  # not acknowledged
        monkeypatch.undo()
        async with alice.live() as session:
            events = Events(session)
            got = await events.until(Received)
            assert received_texts(got) == [(BOB, "kept by the node")]
        assert await alpha.pending(ALICE) == []


async def test_sending_checks_its_input_like_send(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        await register(alpha, "bob")
        async with alice.live() as session:
            await Events(session).until(Online)
            with pytest.raises(LocalProtocolError, match="empty message"):
                await session.send_text(BOB, "")
            with pytest.raises(LocalProtocolError, match="invalid address 'no address'"):
                await session.send_text("no address", "hi")
            assert session.online  # a refusal of the input, not of the connection


async def test_the_node_going_away_makes_the_session_offline_and_a_text_written_meanwhile_goes_once_when_it_is_back(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    proxy = TcpProxy(int(alpha.url.rsplit(":", 1)[1]))
    try:
        with trio.fail_after(HANG_S):
            alice = make_device("alice")
            await alice.register(ALICE, proxy.url, await alpha.mint_invite())
            bob = await register(alpha, "bob")
            await bob.send_text(ALICE, "before")  # bob's session with alice exists
            async with alice.live() as session:
                events = Events(session)
                assert received_texts(await events.until(Received)) == [(BOB, "before")]
                proxy.refuse(True)
                proxy.drop()
                offline = await events.until(Offline)
                assert isinstance(offline, Offline) and offline.reason and 0 < offline.retry_in_s <= 1.0
                assert not session.online
                kept = await session.send_text(BOB, "written offline")
                assert (kept.state, kept.code) == ("pending", "offline")
                # why: the connection's end, as the Offline event said (not "not connected" twice)
                assert kept.message.startswith("the home node cannot be reached now (") and "node now)" not in kept.message, kept.message
                waiting = alice.state.sent_message(kept.id)
                assert waiting is not None and waiting.state == "pending"
                await events.until(Offline)  # tries again, and says so each time
                proxy.refuse(False)
                await events.until(Online)
                notice = await events.until(Notice)
                assert f"sent the message to {BOB} that waited on this device" in notice.text
                await events.until(SentChanged, lambda e: kept.id in e.ids)
                sent = alice.state.sent_message(kept.id)
                assert sent is not None and sent.state == "accepted"
                assert session.connections == 2
            got = await bob.receive()
            assert texts(bob, got) == [(ALICE, "written offline")]
            assert texts(bob, await bob.receive()) == []  # once
    finally:
        proxy.close()


async def test_group_texts_typing_and_read_receipts_go_over_the_session(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await bob.receive()  # publishes bob's group keys
        view = await alice.group_create("hikers", [BOB])
        await bob.receive()
        async with alice.live() as session:
            events = Events(session)
            await events.until(Online)
            sent = await session.send_group("hikers", "over the live connection")
            assert (sent.group, sent.state) == (view.id, "queued")
            # the hub's order comes back through the live connection: the text is "ordered"
            await events.until(SentChanged, lambda e: sent.id in e.ids)
            got = await bob.receive()
            [message] = got.group_messages
            assert message.text == "over the live connection"
            bob.state.mark_group_messages_shown([(message.group, message.seq)])
            # bob's delivery receipt, then his typing and a text: all pushed to alice's session
            await events.until(SentChanged, lambda e: sent.id in e.ids)
            mine = alice.state.sent_message(sent.id)
            assert mine is not None and mine.delivered == 1
            await bob.send_typing(ALICE)
            typing = await events.until(Received, lambda e: any(m.type == "typing" for m in e.messages))
            assert [(m.sender, m.fields["typing"]) for m in typing.messages] == [(BOB, "started")]
            await bob.send_text(ALICE, "read me")
            got_text = await events.until(Received, lambda e: bool(received_texts(e)))
            [text] = got_text.messages
            async with bob.live() as bob_session:  # typing notices reach connected devices only
                bob_events = Events(bob_session)
                await bob_events.until(Online)
                await session.send_typing(BOB)
                typed = await bob_events.until(Received, lambda e: any(m.type == "typing" for m in e.messages))
                assert [(m.sender, m.fields["typing"], "group" in m.fields) for m in typed.messages] == [(ALICE, "started", False)]
                await session.send_typing("hikers", started=False)
                typed = await bob_events.until(Received, lambda e: any(m.type == "typing" for m in e.messages))
                assert [(m.fields["typing"], m.fields["group"]["id"]) for m in typed.messages] == [("stopped", view.id)]
                await session.send_read(BOB, [text.id])
                read = await bob_events.until(Received, lambda e: any(m.type == "receipt" for m in e.messages))
                assert [(m.fields["receipt"], m.fields["ids"]) for m in read.messages] == [("read", [text.id.hex()])]

async def test_a_device_removed_from_its_account_ends_the_session_with_that_error(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice = await register(alpha, "alice")
        phone = make_device("phone")
        await link_device(phone, alice, alpha.url)
        async with phone.live() as session:
            events = Events(session)
            await events.until(Online)
            await alice.remove_device(2)
            with pytest.raises(NodeError) as info:
                await events.until(Received, lambda _e: False)
            assert info.value.code == "device_removed"
            with pytest.raises(NodeError):  # and says so to a send too
                await session.send_text(ALICE, "still there?")


async def test_a_text_whose_connection_drops_mid_send_is_kept_with_its_id_and_arrives_once(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = TcpProxy(int(alpha.url.rsplit(":", 1)[1]))
    try:
        with trio.fail_after(HANG_S):
            alice = make_device("alice")
            await alice.register(ALICE, proxy.url, await alpha.mint_invite())
            bob = await register(alpha, "bob")
            original = Device._send

            async def taken_then_dropped(self: Device, *args: object, **kwargs: object) -> object:
                reply = await original(self, *args, **kwargs)  # type: ignore[arg-type]
                monkeypatch.setattr(Device, "_send", original)  # once
                proxy.drop()  # the node holds the text, its answer is lost
                raise ConnectError("the connection dropped")

            async with alice.live() as session:
                events = Events(session)
                await events.until(Online)
                monkeypatch.setattr(Device, "_send", taken_then_dropped)
                kept = await session.send_text(BOB, "only once")
                assert (kept.state, kept.code) == ("pending", "offline")
                await events.until(Offline)
                await events.until(Online)
                await events.until(SentChanged, lambda e: kept.id in e.ids)
                sent = alice.state.sent_message(kept.id)
                assert sent is not None and sent.state == "accepted"
            got = await bob.receive()
            assert [m.id for m in got.messages if m.type == "text"] == [kept.id]
            assert texts(bob, got) == [(ALICE, "only once")]
            assert texts(bob, await bob.receive()) == []
    finally:
        proxy.close()


async def test_an_exclusive_block_holds_back_the_next_batch_until_it_ends(alpha: RunningNode, register: Register) -> None:
    """Device operations the session does not carry (a group change, a lookup) run in
    ``exclusive()``: a batch pushed meanwhile is stored and reported only after the block."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        async with alice.live() as session:
            events = Events(session)
            await events.until(Online)
            async with session.exclusive():
                await bob.send_text(ALICE, "while alice looks up bob")
                lookup = await alice.lookup(BOB)  # a connection of its own
                assert lookup.view.address == BOB
                await trio.sleep(0.3)  # time for the push to arrive: its batch waits for the lock
                assert not alice.state.unshown()
                assert len(await alpha.pending(ALICE)) == 1  # not acknowledged either
            got = await events.until(Received, lambda e: bool(received_texts(e)))
            assert received_texts(got) == [(BOB, "while alice looks up bob")]


async def test_a_long_connection_tops_up_the_prekeys_others_take_meanwhile(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contacts starting sessions use up a device's one-time prekeys while it stays connected:
    the session tops them up every KEYS_REFRESH_S, not only when it reconnects."""
    from sonet.client import live, prekeys

    monkeypatch.setattr(live, "KEYS_REFRESH_S", 0.2)
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        async with alpha.store() as store:
            full = await store.prekey_counts(ALICE, 1)
        async with alice.live() as session:
            events = Events(session)
            await events.until(Online)
            async with alpha.store() as store:
                for _ in range(prekeys.TARGET - prekeys.LOW + 1):  # below the mark that makes a device top up
                    await store.take_bundle(ALICE, 1)
                assert await store.prekey_counts(ALICE, 1) < full
            while True:
                await trio.sleep(0.1)
                async with alpha.store() as store:
                    if await store.prekey_counts(ALICE, 1) == full:
                        break
            assert session.connections == 1  # topped up on the same connection
