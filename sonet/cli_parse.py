"""Parsing both command lines (``sonet``, ``sonet-node``): argparse leaves an argument no
subcommand knows to the top-level parser, whose usage error shows the program's usage; a user
who typed ``sonet recv --bogus`` needs ``recv``'s, so the command that was chosen reports it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["parse_args"]


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with an unrecognised argument reported by the innermost
    command the line chose (its ``error``: usage line and exit 2, or the JSON convention)."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        _chosen(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        child = subs[0].choices.get(name) if name is not None else None
        if child is None:
            return parser
        parser = child
