"""Detector weights the platform can load without running code from the file.

Ultralytics saves checkpoints as pickles of whole Python objects, and loading one (``YOLO("x.pt")``)
unpickles it: a crafted ``.pt`` runs whatever it names. The platform therefore writes its own
format, a plain dictionary of tensors and JSON-like values saved with ``torch.save``::

    {"format": "curation-detector/1", "architecture": {...ultralytics model yaml...},
     "names": {0: "cone", ...}, "state_dict": {...tensors...}}

and reads it only with ``torch.load(weights_only=True)``, which refuses anything but tensors and
plain containers. The model is rebuilt from the architecture yaml (ultralytics builds from yaml
without unpickling) and the tensors are loaded into it. A file in any other form, ultralytics'
own checkpoints included, is refused with a message that says so.

Example:
    >>> # save_detector_weights(yolo.model, "runs/detector/1/detector.pt"); read_detector_weights(...)
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from curation.errors import InputError

WEIGHTS_FORMAT = "curation-detector/1"


def save_detector_weights(model: Any, path: str | Path) -> Path:
    """Write an ultralytics ``DetectionModel``'s architecture, class names and tensors in the safe format."""
    import torch

    from curation.store.registry import jsonable

    path = Path(path)
    payload = {
        "format": WEIGHTS_FORMAT,
        "architecture": jsonable(dict(model.yaml)),
        "names": {int(k): str(v) for k, v in dict(model.names).items()},
        "state_dict": {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_detector_weights(path: str | Path) -> dict[str, Any]:
    """The safe-format payload of ``path``; never unpickles objects.

    Raises:
        InputError: the file is not in the platform's format (e.g. an ultralytics pickle), naming it.
    """
    import torch

    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
        raise InputError(
            f"Detector weights {path} are not in the platform's safe format: the file holds pickled Python "
            f"objects (e.g. an ultralytics checkpoint), which could run code when loaded, so it is not loaded "
            f"({type(e).__name__}). Use a detector.pt written by `curation detector train`, or start from an "
            "architecture yaml such as yolo11n.yaml."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(
            f"Detector weights {path} have format {found!r}, not {WEIGHTS_FORMAT!r}; use a detector.pt written by "
            "`curation detector train`."
        )
    return payload


def build_from_weights(path: str | Path, work_dir: Path) -> Any:
    """An ultralytics ``YOLO`` rebuilt from ``path``'s architecture with its tensors loaded.

    ``work_dir`` receives the architecture yaml (named as the original, so ultralytics reads the same
    model scale from it). The returned model fine-tunes from these weights when trained.
    """
    import yaml
    from ultralytics import YOLO

    payload = read_detector_weights(path)
    architecture = dict(payload["architecture"])
    name = Path(str(architecture.get("yaml_file") or "detector.yaml")).name
    if Path(name).suffix not in {".yaml", ".yml"}:
        name = f"{Path(name).stem}.yaml"
    arch_file = Path(work_dir) / "architectures" / name
    arch_file.parent.mkdir(parents=True, exist_ok=True)
    arch_file.write_text(yaml.safe_dump(architecture, sort_keys=False))
    yolo = YOLO(str(arch_file), task="detect")
    try:
        yolo.model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as e:
        raise InputError(f"Detector weights {path} do not fit their own architecture ({str(e)[:200]}).") from None
    yolo.model.names = {int(k): v for k, v in payload["names"].items()}
    yolo.ckpt = {"format": WEIGHTS_FORMAT}  # training starts from these weights, not from random ones
    return yolo
