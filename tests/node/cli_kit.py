"""Running ``sonet-node`` in-process for the CLI tests: ``main(argv)`` with captured output, the
shape of its one-line errors, and snapshots of a data directory to show nothing changed on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from sonet.node.cli import main

NODE = "localhost"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *args: object) -> Result:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return Result(code, out, err)


def ok(result: Result) -> Result:
    assert result.code == 0, result
    assert "Traceback" not in result.err, result.err
    return result


def error_line(result: Result, *fragments: str, code: int = 1) -> str:
    """The one ``sonet-node: error: ...`` line of a failure, holding every fragment."""
    assert result.code == code, result
    assert result.out == "", result
    assert "Traceback" not in result.err, result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    [line] = lines
    assert line.startswith("sonet-node: error: "), line
    for fragment in fragments:
        assert fragment.lower() in line.lower(), f"{fragment!r} not in {line!r}"
    return line


def json_error(result: Result, *fragments: str, code: int = 1) -> dict:
    """The one JSON error line on stdout of a failure under ``--json`` (nothing on stderr)."""
    assert result.code == code, result
    assert result.err == "", result
    [line] = result.out.splitlines()
    error = json.loads(line)["error"]
    assert set(error) == {"code", "message"}, error
    for fragment in fragments:
        assert fragment.lower() in error["message"].lower(), f"{fragment!r} not in {error!r}"
    return error


def json_lines(result: Result) -> list[dict]:
    ok(result)
    return [json.loads(line) for line in result.out.splitlines()]


def init(capsys: pytest.CaptureFixture[str], data: Path, *extra: object) -> Path:
    ok(run(capsys, "init", "--data", data, "--name", NODE, "--listen", "127.0.0.1:0", *extra))
    return data


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative name -> bytes); {} when it does not exist."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
