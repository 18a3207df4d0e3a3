"""Runs the IETF MLS interop vectors (mlswg/mls-implementations, test-vectors.md) through one
module per kind: ``core/mls/interop/<kind with - as _>.py`` exposing ``check(case) -> None``,
which raises (anything) when the case fails. Pure: the caller reads the file
(``__main__.py``), this module parses it, runs every case and counts.

A kind whose module does not exist yet fails every case ("not implemented"): never skipped.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["KINDS", "Check", "FileResult", "MalformedFile", "load_check", "parse_cases", "run_cases", "failure_reason"]

#: every kind of test-vectors.md, as the command line names them
KINDS = (
    "tree-math",
    "crypto-basics",
    "secret-tree",
    "message-protection",
    "key-schedule",
    "psk-secret",
    "transcript-hashes",
    "welcome",
    "tree-operations",
    "tree-validation",
    "treekem",
    "deserialization",
    "messages",
    "passive-client",
)

Check = Callable[[dict[str, Any]], None]

NOT_IMPLEMENTED = "not implemented"


class MalformedFile(ValueError):
    """A vector file that is not a JSON list of test cases."""


@dataclass
class FileResult:
    passed: int = 0
    #: (index of the case in the file, why it failed), in file order
    failures: list[tuple[int, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)


def module_name(kind: str, package: str = __package__ or "") -> str:
    return f"{package}.{kind.replace('-', '_')}"


def load_check(kind: str, package: str = __package__ or "") -> Check | str:
    """The kind's ``check``, or why there is none (not implemented, or its module is broken)."""
    name = module_name(kind, package)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            return NOT_IMPLEMENTED
        return f"{NOT_IMPLEMENTED}: {name} needs {e.name}, which is missing"
    except Exception as e:  # a broken kind module fails its cases, not the runner
        return f"{name} does not import: {failure_reason(e)}"
    check = getattr(module, "check", None)
    if not callable(check):
        return f"{NOT_IMPLEMENTED}: {name} has no check()"
    return check  # type: ignore[no-any-return]


def parse_cases(data: bytes) -> list[Any]:
    """The test cases of a vector file: a JSON list."""
    try:
        cases = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MalformedFile(f"not JSON ({_one_line(str(e))})") from None
    if not isinstance(cases, list):
        raise MalformedFile(f"not a list of test cases (a JSON {type(cases).__name__})")
    return cases


def run_cases(check: Check | str, cases: list[Any]) -> FileResult:
    """Every case through ``check``; a ``str`` in place of a check fails every case with it."""
    result = FileResult()
    for index, case in enumerate(cases):
        if isinstance(check, str):
            result.failures.append((index, check))
            continue
        try:
            if not isinstance(case, dict):
                raise MalformedFile(f"a test case is a JSON object, not a {type(case).__name__}")
            check(case)
        except Exception as e:  # any exception fails this case only
            result.failures.append((index, failure_reason(e)))
        else:
            result.passed += 1
    return result


def failure_reason(e: BaseException) -> str:
    """One line: the exception's type and message, and where it was raised when it says nothing."""
    message = _one_line(str(e))
    if message:
        return f"{type(e).__name__}: {message}"
    return f"{type(e).__name__} at {_where(e.__traceback__)}"


def _where(tb: TracebackType | None) -> str:
    """The innermost frame's file and line, without reading any source (this module is pure)."""
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:297] + "..."
