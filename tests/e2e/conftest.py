"""Helpers for end-to-end tests that drive the real ``sonet-node`` and ``sonet`` processes.

``cli(...)`` runs one command of the installed console scripts (found next to
``sys.executable``) with a hang guard and returns ``(rc, stdout, stderr)``. ``here(...)`` runs
the same command in this process (the CLI's ``main(argv)``, output captured): what a
process start would cost is most of a short command, so one-shot commands (setup, error cases,
sends under a fault) run here and the nodes stay real processes. ``Processes`` starts
long-running processes (nodes, waiting ``recv``s) with ``subprocess.Popen`` and kills whatever
is still alive at teardown; ``start_node`` waits for the node's "listening on" line and parses
its URL. Timeouts here are hang guards only, never performance assertions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import pytest

from sonet.client.cli import main as sonet_main
from sonet.node.cli import main as sonet_node_main

from ..conftest import FAULT_RUN

BIN = Path(sys.executable).parent
SONET = str(BIN / "sonet")
SONET_NODE = str(BIN / "sonet-node")

#: hang guard for one CLI call (never a performance threshold)
CLI_TIMEOUT_S = 60.0
#: hang guard for a node to print its "listening on" line or to stop
NODE_TIMEOUT_S = 30.0

NODE_NAME = "localhost"
_LISTENING = re.compile(r"^sonet node (\S+) listening on (wss?://\S+)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SONET_HOME", None)  # every test passes --home explicitly
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Result(NamedTuple):
    rc: int
    out: str
    err: str


def cli(program: str, *args: str | os.PathLike[str], timeout: float = CLI_TIMEOUT_S) -> Result:
    """Run ``program`` ("sonet" or "sonet-node") with ``args``; return (rc, stdout, stderr)."""
    exe = {"sonet": SONET, "sonet-node": SONET_NODE}[program]
    proc = subprocess.run(
        [exe, *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


_MAINS: dict[str, Callable[[list[str]], int]] = {"sonet": sonet_main, "sonet-node": sonet_node_main}


def here(program: str, *args: str | os.PathLike[str]) -> Result:
    """``cli(program, *args)`` without a new interpreter: the console script's ``main(argv)`` in
    this process, with stdin empty (as /dev/null) and stdout/stderr captured. Not from inside a
    running trio loop (the commands call ``trio.run``), nor from two threads at once."""
    main = _MAINS[program]
    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO())
    home = os.environ.pop("SONET_HOME", None)  # every test passes --home explicitly
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _stdin(stdin):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as done:  # argparse's usage errors and --help
                rc = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        if home is not None:
            os.environ["SONET_HOME"] = home
    return Result(rc, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _stdin(stream: io.TextIOWrapper) -> Iterator[None]:
    saved, sys.stdin = sys.stdin, stream
    try:
        yield
    finally:
        sys.stdin = saved


class Runner(Protocol):
    """``cli`` (a real process) or ``here`` (in this process)."""

    def __call__(self, program: str, *args: str | os.PathLike[str]) -> Result: ...


def sonet(home: Path, *args: str) -> Result:
    return cli("sonet", "--home", home, *args)


def node_cli(*args: str | os.PathLike[str]) -> Result:
    return cli("sonet-node", *args)


def sonet_here(home: Path, *args: str) -> Result:
    return here("sonet", "--home", home, *args)


def node_here(*args: str | os.PathLike[str]) -> Result:
    return here("sonet-node", *args)


def ok(result: Result) -> Result:
    """Assert that a command succeeded without a traceback; return it for chaining."""
    assert result.rc == 0, f"exit {result.rc}\nstdout: {result.out}\nstderr: {result.err}"
    assert "Traceback" not in result.err, result.err
    return result


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port nothing listens on right now, for a node's --listen or an "unreachable" URL.

    Chosen outside the kernel's ephemeral range: a port the kernel handed out (bind to 0) is the
    kind it gives the next outgoing connection of any parallel worker, which then holds it when
    the node binds (a CI run failed so: "Address already in use")."""
    low, high = _ephemeral_range()
    pool = [p for p in range(20000, 32768) if not low <= p <= high] or list(range(1024, low))
    for _ in range(200):
        port = random.choice(pool)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port outside the ephemeral range")


def set_listen(data: Path, listen: str) -> None:
    """Rewrite ``listen`` in node.toml (e.g. to pin the port a ``:0`` node was given)."""
    path = data / "node.toml"
    text, count = re.subn(r'(?m)^listen = ".*"$', f'listen = "{listen}"', path.read_text())
    assert count == 1, text
    path.write_text(text)


def read_json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_texts(text: str) -> list[dict]:
    """The text messages of `recv --json` output (receipts and typing lines left out)."""
    return [m for m in read_json_lines(text) if m["type"] == "text"]


# Long-running processes -------------------------------------------------------------------


@dataclass
class NodeProcess:
    data: Path
    proc: subprocess.Popen[str]
    url: str
    name: str
    fingerprint: str
    stdout_lines: list[str]
    stderr_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up code of the node runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=NODE_TIMEOUT_S)

    def terminate(self) -> int:
        """SIGTERM (graceful stop); return the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=NODE_TIMEOUT_S)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def invite(self, run: Runner = here) -> str:
        token = ok(run("sonet-node", "invite", "--data", self.data)).out.strip()
        assert token.count(".") == 1 and token.startswith(self.fingerprint + "."), token
        return token


@dataclass
class Processes:
    """Every process started through here is killed (if still alive) at teardown."""

    tmp: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)
    _self_closing: set[int] = field(default_factory=set)

    def popen(self, args: list[str], **kwargs) -> subprocess.Popen[str]:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, text=True, env=_env(), **kwargs)
        self.started.append(proc)
        return proc

    def start_node_on_free_port(self, data: Path, *extra: str) -> NodeProcess:
        """``start_node`` with ``--listen 127.0.0.1:<free port>`` (one per process of a PostgreSQL
        node), choosing again if another process took the port between the choice and the bind."""
        for attempt in range(3):
            try:
                return self.start_node(data, "--listen", f"127.0.0.1:{free_port()}", *extra)
            except pytest.fail.Exception as exc:
                if "Address already in use" not in str(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def start_node(self, data: Path, *extra: str) -> NodeProcess:
        """``sonet-node run --data DATA [EXTRA...]``; return once it printed its URL and fingerprint."""
        stderr_path = self.tmp / f"node-{len(self.started)}.stderr"
        with open(stderr_path, "w") as stderr:
            proc = self.popen(
                [SONET_NODE, "run", "--data", str(data), *extra], stdout=subprocess.PIPE, stderr=stderr, bufsize=1
            )
        lines: list[str] = []
        q: queue.Queue[str | None] = queue.Queue()

        def reader() -> None:
            assert proc.stdout is not None
            with proc.stdout:  # this thread owns the pipe and closes it at EOF
                for line in proc.stdout:
                    lines.append(line)
                    q.put(line)
            q.put(None)

        self._self_closing.add(proc.pid)
        threading.Thread(target=reader, daemon=True).start()
        url = name = fingerprint = None
        while fingerprint is None:
            try:
                line = q.get(timeout=NODE_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"sonet-node run printed no 'listening on' line; stdout: {lines}")
            if line is None:
                proc.wait(timeout=NODE_TIMEOUT_S)
                pytest.fail(f"sonet-node run exited {proc.returncode}: {stderr_path.read_text()}")
            if m := _LISTENING.match(line):
                name, url = m.group(1), m.group(2)
            elif line.startswith("fingerprint: ") and url is not None:
                fingerprint = line.split(":", 1)[1].strip()
        assert url is not None and name is not None
        return NodeProcess(data, proc, url, name, fingerprint, lines, stderr_path)

    def cleanup(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=NODE_TIMEOUT_S)
            except subprocess.TimeoutExpired:  # pragma: no cover - nothing more we can do
                pass
            if proc.pid not in self._self_closing:
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    p = Processes(tmp_path_factory.mktemp("procs"))
    try:
        yield p
    finally:
        p.cleanup()


def init_node(data: Path, *, name: str = NODE_NAME, listen: str = "127.0.0.1:0", run: Runner = here) -> str:
    """``sonet-node init``; return the fingerprint it printed."""
    out = ok(run("sonet-node", "init", "--data", data, "--name", name, "--listen", listen)).out
    assert f"initialised node {name} in {data}" in out, out
    m = re.search(r"^fingerprint: (\S+)$", out, re.M)
    assert m, out
    return m.group(1)


def start_pinned_node(procs: Processes, data: Path, *, name: str = NODE_NAME, run: Runner = here) -> NodeProcess:
    """init + run on port 0, then pin the port it got in node.toml so restarts reuse the URL."""
    fingerprint = init_node(data, name=name, run=run)
    node = procs.start_node(data)
    assert node.name == name and node.fingerprint == fingerprint
    set_listen(data, f"127.0.0.1:{node.port}")
    return node


def register(home: Path, address: str, node: NodeProcess, token: str | None = None, *, run: Runner = here) -> None:
    token = token or node.invite(run)
    out = ok(run("sonet", "--home", home, "register", address, "--node", node.url, "--invite", token)).out
    assert out.startswith(f"registered {address} (device "), out


@dataclass
class Pair:
    node: NodeProcess
    alice: Path
    bob: Path


def setup_pair(procs: Processes, tmp: Path, *, run: Runner = here) -> Pair:
    """A running node (port pinned) with alice@localhost and bob@localhost registered."""
    node = start_pinned_node(procs, tmp / "node", run=run)
    pair = Pair(node, tmp / "alice", tmp / "bob")
    register(pair.alice, "alice@localhost", node, run=run)
    register(pair.bob, "bob@localhost", node, run=run)
    return pair


_LINK_CODE = re.compile(r"^[a-z2-7]+\.[a-z2-7]+$")


def link_device(procs: Processes, node: NodeProcess, new_home: Path, old_home: Path, address: str, device: int) -> None:
    """``link begin`` on ``new_home`` (waits), ``link approve CODE`` on ``old_home``."""
    begin = procs.popen(
        [SONET, "--home", str(new_home), "link", "begin", "--node", node.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=1,
    )
    first: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: first.put(begin.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        code = first.get(timeout=CLI_TIMEOUT_S).strip()  # hang guard only
    except queue.Empty:
        pytest.fail("`sonet link begin` printed no code")
    assert _LINK_CODE.match(code), f"not a link code: {code!r} (exit {begin.poll()})"
    assert begin.poll() is None  # still waiting for the approval

    approved = ok(sonet(old_home, "link", "approve", code))
    assert approved.out.startswith("approved"), approved.out

    rest, err = begin.communicate(timeout=CLI_TIMEOUT_S)
    assert begin.returncode == 0, f"exit {begin.returncode}\nstdout: {rest}\nstderr: {err}"
    assert "Traceback" not in err, err
    assert rest.splitlines() == [f"linked as {address} device {device}"], rest


# Fault-harness counts (tests/e2e/test_faults.py) -------------------------------------------


@pytest.fixture
def record_fault_run(request: pytest.FixtureRequest) -> Callable[[dict[str, object]], None]:
    """``record_fault_run(row)`` keeps one fault run's counts for the table printed at the end
    (tests/conftest.py; a run of an ``xfail`` test, one that shows a known bug, is marked so)."""
    known_bug = "xfail" if request.node.get_closest_marker("xfail") else ""

    def record(row: dict[str, object]) -> None:
        request.node.user_properties.append((FAULT_RUN, row | {"known bug": known_bug}))

    return record
