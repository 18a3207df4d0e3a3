"""Each start of ``sonet-node`` and ``sonet`` imports what its command needs and no more: the suite
starts hundreds of them, and so do operators and scripts. ``--help`` and usage errors build the
parser only (``sonet``'s loads no crypto, content model or wire codec either); only ``sonet-node run`` loads the
server, and without ``[ops]`` no metrics; a node command that opens the store loads no MLS and
no trio-websocket; a 1:1 ``sonet send`` loads no MLS.

Each case runs the command's ``main`` in a fresh interpreter (as the console scripts do) and
reads back which modules were imported."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import contextlib, io, json, sys
from {module} import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        status = main({argv!r})
    except SystemExit as done:
        status = done.code
print(json.dumps({{"status": status, "modules": sorted(sys.modules)}}))
"""

NODE = "sonet.node.cli"
CLIENT = "sonet.client.cli"

#: what no command but the ones that use it may load
MLS = ("sonet.core.mls", "sonet.client.groups.engine", "sonet.client.groups.api")
SERVER = ("sonet.node.app", "sonet.node.ops", "sonet.node.server", "sonet.federation.service", "sonet.federation.link", "prometheus_client")
HEAVY = ("psycopg", "textual", "rich", "PIL", "segno")
#: what building a parser does not need: the stores, the network, the device state
PARSER_ONLY = ("trio", "trio_websocket", "sonet.node.store", "sonet.node.config", "sonet.client.sdk", "sonet.client.state")
#: nor, for ``sonet``, the crypto package (its modes' names are in sonet/cli_choices.py), messages'
#: content and the wire codec (the help texts' bounds are in core/limits.py)
CLIENT_PARSER_ONLY = ("sonet.core.crypto", "cryptography", "sonet.core.content", "sonet.core.attachment", "sonet.core.wire", "msgspec")
#: what a node command that opens the store does not need: groups are routed by the running node
#: only, links are dialled and served by it only
STORE_ONLY = (*MLS, "sonet.core.groups.hub", "sonet.node.store.sqlite_groups", "trio_websocket", "wsproto", "sonet.transport.dial")


def imported(module: str, argv: list[str]) -> tuple[object, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module, argv=argv)], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    return result["status"], set(result["modules"])


def loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    """The modules of ``packages`` (each with its submodules) among ``modules``."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize(
    ("module", "argv", "status"),
    [
        (NODE, ["--help"], 0),
        (NODE, ["invite", "--help"], 0),
        (NODE, ["peer", "add", "--help"], 0),
        (NODE, ["invite"], 2),  # a usage error: --data is missing
        (NODE, ["run", "--data"], 2),
        (CLIENT, ["--help"], 0),
        (CLIENT, ["send", "--help"], 0),
        (CLIENT, ["recv", "--bogus"], 2),
    ],
)
def test_help_and_usage_errors_build_the_parser_only(module: str, argv: list[str], status: int) -> None:
    code, modules = imported(module, argv)
    assert code == status
    assert loaded(modules, MLS + SERVER + HEAVY + PARSER_ONLY + (CLIENT_PARSER_ONLY if module == CLIENT else ())) == []


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("imports") / "node"
    code, _modules = imported(NODE, ["init", "--data", str(data), "--name", "imports.example", "--listen", "127.0.0.1:7480"])
    assert code == 0
    return data


@pytest.mark.parametrize(
    "argv",
    [
        ["fingerprint"],
        ["invite"],
        ["status"],
        ["peer", "add", "--name", "beta.example", "--url", "ws://127.0.0.1:7481", "--fingerprint", "a" * 32],
        ["peer", "list"],
        ["accounts", "list"],
        ["config", "check"],
        ["audit", "verify"],
    ],
)
def test_node_commands_do_not_load_the_server(node: Path, argv: list[str]) -> None:
    code, modules = imported(NODE, [*argv, "--data", str(node)])
    assert code == 0
    assert loaded(modules, SERVER + HEAVY + STORE_ONLY) == []


@pytest.mark.parametrize("argv", [["fingerprint"], ["audit", "verify"], ["audit", "show"]])
def test_commands_that_only_read_the_key_or_a_file_load_no_settings_or_store(node: Path, argv: list[str]) -> None:
    code, modules = imported(NODE, [*argv, "--data", str(node)])
    assert code == 0
    assert loaded(modules, ("sonet.node.config", "sonet.node.store", "trio") + SERVER + MLS + HEAVY) == []


def test_a_one_to_one_send_loads_no_mls(tmp_path: Path) -> None:
    """Without a device in --home the command stops at the device state, which the SDK, the
    device state and the receiving side are imported for: none of them pulls in MLS."""
    code, modules = imported(CLIENT, ["--home", str(tmp_path / "nobody"), "send", "bob@beta.example", "hello"])
    assert code == 1
    assert "sonet.client.sdk" in modules and "sonet.client.state" in modules  # the probe reached the device
    assert loaded(modules, MLS + SERVER + HEAVY) == []


def test_the_user_errors_sonet_node_reports_as_one_line_name_their_defining_modules() -> None:
    """node/cli.py names them instead of importing them (an exception of a module never imported
    cannot occur): a moved or renamed class would be reported as a traceback, not one line."""
    from sonet.node.cli import _USER_ERRORS

    for module, name in _USER_ERRORS:
        kind = getattr(importlib.import_module(module), name)
        assert isinstance(kind, type) and issubclass(kind, Exception) and kind.__module__ == module, (module, name)


RUN_PROBE = """
import gc, io, json, os, signal, sys
from sonet.node.cli import main

class Listening(io.TextIOBase):
    \"\"\"stdout: once the node says it listens, report the modules and stop it as SIGTERM does\"\"\"
    def write(self, text):
        if "listening on" in text:
            sys.__stderr__.write("modules: " + json.dumps(sorted(sys.modules)) + "\\n")
            sys.__stderr__.write("gc: " + json.dumps([gc.isenabled(), gc.get_freeze_count()]) + "\\n")
            os.kill(os.getpid(), signal.SIGTERM)
        return len(text)

sys.stdout = Listening()
sys.exit(main({argv!r}))
"""


def run_until_listening(argv: list[str]) -> set[str]:
    return _listening(argv)[0]


def _listening(argv: list[str]) -> tuple[set[str], list[object]]:
    """The modules a node has loaded once it listens, and (whether the GC is on, how many objects are frozen)."""
    done = subprocess.run([sys.executable, "-c", RUN_PROBE.format(argv=argv)], capture_output=True, text=True, check=True)
    found = {}
    for line in done.stderr.splitlines():  # (the node logs there too)
        key, _, value = line.partition(": ")
        if key in ("modules", "gc"):
            found[key] = json.loads(value)
    return set(found["modules"]), found["gc"]


def test_a_node_without_an_ops_listener_loads_no_metrics(node: Path) -> None:
    """Nothing could read its metrics: no prometheus_client, no store wrapped to count."""
    modules = run_until_listening(["run", "--data", str(node), "--listen", "127.0.0.1:0"])
    assert "sonet.node.app" in modules  # the probe reached the running node
    assert loaded(modules, ("prometheus_client", "sonet.node.ops.metrics", "sonet.node.ops.observed_store")) == []
    # (with [ops] it counts: tests/node/ops/test_node_ops.py)


def test_a_running_node_loads_mls_only_for_a_group_or_key_package_request(node: Path) -> None:
    """A node that listens loads no MLS, no group hub and no group routing: the KeyPackage
    and group requests import them when one comes (node/client_session.py), and the
    start-up purge does not (below). Nor trio-websocket: the WebSocket's exceptions are
    transport/ws_errors.py's."""
    modules = run_until_listening(["run", "--data", str(node), "--listen", "127.0.0.1:0"])
    assert "sonet.node.client_session" in modules  # the probe reached the running node
    heavy = (*MLS, "sonet.core.groups.hub", "sonet.node.store.sqlite_groups", "sonet.node.client_key_packages", "sonet.node.client_groups")
    assert loaded(modules, (*heavy, "trio_websocket")) == []


def test_a_node_loads_its_modules_without_the_gc_and_runs_with_it(node: Path) -> None:
    """The start-up imports run without the cyclic GC (node/cli.py ``_start_up_imports``): it is
    back on for the running node, and the start-up's objects are frozen (its full collections
    skip them)."""
    modules, (collecting, frozen) = _listening(["run", "--data", str(node), "--listen", "127.0.0.1:0"])
    assert "sonet.node.app" in modules  # the probe reached the running node
    assert collecting is True
    assert isinstance(frozen, int) and frozen > 10_000


def test_the_connecting_sides_load_no_trio_websocket() -> None:
    """A device's connection, the node's dialled links and its server raise and catch
    transport/ws_errors.py's exceptions."""
    modules = "sonet.client.connection", "sonet.federation.pool", "sonet.federation.link", "sonet.node.server", "sonet.transport.dial"
    probe = f"import json, sys\nfor m in {modules!r}: __import__(m)\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    found = set(json.loads(done.stdout))
    assert set(modules) <= found and "sonet.transport.ws_errors" in found
    assert loaded(found, ("trio_websocket",)) == []


PURGE_PROBE = """
import json, sys, trio
from sonet.node.store import open_store

async def purge():
    store = await open_store({db!r})
    try:
        await store.purge_expired(now=2**62)  # everything kept has expired by then
    finally:
        await store.close()

trio.run(purge)
print(json.dumps(sorted(sys.modules)))
"""


def test_the_expiry_purge_loads_no_mls(node: Path) -> None:
    """A node purges at once when it starts and then periodically: the groups' records are
    purged without the group routing (node/store/sqlite_group_purge.py)."""
    done = subprocess.run([sys.executable, "-c", PURGE_PROBE.format(db=str(node / "node.db"))], capture_output=True, text=True, check=True)
    modules = set(json.loads(done.stdout))
    assert "sonet.node.store.sqlite_group_purge" in modules  # the probe purged the groups' records
    assert loaded(modules, (*MLS, "sonet.core.groups.hub", "sonet.node.store.sqlite_groups")) == []


def test_the_parsers_crypto_modes_are_core_s() -> None:
    from sonet.cli_choices import CRYPTO_MODES
    from sonet.core.crypto import CryptoMode

    assert CRYPTO_MODES == tuple(m.value for m in CryptoMode)

