"""Hostile input against a real ``sonet-node run`` process (smoke run of the input catalogue).

A few cases of tests/node/test_input_catalogue.py go over raw WebSockets to the process: garbage
and a wrong version before the handshake, an oversize message, and broken records on an
established channel. Each must get its documented answer; then the process still serves normal
devices through the ``sonet`` CLI: one that registers afterwards sends, another receives.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from tests.node.test_input_catalogue import CATALOGUE, Probe, check

from .conftest import Processes, ok, read_texts, register, setup_pair, sonet_here

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

#: cases that need no account or pinned peer on the node (they connect as new devices)
SMOKE = [
    "garbage instead of Hello1",
    "Hello1 of another protocol version",
    "an oversize WebSocket message",
    "an unknown frame tag",
    "a replayed record",
    "a request before Register",
]
#: hang guard for the whole attack (never a performance threshold)
ATTACK_GUARD_S = 60


def test_a_node_process_answers_hostile_input_and_keeps_serving(procs: Processes, tmp_path: Path) -> None:
    pair = setup_pair(procs, tmp_path)
    probe = Probe(url=pair.node.url, fingerprint=pair.node.fingerprint)
    cases = [c for c in CATALOGUE if c.name in SMOKE]
    assert len(cases) == len(SMOKE)

    async def attack() -> None:
        with trio.fail_after(ATTACK_GUARD_S):
            for case in cases:
                check(case, await case.send(probe))

    trio.run(attack)
    assert pair.node.alive(), pair.node.stderr()
    assert "Traceback" not in pair.node.stderr()

    carol = tmp_path / "carol"
    register(carol, "carol@localhost", pair.node)
    text = f"still here {uuid.uuid4().hex}"
    ok(sonet_here(carol, "send", "bob@localhost", text))
    received = read_texts(ok(sonet_here(pair.bob, "recv", "--json")).out)
    assert [(m["from"], m["text"]) for m in received] == [("carol@localhost", text)]
