"""The IETF MLS interop vectors: ``python -m sonet.core.mls.interop [--verbose] KIND FILE...``.

``runner`` is the framework (pure); each kind is its own module here, named after the kind
(``tree-math`` -> ``tree_math.py``), exposing ``check(case: dict) -> None`` that raises when the
case fails; ``expect`` has the helpers they share. The runner finds a kind's module by that name,
so adding a kind is adding its module. ``__main__`` reads the files and prints.
"""

from .runner import KINDS, Check, FileResult, MalformedFile, load_check, parse_cases, run_cases

__all__ = ["KINDS", "Check", "FileResult", "MalformedFile", "load_check", "parse_cases", "run_cases"]
