"""The E2EE sessions issue's acceptance walkthrough, with the real ``sonet-node`` and ``sonet``.

One node; alice and bob register; alice sends bob 20 messages (20 ``sonet send`` calls) that bob
receives in order, once each; bob links a second device (``link begin`` / ``link approve``) that
gets alice's next message; alice links a second device that sees what alice's first device sent
(a sync copy with ``to``); both sides print the same safety number; nothing readable is left on
any disk; then bob removes his second device, which stops getting messages and is refused.

The node and ``link begin`` are real processes, and so are bob's first message and alice's
``recv`` of it; the other ~50 one-shot commands run the CLI's ``main(argv)`` in this process
(conftest.here): a new interpreter costs ~1.3 s here, most of such a command, and
test_walkthrough.py already covers the console scripts as processes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import (
    Processes,
    Result,
    link_device,
    node_here,
    ok,
    read_json_lines,
    read_texts,
    setup_pair,
    sonet,
    sonet_here,
)
from .test_cli_errors import user_error

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

_SENT = re.compile(r"^sent to (\S+) \((\d+) devices?\); id ([0-9a-f]{32}); accepted by ")
_SAFETY_NUMBER = re.compile(r"^(\d{5} ){11}\d{5}$")


def _send(home: Path, to: str, text: str, *, devices: int, run: Callable[..., Result] = sonet_here) -> str:
    """``sonet send``; assert how many of the recipient's devices it reached; return the id."""
    out = ok(run(home, "send", to, text)).out.strip()
    m = _SENT.match(out)
    assert m and m.group(1) == to and int(m.group(2)) == devices, out
    return m.group(3)


def _recv_texts(home: Path, *, quiet: bool = True, run: Callable[..., Result] = sonet_here) -> list[dict]:
    result = ok(run(home, "recv", "--json"))
    if quiet:
        assert "warning" not in result.err, result.err  # nothing was dropped
    return read_texts(result.out)


def _devices(home: Path) -> list[dict]:
    return read_json_lines(ok(sonet_here(home, "devices", "--json")).out)


def _safety_number(home: Path, address: str) -> str:
    shown = json.loads(ok(sonet_here(home, "safety-number", address, "--json")).out)
    assert shown["address"] == address and shown["changed"] is False, shown
    assert _SAFETY_NUMBER.match(shown["safety_number"]), shown
    return shown["safety_number"]


def _files_containing(roots: list[Path], needles: list[bytes]) -> list[tuple[Path, bytes]]:
    found = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                found += [(path, n) for n in needles if n in data]
    return found


def test_sessions_acceptance_walkthrough(procs: Processes, tmp_path: Path) -> None:
    pair = setup_pair(procs, tmp_path)
    node, alice, bob = pair.node, pair.alice, pair.bob
    alice2, bob2 = tmp_path / "alice2", tmp_path / "bob2"
    texts: list[str] = []

    # bob writes first: his message carries his access token, so alice is his contact and her
    # messages below are not a stranger's capped message requests
    hello = f"hello alice {uuid.uuid4().hex}"
    texts.append(hello)
    _send(bob, "alice@localhost", hello, devices=1, run=sonet)  # real processes
    assert [m["text"] for m in _recv_texts(alice, run=sonet)] == [hello]

    # 20 messages, one `sonet send` each, all queued before bob looks
    first_batch = [f"message {i:02d} {uuid.uuid4().hex} ✓" for i in range(20)]
    ids = [_send(alice, "bob@localhost", text, devices=1) for text in first_batch]
    texts += first_batch
    assert len(set(ids)) == 20
    # while they are queued, the node stores them (the ids are on its disk) but never their text
    assert _files_containing([node.data], [bytes.fromhex(i) for i in ids[:1]])  # control: the scan sees SQLite
    assert _files_containing([node.data], [t.encode() for t in first_batch]) == []

    got = _recv_texts(bob)
    assert [m["text"] for m in got] == first_batch  # all 20, in order, each once
    assert [m["id"] for m in got] == ids
    assert {m["from"] for m in got} == {"alice@localhost"}
    assert all("to" not in m for m in got)
    assert _recv_texts(bob) == []  # nothing is shown twice

    # bob links a second device; alice's next message reaches both of bob's devices
    link_device(procs, node, bob2, bob, "bob@localhost", 2)
    after_link = f"after bob linked {uuid.uuid4().hex}"
    texts.append(after_link)
    after_link_id = _send(alice, "bob@localhost", after_link, devices=2)
    for home in (bob2, bob):
        (m,) = _recv_texts(home)
        assert (m["text"], m["from"], m["id"]) == (after_link, "alice@localhost", after_link_id)
        assert "to" not in m

    # alice links a second device; it sees what her first device sends, as a sync copy
    link_device(procs, node, alice2, alice, "alice@localhost", 2)
    synced = f"seen by alice's other device {uuid.uuid4().hex}"
    texts.append(synced)
    out = json.loads(ok(sonet_here(alice, "send", "bob@localhost", synced, "--json")).out)
    assert out["to"] == "bob@localhost" and out["devices"] == 2 and out["own_devices"] == 1, out
    (copy,) = _recv_texts(alice2)
    assert copy["text"] == synced and copy["id"] == out["id"]
    assert copy["from"] == "alice@localhost" and copy["to"] == "bob@localhost" and copy["type"] == "text"
    for home in (bob, bob2):
        (m,) = _recv_texts(home)
        assert (m["text"], m["from"], m["id"]) == (synced, "alice@localhost", out["id"])
        assert "to" not in m

    # one safety number for the pair, whichever device shows it
    number = _safety_number(alice, "bob@localhost")
    assert _safety_number(bob, "alice@localhost") == number
    assert _safety_number(bob2, "alice@localhost") == number
    assert _safety_number(alice2, "bob@localhost") == number
    human = ok(sonet_here(bob, "safety-number", "alice@localhost")).out.splitlines()
    assert human[0] == number and human[1].startswith("qr: "), human

    listed = _devices(bob)
    assert [d["id"] for d in listed] == [1, 2]
    assert [d["this_device"] for d in listed] == [True, False]
    assert len({d["fingerprint"] for d in listed}) == 2
    assert [d["this_device"] for d in _devices(bob2)] == [False, True]
    assert [d["fingerprint"] for d in _devices(bob2)] == [d["fingerprint"] for d in listed]

    # encrypted at rest: no text on the node's disk nor in any device's home; clean node log
    homes = [alice, alice2, bob, bob2]
    assert _files_containing([node.data, *homes], [t.encode() for t in texts]) == []
    log = node.stderr() + "".join(node.stdout_lines)
    assert "Traceback" not in log, log
    assert [t for t in texts if t in log] == []

    # bob removes device 2: the next message reaches device 1 only, device 2 is refused
    assert ok(sonet_here(bob, "devices", "remove", "2")).out.strip() == "removed device 2"
    assert [d["id"] for d in _devices(bob)] == [1]
    last = f"after the removal {uuid.uuid4().hex}"
    texts.append(last)
    out = json.loads(ok(sonet_here(alice, "send", "bob@localhost", last, "--json")).out)
    assert out["devices"] == 1 and out["own_devices"] == 1, out
    (m,) = _recv_texts(bob)
    assert (m["text"], m["from"], m["id"]) == (last, "alice@localhost", out["id"])
    user_error(sonet_here(bob2, "recv", "--json"), "removed from its account")
    # alice's own copy still syncs (receipts bob's removed device sent earlier may be dropped)
    assert [m["text"] for m in _recv_texts(alice2, quiet=False)] == [last]
    status = json.loads(ok(node_here("status", "--data", node.data, "--json")).out)
    assert status["accounts"] == 2 and status["devices"] == 3  # alice 1 + 2, bob 1

    assert _files_containing([node.data, *homes], [t.encode() for t in texts]) == []
    assert "Traceback" not in node.stderr()
    assert read_json_lines(ok(sonet_here(bob, "recv", "--json")).out) == []
