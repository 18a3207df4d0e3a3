"""User mistakes at the command line: one clear line on stderr, a non-zero exit, no traceback.

The cases run the CLIs' ``main(argv)`` in this process (``node_here`` / ``sonet_here``: the
same code as the console scripts, without an interpreter start per command) against a real
node process. One node (with alice registered) is shared by the module; cases that need a node
in another state start their own. A few smoke tests run the real console scripts: ``--help``
of each program, an error and a success of each, and the cases about ``sonet-node run``
itself (a second node on the same directory or port).
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sonet.client.cli as client_cli_module
import sonet.node.cli as node_cli_module

from .conftest import (
    NodeProcess,
    Processes,
    Result,
    cli,
    free_port,
    here,
    init_node,
    node_cli,
    node_here,
    ok,
    register,
    sonet,
    sonet_here,
    start_pinned_node,
)

pytestmark = pytest.mark.usefixtures("few_prekeys_for_module")  # prekeys are not counted here (tests/conftest.py)


def user_error(result: Result, *fragments: str) -> str:
    """Assert the shape of a user-facing error and return its one line."""
    assert result.rc != 0, f"expected failure, got exit 0\nstdout: {result.out}\nstderr: {result.err}"
    assert "Traceback" not in result.err, result.err
    if result.out.startswith('{"error"'):  # with --json the one line is on stdout (sonet/cli_output.py)
        [shown] = result.out.splitlines()
        message = json.loads(shown)["error"]["message"]
        for fragment in fragments:
            assert fragment.lower() in message.lower(), f"{fragment!r} not in {message!r}"
        return message
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.err}"
    assert result.out == "", result.out
    line = lines[0]
    assert line.startswith(("sonet: error: ", "sonet-node: error: ")), line
    for fragment in fragments:
        assert fragment.lower() in line.lower(), f"{fragment!r} not in {line!r}"
    print(line)  # shown by pytest -rP or on failure
    return line


@dataclass
class Net:
    node: NodeProcess
    alice: Path
    tmp: Path


@pytest.fixture(scope="module")
def net(module_procs: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("cli-errors")
    running = start_pinned_node(module_procs, tmp / "node")
    alice = tmp / "alice"
    register(alice, "alice@localhost", running)
    yield Net(running, alice, tmp)


# sonet-node -------------------------------------------------------------------------------


def test_init_into_existing_node_dir(net: Net) -> None:
    before = {p.name: p.read_bytes() for p in (net.node.data / "node.toml", net.node.data / "node.key")}
    user_error(
        node_here("init", "--data", net.node.data, "--name", "localhost", "--listen", "127.0.0.1:0"),
        "already holds a node",
    )
    assert {p.name: p.read_bytes() for p in (net.node.data / "node.toml", net.node.data / "node.key")} == before
    assert ok(node_here("fingerprint", "--data", net.node.data)).out.strip() == net.node.fingerprint


def test_the_node_console_script_fails_and_succeeds_as_a_process(net: Net, tmp_path: Path) -> None:
    """Smoke: the installed ``sonet-node`` exits non-zero with one line, and 0 with its output."""
    user_error(node_cli("fingerprint", "--data", tmp_path / "no-such-node"), str(tmp_path / "no-such-node"))
    assert ok(node_cli("fingerprint", "--data", net.node.data)).out.strip() == net.node.fingerprint


@pytest.mark.parametrize("command", ["run", "invite", "status", "fingerprint"])
def test_commands_on_a_missing_data_dir(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "no-such-node"
    extra = ["--json"] if command == "status" else []
    # `run` as a process: were it to start after all, it would not hang this one
    run = node_cli if command == "run" else node_here
    user_error(run(command, "--data", missing, *extra), str(missing))
    assert not (missing / "node.toml").exists()


def test_run_twice_on_the_same_dir(net: Net) -> None:
    user_error(node_cli("run", "--data", net.node.data), "already running")
    assert net.node.alive()
    status = ok(node_here("status", "--data", net.node.data, "--json")).out
    assert f'"pid": {net.node.pid}' in status and '"running": true' in status


def test_run_on_a_port_in_use(net: Net, tmp_path: Path) -> None:
    data = tmp_path / "second"
    init_node(data, listen=f"127.0.0.1:{net.node.port}")
    user_error(node_cli("run", "--data", data), "cannot listen", f"127.0.0.1:{net.node.port}")
    assert not (data / "run.json").exists()
    assert net.node.alive()


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1", "127.0.0.1:99999", ":7480", "127.0.0.1:port"])
def test_init_with_bad_listen(tmp_path: Path, listen: str) -> None:
    data = tmp_path / "node"
    user_error(node_here("init", "--data", data, "--name", "localhost", f"--listen={listen}"), "listen", repr(listen))
    assert not (data / "node.toml").exists() and not (data / "node.key").exists()


@pytest.mark.parametrize("name", ["bad name!", "-leading.dash", "double..dot", "under_score", ""])
def test_init_with_bad_name(tmp_path: Path, name: str) -> None:
    data = tmp_path / "node"
    user_error(node_here("init", "--data", data, f"--name={name}", "--listen", "127.0.0.1:0"), "invalid node name")
    assert not (data / "node.toml").exists() and not (data / "node.key").exists()


# sonet register ---------------------------------------------------------------------------


def _other_fingerprint(fingerprint: str) -> str:
    """A well-formed fingerprint that is not ``fingerprint``."""
    swap = "b" if fingerprint[0] != "b" else "c"
    return swap + fingerprint[1:]


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ("garbage", "malformed invite token"),
        ("abc.def", "malformed invite token"),
        ("FINGERPRINT", "malformed invite token"),
        ("FINGERPRINT.", "malformed invite token"),
        ("FINGERPRINT.short", "malformed invite token"),
        ("a.b.c", "malformed invite token"),
        ("zz." + "a" * 32, "not a Sonet fingerprint"),
    ],
)
def test_register_with_malformed_token(net: Net, tmp_path: Path, token: str, fragment: str) -> None:
    token = token.replace("FINGERPRINT", net.node.fingerprint)
    home = tmp_path / "h"
    user_error(sonet_here(home, "register", "carol@localhost", "--node", net.node.url, "--invite", token), fragment)
    user_error(sonet_here(home, "send", "alice@localhost", "hi"), "no account")  # nothing was saved


def test_register_with_a_used_token(net: Net, tmp_path: Path) -> None:
    token = net.node.invite()
    register(tmp_path / "first", "dora@localhost", net.node, token)
    user_error(
        sonet_here(tmp_path / "second", "register", "erin@localhost", "--node", net.node.url, "--invite", token),
        "invite token is unknown, already used or expired",
    )
    user_error(sonet_here(tmp_path / "second", "send", "alice@localhost", "hi"), "no account")


def test_register_pins_the_node_fingerprint_of_the_token(net: Net, tmp_path: Path) -> None:
    token = net.node.invite()
    secret = token.split(".", 1)[1]
    forged = f"{_other_fingerprint(net.node.fingerprint)}.{secret}"
    home = tmp_path / "frank"
    user_error(
        sonet_here(home, "register", "frank@localhost", "--node", net.node.url, "--invite", forged),
        "is not the node this invite is for",
        "does not match the pinned fingerprint",
    )
    # the device gave up before revealing the secret: the genuine token is still good
    register(home, "frank@localhost", net.node, token)


def test_register_with_an_unreachable_node(net: Net, tmp_path: Path) -> None:
    token = net.node.invite()
    home = tmp_path / "gina"
    unreachable = f"ws://127.0.0.1:{free_port()}"
    user_error(
        sonet_here(home, "register", "gina@localhost", "--node", unreachable, "--invite", token), "cannot connect", unreachable
    )
    register(home, "gina@localhost", net.node, token)  # nothing half-saved; the token is unused


@pytest.mark.parametrize("address", ["not-an-address", "@localhost", "gina@", "a@b@localhost", "Gina Smith@localhost"])
def test_register_with_an_invalid_address(net: Net, tmp_path: Path, address: str) -> None:
    token = net.node.invite()
    user_error(sonet_here(tmp_path / "h", "register", address, "--node", net.node.url, "--invite", token), "invalid")
    register(tmp_path / "h", f"u{uuid.uuid4().hex[:12]}@localhost", net.node, token)  # the token was not consumed


def test_register_for_another_node_name(net: Net, tmp_path: Path) -> None:
    token = net.node.invite()
    user_error(
        sonet_here(tmp_path / "h", "register", "ivy@elsewhere.example", "--node", net.node.url, "--invite", token),
        "is localhost, not elsewhere.example",
    )
    register(tmp_path / "h", "ivy@localhost", net.node, token)


def test_register_twice_in_the_same_home(net: Net) -> None:
    token = net.node.invite()
    user_error(
        sonet_here(net.alice, "register", "alice2@localhost", "--node", net.node.url, "--invite", token),
        "already holds alice@localhost",
    )
    ok(sonet_here(net.alice, "recv"))  # the existing account is untouched


# sonet send / recv ------------------------------------------------------------------------


def test_send_before_register(tmp_path: Path) -> None:
    user_error(sonet_here(tmp_path / "empty", "send", "alice@localhost", "hi"), "no account", "sonet register")
    user_error(sonet_here(tmp_path / "empty", "recv"), "no account")


def test_the_device_console_script_fails_and_succeeds_as_a_process(net: Net, tmp_path: Path) -> None:
    """Smoke: the installed ``sonet`` exits non-zero with one line, and 0 with its output."""
    user_error(sonet(tmp_path / "empty", "send", "alice@localhost", "hi"), "no account", "sonet register")
    register(tmp_path / "smoke", "smoke@localhost", net.node, run=cli)  # checks what it printed


def test_send_to_an_unknown_account(net: Net) -> None:
    user_error(sonet_here(net.alice, "send", "nobody@localhost", "hi"), "no account nobody@localhost")


def test_send_to_another_nodes_address(net: Net) -> None:
    user_error(sonet_here(net.alice, "send", "bob@elsewhere.example", "hi"), "elsewhere.example")


@pytest.mark.parametrize(("address", "text", "fragment"), [("bob", "hi", "invalid address"), ("alice@localhost", "", "empty")])
def test_send_with_a_bad_address_or_text(net: Net, address: str, text: str, fragment: str) -> None:
    user_error(sonet_here(net.alice, "send", address, text), fragment)


def test_send_and_recv_with_an_unreachable_node(procs: Processes, tmp_path: Path) -> None:
    gone = start_pinned_node(procs, tmp_path / "node")
    home = tmp_path / "kim"
    register(home, "kim@localhost", gone)
    assert gone.terminate() == 0
    endpoint = f"{gone.url}/client"
    user_error(sonet_here(home, "recv"), "cannot connect", endpoint)
    user_error(sonet_here(home, "recv", "--json", "--wait", "5"), "cannot connect", endpoint)
    user_error(sonet_here(home, "send", "kim@localhost", "hello?"), "cannot connect", endpoint)


# --help -----------------------------------------------------------------------------------


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*prefix, name))


HELP_CASES = [("sonet-node", *path) for path in _command_paths(node_cli_module.build_parser())] + [
    ("sonet", *path) for path in _command_paths(client_cli_module.build_parser())
]


@pytest.mark.parametrize("command", HELP_CASES, ids=" ".join)
def test_help(command: tuple[str, ...]) -> None:
    program, *path = command
    run = here if path else cli  # the programs' own --help as processes, their commands' in this one
    result = run(program, *path, "--help")
    assert result.rc == 0, result.err
    assert result.err == ""
    assert result.out.startswith(f"usage: {' '.join(command)}"), result.out
    assert "--help" in result.out


@pytest.mark.parametrize(
    "argv",
    [("sonet", "--version"), ("sonet-node", "--version"), ("sonet", "send"), ("sonet", "--json", "send"), ("sonet-node", "frobnicate")],
    ids=" ".join,
)
def test_in_process_runs_match_the_console_scripts(argv: tuple[str, ...]) -> None:
    """``here`` stands in for a process in these tests: the same exit status, stdout and stderr,
    usage errors (argparse's exit) included."""
    assert here(*argv) == cli(*argv)


def test_help_cases_cover_the_documented_commands() -> None:
    documented = {
        ("sonet-node",),
        *[("sonet-node", c) for c in ("init", "run", "invite", "fingerprint", "status")],
        ("sonet",),
        *[("sonet", c) for c in ("register", "send", "recv")],
    }
    assert documented <= set(HELP_CASES)
