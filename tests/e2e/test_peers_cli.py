"""`sonet-node peer add/list/remove` and the federation section of `status --json`, against a
stopped and a running node (a real process). The commands run the CLI's ``main`` in this process
(``node_here``); ``peer --help`` runs the console script as a process (a smoke test)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import trio

from sonet.core.crypto import CryptoMode, SigningKey
from sonet.federation import DialError, dial_peer

from .conftest import Processes, init_node, node_cli, node_here, ok, read_json_lines

FP_B = "b" * 32


def error_line(result) -> str:  # noqa: ANN001
    assert result.rc != 0 and result.out == "", result
    assert "Traceback" not in result.err, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sonet-node: error: "), result.err
    return lines[0]


def test_peer_add_list_remove_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "alpha"
    init_node(data, name="alpha.example")
    added = json.loads(ok(node_here("peer", "add", "--data", data, "--name", "Relay.Example", "--url", "ws://127.0.0.1:7481/", "--fingerprint", FP_B.upper(), "--json")).out)
    assert added["name"] == "relay.example" and added["url"] == "ws://127.0.0.1:7481" and added["fingerprint"] == FP_B
    ok(node_here("peer", "add", "--data", data, "--name", "far.example", "--url", "wss://far.example", "--fingerprint", "c" * 32, "--via", "relay.example"))
    listed = read_json_lines(ok(node_here("peer", "list", "--data", data, "--json")).out)
    assert [(p["name"], p["via"]) for p in listed] == [("far.example", "relay.example"), ("relay.example", None)]
    assert "far.example" in ok(node_here("peer", "list", "--data", data)).out

    assert "relay (--via) of far.example" in error_line(node_here("peer", "remove", "--data", data, "--name", "relay.example"))
    ok(node_here("peer", "remove", "--data", data, "--name", "far.example"))
    ok(node_here("peer", "remove", "--data", data, "--name", "relay.example"))
    assert read_json_lines(ok(node_here("peer", "list", "--data", data, "--json")).out) == []
    assert ok(node_cli("peer", "--help")).out.startswith("usage: sonet-node peer")


def test_peer_errors_are_one_clear_line(tmp_path: Path) -> None:
    data = tmp_path / "alpha"
    init_node(data, name="alpha.example")
    add = ["peer", "add", "--data", data]
    ok(node_here(*add, "--name", "beta.example", "--url", "ws://b:1", "--fingerprint", FP_B))
    cases = {
        "already configured": ["--name", "beta.example", "--url", "ws://b:2", "--fingerprint", FP_B],
        "invalid node name": ["--name", "bad name!", "--url", "ws://b:2", "--fingerprint", FP_B],
        "invalid peer URL": ["--name", "gamma.example", "--url", "https://g", "--fingerprint", FP_B],
        "invalid fingerprint": ["--name", "gamma.example", "--url", "ws://g:1", "--fingerprint", "1234"],
        "not a configured peer": ["--name", "gamma.example", "--url", "ws://g:1", "--fingerprint", FP_B, "--via", "nope.example"],
        "own relay": ["--name", "gamma.example", "--url", "ws://g:1", "--fingerprint", FP_B, "--via", "gamma.example"],
        "own name": ["--name", "alpha.example", "--url", "ws://g:1", "--fingerprint", FP_B],
    }
    for expected, args in cases.items():
        assert expected in error_line(node_here(*add, *args)), expected
    assert "no peer named zz.example" in error_line(node_here("peer", "remove", "--data", data, "--name", "zz.example"))
    assert [p["name"] for p in read_json_lines(ok(node_here("peer", "list", "--data", data, "--json")).out)] == ["beta.example"]


def test_status_shows_federation_refusals_of_the_running_node(tmp_path: Path, procs: Processes) -> None:
    data = tmp_path / "alpha"
    init_node(data, name="alpha.example")
    running = procs.start_node(data)
    pinned = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
    impostor = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
    ok(node_here("peer", "add", "--data", data, "--name", "beta.example", "--url", "ws://127.0.0.1:1", "--fingerprint", pinned.public.fingerprint))

    async def dial(key: SigningKey) -> str | None:
        try:
            async with dial_peer(running.url, identity=key, fingerprint=running.fingerprint, name="beta.example") as link:
                await link.ping()
                return None
        except DialError as exc:
            return exc.code

    assert trio.run(dial, pinned) is None  # added while running: no restart needed
    assert trio.run(dial, impostor) == "wrong_identity"

    federation: dict = {}
    for _ in range(100):  # hang guard: the node refreshes run.json within a second
        status = json.loads(ok(node_here("status", "--data", data, "--json")).out)
        federation = status["federation"]
        if federation.get("refused") == 1:
            break
        time.sleep(0.1)
    assert status["running"] is True
    assert f"running: yes (pid {status['pid']}, {status['url']})" in ok(node_here("status", "--data", data)).out.splitlines()
    assert len(federation["peers"]) == 1 and federation["peers"][0]["name"] == "beta.example" and federation["admitted"] == 1 and federation["refused"] == 1
    [refusal] = federation["last_refusals"]
    assert refusal["peer"] == "beta.example" and refusal["reason"] == "wrong_identity"
    assert pinned.public.fingerprint not in json.dumps(status) and impostor.public.fingerprint not in json.dumps(status)
