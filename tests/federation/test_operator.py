"""What the operator sees and sets: ``node.toml [federation]``, ``sonet-node peer list`` with
routes, and ``sonet-node status --json`` per peer (from run.json while the node runs, from the
peer table and outbox when it does not). Commands run through ``node.cli.main``."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import trio

from sonet.node.cli import main
from sonet.node.config import ConfigError, NodeConfig
from tests.node.conftest import StartNode

from .net import ALPHA, BETA, GAMMA, new_key, pin_node, queue_at, tracked, until

BASE = {"name": ALPHA, "listen": "127.0.0.1:0"}


def test_federation_settings_default_and_round_trip() -> None:
    config = NodeConfig.from_dict(BASE)
    assert (config.federation_retry_base_s, config.federation_retry_max_s, config.federation_request_timeout_s) == (0.5, 60.0, 30.0)
    text = config.to_toml()
    assert "\n[federation]" not in text and "# retry_max_s = 60.0" in text  # documented, not set
    assert NodeConfig.from_dict(tomllib.loads(text)) == config
    tuned = NodeConfig.from_dict(tomllib.loads(text + "\n[federation]\nretry_max_s = 0.2\nrequest_timeout_s = 3\n"))
    # a smaller cap alone also shrinks the first delay
    assert (tuned.federation_retry_base_s, tuned.federation_retry_max_s, tuned.federation_request_timeout_s) == (0.2, 0.2, 3.0)
    assert NodeConfig.from_dict(tomllib.loads(tuned.to_toml())) == tuned


@pytest.mark.parametrize(
    "section, complaint",
    [
        ({"retry_max_s": 0}, "retry_max_s must be a number of seconds"),
        ({"retry_max_s": "soon"}, "retry_max_s must be a number of seconds"),
        ({"retry_base_s": True}, "retry_base_s must be a number of seconds"),
        ({"request_timeout_s": -1}, "request_timeout_s must be a number of seconds"),
        ({"retry_base_s": 10, "retry_max_s": 1}, "retry_max_s must be at least retry_base_s"),
        ("fast", "[federation] must be a table"),
    ],
)
def test_bad_federation_settings_are_one_clear_line(section: object, complaint: str) -> None:
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_dict({**BASE, "federation": section}, source="node.toml")
    assert complaint in str(info.value) and str(info.value).startswith("node.toml: ") and "\n" not in str(info.value)


def make_node(tmp_path: Path) -> Path:
    data = tmp_path / "alpha"
    assert main(["init", "--data", str(data), "--name", ALPHA, "--listen", "127.0.0.1:0"]) == 0
    return data


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_peer_list_shows_via_and_routes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_node(tmp_path)
    fp = new_key().public.fingerprint
    for name, via in ((BETA, None), (GAMMA, BETA), ("delta.example", GAMMA)):
        run_cli(capsys, "peer", "add", "--data", str(data), "--name", name, "--url", "ws://127.0.0.1:9", "--fingerprint", fp, *(["--via", via] if via else []))
    listed = {p["name"]: p for p in map(json.loads, run_cli(capsys, "peer", "list", "--data", str(data), "--json").splitlines())}
    assert listed[BETA]["route"] == [BETA] and listed[GAMMA]["route"] == [BETA, GAMMA] and listed[GAMMA]["via"] == BETA
    assert listed["delta.example"]["route"] == []  # a via of a via is not supported
    lines = run_cli(capsys, "peer", "list", "--data", str(data)).splitlines()
    assert any(line.startswith(GAMMA) and f"via {BETA}" in line and f"route: {BETA} -> {GAMMA}" in line for line in lines)
    assert any(line.startswith("delta.example") and "route: none" in line for line in lines)


def test_status_of_a_stopped_node_lists_peers_and_queued_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_node(tmp_path)
    run_cli(capsys, "peer", "add", "--data", str(data), "--name", BETA, "--url", "ws://127.0.0.1:9", "--fingerprint", new_key().public.fingerprint)
    status = json.loads(run_cli(capsys, "status", "--data", str(data), "--json"))
    assert status["running"] is False
    [beta] = status["federation"]["peers"]
    assert beta == {
        "name": BETA,
        "url": "ws://127.0.0.1:9",
        "via": None,
        "route": [BETA],
        "link": None,
        "last_error": None,
        "next_attempt_at": None,
        "inbound_links": 0,
        "queued": 0,
        "witnessed_size": None,
        "split": None,
    }


async def test_status_of_a_running_node_shows_each_peers_link(start_node: StartNode, capsys: pytest.CaptureFixture[str]) -> None:
    alpha = await start_node(name=ALPHA)
    beta = await start_node(name=BETA)
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    await queue_at(alpha, tracked(alpha, alice, bob.address))
    await until(lambda: _arrived(beta, bob.address), "the item arrived")

    def peers() -> list[dict]:
        assert main(["status", "--data", str(alpha.data_dir), "--json"]) == 0
        return json.loads(capsys.readouterr().out)["federation"]["peers"]

    async def connected() -> bool:
        entries = await trio.to_thread.run_sync(peers)
        return bool(entries) and entries[0]["link"] == "connected" and entries[0]["inbound_links"] == 1

    await until(connected, "status shows the links both ways (beta greeted alpha)")
    [entry] = await trio.to_thread.run_sync(peers)
    assert entry["name"] == BETA and entry["route"] == [BETA] and entry["queued"] == 0 and entry["inbound_links"] == 1


async def _arrived(node, account: str) -> bool:  # noqa: ANN001
    return bool(await node.pending(account, 1))


def test_the_status_for_people_shows_one_line_per_peer_with_why_it_waits() -> None:
    from sonet.node.cli import _federation_lines

    error = {"code": "wrong_identity", "message": "beta.example presented another key than pinned", "at": 1}
    peers = [
        {"name": "beta.example", "route": ["beta.example"], "link": "backoff", "queued": 3, "last_error": error, "next_attempt_at": 1},
        {"name": "gamma.example", "route": ["beta.example", "gamma.example"], "link": "connected", "queued": 0, "last_error": error},
        {"name": "zeta.example", "route": [], "link": None, "queued": 0, "last_error": None},
    ]
    lines = _federation_lines({"outbox": 3, "peers": peers, "links_open": 1, "admitted": 4, "refused": 2, "refused_by_reason": {"unknown_peer": 2}})
    assert lines == [
        "peers: 3 (outbox: 3 queued)",
        "  beta.example: route beta.example, link backoff, queued 3, last error: beta.example presented another key than pinned (wrong_identity)"
        ", next attempt at 1970-01-01T00:00:00.001Z",
        "  gamma.example: route beta.example -> gamma.example, link connected, queued 0",  # recovered: no stale error
        "  zeta.example: route none, link not running, queued 0",
        "inbound links: 1 open, 4 admitted, 2 refused (2 unknown_peer)",
    ]
