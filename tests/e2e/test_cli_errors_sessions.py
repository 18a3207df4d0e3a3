"""User mistakes with the E2EE-sessions commands (link, devices, safety-number, trust, typing,
a passphrase-protected home): one clear line on stderr, a non-zero exit, no traceback, nothing
on stdout -- and nothing changed, so the same home keeps working afterwards.

One node (alice and bob registered, each with one device) is shared by the module. The
commands run in this process (``sonet_here``, the CLI's ``main``); tests/e2e/test_cli_errors.py
holds the smoke tests of the console scripts as processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import (
    NodeProcess,
    Processes,
    free_port,
    here,
    node_here,
    ok,
    read_json_lines,
    read_texts,
    register,
    sonet_here,
    start_pinned_node,
)
from .test_cli_errors import user_error

pytestmark = pytest.mark.usefixtures("few_prekeys_for_module")  # prekeys are not counted here (tests/conftest.py)


@dataclass
class Net:
    node: NodeProcess
    alice: Path
    bob: Path


@pytest.fixture(scope="module")
def net(module_procs: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("cli-errors-sessions")
    running = start_pinned_node(module_procs, tmp / "node")
    alice, bob = tmp / "alice", tmp / "bob"
    register(alice, "alice@localhost", running)
    register(bob, "bob@localhost", running)
    yield Net(running, alice, bob)


def _device_ids(home: Path) -> list[int]:
    return [d["id"] for d in read_json_lines(ok(sonet_here(home, "devices", "--json")).out)]


def _status(net: Net) -> dict:
    return json.loads(ok(node_here("status", "--data", net.node.data, "--json")).out)


# link -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("garbage", "malformed link code"),
        ("a.b.c", "malformed link code"),
        ("abc.def", "link code"),
    ],
)
def test_link_approve_a_malformed_code(net: Net, code: str, fragment: str) -> None:
    user_error(sonet_here(net.alice, "link", "approve", code), fragment)
    assert _device_ids(net.alice) == [1]


def test_link_approve_an_unknown_code(net: Net) -> None:
    # well-formed (the shape `link begin` prints) but no device ever showed it
    code = "a" * 26 + "." + "a" * 26
    user_error(sonet_here(net.alice, "link", "approve", code), "no such link slot", "link_unknown")
    assert _device_ids(net.alice) == [1]


def test_link_begin_to_an_unreachable_node(tmp_path: Path) -> None:
    home = tmp_path / "new"
    unreachable = f"ws://127.0.0.1:{free_port()}"
    user_error(sonet_here(home, "link", "begin", "--node", unreachable), "cannot connect", unreachable)
    user_error(sonet_here(home, "recv"), "no account")  # no half-linked account was left behind


# devices ----------------------------------------------------------------------------------


def test_devices_remove_an_unknown_id(net: Net) -> None:
    user_error(sonet_here(net.alice, "devices", "remove", "99"), "alice@localhost has no device 99")
    assert _device_ids(net.alice) == [1]


def test_devices_remove_without_an_id(net: Net) -> None:
    user_error(sonet_here(net.alice, "devices", "remove"), "usage: sonet devices remove ID")
    assert _device_ids(net.alice) == [1]


def test_devices_remove_the_only_device(net: Net) -> None:
    user_error(sonet_here(net.alice, "devices", "remove", "1", "--yes"), "last device", "last_device")
    assert _device_ids(net.alice) == [1]
    ok(sonet_here(net.alice, "recv"))  # the device still works


# safety-number / trust / typing -----------------------------------------------------------


def test_safety_number_for_an_unknown_account(net: Net) -> None:
    user_error(sonet_here(net.alice, "safety-number", "nobody@localhost"), "no account nobody@localhost", "unknown_account")
    user_error(sonet_here(net.alice, "safety-number", "nobody@localhost", "--json"), "no account nobody@localhost")


def test_trust_someone_never_contacted(net: Net) -> None:
    # bob exists, but alice never exchanged a message with him
    user_error(sonet_here(net.alice, "trust", "bob@localhost"), "not exchanged messages with bob@localhost")
    user_error(sonet_here(net.alice, "trust", "nobody@localhost"), "not exchanged messages with nobody@localhost")


def test_typing_to_an_unknown_account(net: Net) -> None:
    user_error(sonet_here(net.alice, "typing", "nobody@localhost"), "no account nobody@localhost", "unknown_account")


def test_send_to_oneself_with_a_single_device(net: Net) -> None:
    """A note to self is encrypted for this account's *other* devices -- there are none, so
    the command says plainly that nothing was sent, and nothing is queued."""
    before = _status(net)["envelopes"]
    result = sonet_here(net.bob, "send", "bob@localhost", "note to self", "--json")
    assert result.rc == 1 and json.loads(result.out)["error"]["code"] == "no_other_device", result
    user_error(sonet_here(net.bob, "send", "bob@localhost", "another note"), "nothing sent: this is the only device of bob@localhost")
    assert _status(net)["envelopes"] == before
    assert read_texts(ok(sonet_here(net.bob, "recv", "--json")).out) == []


# a passphrase-protected home --------------------------------------------------------------


def test_recv_on_a_passphrase_protected_home(net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "pat"
    monkeypatch.setenv("SONET_PASSPHRASE", "correct horse battery staple")
    register(home, "pat@localhost", net.node)
    assert json.loads((home / "vault.json").read_text())["kind"] == "passphrase"
    assert not (home / "state.key").exists()  # the key lives only in the passphrase

    monkeypatch.delenv("SONET_PASSPHRASE")
    user_error(sonet_here(home, "recv"), "protected by a passphrase", "set SONET_PASSPHRASE")
    user_error(sonet_here(home, "recv", "--json"), "protected by a passphrase")
    monkeypatch.setenv("SONET_PASSPHRASE", "")
    user_error(sonet_here(home, "recv"), "protected by a passphrase")

    monkeypatch.setenv("SONET_PASSPHRASE", "wrong horse")
    user_error(sonet_here(home, "recv", "--json"), "wrong passphrase", str(home))

    monkeypatch.setenv("SONET_PASSPHRASE", "correct horse battery staple")
    assert read_json_lines(ok(sonet_here(home, "recv", "--json")).out) == []  # nothing was damaged


# --help -----------------------------------------------------------------------------------


_HELP_CASES = [
    (("link",), ["begin", "approve"]),
    (("link", "begin"), ["--node"]),
    (("link", "approve"), ["CODE"]),
    (("devices",), ["remove", "ID", "--json"]),
    (("safety-number",), ["ADDRESS", "--json"]),
    (("trust",), ["ADDRESS"]),
    (("typing",), ["ADDRESS", "--stop"]),
]


@pytest.mark.parametrize(("command", "mentions"), [pytest.param(c, m, id=" ".join(c)) for c, m in _HELP_CASES])
def test_help_for_the_session_commands(command: tuple[str, ...], mentions: list[str]) -> None:
    result = here("sonet", *command, "--help")
    assert result.rc == 0 and result.err == "", result.err
    assert result.out.startswith(f"usage: sonet {' '.join(command)}"), result.out
    for word in mentions:
        assert word in result.out, f"{word!r} not in:\n{result.out}"
