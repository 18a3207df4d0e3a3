"""A strict ``node.toml``: unknown keys and sections, wrong types and out-of-range values are
refused with the file, the key and what is allowed, both by ``sonet-node config check`` and at
start (``run``); ``config check`` says ok for what ``init`` writes."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sonet.node.config import ConfigError, NodeConfig

from .cli_kit import NODE, error_line, init, json_error, json_lines, ok, run, snapshot


@pytest.fixture
def node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    return init(capsys, tmp_path / "node")


def _edit(data: Path, old: str, new: str) -> Path:
    path = data / "node.toml"
    text = path.read_text()
    assert old in text, text
    path.write_text(text.replace(old, new, 1))
    return path


def test_what_init_writes_checks_ok(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = ok(run(capsys, "config", "check", "--data", node)).out
    assert line == f"ok: {node / 'node.toml'} (node {NODE}, listening on 127.0.0.1:0)\n"
    [shown] = json_lines(run(capsys, "config", "check", "--data", node, "--json"))
    assert shown == {"ok": True, "config": str(node / "node.toml"), "name": NODE, "listen": "127.0.0.1:0"}


def test_check_changes_nothing(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(node)
    ok(run(capsys, "config", "check", "--data", node))
    assert snapshot(node) == before


#: (what to replace in the file init wrote, with what, fragments of the one-line complaint)
BAD = {
    "typo of a key": ('registration = "invite"', 'registraton = "open"', ["unknown setting 'registraton'", "did you mean 'registration'?", "allowed: name, listen, registration"]),
    "unknown key in a section": ("max_bytes =", "max_byte =", ["unknown setting in [mailbox]: 'max_byte'", "did you mean 'max_bytes'?", "allowed: ttl_days, max_envelopes, max_bytes"]),
    "unknown section": ("[mailbox]", "[server]\nport = 1\n\n[mailbox]", ["unknown section [server]", "allowed: [mailbox], [federation]"]),
    "negative max_envelopes": ("max_envelopes = 10000", "max_envelopes = -1", ["mailbox.max_envelopes = -1 is not allowed", "from 1 to 10000000"]),
    "zero max_envelopes": ("max_envelopes = 10000", "max_envelopes = 0", ["mailbox.max_envelopes = 0", "from 1 to"]),
    "max_envelopes as text": ("max_envelopes = 10000", 'max_envelopes = "10000"', ["mailbox.max_envelopes = '10000'", "a whole number"]),
    "max_envelopes as a float": ("max_envelopes = 10000", "max_envelopes = 10.5", ["mailbox.max_envelopes = 10.5", "a whole number"]),
    "max_bytes as a boolean": ("max_bytes = ", "max_bytes = true\n# ", ["mailbox.max_bytes = True", "a whole number from 262144"]),
    "tiny max_bytes": ("max_bytes = ", "max_bytes = 10\n# ", ["mailbox.max_bytes = 10", "from 262144 to 1099511627776"]),
    "ttl_days out of range": ("ttl_days = 30", "ttl_days = 31", ["mailbox.ttl_days = 31", "from 1 to 30"]),
    "registration value": ('registration = "invite"', 'registration = "everyone"', ["registration = 'everyone'", "allowed: invite, open"]),
    "registration type": ('registration = "invite"', "registration = 1", ["registration = 1 must be a quoted string"]),
    "crypto mode": ('minimum_crypto_mode = "hybrid"', 'minimum_crypto_mode = "weak"', ["minimum_crypto_mode = 'weak'", "allowed: classical, hybrid, pq"]),
    "name type": (f'name = "{NODE}"', "name = 7", ["name = 7 must be a quoted string"]),
    "name value": (f'name = "{NODE}"', 'name = "bad name!"', ["invalid node name"]),
    "missing name": (f'name = "{NODE}"\n', "", ["missing setting 'name'"]),
    "listen port": ('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:99999"', ["invalid listen address '127.0.0.1:99999'", "0 to 65535"]),
    "mailbox not a table": ("[mailbox]\n", "mailbox = 3\n[mailboxes]\n", ["[mailbox] must be a table"]),
    "federation seconds": ("# [federation]", "[federation]\nretry_max_s = -1\n# ", ["federation.retry_max_s = -1", "more than 0 and at most a day"]),
    "federation unknown key": ("# [federation]", "[federation]\nretries = 3\n# ", ["unknown setting in [federation]: 'retries'", "allowed: retry_base_s, retry_max_s, request_timeout_s"]),
    "not toml": ("[mailbox]", "[mailbox", ["node.toml"]),
}


@pytest.mark.parametrize("case", BAD)
def test_config_check_names_the_file_the_key_and_what_is_allowed(node: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    old, new, fragments = BAD[case]
    path = _edit(node, old, new)
    error_line(run(capsys, "config", "check", "--data", node), f"{path}: ", *fragments)
    assert json_error(run(capsys, "config", "check", "--data", node, "--json"), *fragments)["code"] == "bad_config"


@pytest.mark.parametrize("case", ["typo of a key", "negative max_envelopes", "unknown section", "listen port"])
def test_run_refuses_the_same_config_before_it_opens_anything(node: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    old, new, fragments = BAD[case]
    path = _edit(node, old, new)
    before = snapshot(node)
    error_line(run(capsys, "run", "--data", node), f"{path}: ", *fragments)
    error_line(run(capsys, "status", "--data", node), *fragments)
    assert snapshot(node) == before


def test_config_check_reports_a_damaged_data_directory_too(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (node / "node.db").unlink()
    error_line(run(capsys, "config", "check", "--data", node), "node.db is missing")
    error_line(run(capsys, "config", "check", "--data", node.parent / "nowhere"), "does not exist", "sonet-node init")


def test_every_config_the_node_writes_is_accepted() -> None:
    tuned = NodeConfig(
        name="alpha.example",
        listen="[::1]:7480",
        registration="open",
        envelope_ttl_ms=3 * 24 * 3600 * 1000,
        mailbox_max_envelopes=5,
        mailbox_max_bytes=1 << 20,
        federation_retry_base_s=0.1,
        federation_retry_max_s=2.0,
        federation_request_timeout_s=3.0,
    )
    for config in (NodeConfig(name=NODE, listen="0.0.0.0:7480"), tuned):
        assert NodeConfig.from_dict(tomllib.loads(config.to_toml()), source="node.toml") == config


def test_config_errors_are_one_line() -> None:
    for raw in ({"name": NODE}, {"name": NODE, "listen": "x:1", "mailbox": {"max_envelopes": -1}}, {"name": NODE, "listen": "x:1", "typo": 1}):
        with pytest.raises(ConfigError) as info:
            NodeConfig.from_dict(raw, source="node.toml")
        assert str(info.value).startswith("node.toml: ") and "\n" not in str(info.value)
