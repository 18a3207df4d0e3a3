"""The strict check of a nested map inside a message content (core/content.py): a location, a
contact card, an event, a poll or a call signal is one map with exactly its fields, each of
its type (``bool`` is not an ``int`` here), and short labels of one line."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = ["Fail", "failer", "check_map", "line_problem", "ordered"]

Fail = Callable[[str], ProtocolError]
#: what a one-line label may not hold: controls, line and paragraph separators, bidi formatting
_BANNED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def failer(what: str, err: type[ProtocolError]) -> Fail:
    """``fail(message)``: the error for a bad ``what`` map (``content_malformed`` when remote)."""

    def fail(message: str) -> ProtocolError:
        if err is RemoteProtocolError:
            return err(f"{what}: {message}", code="content_malformed")
        return LocalProtocolError(f"{what}: {message}", code="bad_input")

    return fail


def check_map(value: Any, fields: dict[str, type], fail: Fail) -> dict[str, Any]:
    """``value`` if it is a map with exactly ``fields``, each of its type."""
    if type(value) is not dict or value.keys() != fields.keys():
        raise fail(f"a map with exactly the fields {sorted(fields)}")
    for key, tp in fields.items():
        if type(value[key]) is not tp:
            raise fail(f"field {key!r} must be {tp.__name__}")
    return value


def line_problem(text: str, name: str, *, max_bytes: int, min_bytes: int = 0) -> str | None:
    """Why ``text`` cannot be a one-line ``name`` of ``min_bytes..max_bytes`` bytes, or None."""
    size = len(text.encode())
    if not min_bytes <= size <= max_bytes:
        return f"{name} is {min_bytes}..{max_bytes} bytes of UTF-8"
    if any(unicodedata.category(c) in _BANNED for c in text):
        return f"{name} may not hold control, line-break or formatting characters"
    return None


def ordered(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` with its keys in canonical CBOR order (core/canonical.py): the content's encoder
    writes nested maps as they are ordered."""
    return {key: value[key] for key in sorted(value, key=lambda k: (len(k.encode()), k.encode()))}
