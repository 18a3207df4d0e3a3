"""`sonet chat` in a real terminal: tmux runs it at 80x24 against a real node process, the test
types with ``send-keys`` and reads the screen with ``capture-pane`` (the issue's acceptance).

Alice has the app open; bob sends with `sonet send` and reads with `sonet recv` (real
processes). Her reply's ticks change to delivered after bob's `recv`; with the node stopped the
app says it is offline, a message typed meanwhile shows as pending and reaches bob once when
the node is back. Waits poll the screen with a hang guard only; how long each message took to
show is recorded (``record_property``), never asserted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import CLI_TIMEOUT_S, SONET, Processes, ok, read_texts, setup_pair, sonet_here

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

#: the conversation list's width: the open conversation is right of it
LIST_COLUMNS = 26


class Terminal:
    """A tmux server of this test's own (its socket in tmp), one 80x24 window."""

    def __init__(self, tmp: Path) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is needed for this test (.ci/run installs it: apt-get install tmux)")
        self.socket = tmp / "tmux.sock"
        self.env = {k: v for k, v in os.environ.items() if k not in ("SONET_HOME", "TMUX")}
        self.env |= {"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-u", "-S", str(self.socket), *args], capture_output=True, text=True, env=self.env, timeout=CLI_TIMEOUT_S
        )
        assert done.returncode == 0, f"tmux {' '.join(args)}: {done.stderr}"
        return done.stdout

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-s", "chat", "-x", "80", "-y", "24", command)

    def screen(self) -> list[str]:
        return self.tmux("capture-pane", "-p", "-t", "chat").splitlines()

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "chat", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "chat", "-l", text)

    def wait(self, check: Callable[[list[str]], object], what: str) -> float:
        """Seconds until ``check(screen)`` holds (hang guard: CLI_TIMEOUT_S)."""
        start = time.monotonic()
        while not check(screen := self.screen()):
            if time.monotonic() - start > CLI_TIMEOUT_S:
                pytest.fail(f"{what}: not on the screen\n" + "\n".join(screen))
            time.sleep(0.05)
        return time.monotonic() - start

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, env=self.env, timeout=CLI_TIMEOUT_S)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    try:
        yield term
    finally:
        term.close()


def message_line(screen: list[str], text: str) -> str | None:
    """The open conversation's line that shows ``text`` (the list on the left also shows the
    last text of each conversation: not that)."""
    found = [line[LIST_COLUMNS:].rstrip() for line in screen if text in line[LIST_COLUMNS:]]
    return found[-1] if found else None


def ticks(screen: list[str], text: str) -> str | None:
    line = message_line(screen, text)
    if line is None:
        return None
    return line.rsplit(" ", 1)[-1] if line.endswith(("✓", "◷", "✗")) else ""


def test_chat_in_tmux_live_messages_ticks_and_offline(procs: Processes, tmp_path: Path, terminal: Terminal, record_property) -> None:
    pair = setup_pair(procs, tmp_path)
    alice_address, bob_address = "alice@localhost", "bob@localhost"
    ok(sonet_here(pair.bob, "send", alice_address, "hello alice"))

    exit_file = tmp_path / "chat.exit"
    terminal.start(f"{SONET} --home {pair.alice} chat; echo $? > {exit_file}; echo chat ended; sleep 60")
    terminal.wait(lambda s: "online" in s[0] and message_line(s, "hello alice"), "the app online with bob's conversation open")
    assert bob_address in terminal.screen()[1]  # the conversation's title

    # three messages from bob appear in the open conversation, no key pressed
    latencies = []
    for n in (1, 2, 3):
        ok(sonet_here(pair.bob, "send", alice_address, f"live message {n}"))
        latencies.append(round(terminal.wait(lambda s: message_line(s, f"live message {n}"), f"bob's message {n}"), 3))
    record_property("seconds_to_show_each_message", latencies)

    # her reply: one tick (the node holds it), two after bob's recv
    terminal.type("a reply from alice")
    terminal.keys("Enter")
    terminal.wait(lambda s: ticks(s, "a reply from alice") == "✓", "the reply with one tick")
    received = read_texts(ok(sonet_here(pair.bob, "recv", "--json")).out)
    assert [(m["from"], m["text"]) for m in received] == [(alice_address, "a reply from alice")]
    terminal.wait(lambda s: ticks(s, "a reply from alice") == "✓✓", "the reply's ticks changed to delivered")

    # the node stops: offline, a message typed meanwhile is pending
    assert pair.node.terminate() == 0
    terminal.wait(lambda s: "offline" in s[0] and any("offline:" in line for line in s[1:4]), "the offline status and banner")
    terminal.type("written while offline")
    terminal.keys("Enter")
    terminal.wait(lambda s: ticks(s, "written while offline") == "◷", "the message shown as pending")

    # the node is back: the app says so, the message goes, bob gets it once
    pair.node = procs.start_node(pair.node.data)
    terminal.wait(lambda s: "online" in s[0] and ticks(s, "written while offline") == "✓", "online again, the message sent")
    received = read_texts(ok(sonet_here(pair.bob, "recv", "--json")).out)
    assert [(m["from"], m["text"]) for m in received] == [(alice_address, "written while offline")]
    terminal.wait(lambda s: ticks(s, "written while offline") == "✓✓", "the pending message delivered")
    assert read_texts(ok(sonet_here(pair.bob, "recv", "--json")).out) == []  # once

    # F1 shows the help; Ctrl+Q ends the app cleanly
    terminal.keys("F1")
    terminal.wait(lambda s: any("Sonet chat: keys" in line for line in s), "the help screen")
    terminal.keys("Escape")
    terminal.keys("C-q")
    terminal.wait(lambda s: any("chat ended" in line for line in s), "the app ended")
    assert exit_file.read_text().strip() == "0"
    assert not any("Traceback" in line or "sonet: error" in line for line in terminal.screen())
