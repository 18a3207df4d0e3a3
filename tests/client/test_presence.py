"""Opt-in presence (client/presence.py): off by default and then nothing leaves the device; on,
a live session tells only the allowed contacts "online" when it connects and "offline" when it
closes, on this node and another (tests/client/loopback.py), and no node stores it; receivers
keep the newest one per sender and read an old "online" as offline; the command line; the
chat header.
Fixtures: tests/client/conftest.py."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio

from sonet.client.live import Online, Received
from sonet.client.presence import PRESENCE_FRESH_MS
from sonet.client.sdk import Device
from sonet.core.envelope import Envelope, Kind
from sonet.core.errors import LocalProtocolError
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, HANG_S, Clock, node_db
from .loopback import Loopback
from .test_chat_app import online, opened, run_app, static_text, until
from .test_cli_groups import cli_json, cli_run
from .test_groups_sdk import BOB_B
from .test_live import Events

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]


def record_pushes(*nodes: RunningNode) -> list[tuple[str, int, Envelope]]:
    """Every ephemeral envelope the nodes hand to their devices' connections, from now on."""
    pushed: list[tuple[str, int, Envelope]] = []
    for node in nodes:
        registry = node.node.registry
        original = registry.push_ephemeral

        def push(key: tuple[str, int], env: Envelope, original=original) -> None:  # noqa: ANN001
            pushed.append((key[0], key[1], env))
            original(key, env)

        registry.push_ephemeral = push  # type: ignore[method-assign]
    return pushed


async def contacts(alice: Device, *others: Device) -> None:
    """1:1 conversations between alice and each of ``others`` (texts both ways, received)."""
    me = alice.state.profile().address
    for other in others:
        await alice.send_text(other.state.profile().address, "hi")
        await other.receive()
        await other.send_text(me, "hi alice")
    await alice.receive()


def presences(event: Received) -> list[tuple[str, str]]:
    return [(m.sender, m.fields["presence"]) for m in event.messages if m.type == "presence"]


async def test_presence_is_off_by_default_and_then_nothing_is_sent(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await contacts(alice, bob)
        pushed = record_pushes(alpha)
        assert alice.presence().on is False
        assert await alice.send_presence() is None
        async with alice.live() as session:
            await Events(session).until(Online)
            await trio.sleep(0.2)  # the session's upkeep ran its first round
        alice.set_presence(True)
        alice.set_presence(False)  # on and off again: still nothing
        async with alice.live() as session:
            await Events(session).until(Online)
            await trio.sleep(0.2)
        assert pushed == []  # on the node: no ephemeral envelope from alice, online or offline


async def test_presence_on_goes_only_to_the_allowed_contacts_on_any_node_and_is_never_stored(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, clock: Clock
) -> None:
    alpha, beta = alpha_beta
    with trio.fail_after(HANG_S * 2):
        alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
        bob_b = await register(beta, "bob", home="bob_b")
        await contacts(alice, bob, carol, bob_b)
        await loopback.flush()
        await bob_b.receive()
        assert alice.set_presence(True, to=[BOB, BOB_B.upper()]).to == (BOB, BOB_B)  # normalised
        pushed = record_pushes(alpha, beta)
        async with bob.live() as watching, bob_b.live() as far:
            bob_events, far_events = Events(watching), Events(far)
            await bob_events.until(Online)
            await far_events.until(Online)
            async with alice.live() as session:
                await Events(session).until(Online)
                online = await bob_events.until(Received, lambda e: bool(presences(e)))  # type: ignore[arg-type]
                assert presences(online) == [(ALICE, "online")]  # type: ignore[arg-type]
                far_online = await far_events.until(Received, lambda e: bool(presences(e)))  # type: ignore[arg-type]
                assert presences(far_online) == [(ALICE, "online")]  # type: ignore[arg-type]
            offline = await bob_events.until(Received, lambda e: bool(presences(e)))  # type: ignore[arg-type]
            assert presences(offline) == [(ALICE, "offline")]  # type: ignore[arg-type]
            await far_events.until(Received, lambda e: presences(e) == [(ALICE, "offline")])  # type: ignore[arg-type]
        # on the nodes: only bob's devices, on both nodes, got anything; carol none
        assert sorted({(account, kind) for account, _device, kind in ((a, d, e.kind) for a, d, e in pushed)}) == [
            (BOB, Kind.EPHEMERAL), (BOB_B, Kind.EPHEMERAL)
        ]  # fmt: skip
        assert len(pushed) == 4  # online and offline, to each
        for node in (alpha, beta):  # a device never acknowledges an ephemeral envelope: one stored would still be there
            assert node_db(node).execute("SELECT count(*) FROM mailbox WHERE kind = ?", (int(Kind.EPHEMERAL),)).fetchone() == (0,)
        # bob's device keeps only the newest: offline, the "last seen"
        seen = bob.last_presence(ALICE)
        assert seen is not None and seen[0] == "offline"
        assert bob.state._db.execute("SELECT count(*) FROM inbox WHERE type = 'presence'").fetchone() == (1,)
        result = await carol.receive()
        assert [m for m in result.messages if m.type == "presence"] == []


async def test_an_online_that_is_not_renewed_reads_as_offline(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await contacts(alice, bob)
        alice.set_presence(True)  # every 1:1 contact: bob
        assert bob.last_presence(ALICE) is None
        async with bob.live() as watching:
            events = Events(watching)
            await events.until(Online)
            result = await alice.send_presence(online=True)
            assert result is not None and (result.presence, result.told, result.missed) == ("online", (BOB,), ())
            await events.until(Received, lambda e: bool(presences(e)))  # type: ignore[arg-type]
        at = clock()
        assert bob.last_presence(ALICE) == ("online", at)
        clock.advance(PRESENCE_FRESH_MS + 1)  # alice vanished without an "offline"
        assert bob.last_presence(ALICE) == ("offline", at)


async def test_presence_settings_refuse_what_makes_no_sense(alpha: RunningNode, register: Register) -> None:
    alice = await register(alpha, "alice")
    for bad, words in [
        ({"on": False, "to": [BOB]}, "presence off takes no --to"),
        ({"on": True, "to": [ALICE]}, "not with your own account"),
        ({"on": True, "to": ["not an address"]}, "address"),
        ({"on": True, "to": [f"u{n}@alpha.example" for n in range(101)]}, "at most 100"),
    ]:
        with pytest.raises(LocalProtocolError, match=words):
            alice.set_presence(bad["on"], to=bad["to"])  # type: ignore[arg-type]
    assert alice.presence().on is False  # nothing of it was kept


async def test_presence_from_the_command_line(alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(HANG_S):
        alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
        await contacts(alice, bob, carol)
        # "to" is a conversation's address in every --json (ux11: it was this list)
        assert await cli_json(capsys, alice, "presence") == [{"presence": "off", "contacts": [], "all_contacts": False}]
        assert await cli_json(capsys, alice, "presence", "on") == [{"presence": "on", "contacts": [BOB, CAROL], "all_contacts": True}]
        assert await cli_json(capsys, alice, "presence", "on", "--to", CAROL) == [{"presence": "on", "contacts": [CAROL], "all_contacts": False}]
        rc, out, err = await cli_run(capsys, "--home", alice.state.home, "presence")
        assert rc == 0 and out.startswith(f"presence is on for only these contacts: {CAROL}")
        rc, out, err = await cli_run(capsys, "--home", alice.state.home, "presence", "off", "--to", BOB, "--json")
        assert rc == 2 and json.loads(out)["error"]["code"] == "usage" and len(out.splitlines()) == 1  # --to goes with on
        rc, out, err = await cli_run(capsys, "--home", alice.state.home, "presence", "--to", BOB)
        assert (rc, out) == (2, "") and err == "sonet: error: --to goes with on (usage: sonet presence on --to ADDRESS...)\n"
        assert alice.presence().to == (CAROL,)  # the refused commands changed nothing

        # recv shows a contact's presence (--json type "presence")
        async with carol.live() as watching:
            events = Events(watching)
            await events.until(Online)
            await alice.send_presence(online=False)
            await events.until(Received, lambda e: bool(presences(e)))  # type: ignore[arg-type]
        objs = [o for o in await cli_json(capsys, carol, "recv") if o["type"] == "presence"]
        assert [(o["from"], o["presence"]) for o in objs] == [(ALICE, "offline")]


async def test_the_chat_header_shows_the_open_contacts_presence(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.send_text(ALICE, "hi")
    bob.set_presence(True)  # alice is his contact

    async def scenario(app, pilot, others) -> None:  # noqa: ANN001 - as tests/client/test_chat_app.py
        await online(app, pilot)
        await opened(app, pilot, BOB)
        assert "online" not in static_text(app, "#title") and "last seen" not in static_text(app, "#title")
        await others.run(partial(bob.send_presence, online=True))
        await until(pilot, lambda: "bob@alpha.example  online" in static_text(app, "#title"), "bob online in the header")
        await others.run(partial(bob.send_presence, online=False))
        await until(pilot, lambda: "last seen" in static_text(app, "#title"), "bob's last seen in the header")

    await run_app(alice, clock, scenario)


async def test_a_session_ended_by_a_cancelled_scope_still_says_offline(alpha: RunningNode, register: Register) -> None:
    # `sonet chat` quitting, or a program's deadline, cancels a scope around the session: its
    # goodbye must still go out, on the connection the session holds (it went only when the
    # body left the block by itself)
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await contacts(alice, bob)
        alice.set_presence(True, to=[BOB])
        async with bob.live() as watching:
            bob_events = Events(watching)
            await bob_events.until(Online)
            with trio.CancelScope() as outer:
                async with alice.live() as session:
                    await Events(session).until(Online)
                    await bob_events.until(Received, lambda e: presences(e) == [(ALICE, "online")])  # type: ignore[arg-type]
                    outer.cancel()
                    await trio.sleep_forever()
            assert outer.cancelled_caught
            await bob_events.until(Received, lambda e: presences(e) == [(ALICE, "offline")])  # type: ignore[arg-type]
