"""Where Stage-1 model versions live and which one is the champion.

Layout under ``settings.registry_root``::

    <version>/            a saved Stage-1 model (see curation.stage1.model) plus its bundle
    <version>/promotion.json  the retrain's decision: {"promoted": bool, "champion_before": ..., "run_dir": ...}
    champion.json         {"version": "X.Y.Z", "promoted_at": ..., "reason": ..., "history": [...]}

Writes are atomic (temp file + rename), so a killed run never leaves the pointer naming a
half-written version. A version appears together with its promotion decision (one rename), so a
run killed before it moved the pointer leaves a *pending* promotion that the next retrain (or the
resumed run) finishes: :func:`finish_pending_promotion`.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from curation.errors import ConfigError
from curation.settings import Settings

CHAMPION_FILE = "champion.json"
PROMOTION_FILE = "promotion.json"


def version_dir(settings: Settings, version: str) -> Path:
    return settings.registry_root / version


def list_versions(settings: Settings) -> list[str]:
    root = settings.registry_root
    if not root.is_dir():
        return []
    names = (p.name for p in root.iterdir() if not p.name.startswith(".") and (p / "stage1.json").is_file())
    return sorted(names, key=semver)


def champion_version(settings: Settings) -> str | None:
    record = champion_record(settings)
    return record["version"] if record else None


def champion_record(settings: Settings) -> dict[str, Any] | None:
    pointer = settings.registry_root / CHAMPION_FILE
    if not pointer.is_file():
        return None
    return json.loads(pointer.read_text())


def set_champion(settings: Settings, version: str, *, reason: str, extra: dict[str, Any] | None = None) -> None:
    """Point the champion at ``version`` (which must be a complete saved model).

    The pointer keeps the ``history`` of every version it named, so a promotion that was applied
    and later rolled back is never re-applied as pending.
    """
    if not (version_dir(settings, version) / "stage1.json").is_file():
        raise ConfigError(f"Cannot promote {version}: {version_dir(settings, version)} is not a saved model.")
    before = champion_record(settings) or {}
    history = list(before.get("history") or ([before["version"]] if before.get("version") else []))
    record = {
        "version": version, "promoted_at": datetime.now(timezone.utc).isoformat(), "reason": reason, **(extra or {}),
        "history": [*history, version],
    }
    write_json_atomic(settings.registry_root / CHAMPION_FILE, record)


def read_promotion(settings: Settings, version: str) -> dict[str, Any] | None:
    """The promotion decision registered with ``version`` (None for versions registered without one)."""
    path = version_dir(settings, version) / PROMOTION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def pending_promotion(settings: Settings) -> tuple[str, dict[str, Any]] | None:
    """A registered version whose run decided to promote it but was killed before moving the pointer.

    Pending means: its ``promotion.json`` says promoted, the pointer never named it, and the pointer
    still names the champion it was compared with (a later promotion supersedes it).
    """
    record = champion_record(settings) or {}
    current = record.get("version")
    history = set(record.get("history") or ([current] if current else []))
    for version in reversed(list_versions(settings)):
        decision = read_promotion(settings, version)
        if decision and decision.get("promoted") and version not in history and decision.get("champion_before") == current:
            return version, decision
    return None


def finish_pending_promotion(settings: Settings) -> str | None:
    """Apply a :func:`pending_promotion`; returns the version promoted, or None when none was pending."""
    pending = pending_promotion(settings)
    if pending is None:
        return None
    version, decision = pending
    reason = "; ".join(decision.get("reasons") or []) + " (promotion finished after its run was interrupted)"
    set_champion(settings, version, reason=reason.lstrip("; "))
    return version


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
