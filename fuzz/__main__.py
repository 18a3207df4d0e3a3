"""Long fuzzing runs with atheris (libFuzzer) on the targets the test suite runs briefly.

    python -m fuzz --list
    python -m fuzz TARGET [libFuzzer options] [CORPUS_DIR ... | CRASH_FILE ...]
    python -m fuzz --each SECONDS [NAME_PREFIX ...]

e.g. ``python -m fuzz frame -max_total_time=600`` or ``make fuzz TARGET=frame RUNS=100000``.
``--each`` runs every target (or those whose names start with a prefix, e.g. ``mls-``) for
SECONDS each, one process per target, corpora and crashes kept in ``var/fuzz/<target>/``
(fuzz/campaign.py; ``make fuzz``).
Without a corpus directory the run starts from the target's own seeds (valid encodings, written
to a temporary directory); with one, the seeds are added to it and what libFuzzer finds stays
there. Files instead of directories are replayed once (a crash reproducer). A crash is an input
on which the decoder broke its contract (fuzz/target.py); libFuzzer saves it as ``crash-*``.
Needs atheris: ``make fuzz`` installs it into the venv (``pip install 'atheris>=2.3,<3'``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

#: libFuzzer options added unless given: an input taking 10 s is a hang, 1 GiB of memory a leak
_DEFAULTS = {"-timeout": "10", "-rss_limit_mb": "1024"}


def _list() -> int:
    from .targets import TARGETS

    width = max(map(len, TARGETS))
    for name, target in sorted(TARGETS.items()):
        print(f"{name:<{width}}  {target.summary}")
    return 0


def _write_seeds(directory: Path, seeds: list[bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (directory / f"seed-{hashlib.sha256(seed).hexdigest()[:16]}").write_bytes(seed)


def _fuzz(name: str, args: list[str]) -> int:
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install 'atheris>=2.3,<3' (or make fuzz)", file=sys.stderr)
        return 2
    # Instrument the protocol code for coverage feedback (everything core/ imports from here on).
    with atheris.instrument_imports(include=["sonet", "fuzz"]):
        from .targets import TARGETS
    if name not in TARGETS:
        print(f"unknown fuzz target {name!r}; `python -m fuzz --list` shows them", file=sys.stderr)
        return 2
    target = TARGETS[name]
    options = [a for a in args if a.startswith("-")]
    paths = [Path(a) for a in args if not a.startswith("-")]
    given = {o.split("=", 1)[0] for o in options}
    options += [f"{k}={v}" for k, v in _DEFAULTS.items() if k not in given]
    with tempfile.TemporaryDirectory(prefix=f"sonet-fuzz-{name}-") as scratch:
        if not paths:
            paths = [Path(scratch)]
        if paths[0].is_dir() or not paths[0].exists():
            _write_seeds(paths[0], target.corpus())
        atheris.Setup([sys.argv[0], *options, *map(str, paths)], target)
        atheris.Fuzz()
    return 0


def _each(args: list[str]) -> int:
    if not args or not args[0].isdigit() or int(args[0]) < 1:
        print("usage: python -m fuzz --each SECONDS [NAME_PREFIX ...] (SECONDS a whole number, at least 1)", file=sys.stderr)
        return 2
    try:
        import atheris  # noqa: F401 - checked here once, not in every target process
    except ImportError:
        print("atheris is not installed: pip install 'atheris>=2.3,<3' (or make fuzz)", file=sys.stderr)
        return 2
    from .campaign import run_campaign
    from .targets import TARGETS

    prefixes = args[1:]
    names = sorted(n for n in TARGETS if not prefixes or n.startswith(tuple(prefixes)))
    if not names:
        print(f"no fuzz target's name starts with {' or '.join(prefixes)}; `python -m fuzz --list` shows them", file=sys.stderr)
        return 2
    return run_campaign(names, int(args[0]), Path("var/fuzz"))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    if argv[0] == "--list":
        return _list()
    if argv[0] == "--each":
        return _each(argv[1:])
    return _fuzz(argv[0], argv[1:])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # `--list | head`: the reader went away, nothing worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
