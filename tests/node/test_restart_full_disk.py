"""A node that crashed on a full disk starts again, and a start that fails names its cause.

The crash left ``run.json`` behind and the disk full: writing this run's ``run.json`` fails
with ENOSPC. That used to stop the start with ``cannot listen on HOST:PORT`` (every OSError
before listening was reported as one of the port). Now the node serves without ``run.json``
(acknowledgements and deletes free room; it is written once there is room); only a failed bind
says ``cannot listen``, any other failure names its cause. The same against a real process on
a full tmpfs: tests/e2e/test_restart_full_disk.py.
"""

from __future__ import annotations

import errno
import json
import socket
from pathlib import Path

import pytest
import trio

from sonet.core.client_api import Ping, Pong
from sonet.node.app import RUNTIME_FILE, Node
from sonet.node.directory import NodeDirectory

from .cli_kit import error_line, init, json_error, run
from .conftest import HANG_S, RunningNode, StartNode


@pytest.fixture
def node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    return init(capsys, tmp_path / "node")


def _listen_on(data: Path, listen: str) -> None:
    path = data / "node.toml"
    path.write_text(path.read_text().replace('listen = "127.0.0.1:0"', f'listen = "{listen}"'))


def test_a_port_in_use_is_cannot_listen(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _listen_on(node, f"127.0.0.1:{port}")
        error_line(run(capsys, "run", "--data", node), f"cannot listen on 127.0.0.1:{port}", "address already in use")
        assert json_error(run(capsys, "run", "--data", node, "--json"), "cannot listen")["code"] == "cannot_listen"


def test_a_full_disk_before_listening_is_named_not_blamed_on_the_port(
    node: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def disk_full(self: NodeDirectory) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(NodeDirectory, "start", disk_full)
    line = error_line(run(capsys, "run", "--data", node), "cannot start the node: no space left on device", f"make room on the disk holding {node}")
    assert "cannot listen" not in line
    error = json_error(run(capsys, "run", "--data", node, "--json"), "no space left on device")
    assert error["code"] == "cannot_start"
    assert not (node / RUNTIME_FILE).exists()


#: what a crashed run left: run.json naming a process that is gone
STALE = {"pid": 2**22 + 1, "url": "ws://127.0.0.1:1", "started_at": 0, "federation": {}}


@pytest.fixture
def make_node_dir(make_node_dir):  # noqa: ANN001, ANN201 - wraps tests/node/conftest.py's
    def make(**overrides):  # noqa: ANN003, ANN202
        data, config = make_node_dir(**overrides)
        (data / RUNTIME_FILE).write_text(json.dumps(STALE))
        return data, config

    return make


async def test_after_a_crash_on_a_full_disk_the_node_serves_and_writes_run_json_once_it_can(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Node._write_runtime
    full = {"disk": True}

    def write_runtime(self: Node) -> None:
        if full["disk"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self)

    monkeypatch.setattr(Node, "_write_runtime", write_runtime)
    with trio.fail_after(HANG_S):
        running: RunningNode = await start_node()
        data = running.node.data_dir
        assert not (data / RUNTIME_FILE).exists()  # the crashed run's is gone: it named a dead process
        alice = await running.enroll("alice")  # the node serves all the same
        async with running.raw(alice.first) as conn:
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
        full["disk"] = False  # room again: the status loop writes it
        while not (data / RUNTIME_FILE).exists():
            await trio.sleep(0.05)
        assert json.loads((data / RUNTIME_FILE).read_text())["url"] == running.url
