"""The long-lived connection with real processes (issue 19): ``sonet recv --follow --json``
prints each message as it arrives, says when the node goes away (SIGKILL) and when it is back,
and ends with Ctrl-C, exit 0; a live session (``Device.live()``) keeps a text written while its
node is down and sends it once when the node is back."""

from __future__ import annotations

import json
import queue
import signal
from typing import Any
import subprocess
import threading
from pathlib import Path

import pytest
import trio

from sonet.client import cli as sonet_cli
from sonet.client.live import Offline, Online, SentChanged
from sonet.client.sdk import Device
from sonet.client.state import DeviceState

from .conftest import NODE_TIMEOUT_S, SONET, Processes, ok, read_json_lines, read_texts, setup_pair, sonet_here

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

BOB = "bob@localhost"
ALICE = "alice@localhost"
#: how long a line may take to come (a guard against a hang, not a measure)
LINE_GUARD_S = 60.0


class Follow:
    """``sonet recv --follow --json`` running, its stdout lines read as JSON as they come."""

    def __init__(self, procs: Processes, home: Path) -> None:
        self.proc = procs.popen([SONET, "--home", str(home), "recv", "--follow", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self) -> dict:
        line = self.lines.get(timeout=LINE_GUARD_S)
        assert line is not None, f"recv --follow ended: {self.proc.wait()} {self.proc.stderr.read() if self.proc.stderr else ''}"
        return line

    def until_event(self, event: str) -> dict:
        while (line := self.next()).get("event") != event:
            pass
        return line


def test_recv_follow_streams_messages_and_reconnects_after_the_node_is_killed(procs: Processes, tmp_path: Path) -> None:
    pair = setup_pair(procs, tmp_path)
    follow = Follow(procs, pair.alice)
    assert follow.next() == {"event": "online", "node": "localhost"}
    for n in range(3):
        ok(sonet_here(pair.bob, "send", ALICE, f"live {n}"))
        line = follow.next()
        assert (line["type"], line["from"], line["text"]) == ("text", BOB, f"live {n}")

    pair.node.kill()  # SIGKILL: no goodbye from the node
    offline = follow.next()
    assert offline["event"] == "offline" and offline["reason"] and 0 < offline["retry_in_s"] <= 30, offline
    node = procs.start_node(pair.node.data)
    assert follow.until_event("online") == {"event": "online", "node": "localhost"}
    ok(sonet_here(pair.bob, "send", ALICE, "after the restart"))
    line = follow.next()
    assert (line["type"], line["text"]) == ("text", "after the restart")

    follow.proc.send_signal(signal.SIGINT)
    assert follow.proc.wait(timeout=NODE_TIMEOUT_S) == 0
    assert follow.lines.get(timeout=LINE_GUARD_S) is None  # nothing more on stdout
    assert follow.proc.stderr is not None and "Traceback" not in follow.proc.stderr.read()
    # everything was shown (and acknowledged) once
    assert read_texts(ok(sonet_here(pair.alice, "recv", "--json")).out) == []
    assert node.alive()


def test_ctrl_c_just_after_recv_follow_printed_a_message_does_not_show_it_again(
    procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Ctrl-C lands right after a message's line is out, before it is marked shown: the
    session ends at its next wait (exit 0) with the message marked shown, so the next ``recv``
    does not show it a second time."""
    pair = setup_pair(procs, tmp_path)
    ok(sonet_here(pair.bob, "send", ALICE, "shown once"))
    show = sonet_cli._show

    def show_then_ctrl_c(args: Any, obj: dict, line: str | None) -> None:
        show(args, obj, line)
        if obj.get("type") == "text":
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(sonet_cli, "_show", show_then_ctrl_c)
    follow = ok(sonet_here(pair.alice, "recv", "--follow", "--json"))  # in this process: the SIGINT is its
    assert [m["text"] for m in read_json_lines(follow.out) if m.get("type") == "text"] == ["shown once"], follow
    monkeypatch.undo()
    assert read_texts(ok(sonet_here(pair.alice, "recv", "--json")).out) == []


def test_a_text_written_while_the_node_is_down_is_pending_and_arrives_once_when_it_is_back(procs: Processes, tmp_path: Path) -> None:
    pair = setup_pair(procs, tmp_path)
    ok(sonet_here(pair.alice, "send", BOB, "first contact"))  # sessions both ways exist
    state = DeviceState(pair.alice, create=False)
    alice = Device(state)
    restarted = []

    async def live() -> None:
        async with alice.live() as session:
            events = session.events()
            while not isinstance(await anext(events), Online):
                pass
            pair.node.kill()
            while not isinstance(await anext(events), Offline):
                pass
            kept = await session.send_text(BOB, "written while the node was down")
            assert (kept.state, kept.code) == ("pending", "offline")
            restarted.append(procs.start_node(pair.node.data))
            while not isinstance(event := await anext(events), SentChanged) or kept.id not in event.ids:
                pass
            sent = state.sent_message(kept.id)
            assert sent is not None and sent.state == "accepted"

    try:
        trio.run(live)
    finally:
        state.close()
    received = read_texts(ok(sonet_here(pair.bob, "recv", "--json")).out)
    assert [m["text"] for m in received] == ["first contact", "written while the node was down"]
    assert read_texts(ok(sonet_here(pair.bob, "recv", "--json")).out) == []  # once


def test_recv_follow_and_wait_do_not_mix(tmp_path: Path) -> None:
    result = sonet_here(tmp_path / "alice", "recv", "--follow", "--wait", "5", "--json")
    assert result.rc == 2
    [line] = read_json_lines(result.out)
    assert line["error"]["code"] == "usage" and "not allowed with argument" in line["error"]["message"], line
