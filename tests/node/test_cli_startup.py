"""``sonet-node`` on a damaged or wrong data directory, through ``main()`` in-process: a missing
or damaged ``node.db`` / ``node.key`` / ``node.toml``, ``init`` where it must not write, a bad
listen address and Ctrl-C during start-up. Each is one ``sonet-node: error:`` line (or one JSON
error line with ``--json``), exit 1 (130 for Ctrl-C), and nothing on disk changes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import trio

import sonet
from sonet.node.store import SqliteStore

from .cli_kit import NODE, error_line, init, json_error, json_lines, ok, run, snapshot

#: the commands that open an initialised data directory (with the arguments each needs)
ON_A_NODE = {
    "run": ["run"],
    "status": ["status"],
    "invite": ["invite"],
    "config check": ["config", "check"],
    "peer list": ["peer", "list"],
    "peer add": ["peer", "add", "--name", "beta.example", "--url", "ws://127.0.0.1:9", "--fingerprint", "b" * 32],
    "directory head": ["directory", "head"],
}


@pytest.fixture
def node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    return init(capsys, tmp_path / "node")


def _on(command: str, data: Path) -> list[object]:
    words = ON_A_NODE[command]
    at = 2 if words[0] in ("config", "peer", "directory") else 1
    return [*words[:at], "--data", data, *words[at:]]


# node.db ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ON_A_NODE)
def test_a_missing_database_next_to_the_key_is_refused_not_recreated(
    node: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    (node / "node.db").unlink()
    before = snapshot(node)
    error_line(run(capsys, *_on(command, node)), f"{node / 'node.db'} is missing", "restore node.db from a backup", "sonet-node init")
    assert snapshot(node) == before and not (node / "node.db").exists()


def _cut(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        (lambda db: _cut(db, 0), "is empty"),
        (lambda db: db.write_bytes(os.urandom(8192)), "is not a SQLite database"),
        (lambda db: db.write_bytes(b"SQLite format 3"), "is not a SQLite database"),  # shorter than a header
        (lambda db: _cut(db, db.stat().st_size // 2), "is truncated"),
        (lambda db: _cut(db, 4096), "is truncated"),  # a whole first page, nothing after it
    ],
    ids=["zero bytes", "garbage", "short header", "half", "first page only"],
)
@pytest.mark.parametrize("command", ["run", "status", "invite", "config check"])
def test_a_damaged_database_is_refused_and_left_as_it_is(
    node: Path, capsys: pytest.CaptureFixture[str], damage, complaint: str, command: str  # noqa: ANN001
) -> None:
    damage(node / "node.db")
    before = snapshot(node)
    error_line(run(capsys, *_on(command, node)), str(node / "node.db"), complaint, "restore node.db from a backup")
    assert snapshot(node) == before


def test_a_database_damaged_inside_is_one_line(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pages overwritten past an intact header: SQLite finds it, the CLI says so in one line."""
    db = node / "node.db"
    raw = bytearray(db.read_bytes())
    raw[4096:] = os.urandom(len(raw) - 4096)
    db.write_bytes(bytes(raw))
    line = error_line(run(capsys, "status", "--data", node), str(db))
    assert "malformed" in line or "not a database" in line, line


def test_the_json_error_of_a_missing_database(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (node / "node.db").unlink()
    assert json_error(run(capsys, "status", "--data", node, "--json"), "node.db is missing")["code"] == "bad_data_dir"


# node.key and node.toml -------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "status", "invite", "fingerprint", "config check"])
def test_a_missing_key_is_one_line(node: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    (node / "node.key").unlink()
    before = snapshot(node)
    args = ["fingerprint", "--data", node] if command == "fingerprint" else _on(command, node)
    error_line(run(capsys, *args), f"{node / 'node.key'} is missing", "restore it from a backup")
    assert snapshot(node) == before


@pytest.mark.parametrize("content", [b"", b"garbage", os.urandom(97)], ids=["empty", "text", "random"])
def test_a_corrupt_key_is_one_line(node: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    (node / "node.key").write_bytes(content)
    before = snapshot(node)
    error_line(run(capsys, "run", "--data", node), f"{node / 'node.key'} is not a node key")
    error_line(run(capsys, "fingerprint", "--data", node), "is not a node key")
    assert snapshot(node) == before


def test_a_config_that_is_not_utf8_is_one_line(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = node / "node.toml"
    path.write_bytes(path.read_bytes().replace(b'name = "localhost"', b'name = "caf\xe9"'))
    before = snapshot(node)
    for command in ("run", "status", "config check"):
        error_line(run(capsys, *_on(command, node)), str(path), "is not UTF-8", "0xe9")
    assert snapshot(node) == before


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "file"
    path.write_text("not a node")
    for command in ("run", "status", "config check"):
        error_line(run(capsys, *_on(command, path)), str(path), "is not a directory")
    error_line(run(capsys, "fingerprint", "--data", path), "is not a directory")
    assert path.read_text() == "not a node"


def test_fingerprint_of_a_directory_that_holds_no_node_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by newbie10: `sonet-node fingerprint --data /tmp` said "/tmp/node.key is missing:
    restore it from a backup", as if a node's key had been lost."""
    error_line(run(capsys, "fingerprint", "--data", tmp_path), f"{tmp_path} holds no node (no node.toml, no node.key)", "sonet-node init")
    assert json_error(run(capsys, "fingerprint", "--data", tmp_path, "--json"))["code"] == "bad_data_dir"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [_on(command, Path("EMPTY")) for command in ON_A_NODE]
    + [[*words, "--data", "EMPTY"] for words in (["accounts", "list"], ["invites", "list"], ["audit", "show"], ["audit", "verify"])]
    + [["backup", "--data", "EMPTY", "DEST"]],
)
def test_every_command_says_bad_data_dir_for_a_directory_that_holds_no_node(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[object]) -> None:
    """ux11: `status` (and the others) said bad_config "node.toml not found" where `fingerprint`
    said bad_data_dir "holds no node"; `audit show` printed nothing and exit 0."""
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [empty if a == Path("EMPTY") or a == "EMPTY" else tmp_path / "dest" if a == "DEST" else a for a in argv]
    error_line(run(capsys, *argv), f"{empty} holds no node (no node.toml, no node.key)")
    assert json_error(run(capsys, *argv, "--json"))["code"] == "bad_data_dir"
    assert list(tmp_path.iterdir()) == [empty] and list(empty.iterdir()) == []


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:", "127.0.0.1", "no port", "[::1:7480", "host/x:1", "127.0.0.1:²"])
def test_a_bad_listen_address_in_node_toml_is_refused_at_start(
    node: Path, capsys: pytest.CaptureFixture[str], listen: str
) -> None:
    path = node / "node.toml"
    path.write_text(path.read_text().replace('listen = "127.0.0.1:0"', f'listen = "{listen}"'))
    before = snapshot(node)
    error_line(run(capsys, "run", "--data", node), str(path), "invalid listen address", repr(listen), "0 to 65535")
    assert snapshot(node) == before


# init -------------------------------------------------------------------------------------


def _init(capsys: pytest.CaptureFixture[str], data: Path, *extra: object, listen: str = "127.0.0.1:0"):  # noqa: ANN202
    return run(capsys, "init", "--data", data, "--name", NODE, f"--listen={listen}", *extra)


def test_init_into_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "file"
    path.write_text("mine")
    error_line(_init(capsys, path), str(path), "is a file, not a directory")
    error_line(_init(capsys, path / "below"), str(path / "below"))
    assert path.read_text() == "mine"


def test_init_refuses_a_non_empty_directory_and_names_what_is_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "photos"
    data.mkdir()
    for name in ("b.jpg", "a.jpg", ".hidden"):
        (data / name).write_text(name)
    before = snapshot(data)
    error_line(_init(capsys, data), str(data), "is not empty", ".hidden, a.jpg, b.jpg")
    assert snapshot(data) == before


@pytest.mark.parametrize("present", ["node.toml", "node.key", "node.db"])
def test_init_refuses_to_initialise_a_node_again(node: Path, capsys: pytest.CaptureFixture[str], present: str) -> None:
    for name in {"node.toml", "node.key", "node.db"} - {present}:
        (node / name).unlink()
    before = snapshot(node)
    error_line(_init(capsys, node), "already holds a node", present, "not initialised again")
    assert snapshot(node) == before


def test_init_into_an_empty_directory_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "empty"
    data.mkdir()
    [shown] = json_lines(_init(capsys, data, "--json"))
    assert shown["name"] == NODE and shown["data"] == str(data) and len(shown["fingerprint"]) == 32
    assert sorted(p.name for p in data.iterdir()) == ["node.db", "node.key", "node.toml"]
    ok(run(capsys, "config", "check", "--data", data))


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:", ":7480", "127.0.0.1:port", "a b:1", "[nonsense]:1"])
def test_init_with_a_bad_listen_address_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str) -> None:
    data = tmp_path / "node"
    error_line(_init(capsys, data, listen=listen), "invalid listen address", repr(listen))
    assert not data.exists()
    assert json_error(_init(capsys, data, "--json", listen=listen), "invalid listen address")["code"] == "bad_config"
    assert not data.exists()


def test_init_interrupted_leaves_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    async def interrupted(cls: type, path: object) -> SqliteStore:
        raise KeyboardInterrupt

    monkeypatch.setattr(SqliteStore, "open", classmethod(interrupted))
    data = tmp_path / "node"
    error_line(_init(capsys, data), "interrupted", code=130)
    assert not data.exists()


# Ctrl-C during start-up -------------------------------------------------------------------


def test_ctrl_c_while_the_store_opens_stops_the_start_with_one_line(
    node: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT while ``run`` opens the database (before it listens)."""

    async def slow_open(cls: type, path: object) -> SqliteStore:
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep_forever()
        raise AssertionError("not reached")

    monkeypatch.setattr(SqliteStore, "open", classmethod(slow_open))
    before = snapshot(node)
    error_line(run(capsys, "run", "--data", node), "interrupted while starting", "did not start listening", code=130)
    assert snapshot(node) == {**before, "node.lock": b""}  # the lock file is the only trace
    assert not (node / "run.json").exists()


def test_a_keyboard_interrupt_before_listening_is_one_line(
    node: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C that lands as KeyboardInterrupt (before the signal handler is in place)."""

    async def interrupted(cls: type, path: object) -> SqliteStore:
        raise KeyboardInterrupt

    monkeypatch.setattr(SqliteStore, "open", classmethod(interrupted))
    error_line(run(capsys, "run", "--data", node), "interrupted", code=130)
    assert json_error(run(capsys, "run", "--data", node, "--json"), "interrupted", code=130)["code"] == "interrupted"


# --version, --json ------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    result = ok(run(capsys, "--version"))
    assert result.out == f"sonet-node {sonet.__version__}\n" and result.err == ""


def test_a_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    error_line(run(capsys, "status"), "--data", "sonet-node status --help", code=2)
    error_line(run(capsys, "frobnicate"), "invalid choice", code=2)
    assert json_error(run(capsys, "status", "--json"), "--data", code=2)["code"] == "usage"


def test_interval_without_watch_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """ux11: it was ignored (one status printed, as if --watch were not asked for)."""
    says = "--interval goes with --watch (usage: sonet-node status --data DIR --watch [--interval S])"
    assert error_line(run(capsys, "status", "--data", tmp_path, "--interval", "5"), code=2) == f"sonet-node: error: {says}"
    assert json_error(run(capsys, "status", "--data", tmp_path, "--interval", "5", "--json"), code=2) == {"code": "usage", "message": says}


def test_an_unknown_option_is_the_commands_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """ux11: argparse left it to the top-level parser, which pointed at `sonet-node --help`."""
    error_line(run(capsys, "status", "--data", tmp_path, "--bogus"), "unrecognized arguments: --bogus", "see `sonet-node status --help`", code=2)
    error = json_error(run(capsys, "peer", "list", "--data", tmp_path, "--bogus", "--json"), "see `sonet-node peer list --help`", code=2)
    assert error["code"] == "usage"


def test_every_json_output_is_json_lines_with_iso_times(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [fingerprint] = json_lines(run(capsys, "fingerprint", "--data", node, "--json"))
    assert set(fingerprint) == {"fingerprint"}
    [invite] = json_lines(run(capsys, "invite", "--data", node, "--json"))
    assert invite["token"].startswith(fingerprint["fingerprint"] + ".")
    assert invite["expires_at"].endswith("Z") and invite["expires_at"][10] == "T"
    assert json_lines(run(capsys, "peer", "list", "--data", node, "--json")) == []  # no peers: no lines
    for name in ("beta.example", "gamma.example"):
        args = ["--name", name, "--url", "ws://127.0.0.1:9", "--fingerprint", "b" * 32, "--json"]
        [added] = json_lines(run(capsys, "peer", "add", "--data", node, *args))
        assert added["added_at"].endswith("Z")
    listed = json_lines(run(capsys, "peer", "list", "--data", node, "--json"))
    assert [p["name"] for p in listed] == ["beta.example", "gamma.example"] and all(p["added_at"].endswith("Z") for p in listed)
    [status] = json_lines(run(capsys, "status", "--data", node, "--json"))
    assert status["name"] == NODE and status["invites_open"] == 1 and status["running"] is False
    [removed] = json_lines(run(capsys, "peer", "remove", "--data", node, "--name", "gamma.example", "--json"))
    assert removed == {"removed": "gamma.example"}
    assert json_error(run(capsys, "directory", "head", "--data", node, "--json"), "no signed head yet")


# invite --expires-days --------------------------------------------------------------------


@pytest.mark.parametrize("days", ["0", "-1", "366", "100000000"])
def test_invite_refuses_an_expiry_outside_the_range(node: Path, capsys: pytest.CaptureFixture[str], days: str) -> None:
    before = snapshot(node)
    error_line(run(capsys, "invite", "--data", node, "--expires-days", days), f"--expires-days {days}", "from 1 to 365", code=2)
    assert snapshot(node) == before
    [status] = json_lines(run(capsys, "status", "--data", node, "--json"))
    assert status["invites_open"] == 0


@pytest.mark.parametrize("days", ["1", "365"])
def test_invite_accepts_the_ends_of_the_range(node: Path, capsys: pytest.CaptureFixture[str], days: str) -> None:
    [invite] = json_lines(run(capsys, "invite", "--data", node, "--expires-days", days, "--json"))
    assert invite["token"]


class _ListensThenCtrlC:
    """Stands in for ``Node``: reports it listens, then the operator presses Ctrl-C."""

    ops_port = None  # no [ops] listen

    def __init__(self, data: Path, config: object) -> None:
        from sonet.node.identity import load_node_key

        self.identity = load_node_key(data)

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started("ws://127.0.0.1:7480")
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep_forever()


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_after_listening_is_a_clean_stop(
    node: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    monkeypatch.setattr("sonet.node.cli.Node", _ListensThenCtrlC)
    [fingerprint] = ok(run(capsys, "fingerprint", "--data", node)).out.split()
    if as_json:
        [shown] = json_lines(run(capsys, "run", "--data", node, "--json"))
        assert shown == {
            "name": NODE, "url": "ws://127.0.0.1:7480", "client_url": "ws://127.0.0.1:7480/client",
            "fingerprint": fingerprint, "pid": os.getpid(),
        }
    else:
        assert ok(run(capsys, "run", "--data", node)).out.splitlines() == [
            f"sonet node {NODE} listening on ws://127.0.0.1:7480 (devices: ws://127.0.0.1:7480/client)",
            f"fingerprint: {fingerprint}",
        ]


# Found by a newcomer's walk through the README (round 9) ---------------------------------------


def test_a_peer_mistake_is_the_arguments_not_the_database(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`peer add`/`remove` mistakes were worded as database failures ("DIR/node.db: invalid
    fingerprint ...", code store_error): the store's refusals now pass through as what they are."""
    add = ["peer", "add", "--data", node, "--name", "beta.example", "--url", "ws://127.0.0.1:9"]
    ok(run(capsys, *add, "--fingerprint", "b" * 32))
    ok(run(capsys, "peer", "add", "--data", node, "--name", "far.example", "--url", "ws://127.0.0.1:8", "--fingerprint", "c" * 32, "--via", "beta.example"))
    cases = [
        ([*add, "--fingerprint", "1234"], "peer_invalid", "invalid fingerprint (expected 32 base32 characters"),
        ([*add[:-1], "http://127.0.0.1:9", "--fingerprint", "d" * 32], "peer_invalid", "invalid peer URL 'http://127.0.0.1:9'"),
        ([*add, "--fingerprint", "b" * 32], "peer_exists", "peer beta.example is already configured"),
        (["peer", "remove", "--data", node, "--name", "beta.example"], "peer_invalid", "peer beta.example is the relay (--via) of far.example"),
    ]
    for argv, code, says in cases:
        line = error_line(run(capsys, *argv))
        assert line.startswith(f"sonet-node: error: {says}"), line
        assert "node.db" not in line, line
        error = json_error(run(capsys, *argv, "--json"))
        assert error["code"] == code and error["message"].startswith(says), error


def test_the_status_names_every_process_serving_the_node(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by newbie10: with two processes on one PostgreSQL node, `status` showed the first
    one's pid and URL only, as if it were alone. Each live process's run-HOST_PORT.json counts
    (this test's own pid stands for them; a dead one's file is left out)."""
    for port, pid in ((7481, os.getpid()), (7482, os.getpid()), (7483, 2**22 + 1)):  # the last: no such process
        (node / f"run-127.0.0.1_{port}.json").write_text(json.dumps({"pid": pid, "url": f"ws://127.0.0.1:{port}", "started_at": 0}))
    lines = ok(run(capsys, "status", "--data", node)).out.splitlines()
    me = os.getpid()
    assert f"running: yes (2 processes: pid {me}, ws://127.0.0.1:7481; pid {me}, ws://127.0.0.1:7482)" in lines, lines
    [status] = json_lines(run(capsys, "status", "--data", node, "--json"))
    assert (status["running"], status["pid"], status["url"]) == (True, me, "ws://127.0.0.1:7481")
    assert status["processes"] == [{"pid": me, "url": "ws://127.0.0.1:7481"}, {"pid": me, "url": "ws://127.0.0.1:7482"}]
    (node / "run-127.0.0.1_7482.json").unlink()
    assert f"running: yes (pid {me}, ws://127.0.0.1:7481)" in ok(run(capsys, "status", "--data", node)).out.splitlines()


def test_the_status_for_people_says_running_in_words(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It printed Python's `running: False`, `pid: None`, `url: None`; --json is unchanged."""
    lines = ok(run(capsys, "status", "--data", node)).out.splitlines()
    assert "running: no" in lines and not [line for line in lines if line.startswith(("pid:", "url:")) or "None" in line], lines
    [status] = json_lines(run(capsys, "status", "--data", node, "--json"))
    assert (status["running"], status["pid"], status["url"], status["processes"]) == (False, None, None, [])
