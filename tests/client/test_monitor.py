"""Self-monitoring on in-process nodes: every connection a device opens checks its own
account's directory entries, so a device nobody approved or an identity key swapped by the
node is reported on the device (`sonet alerts`, the line after any command) and to the
account's other devices."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client import cli, monitor
from sonet.client.directory import IdentityChanged
from sonet.client.sdk import Device
from sonet.client.state import ALERT, NOTICE
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.device_list import encode_account_identity, sign_device_list
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, HANG_S, Clock, append_leaf, append_rogue_leaf, link_device, node_db, texts

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]


def _said(device: Device) -> list[tuple[str, str]]:
    return [(a.kind, a.text) for a in device.state.alerts()]


async def _cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(cli.main, list(argv))


async def test_a_linked_device_is_a_notice_on_the_approver_and_an_alert_on_a_device_that_did_not_approve_it(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S * 2):
        first = await register(alpha, "alice")
        other = make_device("alice-other")
        assert await link_device(other, first, alpha.url) == 2
        await other.check()  # its first audit, from the leaf that added it: exactly the list it signed
        await first.check()
        assert _said(first) == [(NOTICE, "device 2 was added (approved on this device)")]
        assert _said(other) == []

        third = make_device("alice-third")
        assert await link_device(third, first, alpha.url) == 3
        fp = third.state.profile().identity.public.fingerprint
        await first.check()
        assert _said(first)[-1] == (NOTICE, "device 3 was added (approved on this device)")
        # `sonet alerts` on the device that did not approve it: checks, then lists
        assert await _cli("--home", str(other.state.home), "alerts", "--json") == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        text = f"device 3 (fingerprint {fp}) was added to your account"
        assert [(a["kind"], a["text"]) for a in listed] == [(ALERT, text)]
        # the alert went to the account's other devices, sealed like a text
        await first.receive()
        assert _said(first)[-1] == (ALERT, f"your device 2 reports: {text}")
        await third.receive()
        assert (ALERT, f"your device 2 reports: {text}") in _said(third)


async def test_alerts_are_printed_once_after_the_command_that_found_them(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S * 2):
        first = await register(alpha, "alice")
        await register(alpha, "bob")
        other = make_device("alice-other")
        await link_device(other, first, alpha.url)
        await other.check()
        await link_device(make_device("alice-third"), first, alpha.url)
        home = str(other.state.home)
        assert await _cli("--home", home, "send", BOB, "hi") == 0
        out, err = capsys.readouterr()
        assert out.startswith(f"sent to {BOB}")
        [line] = err.splitlines()
        assert line.startswith("sonet: ALERT: device 3 (fingerprint ") and line.endswith(" was added to your account")
        assert await _cli("--home", home, "send", BOB, "again") == 0
        assert capsys.readouterr().err == ""
        assert await _cli("--home", home, "alerts") == 0
        out, err = capsys.readouterr()
        assert out.count("\n") == 1 and "alert: device 3 (fingerprint" in out and err == ""


@pytest.mark.parametrize("command", ["lookup", "alerts", "witness-quorum"])
def test_the_transparency_commands_have_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0 and f"usage: sonet {command}" in capsys.readouterr().out


def _swap_identity(at: RunningNode, account: str, fingerprints: set[str], clock: Clock) -> SigningKey:
    """What a compromised node does: log another account identity key for ``account``, with a
    device list of its own making."""
    rogue = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
    db = node_db(at)
    try:
        version = db.execute("SELECT device_list_version FROM accounts WHERE account = ?", (account,)).fetchone()[0] + 1
        signed = sign_device_list(rogue, account=account, version=version, devices=fingerprints, now=clock())
        db.execute(
            "UPDATE accounts SET account_identity = ?, device_list = ?, device_list_version = ? WHERE account = ?",
            (encode_account_identity(rogue), signed, version, account),
        )
        append_leaf(db, account, clock())
    finally:
        db.close()
    return rogue


async def test_an_identity_key_swapped_by_the_node_is_an_alert_on_every_device(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], clock: Clock
) -> None:
    with trio.fail_after(HANG_S * 2):
        first = await register(alpha, "alice")
        await register(alpha, "bob")
        other = make_device("alice-other")
        await link_device(other, first, alpha.url)
        await first.send_text(BOB, "hello")  # a copy to the other device: a session with it
        await other.receive()
        fps = {d.state.profile().identity.public.fingerprint for d in (first, other)}
        rogue = _swap_identity(alpha, ALICE, fps, clock)

        await first.check()
        [(kind, text)] = [a for a in _said(first) if a[0] == ALERT]
        assert f"not its own (fingerprint {rogue.public.fingerprint}" in text and "impersonating" in text
        with pytest.raises(IdentityChanged):  # and nothing goes out with the node's key in the list
            await first.send_text(BOB, "must not go out")

        await other.receive()
        mine = [t for k, t in _said(other) if k == ALERT]
        assert f"your device 1 reports: {text}" in mine and text in mine


def _plant_rogue(at: RunningNode, clock: Clock) -> tuple[SigningKey, int]:
    """An identity key of the node's own logged for alice (tests/client/conftest.py)."""
    rogue = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
    db = node_db(at)
    try:
        return rogue, append_rogue_leaf(db, ALICE, rogue, {rogue.public.fingerprint}, clock(), filed_under=BOB)
    finally:
        db.close()


async def test_an_entry_the_node_shows_only_to_others_is_found_by_the_audit(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    """The node logs an identity key of its own for alice outside her chain and keeps serving
    alice her real entry: reading every leaf of the log, her device still finds it."""
    with trio.fail_after(HANG_S * 2):
        first = await register(alpha, "alice")
        await first.check()  # audited from alice's first leaf on
        assert first.state.get("monitor/audited") is not None
        rogue, index = _plant_rogue(alpha, clock)
        carol = await register(alpha, "carol")  # the next change: a head covering the rogue leaf is signed
        await first.check()
        [(kind, text)] = _said(first)
        assert kind == ALERT and f"not its own (fingerprint {rogue.public.fingerprint}, leaf {index})" in text
        # alice's own entry, as the node serves it, is still the real one
        await carol.send_text(ALICE, "hi")
        assert texts(first, await first.receive()) == [(CAROL, "hi")]


async def test_a_rogue_leaf_right_after_registration_is_found_by_the_first_audit(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    """The node impersonates alice as soon as she registered, before her device checked
    anything: her first audit starts at the leaf she registered with, not at today's head."""
    with trio.fail_after(HANG_S * 2):
        await register(alpha, "bob")
        first = await register(alpha, "alice")
        rogue, index = _plant_rogue(alpha, clock)
        await register(alpha, "carol")  # a head covering the rogue leaf is signed
        await first.check()
        [(kind, text)] = _said(first)
        assert kind == ALERT and f"not its own (fingerprint {rogue.public.fingerprint}, leaf {index})" in text


async def test_an_audit_behind_its_budget_lets_the_command_go_on_and_finishes_later(
    alpha: RunningNode, register: Register, clock: Clock, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S * 2):
        first = await register(alpha, "alice")  # leaf 0
        rogue, index = _plant_rogue(alpha, clock)  # leaf 1
        await register(alpha, "bob")
        await register(alpha, "carol")  # leaves 2, 3
        monkeypatch.setattr(monitor, "MAX_AUDIT_LEAVES", 2)
        home = str(first.state.home)
        assert await _cli("--home", home, "send", BOB, "hi") == 0
        out, err = capsys.readouterr()
        assert out.startswith(f"sent to {BOB}")  # the command went on
        assert err == (
            "sonet: warning: could not check your account's key-directory entries now: "
            f"2 leaves of {alpha.config.name}'s key directory not audited yet; the next command goes on\n"
        )
        assert _said(first) == []  # the rogue leaf was read, but its page is not proven yet
        assert await _cli("--home", home, "send", BOB, "again") == 0
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("sonet: ALERT: ") and f"not its own (fingerprint {rogue.public.fingerprint}, leaf {index})" in line
