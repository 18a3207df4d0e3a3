"""``sonet-node run --log-level/--log-format`` (node/logs.py): text lines or JSON Lines."""

from __future__ import annotations

import io
import json
import logging

import pytest

from sonet.node.logs import configure_logging


pytestmark = pytest.mark.usefixtures("restore_root_logger")  # tests/node/conftest.py


def test_json_lines_carry_ts_level_logger_msg_and_extras() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = logging.getLogger("sonet.node.test")
    log.debug("not shown")
    log.info("stored %d envelopes", 3, extra={"peer": "beta.example"})
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("it failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["level"] == "info" and first["logger"] == "sonet.node.test"
    assert first["msg"] == "stored 3 envelopes" and first["peer"] == "beta.example"
    assert first["ts"].endswith("Z") and len(first["ts"]) == len("2026-01-01T00:00:00.000Z")
    assert lines[1]["level"] == "error" and "ValueError: bad" in lines[1]["exc"]


def test_text_lines_and_levels() -> None:
    out = io.StringIO()
    configure_logging("warning", "text", stream=out)
    configure_logging("warning", "text", stream=out)  # configured again: still one line per record
    logging.getLogger("sonet.x").info("quiet")
    logging.getLogger("sonet.x").warning("loud")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("WARNING sonet.x: loud")


def test_unknown_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("verbose", "text")
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging("info", "xml")
