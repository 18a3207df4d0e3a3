"""ops12 item 5: the first ``make run`` printed setuptools' editable-install warning ("Editable
installation. ... Please be careful with folders in your working directory with the same name
as your package ..."; pip shows it as a BuildBackendWarning), noise for a newcomer. The
Makefile's install command ignores that warning alone: pip's other warnings and its errors are
still shown.

The command is taken from the Makefile itself (``make -n``) and run on a throwaway project laid
out as this one is (a package mapped onto a folder of another name: setuptools installs it with
a meta path finder and warns), installed into a throwaway prefix, without dependencies and with
this environment's setuptools. Not on this repository: pip would uninstall the sonet this
environment runs on before installing it under the prefix."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILTER = ("-W", "ignore:Editable installation:UserWarning")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("make") is None, reason="needs make")]


def editable_install_command() -> list[str]:
    """The Makefile's editable install of the run extra, as `make run` runs it, without its ``.``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    planned = subprocess.run(
        ["make", "-n", "-B", ".venv/.installed-run"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    [line] = [line for line in planned if " pip install " in line and " -e " in line]
    words = shlex.split(line)
    assert words[-2:] == ["-e", "."], line
    if not Path(words[0]).is_absolute():
        words[0] = str(ROOT / words[0])
    return words[:-1]


def project_like_this_one(where: Path) -> Path:
    """A package ``ops12demo`` kept in the folder ``code`` (as sonet.core is in core/); its
    setup.py warns once more, as any build may."""
    (where / "code").mkdir(parents=True)
    (where / "code" / "__init__.py").write_text("")
    (where / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "ops12demo"\nversion = "0.1"\n\n'
        '[tool.setuptools]\npackages = ["ops12demo"]\npackage-dir = { "ops12demo" = "code" }\n'
    )
    (where / "setup.py").write_text('import warnings\nfrom setuptools import setup\n\nwarnings.warn("another warning of the build")\nsetup()\n')
    return where


def pip(command: list[str], prefix: Path, what: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    options = ["--no-deps", "--no-build-isolation", "--prefix", str(prefix)]
    return subprocess.run([*command, what, *options], cwd=cwd, capture_output=True, text=True)


def test_the_editable_install_of_make_run_prints_no_editable_installation_warning_and_the_rest(tmp_path: Path) -> None:
    command = editable_install_command()
    assert command[1:3] == list(FILTER)
    project = project_like_this_one(tmp_path / "project")
    done = pip(command, tmp_path / "prefix", ".", project)
    assert done.returncode == 0, done.stderr
    assert "Editable installation" not in done.stdout + done.stderr
    assert "another warning of the build" in done.stderr  # a build's other warnings are shown
    # the same pip without the Makefile's filter prints it (what the filter is for)
    plain = [command[0], *command[3:]]
    shown = pip(plain, tmp_path / "plain", ".", project)
    assert shown.returncode == 0 and "Editable installation" in shown.stderr


def test_an_error_of_that_install_is_still_shown(tmp_path: Path) -> None:
    failed = pip(editable_install_command(), tmp_path / "prefix", str(tmp_path / "nowhere"), tmp_path)
    assert failed.returncode != 0 and "ERROR:" in failed.stderr and "nowhere" in failed.stderr
