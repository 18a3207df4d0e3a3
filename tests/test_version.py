"""``sonet.__version__`` is read from the package metadata only when asked for (importlib.metadata
costs tens of milliseconds in every process otherwise), and ``--version`` still shows it."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest

import sonet

PROBE = """
import json, sys
import sonet
from sonet.client.cli import build_parser
build_parser()
before = "importlib.metadata" in sys.modules or "__version__" in vars(sonet)
print(json.dumps([before, sonet.__version__, "__version__" in vars(sonet)]))
"""


def test_the_version_is_read_on_first_use_only() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [False, importlib.metadata.version("sonet"), True]


def test_other_missing_attributes_still_raise() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'versoin'"):
        sonet.versoin  # noqa: B018


@pytest.mark.parametrize("prog", ["sonet", "sonet-node"])
def test_version_option_prints_it(prog: str) -> None:
    module = {"sonet": "sonet.client.cli", "sonet-node": "sonet.node.cli"}[prog]
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{prog} {importlib.metadata.version('sonet')}\n", "")
