"""The device SDK across nodes: texts to accounts of another node, sender certificates of other
nodes (their keys fetched through the home node), and the delivery state of sent messages
(``Device.sent``, ``sonet sent``). Two in-process nodes are federated over the loopback of
tests/client/loopback.py; outboxes move only when a test flushes them."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from sonet.client import cli
from sonet.client.connection import NodeError
from sonet.client.sdk import Device, SendResult
from sonet.client.state import DeviceState, Profile, SentMessage
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey
from sonet.core.errors import LocalProtocolError
from sonet.core.federation_api import REFUSALS
from tests.node.conftest import RunningNode

from .conftest import ALICE, BETA, HANG_S, Clock, shown, texts
from .loopback import Loopback

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]
BOB_B = f"bob@{BETA}"
UNREACHABLE = ("unreachable", f"cannot reach {BETA}: connection refused")


def states(messages: list[SentMessage]) -> list[tuple[str, str, str]]:
    return [(m.state, m.code, m.message) for m in messages]


async def test_a_text_to_another_node_is_sent_queued_accepted_then_delivered(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        sent = await alice.send_text("Bob@Beta.Example", "hello from alpha")
        assert (sent.recipient, sent.devices, sent.accepted_by, sent.state) == (BOB_B, 1, "alpha.example", "sent")
        assert states(alice.state.sent_messages(5)) == [("sent", "", "")]
        assert await beta.pending(BOB_B) == []
        # alpha holds it in its outbox for beta
        assert states(await alice.sent()) == [("queued", "", "")]

        assert await loopback.flush() == {BETA: ["ok"]}
        [accepted] = await alice.sent()
        assert (accepted.id, accepted.to, accepted.state) == (sent.id, BOB_B, "accepted")

        result = await bob.receive()
        assert result.rejected == [] and texts(bob, result) == [(ALICE, "hello from alpha")]
        # bob's device checked alice's sender certificate, alice's device beta's directory head
        assert [c for c in loopback.calls if c[:2] == (BETA, "FetchNodeKey")] == [(BETA, "FetchNodeKey", "alpha.example")]
        assert [c for c in loopback.calls if c[:2] == ("alpha.example", "FetchNodeKey")] == [("alpha.example", "FetchNodeKey", BETA)]
        # bob's delivery receipt crosses back the same way
        assert await loopback.flush() == {"alpha.example": ["ok"]}
        clock.advance(1000)
        [(sender, kind, fields)] = shown(alice, await alice.receive())
        assert (sender, kind, fields["receipt"], fields["ids"]) == (BOB_B, "receipt", "delivered", [sent.id.hex()])
        [delivered] = await alice.sent()
        assert delivered.state == "delivered" and delivered.delivered_at == clock() - 1000

        await bob.send_text(ALICE, "hi alpha")
        await loopback.flush()
        assert texts(alice, await alice.receive()) == [(BOB_B, "hi alpha")]


async def test_an_unreachable_sender_node_keeps_the_envelopes_and_its_key_is_asked_again(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        first = await alice.send_text(BOB_B, "one")
        second = await alice.send_text(BOB_B, "two")
        assert await loopback.flush() == {BETA: ["ok", "ok"]}

        loopback.down["alpha.example"] = ("unreachable", "cannot reach alpha.example: connection refused")
        kept = await bob.receive()
        assert kept.messages == []
        assert kept.rejected == [
            f"kept envelope {i.hex()} for later: cannot reach alpha.example: connection refused" for i in (first.id, second.id)
        ]
        # "not now" is not remembered, even for the connection: asked again for each envelope
        # (after the check of bob's own lookup, whose head alpha cosigned)
        assert [c for c in loopback.calls if c[:2] == (BETA, "FetchNodeKey")] == [(BETA, "FetchNodeKey", "alpha.example")] * 3
        await beta.settle()
        assert [i.id for i in await beta.pending(BOB_B)] == [first.id, second.id]  # not acknowledged

        del loopback.down["alpha.example"]
        result = await bob.receive()
        assert result.rejected == [] and texts(bob, result) == [(ALICE, "one"), (ALICE, "two")]


async def test_a_certificate_that_does_not_verify_with_the_node_key_is_dropped(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        sent = await alice.send_text(BOB_B, "signed by alpha")
        await loopback.flush()
        # beta hands out another key for alpha: alpha's certificates no longer verify
        loopback.keys["alpha.example"] = SigningKey.generate(CryptoMode.HYBRID, os.urandom).public.to_bytes()
        result = await bob.receive()
        assert result.messages == []
        assert result.rejected == [f"dropped envelope {sent.id.hex()}: sender certificate signature does not verify"]
        await beta.settle()
        assert await beta.pending(BOB_B) == []  # dropped for good, like any forgery


async def test_queued_says_why_and_failed_says_what_the_recipients_node_refused(
    loopback: Loopback, start_node: Callable[..., Awaitable[RunningNode]], register: Register
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = await start_node(), await start_node(name=BETA, mailbox_max_envelopes=1)
        alice = await register(alpha, "alice")
        await register(beta, "bob")
        first = await alice.send_text(BOB_B, "fits")
        second = await alice.send_text(BOB_B, "does not fit")
        loopback.down[BETA] = UNREACHABLE
        assert await loopback.flush() == {}
        assert states(await alice.sent()) == [("queued", *UNREACHABLE)] * 2

        del loopback.down[BETA]
        assert await loopback.flush() == {BETA: ["ok", "mailbox_full"]}
        newest, oldest = await alice.sent()
        assert (newest.id, newest.state, newest.code, newest.message) == (second.id, "failed", "mailbox_full", REFUSALS["mailbox_full"])
        assert (oldest.id, oldest.state) == (first.id, "accepted")
        assert cli._sent_line(newest).endswith(f"failed: {REFUSALS['mailbox_full']} (mailbox_full)  id {second.id.hex()}")
        # final states are not asked for again (the node is not even contacted)
        loopback.down[BETA] = UNREACHABLE
        assert states(await alice.sent()) == [("failed", "mailbox_full", REFUSALS["mailbox_full"]), ("accepted", "", "")]


async def test_remote_lookups_fail_with_one_clear_error_and_typing_is_never_queued(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice = await register(alpha, "alice")
        await register(beta, "bob")
        with pytest.raises(NodeError) as err:
            await alice.send_text(f"nobody@{BETA}", "hello?")
        assert err.value.code == "unknown_account"
        loopback.down[BETA] = UNREACHABLE
        with pytest.raises(NodeError) as err:  # (a text waits instead: tests/client/test_pending_sends.py)
            await alice.send_typing(BOB_B)
        assert (err.value.code, str(err.value)) == UNREACHABLE
        del loopback.down[BETA]
        await alice.send_typing(BOB_B)  # accepted by alpha, sent on at once (bob is not connected: gone)
        assert await loopback.flush() == {}
        assert alice.state.sent_messages(10) == []


async def test_local_messages_are_accepted_at_once(
    alpha_beta: tuple[RunningNode, RunningNode], register: Register, clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alpha, _beta = alpha_beta
        alice = await register(alpha, "alice")
        await register(alpha, "bob")
        sent = []
        for text in ("one", "two", "three"):
            sent.append(await alice.send_text(f"bob@{alpha.config.name}", text))
            clock.advance(10)
        assert {(s.state, s.accepted_by) for s in sent} == {("accepted", "alpha.example")}

        # `sent` still asks the node (receipts wait in the mailbox); offline, the CLI shows the
        # state's last known answer (tests/client/test_cli_commands.py)
        assert [m.id for m in await alice.sent(2)] == [sent[2].id, sent[1].id]
        assert states(alice.state.sent_messages(5)) == [("accepted", "", "")] * 3
        assert states(await alice.sent()) == [("accepted", "", "")] * 3
        with pytest.raises(LocalProtocolError, match="the limit 0 is not a whole number from 1 up"):
            await alice.sent(0)


# Local state and the command line -------------------------------------------------------------


def _registered_state(home: Path) -> DeviceState:
    state = DeviceState(home)
    mode = CryptoMode.HYBRID
    state.save_profile(
        Profile(
            address=ALICE, device_id=1, node_url="ws://127.0.0.1:1", node_fingerprint="x" * 32, mode=mode,
            identity=SigningKey.generate(mode, os.urandom), identity_dh=os.urandom(32),
            hpke=HpkePrivateKey.generate(mode, os.urandom), account_key=SigningKey.generate(mode, os.urandom),
        )
    )
    return state


def test_a_state_db_from_before_federation_keeps_its_sent_messages(tmp_path: Path) -> None:
    home = tmp_path / "old"
    home.mkdir()
    db = sqlite3.connect(home / "state.db")
    db.execute(
        "CREATE TABLE sent (id BLOB PRIMARY KEY, recipient TEXT NOT NULL, sent_at INTEGER NOT NULL, "
        "devices INTEGER NOT NULL, delivered_at INTEGER, read_at INTEGER)"
    )
    db.execute("INSERT INTO sent VALUES (?, 'bob@alpha.example', 1000, 2, 2000, NULL)", (b"a" * 16,))
    db.execute("INSERT INTO sent VALUES (?, 'bob@alpha.example', 3000, 2, NULL, NULL)", (b"b" * 16,))
    db.commit()
    db.close()
    state = DeviceState(home)
    try:
        assert state.sent_messages(10) == [
            SentMessage(id=b"b" * 16, to="bob@alpha.example", sent_at=3000, devices=2, state="accepted", code="", message="", delivered_at=None, read_at=None),
            SentMessage(id=b"a" * 16, to="bob@alpha.example", sent_at=1000, devices=2, state="delivered", code="", message="", delivered_at=2000, read_at=None),
        ]
        state.record_sent(b"c" * 16, BOB_B, 4000, 1, state="sent")
        state.update_sent([(b"c" * 16, "failed", "unknown_device", "gone"), (b"b" * 16, "failed", "expired", "late")])
        # a final state never changes
        assert states(state.sent_messages(2)) == [("failed", "unknown_device", "gone"), ("accepted", "", "")]
    finally:
        state.close()


def test_sonet_sent_prints_json_lines_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "alice"
    state = _registered_state(home)
    state.record_sent(b"\x01" * 16, BOB_B, 1_700_000_000_000, 1, state="sent")
    state.update_sent([(b"\x01" * 16, "failed", "not_relaying", REFUSALS["not_relaying"])])
    state.record_sent(b"\x02" * 16, "bob@alpha.example", 1_700_000_001_000, 2, state="accepted")
    state.record_receipt([b"\x02" * 16], "read", 1_700_000_002_000, recipient="bob@alpha.example")
    state.close()

    assert cli.main(["--home", str(home), "sent", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # its node (port 1) cannot be reached: the last known state, said so
    assert lines == [
        {"id": "02" * 16, "to": "bob@alpha.example", "sent_at": "2023-11-14T22:13:21.000Z", "state": "read", "code": "",
         "message": "", "delivered_at": None, "read_at": "2023-11-14T22:13:22.000Z", "refreshed": False},
        {"id": "01" * 16, "to": BOB_B, "sent_at": "2023-11-14T22:13:20.000Z", "state": "failed", "code": "not_relaying",
         "message": REFUSALS["not_relaying"], "delivered_at": None, "read_at": None, "refreshed": False},
    ]
    assert cli.main(["--home", str(home), "sent", "--limit", "1"]) == 0
    assert capsys.readouterr().out == f"[2023-11-14T22:13:21.000Z] -> bob@alpha.example  read 2023-11-14T22:13:22.000Z  id {'02' * 16}\n"
    with pytest.raises(SystemExit) as usage:
        cli.main(["--home", str(home), "sent", "--limit", "0"])
    assert usage.value.code == 2 and capsys.readouterr().err.endswith("argument --limit: '0' is not a whole number from 1 up\n")


def test_sonet_send_says_which_node_accepted_it() -> None:
    local = SendResult(id=b"\x03" * 16, recipient="bob@alpha.example", devices=2, own_devices=0, accepted_by="alpha.example", state="accepted")
    remote = SendResult(id=b"\x03" * 16, recipient=BOB_B, devices=1, own_devices=1, accepted_by="alpha.example", state="sent")
    assert cli._send_line(local) == f"sent to bob@alpha.example (2 devices); id {'03' * 16}; accepted by alpha.example, the recipient's node"
    assert cli._send_line(remote) == (
        f"sent to {BOB_B} (1 device); id {'03' * 16}; accepted by alpha.example, on its way to {BETA} (see `sonet sent`)"
    )
