"""``make fuzz`` (``python -m fuzz --each SECONDS [PREFIX...]``, fuzz/campaign.py): its usage
errors, and the one line it makes of each target process's output. The atheris runs themselves
are not part of the suite (atheris is not a test dependency)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.campaign import _outcome
from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[3]

FINISHED = """INFO: Seed: 1
#5\tINITED cov: 123 ft: 167 corp: 3/1864b exec/s: 0 rss: 60Mb
#40853\tDONE   cov: 161 ft: 372 corp: 66/24Kb lim: 1075 exec/s: 3713 rss: 60Mb
Done 40853 runs in 11 second(s)
"""

CRASHED = """#12\tNEW    cov: 3 ft: 3 corp: 2/3b
 === Uncaught Python exception: ===
KeyError: 'boom'
Traceback (most recent call last):
  File "fuzz/target.py", line 4, in t
    raise KeyError("boom")
KeyError: 'boom'

==9795== ERROR: libFuzzer: fuzz target exited
artifact_prefix='var/fuzz/x/'; Test unit written to var/fuzz/x/crash-6dcd4ce23d88e2ee9568ba546c007c63d9131c1b
Base64: QQ==
"""


def test_a_finished_run_is_its_run_count() -> None:
    assert _outcome(FINISHED, 0) == "no finding (40853 runs)"


def test_a_crash_is_its_exception_and_the_saved_input() -> None:
    assert _outcome(CRASHED, 77) == "FINDING (exit 77): KeyError: 'boom' -> var/fuzz/x/crash-6dcd4ce23d88e2ee9568ba546c007c63d9131c1b"


def test_a_run_that_ends_otherwise_is_a_finding() -> None:
    assert _outcome("==1== ERROR: libFuzzer: out-of-memory (used: 1100Mb; exceeds: 1024Mb)\n", 71).startswith(
        "FINDING (exit 71): ==1== ERROR: libFuzzer: out-of-memory"
    )
    assert _outcome("", -9) == "FINDING (exit -9): no output -> no input saved"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--each"], "usage: python -m fuzz --each SECONDS"),
        (["--each", "0"], "usage: python -m fuzz --each SECONDS"),
        (["--each", "ten", "mls-"], "usage: python -m fuzz --each SECONDS"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], error: str) -> None:
    done = subprocess.run([sys.executable, "-m", "fuzz", *args], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(error) and done.stderr.count("\n") == 1


def test_every_mls_decoder_and_the_group_have_targets() -> None:
    mls = {name for name in TARGETS if name.startswith("mls-")}
    decoders = {
        "mls-message", "mls-key-package", "mls-leaf-node", "mls-ratchet-tree", "mls-welcome", "mls-group-info",
        "mls-group-secrets", "mls-proposal", "mls-commit", "mls-update-path", "mls-public-message",
        "mls-private-message", "mls-private-content", "mls-group-context", "mls-psk-id", "mls-extensions",
    }  # fmt: skip
    group = {"mls-group-process", "mls-group-commit", "mls-group-proposal", "mls-group-welcome", "mls-group-external-join"}
    assert decoders | group <= mls
