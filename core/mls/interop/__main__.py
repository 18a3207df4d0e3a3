"""``python -m sonet.core.mls.interop [--verbose] KIND FILE...``: one line per file,
``KIND FILE: N passed, M failed``; exit 0 when everything passed, 1 when anything failed, 2 for a
usage error (one line on stderr). ``--verbose`` adds the reason of each failed case under its file.

The one module of core that does I/O: it is an entry point that nothing imports
(tests/core/test_purity.py allows I/O in ``__main__.py`` files only).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .runner import KINDS, FileResult, MalformedFile, load_check, parse_cases, run_cases

PROG = "python -m sonet.core.mls.interop"
USAGE = f"usage: {PROG} [--verbose] KIND FILE...  (KIND: {' '.join(KINDS)})"


def _usage_error(message: str) -> int:
    print(f"{PROG}: error: {message}; {USAGE.removeprefix('usage: ')}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    verbose = False
    positional: list[str] = []
    options_done = False
    for arg in argv:
        if options_done or not arg.startswith("-") or arg == "-":
            positional.append(arg)
        elif arg == "--":
            options_done = True
        elif arg in ("-v", "--verbose"):
            verbose = True
        elif arg in ("-h", "--help"):
            print(USAGE)
            return 0
        else:
            return _usage_error(f"unknown option {arg}")
    if len(positional) < 2:
        return _usage_error("a KIND and at least one FILE are needed")
    kind, files = positional[0], positional[1:]
    if kind not in KINDS:
        return _usage_error(f"unknown kind {kind!r}")

    check = load_check(kind)
    any_failed = False
    for name in files:
        try:
            cases = parse_cases(Path(name).read_bytes())
        except OSError as e:
            print(f"{kind} {name}: 0 passed, 1 failed (file unreadable: {e.strerror or e})")
            any_failed = True
            continue
        except MalformedFile as e:
            print(f"{kind} {name}: 0 passed, 1 failed (malformed file: {e})")
            any_failed = True
            continue
        result: FileResult = run_cases(check, cases)
        print(f"{kind} {name}: {result.passed} passed, {result.failed} failed")
        if verbose:
            for index, reason in result.failures:
                print(f"  case {index}: {reason}")
        any_failed = any_failed or result.failed > 0
    return 1 if any_failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader went away (`... | head`): nothing more to say
        sys.stderr.close()
        sys.exit(1)
