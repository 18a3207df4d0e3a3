"""One import package: everything installs as ``sonet.*`` and no module exists under two names."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import sonet

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("core", "transport", "client", "node", "federation")


def every_sonet_module() -> list[str]:
    names = []
    for folder in FOLDERS:
        package = importlib.import_module(f"sonet.{folder}")
        names.append(package.__name__)
        names.extend(m.name for m in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."))
    return names


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_bare_folder_name_is_refused(folder: str) -> None:
    sys.modules.pop(folder, None)
    with pytest.raises(ImportError, match=f"this package is sonet.{folder}"):
        importlib.import_module(folder)
    assert folder not in sys.modules


def test_every_module_loads_once_under_sonet() -> None:
    names = every_sonet_module()
    assert "sonet.core.crypto.aead" in names and "sonet.node.store.sqlite" in names
    for name in names:
        module = importlib.import_module(name)
        path = Path(module.__file__ or "").resolve()
        expected = ROOT / Path(*name.split(".")[1:])
        assert path in (expected.with_suffix(".py"), expected / "__init__.py"), name
    bare = sorted(m for m in sys.modules if m.split(".")[0] in FOLDERS)
    assert bare == []


def test_pyproject_lists_every_package() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"sonet"} | {
        "sonet." + ".".join(p.parent.relative_to(ROOT).parts)
        for folder in FOLDERS
        for p in (ROOT / folder).rglob("__init__.py")
    }
    assert listed == on_disk


def test_version_comes_from_the_distribution() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert sonet.__version__ == meta


@pytest.mark.slow
def test_the_wheel_holds_only_the_sonet_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("sonet-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"sonet", wheel.name.split("-py")[0] + ".dist-info"}
    assert "sonet/core/crypto/aead.py" in names and "sonet/node/cli.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        scripts = z.read(entry_points).decode()
    assert "sonet-node = sonet.node.cli:main" in scripts and "sonet = sonet.client.cli:main" in scripts
