"""Where Stage-1 model versions live and which one is the champion.

Layout under ``settings.registry_root``::

    <version>/            a saved Stage-1 model (see curation.stage1.model) plus its bundle
    champion.json         {"version": "X.Y.Z", "promoted_at": ..., "reason": ...}

Writes are atomic (temp file + rename), so a killed run never leaves the pointer naming a
half-written version.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from curation.config import Settings
from curation.errors import ConfigError

CHAMPION_FILE = "champion.json"


def version_dir(settings: Settings, version: str) -> Path:
    return settings.registry_root / version


def list_versions(settings: Settings) -> list[str]:
    root = settings.registry_root
    if not root.is_dir():
        return []
    names = (p.name for p in root.iterdir() if not p.name.startswith(".") and (p / "stage1.json").is_file())
    return sorted(names, key=semver)


def champion_version(settings: Settings) -> str | None:
    pointer = settings.registry_root / CHAMPION_FILE
    if not pointer.is_file():
        return None
    return json.loads(pointer.read_text())["version"]


def set_champion(settings: Settings, version: str, *, reason: str, extra: dict[str, Any] | None = None) -> None:
    """Point the champion at ``version`` (which must be a complete saved model)."""
    if not (version_dir(settings, version) / "stage1.json").is_file():
        raise ConfigError(f"Cannot promote {version}: {version_dir(settings, version)} is not a saved model.")
    record = {"version": version, "promoted_at": datetime.now(timezone.utc).isoformat(), "reason": reason, **(extra or {})}
    write_json_atomic(settings.registry_root / CHAMPION_FILE, record)


def json_default(value: Any) -> Any:
    """``json.dumps`` hook for the numpy values run records and model files carry."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy arrays and scalars converted, anything else as text)."""
    return json.loads(json.dumps(value, default=json_default))


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, default=json_default)
        handle.write("\n")
    os.replace(tmp, path)


def resolve_model(settings: Settings, spec: str | None, *, device: str | None = None) -> Any:
    """Load the Stage-1 model a user named, served as ``settings.stage1_serving`` says.

    ``spec`` is a saved model directory, a registered version, ``champion`` (default), or a
    backbone preset / hub id, which builds an UNTRAINED head (its predictions say so).
    ``device`` overrides the serving device; without serving settings it defaults to cpu.
    Compiled modes keep their torch.compile artefacts under ``settings.cache_root`` unless the
    serving config names a ``compile_cache`` file.
    """
    model = _load_model(settings, spec, device or "cpu")  # ServingModel.setup moves it to its device
    serving = settings.stage1_serving
    if serving is None:
        return model
    from curation.stage1.serving import ServingModel, compile_cache_file

    if device:
        serving = serving.replace(device=device)
    if serving.mode != "eager" and serving.compile_cache is None:
        serving = serving.replace(compile_cache=compile_cache_file(settings.cache_root, model.config, serving))
    return ServingModel(model, serving)


def _load_model(settings: Settings, spec: str | None, device: str) -> Any:
    from curation.stage1.model import Stage1Config, Stage1Model

    spec = spec or "champion"
    if spec == "champion":
        version = champion_version(settings)
        if version is None:
            raise ConfigError(
                "No champion model yet. Train one (`curation retrain`), or pass `--model tiny-random` "
                "(random weights, for trying the pipeline) or `--model DIR`."
            )
        return Stage1Model.load(version_dir(settings, version), device=device)
    path = Path(spec)
    if (path / "stage1.json").is_file():
        return Stage1Model.load(path, device=device)
    if (version_dir(settings, spec) / "stage1.json").is_file():
        return Stage1Model.load(version_dir(settings, spec), device=device)
    return Stage1Model.build(Stage1Config(backbone=spec), device=device)


def semver(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (-1,)
