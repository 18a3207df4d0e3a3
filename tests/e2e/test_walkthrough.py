"""The issue's acceptance run, with the real ``sonet-node`` and ``sonet`` processes.

init + run a node, two invites, register alice and bob, alice sends bob a unique text, SIGKILL
the node right after ``send`` returns, restart it on the same port, and bob receives the text
exactly once -- while the node's data directory never held it in plaintext.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from .conftest import (
    SONET,
    Processes,
    cli,
    init_node,
    node_cli,
    ok,
    read_texts,
    register,
    set_listen,
    setup_pair,
    sonet,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

_SENT = re.compile(r"^sent to (\S+) \((\d+) devices?\); id ([0-9a-f]{32}); accepted by localhost, the recipient's node$")
_HUMAN = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] (\S+): (.*)$")


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and needle in p.read_bytes()]


def _status(data: Path) -> dict:
    return json.loads(ok(node_cli("status", "--data", data, "--json")).out)


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_acceptance_walkthrough(procs: Processes, tmp_path: Path) -> None:
    data = tmp_path / "node"
    fingerprint = init_node(data, listen="127.0.0.1:0", run=cli)
    node = procs.start_node(data)
    assert node.name == "localhost" and node.fingerprint == fingerprint
    assert node.url.startswith("ws://127.0.0.1:") and node.port > 0
    assert any(f"(devices: {node.url}/client)" in line for line in node.stdout_lines)
    runtime = json.loads((data / "run.json").read_text())
    assert runtime["pid"] == node.pid and runtime["url"] == node.url
    # port 0 gives a new port on every start: pin the one it got, so devices' URL stays valid
    set_listen(data, f"127.0.0.1:{node.port}")

    alice_token, bob_token = node.invite(cli), node.invite(cli)
    assert alice_token != bob_token
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(alice, "alice@localhost", node, alice_token, run=cli)
    register(bob, "bob@localhost", node, bob_token, run=cli)

    text = f"acceptance {uuid.uuid4().hex} – ünïcode ✓"
    sent = ok(sonet(alice, "send", "bob@localhost", text))
    node.kill()  # SIGKILL right after `send` returned: the message must already be durable
    assert node.proc.returncode == -signal.SIGKILL
    m = _SENT.match(sent.out.strip())
    assert m and m.group(1) == "bob@localhost" and m.group(2) == "1", sent.out
    message_id = m.group(3)

    needle = text.encode()
    assert _files_containing(data, needle) == []  # only ciphertext on the node's disk
    assert _files_containing(alice, needle) == []  # the device's own state is encrypted at rest too
    # control: the scan does read SQLite files (the envelope id is stored in the node's mailbox)
    assert _files_containing(data, bytes.fromhex(message_id))

    restarted = procs.start_node(data)
    assert restarted.url == node.url and restarted.fingerprint == fingerprint
    status = _status(data)
    assert status["running"] is True
    assert status["pid"] == restarted.pid and status["url"] == restarted.url
    assert status["name"] == "localhost" and status["fingerprint"] == fingerprint
    assert status["accounts"] == 2 and status["devices"] == 2
    assert status["envelopes"] == 1 and status["envelope_bytes"] > 0  # survived the SIGKILL
    assert status["invites_open"] == 0  # both tokens were used up

    first = ok(sonet(bob, "recv", "--json"))
    messages = read_texts(first.out)
    assert len(messages) == 1, first.out
    (msg,) = messages
    assert {"id", "from", "sent_at", "received_at", "type", "text"} <= msg.keys()
    assert msg["text"] == text
    assert msg["from"] == "alice@localhost"
    assert msg["type"] == "text"
    assert msg["id"] == message_id
    assert _iso(msg["sent_at"]) <= _iso(msg["received_at"])
    assert first.out.count(text) == 1

    second = ok(sonet(bob, "recv", "--json"))
    assert second.out == ""  # nothing new, and the first message is not shown again

    assert _files_containing(data, needle) == []
    assert text not in restarted.stderr() and text not in "".join(restarted.stdout_lines)
    assert text not in node.stderr()

    status = _status(data)
    assert status["running"] is True and status["accounts"] == 2 and status["devices"] == 2


def test_human_readable_recv_wait_and_graceful_sigterm(procs: Processes, tmp_path: Path) -> None:
    pair = setup_pair(procs, tmp_path)
    node = pair.node

    # recv --wait blocks until something arrives (the push path), then prints it
    waiting = procs.popen(
        [SONET, "--home", str(pair.bob), "recv", "--wait", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first_text = f"pushed {uuid.uuid4().hex}"
    ok(sonet(pair.alice, "send", "bob@localhost", first_text))
    out, err = waiting.communicate(timeout=90)
    assert waiting.returncode == 0, err
    assert "Traceback" not in err
    lines = out.splitlines()
    assert len(lines) == 1, out
    m = _HUMAN.match(lines[0])
    assert m and m.group(2) == "alice@localhost" and m.group(3) == first_text, lines[0]

    second_text = f"plain {uuid.uuid4().hex}"
    ok(sonet(pair.alice, "send", "bob@localhost", second_text))
    shown = ok(sonet(pair.bob, "recv"))
    assert shown.err == ""
    lines = shown.out.splitlines()
    assert len(lines) == 1, shown.out
    m = _HUMAN.match(lines[0])
    assert m and m.group(2) == "alice@localhost" and m.group(3) == second_text, lines[0]

    empty = ok(sonet(pair.bob, "recv"))
    assert empty.out == ""
    assert empty.err.strip() == "no new messages"

    # bob can answer: messages flow both ways
    reply = f"reply {uuid.uuid4().hex}"
    ok(sonet(pair.bob, "send", "alice@localhost", reply))
    (got,) = read_texts(ok(sonet(pair.alice, "recv", "--json")).out)
    assert got["text"] == reply and got["from"] == "bob@localhost"

    # SIGTERM: graceful stop, exit status 0, run.json removed, status reports not running
    assert (node.data / "run.json").exists()
    assert node.terminate() == 0
    assert not (node.data / "run.json").exists()
    assert "received SIGTERM, stopping" in node.stderr()
    assert "Traceback" not in node.stderr()
    status = _status(node.data)
    assert status["running"] is False and status["pid"] is None and status["url"] is None
    assert status["accounts"] == 2

    # the gracefully stopped node starts again on the same URL with its state intact
    again = procs.start_node(node.data)
    assert again.url == node.url and again.fingerprint == node.fingerprint
    assert _status(node.data)["running"] is True
    final = f"after restart {uuid.uuid4().hex}"
    ok(sonet(pair.alice, "send", "bob@localhost", final))
    assert [m["text"] for m in read_texts(ok(sonet(pair.bob, "recv", "--json")).out)] == [final]
