"""sonet.cli_output: the one --json convention of both command lines."""

from __future__ import annotations

import io
import json

import pytest

from sonet.cli_output import emit, emit_error, iso_ms


def test_times_are_iso_utc_with_milliseconds() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_796_537_700_123) == "2026-12-06T06:15:00.123Z"
    assert iso_ms(None) is None


def test_each_object_is_one_line() -> None:
    out = io.StringIO()
    emit({"text": "two\nlines", "to": "bob@b"}, out=out)
    emit({"id": "ab"}, out=out)
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [{"text": "two\nlines", "to": "bob@b"}, {"id": "ab"}]


def test_errors_follow_the_mode(capsys: pytest.CaptureFixture[str]) -> None:
    emit_error("sonet", "bad_address", "no such user", as_json=True)
    emit_error("sonet", "bad_address", "no such user", as_json=False)
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": {"code": "bad_address", "message": "no such user"}}
    assert captured.err == "sonet: error: no such user\n"
