"""Issue 24, operating defects: each test is named after its item and failed on the code before the fix."""

from __future__ import annotations

from pathlib import Path

from curation.config import Settings


def test_item07_registry_follows_the_home(tmp_path: Path) -> None:
    settings = Settings.load(env={"CURATION_HOME": str(tmp_path / "home")})
    assert settings.registry_root == tmp_path / "home" / "registry"
    explicit = Settings.load(env={"CURATION_HOME": str(tmp_path / "home"), "CURATION_REGISTRY_DIR": str(tmp_path / "r")})
    assert explicit.registry_root == tmp_path / "r"
