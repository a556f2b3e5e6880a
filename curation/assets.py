"""Locate the data folders (models/, plugins/, datasets/, pipelines/) in a checkout or a wheel.

In a source checkout they sit beside the package; a non-editable install ships them inside the
package as ``curation/_assets/<name>`` (see pyproject.toml). ``CURATION_PROJECT_ROOT`` overrides
both so a deployment can point at its own copies.
"""

from __future__ import annotations

import os
from pathlib import Path

from curation.errors import ConfigError, suggest

ASSET_NAMES = ("models", "plugins", "datasets", "pipelines")

_PACKAGE_DIR = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    """Return the directory holding the ``name`` data folder.

    Raises:
        ConfigError: ``name`` is not a known data folder, or no copy of it exists.
    """
    if name not in ASSET_NAMES:
        raise ConfigError(f"Unknown data folder `{name}`.{suggest(name, ASSET_NAMES)} Allowed: {ASSET_NAMES}.")
    candidates = []
    if root := os.environ.get("CURATION_PROJECT_ROOT"):
        candidates.append(Path(root) / name)
    candidates.append(_PACKAGE_DIR / "_assets" / name)  # wheel (non-editable install)
    candidates.append(_PACKAGE_DIR.parent / name)  # source checkout / editable install
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"Data folder `{name}` not found; looked in {', '.join(map(str, candidates))}. "
        "Set CURATION_PROJECT_ROOT to a checkout of the project."
    )


def is_installed_copy(path: Path) -> bool:
    """True when ``path`` lies inside the installed package (read-only by convention)."""
    return _PACKAGE_DIR / "_assets" in Path(path).resolve().parents
