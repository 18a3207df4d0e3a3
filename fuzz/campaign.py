"""A bounded fuzzing campaign: every target (or those whose names start with given prefixes) run
for a fixed time each, one process per target (libFuzzer runs once per process), with a lasting
corpus and the crashing inputs under ``var/fuzz/<target>/``. One line per target, then the
exit status: 1 when any target found something, else 0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["run_campaign"]

#: what a target process may take beyond its fuzzing time (building seeds, instrumenting imports)
_STARTUP_S = 120


def _outcome(output: str, returncode: int) -> str:
    """One line from a target process's output: its runs, or what it found and where it is."""
    lines = output.splitlines()
    done = next((line for line in reversed(lines) if line.startswith("Done ")), None)
    if returncode == 0 and done is not None:
        return f"no finding ({done.removeprefix('Done ').split(' in ')[0]})"
    error = ""
    for i, line in enumerate(lines):
        if "Uncaught Python exception" in line:
            error = next((x.strip() for x in lines[i + 1 :] if x.strip() and not x.startswith((" ", "Traceback"))), "")
            break
    saved = next((line.split("written to ", 1)[1] for line in lines if "written to " in line), "no input saved")
    last = lines[-1] if lines else "no output"
    return f"FINDING (exit {returncode}): {error or last} -> {saved}"


def run_campaign(names: list[str], seconds: int, root: Path) -> int:
    found = 0
    width = max(map(len, names), default=0)
    for name in names:
        home = root / name
        corpus = home / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "fuzz",
            name,
            f"-max_total_time={seconds}",
            f"-artifact_prefix={home}/",
            "-print_final_stats=0",
            str(corpus),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + _STARTUP_S)
            line = _outcome(done.stdout + done.stderr, done.returncode)
            (home / "last-run.log").write_text(done.stdout + done.stderr)
        except subprocess.TimeoutExpired:
            line = f"FINDING: no answer within {seconds + _STARTUP_S} s (a hang?)"
        found += line.startswith("FINDING")
        print(f"{name:<{width}}  {line}", flush=True)
    print(f"{len(names)} targets, {seconds} s each: {found} with findings (corpora and crashes in {root}/)")
    return 1 if found else 0
