"""A sender cannot drive the reader's terminal: `sonet recv` and `sonet history` print message
texts with control characters (ESC, C1 CSI) and bidirectional overrides shown as U+FFFD;
`--json` carries the text as sent (JSON escapes the C0 controls; its reader is a program)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.cli_output import terminal_safe
from sonet.client import cli
from sonet.client.sdk import Device
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, HANG_S

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

#: clears the screen, sets the window title, a C1 CSI, and a right-to-left override
HOSTILE = "hi\x1b[2J\x1b]0;pwned\x07 \x9b31m\u202eexe.txt\ttab\nline two"


def test_terminal_safe_replaces_controls_and_bidi_overrides_and_keeps_newlines_and_tabs() -> None:
    assert terminal_safe(HOSTILE) == "hi\ufffd[2J\ufffd]0;pwned\ufffd \ufffd31m\ufffdexe.txt\ttab\nline two"
    assert terminal_safe("plain text, ünïcode ✓✓") == "plain text, ünïcode ✓✓"


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = await trio.to_thread.run_sync(cli.main, list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


async def test_recv_and_history_print_a_hostile_text_harmlessly(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, HOSTILE)
        bob_home = str(bob.state.home)
        rc, out, err = await run(capsys, "--home", bob_home, "recv")
        assert rc == 0, err
        assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out and "\x07" not in out
        assert f"{ALICE}: hi\ufffd[2J" in out and "\ttab\nline two" in out
        rc, out, err = await run(capsys, "--home", bob_home, "history", ALICE)
        assert rc == 0, err
        assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out
        assert "hi\ufffd[2J" in out
        rc, out, err = await run(capsys, "--home", bob_home, "history", ALICE, "--json")
        assert rc == 0, err
        assert [m["text"] for m in map(json.loads, out.splitlines())] == [HOSTILE]
