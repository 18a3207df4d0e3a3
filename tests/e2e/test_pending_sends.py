"""Texts that wait on the device (client/pending.py), with real processes: alpha and beta peer,
beta is SIGKILLed, alice's `send` to bob@beta (a first contact: no keys of bob yet) is queued on
her device (exit 0, `pending` in `sonet sent`, the text nowhere in her state files in the clear);
once beta is back, alice's next command sends it by itself and bob receives each text once,
in order."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import Processes, ok, read_json_lines, register, sonet_here
from .test_federation import POLL_GUARD_S, peer, receive_texts, restart, start

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

SECRET = "waits for beta 5d1e"


def state_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.iterdir()) if p.is_file())


def test_a_text_to_a_killed_peer_waits_on_the_device_and_goes_once_it_is_back(procs: Processes, tmp_path: Path) -> None:
    alpha, beta = start(procs, tmp_path, "alpha"), start(procs, tmp_path, "beta")
    peer(alpha, beta)
    peer(beta, alpha)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(alice, "alice@alpha", alpha)
    register(bob, "bob@beta", beta)

    beta.kill()
    first = ok(sonet_here(alice, "send", "bob@beta", SECRET + " one"))
    assert first.out.startswith("queued on this device: cannot reach beta"), first.out
    assert "it is sent by itself the next time this device connects" in first.out
    [second] = read_json_lines(ok(sonet_here(alice, "send", "bob@beta", SECRET + " two", "--json")).out)
    assert (second["state"], second["code"], second["accepted_by"]) == ("pending", "unreachable", None)
    assert "status" not in second  # one field says what became of it, as in `sent` (ux11: status and state both)
    assert SECRET.encode() not in state_bytes(alice)

    # still down: `sent` tries them again and lists them as pending, newest first, with why
    listed = read_json_lines(ok(sonet_here(alice, "sent", "--json")).out)
    assert [(m["state"], m["code"]) for m in listed] == [("pending", "unreachable")] * 2
    assert listed[0]["id"] == second["id"]

    restart(procs, beta)
    deadline = time.monotonic() + POLL_GUARD_S
    while True:  # until alpha has witnessed beta's head again (a lookup says "unwitnessed" before)
        result = ok(sonet_here(alice, "sent", "--json"))
        states = [m["state"] for m in read_json_lines(result.out)]
        if "pending" not in states or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "pending" not in states, result.out
    # the call that sent them says so, once per text
    assert result.err.count("sonet: notice: sent the message to bob@beta that waited on this device") == 2, result.err
    assert receive_texts(bob, 2) == [SECRET + " one", SECRET + " two"]
    assert SECRET.encode() not in state_bytes(alice)
