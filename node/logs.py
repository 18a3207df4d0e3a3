"""How ``sonet-node run`` logs: the one place the root logger is configured.

``--log-format text`` (default): ``TIME LEVEL LOGGER: MESSAGE`` lines on stderr.
``--log-format json``: JSON Lines on stderr, one object per record with ``ts`` (ISO time with
ms and Z, as every ``*_at`` field of the CLIs), ``level``, ``logger``, ``msg`` (the formatted
message), ``exc`` for an exception's traceback, plus the record's extra fields (``extra={...}``
of the logging call) under their own names. What a log line may carry is the caller's rule:
codes, counts, node names, never keys, message content or a sealed sender's identity.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any, TextIO

from sonet.cli_output import iso_ms

__all__ = ["LEVELS", "FORMATS", "configure_logging", "JsonFormatter", "TextFormatter"]

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: what could end a line, or drive a terminal, in text a peer sent (an error message it answered
#: with lands in a log line): C0 and C1 controls and the Unicode line and paragraph separators
_UNSAFE_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match[0]):02x}" if ord(match[0]) < 0x100 else f"\\u{ord(match[0]):04x}"


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines; the message is one line whatever it holds (an exception's
    traceback, our own, follows on its lines as usual)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return _UNSAFE_IN_LINE.sub(_escaped, super().formatMessage(record))


#: attributes every LogRecord has: anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (JSON Lines)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": iso_ms(int(record.created * 1000)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        # default=str: an extra field of another type is shown, never a crash in the logger;
        # U+0085, U+2028 and U+2029 escaped as well: readers that split lines on them (Python's
        # str.splitlines, some log shippers) still see one object per line
        text = json.dumps(line, ensure_ascii=False, default=str)
        return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def configure_logging(level: str = "info", fmt: str = "text", *, stream: TextIO | None = None) -> logging.Handler:
    """Send every record at ``level`` or above to ``stream`` (stderr) in ``fmt``; replaces any
    handler configured before (so a second call does not double each line). Returns the handler."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (allowed: {', '.join(LEVELS)})")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (allowed: {', '.join(FORMATS)})")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
