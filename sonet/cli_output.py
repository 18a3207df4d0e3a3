"""The one ``--json`` convention of both command lines (``sonet`` and ``sonet-node``).

- stdout carries JSON Lines: every line is one complete JSON object. A command that reports one
  thing prints one line; a command that lists things prints one object per item (zero lines for
  none), so output can be streamed (``recv --wait``) and read with ``jq`` line by line.
- Times are ISO 8601 in UTC with milliseconds and a ``Z`` (``2026-12-06T06:15:00.123Z``), in
  fields named ``*_at``; an unknown time is ``null``. Byte strings (ids, hashes) are lower-case hex.
- A conversation is named one way by every ``sonet`` command: ``"to"`` (the address) for a 1:1
  one, ``"group": {"id": ..., "name": ...}`` for a group (client/cli_groups.py conversation_json).
- A failure prints one line ``{"error": {"code": ..., "message": ...}}`` on stdout as well and
  exits non-zero (1; 2 for a usage error; 130 after Ctrl-C), so a script reads one stream.
- Without ``--json`` the same failure is one line ``<program>: error: <message>`` on stderr.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, TextIO

__all__ = ["iso_ms", "emit", "emit_error", "terminal_safe"]

#: what a sender could use to drive a terminal or disguise text: control characters (ESC and
#: the C1 CSI start escape sequences that can rewrite the screen, set the title, or worse) and
#: bidirectional overrides; newlines and tabs stay
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """``text`` that may come from the network, fit for a terminal: each unsafe character is
    shown as U+FFFD. (JSON output needs none of this: ``emit`` escapes what JSON must, and its
    reader is a program.)"""
    return _UNSAFE.sub("\ufffd", text)


def iso_ms(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds and ``Z``; None stays None."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def emit(obj: Mapping[str, Any], *, out: TextIO | None = None) -> None:
    """Print one JSON object as one line and flush it (a reader may be waiting for it)."""
    stream = out if out is not None else sys.stdout
    stream.write(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")
    stream.flush()


def emit_error(program: str, code: str, message: str, *, as_json: bool) -> None:
    """One line about a failure: a JSON object on stdout with ``--json``, plain text on stderr otherwise."""
    if as_json:
        emit({"error": {"code": code, "message": message}})
    else:
        print(f"{program}: error: {terminal_safe(message)}", file=sys.stderr, flush=True)
