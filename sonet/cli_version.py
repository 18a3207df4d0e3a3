"""``--version`` of both CLIs (``sonet``, ``sonet-node``): the version is read from the package
metadata only when it is asked for, not each time a CLI builds its parser."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["VersionAction"]


class VersionAction(argparse.Action):
    """``parser.add_argument("--version", action=VersionAction)``: prints "<prog> <version>"
    on stdout and exits 0, as argparse's own "version" action does."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS, help: str = "show program's version number and exit") -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        import sonet

        print(f"{parser.prog} {sonet.__version__}", file=sys.stdout)
        parser.exit()
