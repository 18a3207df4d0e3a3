"""The command line's own refusals (client/cli.py reports them): ``CommandError``, and the one
way a command says its arguments are wrong, ``usage_error``: code ``usage``, exit 2, one line
``sonet: error: PROBLEM (usage: sonet COMMAND ...)``. argparse's own usage errors (an unknown
option, a missing argument, an option's type) print the usage line above ``sonet COMMAND: error:
...`` instead; both exit 2 and, with ``--json``, are one ``{"error": {"code": "usage", ...}}`` line.
Light on purpose: the cli_* modules import it while the parser is built."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from sonet.core.errors import LocalProtocolError

__all__ = ["CommandError", "usage_error", "as_usage", "positive", "NOT_POSITIVE"]

#: the one wording of "a count from 1": every --limit of ``sonet`` says it so
NOT_POSITIVE = "is not a whole number from 1 up"


class CommandError(Exception):
    """A refusal of this command line itself (bad input, no confirmation), with its --json code:
    codes of the network's refusals live in core/errors.py, these are the CLI's own."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def usage_error(problem: str, usage: str) -> CommandError:
    """A usage error: what is wrong, then the command's usage (``sonet COMMAND ...``)."""
    return CommandError("usage", f"{problem} (usage: {usage})")


def positive(text: str) -> int:
    """An argparse type: a whole number from 1 (``--limit N``), in ASCII digits: ``str.isdigit``
    and ``int`` also take other scripts' digits (``٣`` is 3), and superscripts isdigit takes
    but int refuses."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} {NOT_POSITIVE}")
    return int(text)


@contextmanager
def as_usage(usage: str) -> Iterator[None]:
    """An argument that does not parse or is out of its range (a parser of the content model
    raised LocalProtocolError for it) is a usage error of the command: checked before a home is
    opened, as argparse checks an option's type."""
    try:
        yield
    except LocalProtocolError as exc:
        raise usage_error(str(exc), usage) from None
