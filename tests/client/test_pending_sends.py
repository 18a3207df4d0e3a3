"""Texts that wait on the device (client/pending.py): a send whose recipient's node is down is
kept, sealed at rest, as "pending" and sent by itself on the device's next connection, exactly
once, in order; definite failures fail at once (or mark a waiting text failed); the caps and
the 30-day expiry hold. Two in-process nodes federated over tests/client/loopback.py; a node is
"down" while ``loopback.down`` names it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

import sonet.client.state_pending
from sonet.client import cli
from sonet.client.connection import ConnectError, NodeError
from sonet.client.pending import PENDING_TTL_MS
from sonet.client.sdk import Device, SendResult
from sonet.client.state import DeviceState, SentMessage
from sonet.core.errors import LocalProtocolError
from tests.node.conftest import RunningNode

from .conftest import ALICE, BETA, HANG_S, Clock, link_device, texts
from .loopback import Loopback

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]
BOB_B = f"bob@{BETA}"
UNREACHABLE = ("unreachable", f"cannot reach {BETA}: connection refused")
#: distinctive texts, looked for in the state files
SECRET = "the pending plaintext 7f3a9c"


def states(messages: list[SentMessage]) -> list[tuple[bytes, str, str, str]]:
    return [(m.id, m.state, m.code, m.message) for m in messages]


def state_files(device: Device) -> bytes:
    """Every byte this device's state keeps on disk (database, WAL, key file, vault.json)."""
    home: Path = device.state.home
    return b"".join(p.read_bytes() for p in sorted(home.iterdir()) if p.is_file())


def pending_rows(device: Device) -> int:
    return device.state.pending_count()


async def test_a_text_to_a_down_node_waits_sealed_and_goes_by_itself_exactly_once(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        loopback.down[BETA] = UNREACHABLE
        first = await alice.send_text(BOB_B, SECRET + " one")  # first contact: no keys of bob yet
        assert (first.state, first.code, first.message, first.devices, first.accepted_by) == ("pending", *UNREACHABLE, 0, "")
        clock.advance(10)
        second = await alice.send_text(BOB_B, SECRET + " two")
        assert second.state == "pending" and second.id != first.id
        assert states(alice.state.sent_messages(10)) == [(second.id, "pending", *UNREACHABLE), (first.id, "pending", *UNREACHABLE)]
        assert pending_rows(alice) == 2
        # kept sealed: the plaintext is nowhere in the state files
        assert SECRET.encode() not in state_files(alice)
        assert await loopback.flush() == {}

        # still down: the next connection tries again; they keep waiting, nothing said
        await alice.receive()
        assert alice.notices == [] and pending_rows(alice) == 2

        del loopback.down[BETA]
        clock.advance(10)
        await alice.receive()  # any command that connects sends them first
        assert alice.notices == [
            f"sent the message to {BOB_B} that waited on this device; id {m.id.hex()}" for m in (first, second)
        ]
        assert pending_rows(alice) == 0
        assert states(alice.state.sent_messages(10)) == [(second.id, "sent", "", ""), (first.id, "sent", "", "")]
        assert [m.devices for m in alice.state.sent_messages(10)] == [1, 1]
        # the next connection has nothing left to send
        alice.notices.clear()
        await alice.receive()
        assert alice.notices == []

        assert await loopback.flush() == {BETA: ["ok", "ok"]}
        result = await bob.receive()
        assert result.rejected == [] and texts(bob, result) == [(ALICE, SECRET + " one"), (ALICE, SECRET + " two")]
        # sent_at is when they were written
        assert [m.sent_at for m in result.messages] == [s.sent_at for s in reversed(alice.state.sent_messages(10))]
        assert texts(bob, await bob.receive()) == []


async def test_later_texts_to_a_waiting_recipient_queue_behind_while_others_go(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        carol = await register(alpha, "carol")
        await alice.send_text(BOB_B, "before")  # a session with bob exists: only his device list is asked
        loopback.down[BETA] = UNREACHABLE
        waiting = await alice.send_text(BOB_B, "one")
        assert (waiting.state, waiting.code) == ("pending", "unreachable")
        clock.advance(10)
        loopback.calls.clear()
        behind = await alice.send_text(BOB_B, "two")
        # the waiting text was tried first (one lookup); the new one queued behind it unasked
        assert [c for c in loopback.calls if c[1] == "FetchDevices"] == [("alpha.example", "FetchDevices", BOB_B)]
        assert (behind.state, behind.code, behind.message) == ("pending", *UNREACHABLE)
        local = await alice.send_text(f"carol@{alpha.config.name}", "to carol now")
        assert local.state == "accepted"
        assert texts(carol, await carol.receive()) == [(ALICE, "to carol now")]

        del loopback.down[BETA]
        await alice.receive()
        assert await loopback.flush() == {BETA: ["ok"] * 3}
        assert texts(bob, await bob.receive()) == [(ALICE, "before"), (ALICE, "one"), (ALICE, "two")]


async def test_a_send_in_a_crypto_mode_asked_for_is_refused_behind_a_waiting_text_not_queued_in_the_default_mode(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """ux12: `send B TEXT --crypto-mode pq` while an earlier text to B waited on the device queued
    the new one behind it, silently, to go out in the default mode (a waiting entry keeps no
    mode), as the hybrid session it then used showed. Now refused with one line; a file too."""
    from sonet.core.crypto import CryptoMode
    from sonet.core.ratchet import SessionState

    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        await alice.send_text(BOB_B, "before")  # a hybrid session with bob
        loopback.down[BETA] = UNREACHABLE
        waiting = await alice.send_text(BOB_B, "one")
        assert waiting.state == "pending"
        clock.advance(10)
        says = f"not sent: a message written before to {BOB_B} still waits on this device ({UNREACHABLE[1]}), and one in crypto mode pq"
        with pytest.raises(LocalProtocolError) as refused:
            await alice.send_text(BOB_B, "quantum-safe please", mode=CryptoMode.PQ)
        assert refused.value.code == "crypto_mode_refused" and str(refused.value).startswith(says), refused.value
        photo = tmp_path / "photo.jpg"
        photo.write_bytes(b"\xff\xd8 not much of a photo")
        with pytest.raises(LocalProtocolError) as refused:
            await alice.send_file(BOB_B, photo, mode=CryptoMode.PQ)
        assert refused.value.code == "crypto_mode_refused" and str(refused.value).startswith(says), refused.value
        argv = ["--home", str(alice.state.home), "send", BOB_B, "quantum-safe please", "--crypto-mode", "pq"]
        rc = await trio.to_thread.run_sync(cli.main, argv)
        [line] = capsys.readouterr().err.splitlines()
        assert rc == 1 and line.startswith(f"sonet: error: {says}") and line.endswith("or without --crypto-mode to queue it after it"), line
        assert [m.id for m in alice.state.all_sent_messages(10)][:1] == [waiting.id] and pending_rows(alice) == 1  # nothing kept

        del loopback.down[BETA]
        await alice.receive()  # the waiting text goes; then the mode asked for is honoured
        sent = await alice.send_text(BOB_B, "quantum-safe please", mode=CryptoMode.PQ)
        assert sent.state == "sent" and pending_rows(alice) == 0
        raw = alice.state.session(BOB_B, 1)
        assert raw is not None and SessionState.from_bytes(raw).mode is CryptoMode.PQ


async def test_a_new_device_of_the_recipient_while_its_node_is_down_makes_the_text_wait(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, make_device: Callable[..., Device]
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        await alice.send_text(BOB_B, "hello")
        await loopback.flush()
        bob2 = make_device("bob2")
        await link_device(bob2, bob, beta.url)
        # (the loopback keeps no device lists: as after alpha's cached one of bob went out of date)
        loopback.down[BETA] = UNREACHABLE
        first = await alice.send_text(BOB_B, "to both of bob's devices")
        assert (first.state, first.code, first.message) == ("pending", *UNREACHABLE)

        del loopback.down[BETA]
        await alice.receive()
        [sent] = alice.state.sent_messages(1)
        assert (sent.id, sent.state, sent.devices) == (first.id, "sent", 2)
        await loopback.flush()
        assert texts(bob, await bob.receive()) == [(ALICE, "hello"), (ALICE, "to both of bob's devices")]
        assert texts(bob2, await bob2.receive()) == [(ALICE, "to both of bob's devices")]


async def test_definite_failures_fail_at_once_or_mark_the_waiting_text_failed(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice = await register(alpha, "alice")
        await register(beta, "bob")
        with pytest.raises(NodeError) as err:  # beta answers: no such account
            await alice.send_text(f"nobody@{BETA}", "hello?")
        assert err.value.code == "unknown_account"
        assert alice.state.sent_messages(10) == [] and pending_rows(alice) == 0

        # while beta is down nobody can tell: it waits, and fails once beta answers
        loopback.down[BETA] = UNREACHABLE
        waiting = await alice.send_text(f"nobody@{BETA}", "hello?")
        assert waiting.state == "pending"
        del loopback.down[BETA]
        await alice.receive()
        [failed] = alice.state.sent_messages(10)
        assert (failed.id, failed.state, failed.code) == (waiting.id, "failed", "unknown_account")
        assert failed.message == f"no account nobody@{BETA} on {BETA}"  # the node that answered
        assert alice.notices == [f"could not send the waiting message {waiting.id.hex()} to nobody@{BETA}: {failed.message}"]
        assert pending_rows(alice) == 0
        assert await loopback.flush() == {}


async def test_the_caps_refuse_more_waiting_texts_with_one_clear_error(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice = await register(alpha, "alice")
        await register(beta, "bob")
        monkeypatch.setattr(sonet.client.state_pending, "MAX_PENDING", 2)
        loopback.down[BETA] = UNREACHABLE
        kept = [await alice.send_text(BOB_B, text) for text in ("one", "two")]
        with pytest.raises(LocalProtocolError) as err:
            await alice.send_text(BOB_B, "three")
        assert err.value.code == "pending_full"
        assert str(err.value) == (
            f"not sent: {UNREACHABLE[1]}; nor kept to send later: 2 messages (0 KiB) already wait on this device to be "
            "sent (at most 2 and 2 MiB)"
        )
        assert [m.id for m in alice.state.sent_messages(10)] == [k.id for k in reversed(kept)]

        monkeypatch.setattr(sonet.client.state_pending, "MAX_PENDING", 100)
        monkeypatch.setattr(sonet.client.state_pending, "MAX_PENDING_BYTES", 10)
        with pytest.raises(LocalProtocolError, match="already wait on this device") as err:
            await alice.send_text(BOB_B, "four, too long")
        assert err.value.code == "pending_full" and pending_rows(alice) == 2


async def test_a_text_that_waited_30_days_fails_as_expired(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice = await register(alpha, "alice")
        await register(beta, "bob")
        loopback.down[BETA] = UNREACHABLE
        waiting = await alice.send_text(BOB_B, "late")
        clock.advance(PENDING_TTL_MS - 1)
        await alice.receive()
        assert [m.state for m in alice.state.sent_messages(1)] == ["pending"] and alice.notices == []
        clock.advance(1)

        def home_down(*_args: object, **_kwargs: object) -> None:
            raise ConnectError("cannot connect to the home node")

        with monkeypatch.context() as patch:  # `sonet sent` shows it failed even while the home node is down
            patch.setattr(Device, "_connect", home_down)
            with pytest.raises(ConnectError):
                await alice.sent()
        [expired] = alice.state.sent_messages(1)
        assert (expired.id, expired.state, expired.code) == (waiting.id, "failed", "expired")
        assert expired.message == f"not sent: {BOB_B} could not be reached for 30 days (last: {UNREACHABLE[1]})"
        assert alice.notices == [f"gave up on the message {waiting.id.hex()} to {BOB_B}: it waited 30 days on this device"]
        assert pending_rows(alice) == 0
        del loopback.down[BETA]
        await alice.receive()
        assert await loopback.flush() == {}


class Crash(Exception):
    """The device stops right after the home node accepted a waiting text."""


@pytest.mark.parametrize("forwarded_first", [False, True], ids=["still-in-alpha-outbox", "already-delivered"])
async def test_a_crash_between_acceptance_and_saving_does_not_send_twice(
    alpha_beta: tuple[RunningNode, RunningNode],
    loopback: Loopback,
    register: Register,
    monkeypatch: pytest.MonkeyPatch,
    forwarded_first: bool,
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        loopback.down[BETA] = UNREACHABLE
        waiting = await alice.send_text(BOB_B, "exactly once")
        del loopback.down[BETA]

        def crash(*_args: object, **_kwargs: object) -> None:
            raise Crash()

        with monkeypatch.context() as patch:
            patch.setattr(DeviceState, "pending_sent", crash)
            with pytest.raises(Crash):
                await alice.receive()
        # alpha holds it, the device still thinks it waits
        assert [m.state for m in alice.state.sent_messages(1)] == ["pending"] and pending_rows(alice) == 1
        if forwarded_first:
            assert await loopback.flush() == {BETA: ["ok"]}
            assert texts(bob, await bob.receive()) == [(ALICE, "exactly once")]
            await beta.settle()

        await alice.receive()  # sent again, with the same id: alpha and beta keep the first
        assert states(alice.state.sent_messages(1)) == [(waiting.id, "sent", "", "")] and pending_rows(alice) == 0
        # alpha hands it on again (it keeps no record naming the recipient of what its own
        # devices sent: docs/security.md); beta knows the id and stores nothing new
        assert (await loopback.flush()).get(BETA, []) == ["ok"]
        if forwarded_first:
            assert await beta.pending(BOB_B) == []
        if not forwarded_first:
            assert [i.id for i in await beta.pending(BOB_B)] == [waiting.id]
            assert texts(bob, await bob.receive()) == [(ALICE, "exactly once")]
        assert texts(bob, await bob.receive()) == []
        await loopback.flush()  # bob's delivery receipt
        await alice.receive()
        [delivered] = alice.state.sent_messages(1)
        assert (delivered.id, delivered.state) == (waiting.id, "delivered")


def test_sonet_send_and_sent_say_a_text_waits() -> None:
    result = SendResult(
        id=b"\x05" * 16, recipient=BOB_B, devices=0, own_devices=0, accepted_by="", state="pending", code=UNREACHABLE[0], message=UNREACHABLE[1]
    )
    assert cli._send_line(result) == (
        f"queued on this device: {UNREACHABLE[1]}; it is sent by itself the next time this device connects "
        f"(`sonet sent` shows it as pending); id {'05' * 16}"
    )
    m = SentMessage(
        id=b"\x05" * 16, to=BOB_B, sent_at=1_700_000_000_000, devices=0, state="pending", code=UNREACHABLE[0],
        message=UNREACHABLE[1], delivered_at=None, read_at=None,
    )
    assert cli._sent_line(m) == f"[2023-11-14T22:13:20.000Z] -> {BOB_B}  pending: {UNREACHABLE[1]} (unreachable)  id {'05' * 16}"
