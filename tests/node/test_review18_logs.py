"""Review of the node's logs (node/logs.py) with text a peer chose in the message (an error
message it answered a push with is logged by the federation): one line per record in either
format, nothing that drives a terminal, and the JSON still says exactly what was sent."""

from __future__ import annotations

import io
import json
import logging

import pytest

from sonet.node.logs import configure_logging

HOSTILE = "refused\n2026-12-06 12:00:00,000 WARNING sonet.node: forged\r\x1b[2J\x85line\u2028para\u2029end\ttab"


pytestmark = pytest.mark.usefixtures("restore_root_logger")  # tests/node/conftest.py


def _log_hostile(fmt: str) -> str:
    out = io.StringIO()
    configure_logging("info", fmt, stream=out)
    logging.getLogger("sonet.federation").info("federation with %s: %s (%s)", "beta.example", HOSTILE, "full")
    return out.getvalue()


def test_a_json_line_stays_one_line_for_every_line_splitter() -> None:
    text = _log_hostile("json")
    [line] = text.splitlines()  # str.splitlines also splits at U+0085, U+2028 and U+2029
    assert json.loads(line)["msg"] == f"federation with beta.example: {HOSTILE} (full)"


def test_a_text_line_stays_one_line_with_controls_escaped() -> None:
    text = _log_hostile("text")
    [line] = text.splitlines()
    assert "\x1b" not in line and "\r" not in line and "\t" not in line
    assert "refused\\x0a2026-12-06" in line and "\\x1b[2J" in line and "\\u2028para\\u2029" in line


def test_a_traceback_keeps_its_lines_in_text() -> None:
    out = io.StringIO()
    configure_logging("info", "text", stream=out)
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("sonet.x").exception("it failed")
    assert out.getvalue().count("\n") > 2 and "ValueError: bad" in out.getvalue()
