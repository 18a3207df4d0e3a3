"""docs/security.md, "Implementation rules": "the CLI's plain output (`recv`, `recv --follow`,
`history`, notices, warnings and error lines) show what others wrote (texts, names, group names
and topics, node errors) with control characters (ESC and C1 CSI start terminal escape
sequences) and bidirectional overrides drawn as `�`". tests/client/test_cli_terminal.py shows
it for a 1:1 text in recv and history; here the group name and topic another member sets, in
`recv`, `group list`, `group info` and `history`, and a node's error message in a command's
error line and in a warning.

The claims audit found two places that printed such text raw: client/cli_history.py cmd_history's
"no messages with NAME" line, and client/cli.py's warnings that quote a node error (cmd_alerts,
cmd_sent and _print_alerts' monitor_error line, the same pattern); they go through
terminal_safe now."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client.sdk import Device
from tests.node.conftest import RunningNode

from .conftest import BOB, HANG_S
from .test_cli_groups import cli_run

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]
#: clears the screen, sets the window title, a C1 CSI, a right-to-left override
NAME = "hikers\x1b[2J\x1b]0;pwned\x07\u202e"
TOPIC = "maps\x9b31m and \x1b[5mboots"
DRIVERS = ("\x1b", "\x9b", "\u202e", "\x07")


def _harmless(text: str) -> bool:
    return not any(c in text for c in DRIVERS)


async def _bob_in_a_hostile_group(alpha: RunningNode, register: Register) -> tuple[Device, Device, str]:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    for device in (alice, bob):
        await device.receive()  # KeyPackages go up
    view = await alice.group_create(NAME, [BOB])  # a name and topic as a modified client may set them
    await alice.group_set(view.id, topic=TOPIC)
    return alice, bob, view.id


async def test_a_group_name_and_topic_another_member_set_cannot_drive_the_terminal(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob, group = await _bob_in_a_hostile_group(alpha, register)
        home = bob.state.home
        outputs = []
        for argv in (["recv"], ["group", "list"], ["group", "info", group]):
            rc, out, err = await cli_run(capsys, "--home", home, *argv)
            assert rc == 0, (argv, out, err)
            outputs.append((argv, out, err))
        await alice.group_send(group, "a text in it")
        rc, out, err = await cli_run(capsys, "--home", home, "recv")
        assert rc == 0 and "a text in it" in out, (out, err)
        outputs.append((["recv"], out, err))
        rc, out, err = await cli_run(capsys, "--home", home, "history", group)
        assert rc == 0 and "a text in it" in out, (out, err)
        outputs.append((["history"], out, err))
        for argv, out, err in outputs:
            assert _harmless(out) and _harmless(err), (argv, out, err)
        assert "hikers\ufffd[2J" in outputs[1][1]  # the name is shown, made safe
        assert "maps\ufffd31m" in outputs[2][1]  # and the topic


async def test_history_of_a_group_with_no_messages_cannot_drive_the_terminal(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S * 2):
        _alice, bob, group = await _bob_in_a_hostile_group(alpha, register)
        home = bob.state.home
        rc, out, err = await cli_run(capsys, "--home", home, "recv")  # bob learns the group, nothing written in it yet
        assert rc == 0
        rc, out, err = await cli_run(capsys, "--home", home, "history", group)
        assert rc == 0 and "no messages with" in err, (out, err)
        assert _harmless(err), err


#: what a hostile (or compromised) node may put in an error message
NODE_TEXT = "try later\x1b[2J\x1b]0;pwned\x07\u202e"


def _node_refuses(monkeypatch: pytest.MonkeyPatch, frame: type, code: str = "unavailable") -> None:
    """The node answers every ``frame`` with an error whose message is ``NODE_TEXT``."""
    from sonet.node import client_session
    from sonet.node.client_checks import RequestError

    async def refuse(session: object, request: object) -> None:
        raise RequestError(code, NODE_TEXT)

    monkeypatch.setitem(client_session._HANDLERS, frame, refuse)


async def test_a_node_error_line_cannot_drive_the_terminal(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the one error line of a failed command (sonet/cli_output.py emit_error)
    from sonet.core.client_api import FetchDevices

    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        await register(alpha, "bob")
        _node_refuses(monkeypatch, FetchDevices, code="bad_input")
        rc, out, err = await cli_run(capsys, "--home", alice.state.home, "lookup", BOB)
        assert rc == 1 and "try later" in err, (rc, out, err)
        assert _harmless(out) and _harmless(err), (out, err)


async def test_a_node_error_in_the_alerts_warning_cannot_drive_the_terminal(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sonet.core.client_api import FetchHead, FetchLeaves

    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        for frame in (FetchHead, FetchLeaves):
            _node_refuses(monkeypatch, frame)
        rc, out, err = await cli_run(capsys, "--home", alice.state.home, "alerts")
        assert rc == 0 and "could not check" in err and "try later" in err, (rc, out, err)
        assert _harmless(err), err
