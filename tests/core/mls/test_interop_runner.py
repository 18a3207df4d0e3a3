"""The interop runner (``python -m sonet.core.mls.interop``): one line per file, exit 0 only
when every case passed, 2 and one line for a usage error, never a traceback."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sonet.core.mls.interop import KINDS, load_check, parse_cases, run_cases
from sonet.core.mls.interop.runner import MalformedFile, failure_reason
from tests import vectors

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sonet.core.mls.interop", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_the_repository_vectors_pass() -> None:
    tree = vectors.path("mls/tree-math.json")
    des = vectors.path("mls/deserialization.json")
    done = run("tree-math", tree)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"tree-math {tree}: 10 passed, 0 failed\n"
    done = run("deserialization", des, des)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"deserialization {des}: 14 passed, 0 failed"] * 2


def test_a_tampered_file_fails(tmp_path: Path) -> None:
    cases = copy.deepcopy(vectors.load_json("mls/tree-math.json"))  # the loader's copy is shared
    cases[2]["root"] += 1
    cases[5]["parent"][0] = 99
    tampered = tmp_path / "tree-math.json"
    tampered.write_text(json.dumps(cases))
    good = vectors.path("mls/tree-math.json")
    done = run("tree-math", good, tampered)
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout.splitlines() == [f"tree-math {good}: 10 passed, 0 failed", f"tree-math {tampered}: 8 passed, 2 failed"]
    verbose = run("--verbose", "tree-math", tampered)
    assert verbose.returncode == 1
    assert verbose.stdout.splitlines() == [
        f"tree-math {tampered}: 8 passed, 2 failed",
        "  case 2: VectorMismatch: root: got 3, expected 4",
        "  case 5: VectorMismatch: parent[0]: got 1, expected 99",
    ]


def test_unreadable_and_malformed_files_count_as_one_failure_each(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    not_json = tmp_path / "garbage.json"
    not_json.write_bytes(b"\xff[1,")
    not_a_list = tmp_path / "object.json"
    not_a_list.write_text('{"n_leaves": 1}')
    done = run("deserialization", missing, not_json, not_a_list)
    assert (done.returncode, done.stderr) == (1, "")
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0] == f"deserialization {missing}: 0 passed, 1 failed (file unreadable: No such file or directory)"
    assert lines[1].startswith(f"deserialization {not_json}: 0 passed, 1 failed (malformed file: not JSON (")
    assert lines[2] == f"deserialization {not_a_list}: 0 passed, 1 failed (malformed file: not a list of test cases (a JSON dict))"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bogus", "x.json"], "unknown kind 'bogus'"),
        ([], "a KIND and at least one FILE are needed"),
        (["tree-math"], "a KIND and at least one FILE are needed"),
        (["--fast", "tree-math", "x.json"], "unknown option --fast"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"python -m sonet.core.mls.interop: error: {message}; ")
    assert "tree-math crypto-basics" in done.stderr  # names the kinds


def test_help_names_every_kind() -> None:
    done = run("--help")
    assert done.returncode == 0
    assert all(kind in done.stdout for kind in KINDS)


def test_not_implemented_in_process() -> None:
    # a package without kind modules: every kind is "not implemented" (every KIND has its module
    # in sonet.core.mls.interop now, so the rule is shown on another package)
    assert load_check("tree-math", "sonet.core.mls.codec") == "not implemented"
    result = run_cases(load_check("treekem", "sonet.core.mls.codec"), [{}, {}])
    assert (result.passed, result.failures) == (0, [(0, "not implemented"), (1, "not implemented")])


def test_a_module_without_check_or_with_a_missing_import_is_reported() -> None:
    # sonet.core.mls.codec.reader exists but has no check()
    assert load_check("reader", "sonet.core.mls.codec") == "not implemented: sonet.core.mls.codec.reader has no check()"


def test_run_cases_counts_each_case_alone() -> None:
    def check(case: dict[str, Any]) -> None:
        if case["n"] == 2:
            raise ValueError("two\nlines")
        if case["n"] == 3:
            raise AssertionError  # says nothing: the reason names where it was raised

    result = run_cases(check, [{"n": 1}, {"n": 2}, {"n": 3}, "not a case", {"n": 4}])
    assert result.passed == 2 and result.failed == 3
    assert result.failures[0] == (1, "ValueError: two lines")
    assert result.failures[1][0] == 2 and result.failures[1][1].startswith("AssertionError at test_interop_runner.py:")
    assert result.failures[2] == (3, "MalformedFile: a test case is a JSON object, not a str")


def test_parse_cases() -> None:
    assert parse_cases(b'[{"a": 1}]') == [{"a": 1}]
    with pytest.raises(MalformedFile, match="not JSON"):
        parse_cases(b"[")
    with pytest.raises(MalformedFile, match="not a list"):
        parse_cases(b"3")
    with pytest.raises(MalformedFile, match="not JSON"):
        parse_cases(b"[" * 100_000)


def test_failure_reason_is_one_bounded_line() -> None:
    assert failure_reason(KeyError("n_leaves")) == "KeyError: 'n_leaves'"
    long = failure_reason(ValueError("x" * 1000))
    assert len(long) < 320 and long.endswith("...")
