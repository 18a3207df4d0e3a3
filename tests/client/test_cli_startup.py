"""`sonet --help` and usage errors start fast: building the parser imports no network stack,
SDK, device state, groups/MLS or UI module (the commands import those when they run)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("trio", "sonet.client.sdk", "sonet.client.state", "sonet.client.connection", "sonet.client.groups", "sonet.core.mls", "textual", "rich", "PIL")

PROBE = """
import json, sys
from sonet.client.cli import build_parser
build_parser()
print(json.dumps(sorted(sys.modules)))
"""


def test_building_the_parser_imports_no_heavy_module() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == [], heavy
    assert "sonet.client.cli_groups" in loaded  # the probe did build the whole parser


def test_help_runs_without_them() -> None:
    done = subprocess.run([sys.executable, "-m", "sonet.client.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "sonet" in done.stdout and "send" in done.stdout, done.stderr
