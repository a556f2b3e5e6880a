"""The installed, non-editable package finds models/, plugins/, datasets/ and pipelines/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_SUFFIXES = {".yaml", ".yml", ".json", ".md", ".py", ".csv"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(tmp / "dist"), str(ROOT)],
        check=True,
    )
    (wheel,) = (tmp / "dist").glob("*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(tmp / "site"), str(wheel)],
        check=True,
    )
    return tmp / "site"


def _run(site: Path, code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CURATION_PROJECT_ROOT"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_installed_copy_resolves_its_own_data_folders(installed, tmp_path):
    code = (
        "import curation, curation.assets as a\n"
        "print(curation.__file__)\n"
        "for n in a.ASSET_NAMES: print(a.asset_dir(n))\n"
    )
    lines = _run(installed, code, cwd=tmp_path).splitlines()
    assert lines[0].startswith(str(installed)), "imported the checkout, not the installed copy"
    for name, line in zip(("models", "plugins", "datasets", "pipelines"), lines[1:], strict=True):
        assert Path(line) == installed / "curation" / "_assets" / name


def test_installed_copy_ships_every_tracked_data_file(installed):
    tracked = subprocess.run(
        ["git", "ls-files", "models", "plugins", "datasets", "pipelines"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    shipped = [p for p in tracked if Path(p).suffix in SHIPPED_SUFFIXES]
    assert shipped, "nothing tracked in the data folders"
    missing = [p for p in shipped if not (installed / "curation" / "_assets" / p).is_file()]
    assert not missing, f"not in the wheel: {missing}"


def test_installed_registry_is_not_inside_site_packages(installed, tmp_path):
    code = "from curation.settings import Settings; print(Settings.load(env={'CURATION_HOME': '/tmp/h'}).registry_root)"
    assert _run(installed, code, cwd=tmp_path) == "/tmp/h/registry"
