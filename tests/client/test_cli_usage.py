"""`sonet` mistakes a new user makes, run in-process without a node: each is one line (or one
JSON error line with --json) and a non-zero exit, never a traceback, and nothing is written
where it should not be."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

import sonet
from sonet.client import cli
from sonet.client.sdk import Device
from sonet.core import limits

ADDRESS = "carol@alpha.example"
TOKEN = "a" * 32 + "." + "b" * 32


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """``sonet ARGV`` in-process: (exit status, stdout, stderr); a usage error's exit too."""
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(capsys: pytest.CaptureFixture[str], *argv: str | Path, rc: int = 1) -> str:
    """Run; assert it failed with exactly one ``sonet: error:`` line on stderr; return it."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (rc, ""), (code, out, err)
    [line] = err.splitlines()
    assert line.startswith("sonet: error: "), err
    return line


def json_error(capsys: pytest.CaptureFixture[str], *argv: str | Path, rc: int = 1) -> dict:
    """Run with --json; assert exactly one JSON error line on stdout; return its error."""
    code, out, _err = run(capsys, *argv, "--json")
    assert code == rc, (code, out)
    [line] = out.splitlines()
    error = json.loads(line)["error"]
    assert set(error) == {"code", "message"}, error
    return error


def stdin_bytes(monkeypatch: pytest.MonkeyPatch, data: bytes, *, tty: bool = False) -> None:
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    monkeypatch.setattr(stream, "isatty", lambda: tty)
    monkeypatch.setattr(sys, "stdin", stream)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, f"sonet {sonet.__version__}\n", "")


# --node -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:7480", "use ws://127.0.0.1:7480 instead of http://127.0.0.1:7480"),
        ("https://chat.example.org", "use wss://chat.example.org instead"),
        ("127.0.0.1:7480", "did you mean ws://127.0.0.1:7480"),
        ("localhost", "did you mean ws://localhost"),
        ("ws://127.0.0.1:99999", "a number from 1 to 65535"),
        ("ws://127.0.0.1:0", "a number from 1 to 65535"),
        ("ws://127.0.0.1:port", "a number from 1 to 65535"),
        ("ftp://127.0.0.1:7480", "must start with ws:// or wss://"),
        ("ws://:7480", "names no host"),
        ("ws://127.0.0.1:7480/client", "without /client: ws://127.0.0.1:7480"),
        ("ws://u:p@127.0.0.1:7480", "may not carry a user"),
        ("", "is empty"),
    ],
)
def test_a_bad_node_url_is_one_line_and_creates_no_home(capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str, says: str) -> None:
    home = tmp_path / "new"
    line = one_error(capsys, "--home", home, "register", ADDRESS, "--node", url, "--invite", TOKEN)
    assert says in line, line
    assert not home.exists()
    line = one_error(capsys, "--home", home, "link", "begin", "--node", url)
    assert says in line, line
    assert not home.exists()
    assert json_error(capsys, "--home", home, "register", ADDRESS, "--node", url, "--invite", TOKEN)["code"] == "bad_node_url"


@pytest.mark.parametrize(
    ("address", "invite", "says"),
    [
        ("carol", TOKEN, "invalid address 'carol' (expected user@node"),
        (ADDRESS, "bogus", "malformed invite token (expected FINGERPRINT.SECRET"),
        (ADDRESS, "a" * 32 + ".tooshort", "malformed invite token"),
        (ADDRESS, "1" * 32 + "." + "b" * 32, "malformed invite token (expected FINGERPRINT.SECRET as printed by `sonet-node invite`): not a Sonet fingerprint"),
    ],
)
def test_a_bad_address_or_invite_is_one_line_and_creates_no_home(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, address: str, invite: str, says: str
) -> None:
    """They were refused only after the home and its keys were made (a newcomer's typo left a
    device home without an account behind)."""
    home = tmp_path / "new"
    line = one_error(capsys, "--home", home, "register", address, "--node", "ws://127.0.0.1:1", "--invite", invite)
    assert says in line, line
    assert not home.exists()


# numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("wait", ["-1", "nan", "inf", "soon"])
def test_recv_wait_must_be_seconds_from_zero_up(capsys: pytest.CaptureFixture[str], tmp_path: Path, wait: str) -> None:
    code, out, err = run(capsys, "--home", tmp_path, "recv", "--wait", wait)
    assert (code, out) == (2, "") and "Traceback" not in err
    assert err.splitlines()[-1].startswith("sonet recv: error: argument --wait:"), err
    assert json_error(capsys, "--home", tmp_path, "recv", "--wait", wait, rc=2)["code"] == "usage"


@pytest.mark.parametrize("limit", ["0", "-3", "many"])
@pytest.mark.parametrize("command", [["sent"], ["history", ADDRESS], ["call", "list"]], ids=lambda c: c[0])
def test_every_limit_must_be_positive_in_one_wording(capsys: pytest.CaptureFixture[str], tmp_path: Path, limit: str, command: list[str]) -> None:
    """ux12: `call list --limit 0` said "argument --limit: at least 1", sent's and history's
    "'0' is not a whole number from 1 up": one wording now (client/cli_errors.py positive)."""
    code, out, err = run(capsys, "--home", tmp_path, *command, f"--limit={limit}")
    assert (code, out) == (2, "") and "Traceback" not in err
    assert err.splitlines()[-1] == f"sonet {command[0]}: error: argument --limit: {limit!r} is not a whole number from 1 up", err
    assert err.splitlines()[0].startswith(f"usage: sonet {command[0]}"), err


@pytest.mark.parametrize("digits", ["\u0663", "\u06f5", "\u0969", "\uff13", "\u00b2"], ids=["arabic-indic", "persian", "devanagari", "fullwidth", "superscript"])
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["sent", "--limit"], "argument --limit: {!r} is not a whole number from 1 up"),
        (["history", ADDRESS, "--limit"], "argument --limit: {!r} is not a whole number from 1 up"),
        (["call", "list", "--limit"], "argument --limit: {!r} is not a whole number from 1 up"),
        (["devices", "remove"], "argument ID: {!r} is not a whole number from 1 up"),
        (["recv", "--wait"], "argument --wait: {!r} is not a number of seconds"),
        (["send", ADDRESS, "--file", "x.ogg", "--voice"], "argument --voice: not a number of seconds: {!r}"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_numbers_are_ascii_digits_only(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], says: str, digits: str) -> None:
    """ux12: `sent --limit ٣` listed 3 messages (str.isdigit and int take any script's digits;
    `devices remove ٣` would remove device 3), and a superscript passed isdigit but not int."""
    code, out, err = run(capsys, "--home", tmp_path / "h", *argv, digits)
    assert (code, out) == (2, "") and "Traceback" not in err, (code, out, err)
    assert err.splitlines()[-1].endswith(says.format(digits)), err
    assert not (tmp_path / "h").exists()


def test_a_poll_option_in_other_digits_is_its_text_not_its_number() -> None:
    from sonet.client.polls import option_index
    from sonet.core.poll import Poll

    poll = Poll(question="Which?", options=("\u0662", "b", "c"))  # an option that is Arabic-Indic 2
    assert option_index(poll, "\u0662") == 0 and option_index(poll, "2") == 1


@pytest.mark.parametrize("quorum", ["33", "99", "-1", "many"])
def test_a_witness_quorum_out_of_its_range_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, quorum: str) -> None:
    """It was bad_input (exit 1) while `sent --limit 0` was usage (exit 2): an option's value out
    of its range is a usage error everywhere, found before a home is opened; and its line quotes
    the command's usage as the other usage errors' do (ux12: it did not)."""
    says = "the witness quorum is a number from 0 to 32, or auto (usage: sonet witness-quorum [N|auto])"
    assert one_error(capsys, "--home", tmp_path / "h", "witness-quorum", quorum, rc=2) == f"sonet: error: {says}"
    assert json_error(capsys, "--home", tmp_path / "h", "witness-quorum", quorum, rc=2) == {"code": "usage", "message": says}
    assert not (tmp_path / "h").exists()


@pytest.mark.parametrize("accuracy", ["20000001", "-1", "far"])
def test_a_location_accuracy_out_of_its_range_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, accuracy: str) -> None:
    code, out, err = run(capsys, "--home", tmp_path / "h", "location", "bob@alpha.example", "1", "2", "--accuracy", accuracy)
    assert (code, out) == (2, "") and "Traceback" not in err
    assert err.splitlines()[-1].startswith("sonet location: error: argument --accuracy:") and "from 0 to 20000000" in err, err
    assert not (tmp_path / "h").exists()


# --home -----------------------------------------------------------------------------------


def test_a_home_that_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    home = tmp_path / "notes.txt"
    home.write_text("mine")
    assert "is a file, not a directory" in one_error(capsys, "--home", home, "recv")
    assert "is a file, not a directory" in one_error(capsys, "--home", home, "register", ADDRESS, "--node", "ws://127.0.0.1:1", "--invite", TOKEN)
    assert json_error(capsys, "--home", home, "sent")["code"] == "device_state"
    assert home.read_text() == "mine"


@pytest.mark.parametrize(
    "argv",
    [
        ["recv"], ["send", "bob@alpha.example", "hi"], ["sent"], ["devices"], ["alerts"], ["trust", "bob@alpha.example"],
        ["witness-quorum", "2"], ["trust-node", "beta.example"], ["lookup", "bob@alpha.example"], ["link", "approve", "CODE"],
    ],
    ids=lambda argv: argv[0],
)
def test_only_register_and_link_begin_create_a_home(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]) -> None:
    home = tmp_path / "typo" / "sonet"
    line = one_error(capsys, "--home", home, *argv)
    assert f"no account in {home} (no device state there)" in line and "sonet register" in line, line
    assert not (tmp_path / "typo").exists()


def test_the_default_home_is_not_created_either(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONET_HOME", str(tmp_path / "default"))
    assert "sonet register" in one_error(capsys, "recv")
    assert not (tmp_path / "default").exists()


@pytest.mark.parametrize("marker", ["node.toml", "node.key"])
def test_a_home_inside_a_node_data_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path, marker: str) -> None:
    data = tmp_path / "var" / "node"
    data.mkdir(parents=True)
    (data / marker).write_text("")
    before = sorted(data.rglob("*"))
    for home in (data, data / "alice"):
        line = one_error(capsys, "--home", home, "register", ADDRESS, "--node", "ws://127.0.0.1:1", "--invite", TOKEN)
        assert f"inside the node data directory {data}" in line, line
        assert "inside the node data directory" in one_error(capsys, "--home", home, "recv")
    assert sorted(data.rglob("*")) == before  # not one file written


# send - -----------------------------------------------------------------------------------


def test_send_dash_refuses_more_than_64_kib_on_stdin(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stdin_bytes(monkeypatch, b"x" * (limits.MAX_TEXT_LEN + 1))
    line = one_error(capsys, "--home", tmp_path, "send", "bob@alpha.example", "-")
    assert f"longer than {limits.MAX_TEXT_LEN} bytes (64 KiB): nothing was sent" in line, line
    stdin_bytes(monkeypatch, b"x" * (limits.MAX_TEXT_LEN + 1))
    assert json_error(capsys, "--home", tmp_path, "send", "bob@alpha.example", "-")["code"] == "bad_input"


def test_send_dash_refuses_text_that_is_not_utf8(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stdin_bytes(monkeypatch, b"caf\xe9\n")
    assert "not UTF-8 text" in one_error(capsys, "--home", tmp_path, "send", "bob@alpha.example", "-")


def test_send_help_documents_stdin_and_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "send", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "- reads it from standard input" in flat and f"{limits.MAX_TEXT_LEN} bytes of UTF-8 (64 KiB)" in flat, out


# --json everywhere ------------------------------------------------------------------------


def _leaf_commands(parser, prefix=()):  # noqa: ANN001, ANN202 - argparse internals
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaf_commands(child, (*prefix, name))


def test_every_command_takes_json() -> None:
    leaves = dict(_leaf_commands(cli.build_parser()))
    assert len(leaves) >= 14
    missing = [" ".join(path) for path, parser in leaves.items() if "--json" not in parser._option_string_actions]
    assert missing == []


def test_a_usage_error_with_json_is_one_json_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    error = json_error(capsys, "--home", tmp_path, "send", "bob@alpha.example", rc=2)
    assert error["code"] == "usage" and "TEXT" in error["message"], error


def test_an_unknown_option_shows_the_commands_usage_not_the_programs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """ux11: `sonet recv --bogus` printed `usage: sonet [-h] [--version] ...` (argparse leaves
    what a subcommand does not know to the top-level parser)."""
    code, out, err = run(capsys, "--home", tmp_path, "recv", "--bogus")
    assert (code, out) == (2, ""), (code, out, err)
    assert err.splitlines() == ["usage: sonet recv [-h] [--wait SECONDS | --follow] [--read] [--json]", "sonet recv: error: unrecognized arguments: --bogus"]
    error = json_error(capsys, "--home", tmp_path, "group", "info", "--bogus", "x", rc=2)
    assert error == {"code": "usage", "message": "unrecognized arguments: --bogus (see `sonet group info --help`)"}
    assert not tmp_path.joinpath("h").exists()


def test_every_usage_error_exits_2_also_those_the_command_finds_itself(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Found by newbie10: `register` without its arguments and `chat --json` said code "usage"
    but exited 1; argparse's usage errors exit 2 (README), and so do these now."""
    assert json_error(capsys, "--home", tmp_path, "register", rc=2)["code"] == "usage"
    line = one_error(capsys, "--home", tmp_path, "register", "--node", "ws://127.0.0.1:1", rc=2)
    assert line.startswith("sonet: error: missing ADDRESS, --invite: without them register only completes an interrupted registration")
    assert line.endswith(" holds none (usage: sonet register ADDRESS --node URL --invite TOKEN)"), line
    assert json_error(capsys, "--home", tmp_path, "chat", rc=2)["code"] == "usage"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["devices", "remove"], "devices remove needs the ID of the device (`sonet devices` lists them) (usage: sonet devices remove ID [--yes])"),
        (["devices", "list", "3"], "ID and --yes go with remove (usage: sonet devices remove ID [--yes])"),
        (["devices", "--yes"], "ID and --yes go with remove (usage: sonet devices remove ID [--yes])"),
        (["register", "--discard-pending", ADDRESS], "--discard-pending takes no ADDRESS, --node or --invite (usage: sonet register --discard-pending)"),
    ],
)
def test_options_that_do_not_go_together_are_one_usage_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], says: str) -> None:
    """ux11: such mistakes were bad_input (exit 1) in some commands, usage (2) in others, and
    `devices list 3` listed every device; now all usage errors, found before a home is opened."""
    assert one_error(capsys, "--home", tmp_path / "h", *argv, rc=2) == f"sonet: error: {says}"
    assert json_error(capsys, "--home", tmp_path / "h", *argv, rc=2) == {"code": "usage", "message": says}
    assert not (tmp_path / "h").exists()


# Ctrl-C before anything reached the node --------------------------------------------------


def test_ctrl_c_during_register_before_the_node_answered(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def interrupted(self: Device, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Device, "register", interrupted)
    line = one_error(capsys, "--home", tmp_path / "h", "register", ADDRESS, "--node", "ws://127.0.0.1:1", "--invite", TOKEN, rc=130)
    assert line == "sonet: error: interrupted before anything was sent: run the same `sonet register` again", line
    assert json_error(capsys, "--home", tmp_path / "h", "register", ADDRESS, "--node", "ws://127.0.0.1:1", "--invite", TOKEN, rc=130)["code"] == "interrupted"


def test_an_event_that_ends_before_it_starts_says_so_in_the_options_words(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """It said "event: end is 0 (none) or not before start" (the content check's rule); now the
    options it came from, before any home is opened: a usage error (ux12: it was bad_input, exit 1)."""
    argv = ["--home", tmp_path / "h", "event", ADDRESS, "Standup", "--at", "2027-01-04T09:00Z", "--end", "2027-01-04T08:00Z"]
    says = (
        "--end 2027-01-04T08:00Z is before --at 2027-01-04T09:00Z: an event cannot end before it starts "
        "(usage: sonet event ADDRESS|GROUP TITLE --at TIME [--end TIME] [--place TEXT])"
    )
    assert one_error(capsys, *argv, rc=2) == f"sonet: error: {says}"
    assert json_error(capsys, *argv, rc=2) == {"code": "usage", "message": says}
    assert not (tmp_path / "h").exists()


MESSAGE_ID = "0" * 32


@pytest.mark.parametrize(
    ("argv", "says", "usage"),
    [
        (["timer", ADDRESS, "31d"], "a timer is off or 1s..30d", "sonet timer ADDRESS|GROUP DURATION"),
        (["timer", ADDRESS, "soon"], "not a duration: 'soon'", "sonet timer ADDRESS|GROUP DURATION"),
        (["location", ADDRESS, "95", "10"], "'95' is not a number of degrees within ±90", "sonet location ADDRESS|GROUP LAT LON"),
        (["location", ADDRESS, "45", "-190"], "'-190' is not a number of degrees within ±180", "sonet location ADDRESS|GROUP LAT LON"),
        (["location", ADDRESS, "north", "0"], "'north' is not a number of degrees within ±90", "sonet location ADDRESS|GROUP LAT LON"),
        (["poll", ADDRESS, "Lunch?", "pizza"], "a poll has 2..10 options, not 1", "sonet poll ADDRESS|GROUP QUESTION OPTION... [--multiple]"),
        (["poll", ADDRESS, "Count?", *map(str, range(11))], "a poll has 2..10 options, not 11", "sonet poll ADDRESS|GROUP QUESTION OPTION..."),
        (["poll", ADDRESS, "Lunch?", "pizza", "sushi", "pizza"], "a poll's options are distinct: 'pizza' given more than once", "sonet poll "),
        (["event", ADDRESS, "Party", "--at", "tomorrow"], "'tomorrow' is not a time", "sonet event ADDRESS|GROUP TITLE --at TIME"),
        (["react", "zz", "👍"], "'zz' is not a message id (32 hex digits", "sonet react MESSAGE_ID EMOJI [--remove]"),
        (["react", MESSAGE_ID, "a b"], "a reaction may not hold spaces", "sonet react MESSAGE_ID EMOJI [--remove]"),
        (["react", MESSAGE_ID, "👍" * 20], "a reaction is one emoji (at most", "sonet react MESSAGE_ID EMOJI [--remove]"),
        (["reply", "zz", "hi"], "'zz' is not a message id", "sonet reply MESSAGE_ID TEXT"),
        (["edit", MESSAGE_ID[:-1], "hi"], "is not a message id", "sonet edit MESSAGE_ID TEXT"),
        (["delete", "zz"], "'zz' is not a message id", "sonet delete MESSAGE_ID [--everyone]"),
        (["vote", "abc", "1"], "'abc' is not a message id", "sonet vote MESSAGE_ID OPTION [--remove]"),
        (["poll-close", "abc"], "'abc' is not a message id", "sonet poll-close MESSAGE_ID"),
        (["download", "abc"], "'abc' is not a message id", "sonet download MESSAGE_ID"),
    ],
    ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None,
)
def test_a_content_commands_argument_out_of_its_range_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], says: str, usage: str
) -> None:
    """ux12: these were bad_input or bad_timer (exit 1), found after the home was opened, while an
    option's value out of its range is a usage error everywhere else: now exit 2, one line that
    quotes the command's usage (client/cli_errors.py usage_error), before any home is opened."""
    line = one_error(capsys, "--home", tmp_path / "h", *argv, rc=2)
    assert says in line and f"(usage: {usage}" in line and line.endswith(")"), line
    assert line.count("poll:") == 0, line  # it said "poll: a poll has 2..10 options"
    error = json_error(capsys, "--home", tmp_path / "h", *argv, rc=2)
    assert error["code"] == "usage" and error["message"] == line.removeprefix("sonet: error: "), error
    assert not (tmp_path / "h").exists()


def test_the_readme_shows_usage_errors_as_the_program_prints_them(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """ux12: the README showed `sonet: error: usage: ...` while argparse prints the usage line
    and `sonet sent: error: ...`, and the command's own usage errors quote the usage at the end."""
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    code, _out, err = run(capsys, "--home", tmp_path / "h", "sent", "--limit", "0")
    usage, error = err.splitlines()
    assert code == 2 and f"`{usage}`, then `{error}`" in readme, (usage, error)
    line = one_error(capsys, "--home", tmp_path / "h", "poll", "bob@alpha.example", "Lunch?", "pizza", rc=2)
    assert f"`{line}`" in readme, line
    assert "sonet: error: usage:" not in readme
