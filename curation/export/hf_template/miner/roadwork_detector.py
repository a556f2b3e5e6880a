"""StreetVision miner detector for the Stage-1 roadwork bundle (standalone: no curation import).

The subnet's stock ViT detector loads models without remote code, so this multi-view model
needs its own detector class. Install (see README.md beside this file):

1. copy this file into the subnet's detector package (``natix/miner/detectors/`` in current
   releases, ``base_miner/detectors/`` in older ones) and import it from that package's
   ``__init__.py`` (``from .roadwork_detector import RoadworkDetector``) so it registers;
2. in ``miner.env``: ``IMAGE_DETECTOR=Stage1Roadwork`` and
   ``IMAGE_DETECTOR_CONFIG=/absolute/path/to/roadwork_stage1.yaml``.

The class registers itself as ``Stage1Roadwork`` with ``DETECTOR_REGISTRY.register_module`` (the
subnet's decorator, as on its ``ViT`` and ``ROADWORK`` detectors) when the registry is importable;
without the subnet installed it is a plain class with the same constructor and ``__call__``.

Query logging (optional, ``query_log_dir`` in the YAML): every image the detector scores is saved
as ``images/<sha256>.jpg`` with one line in ``log.jsonl`` — ``file``, ``received_at`` (UTC ISO 8601),
``validator_hotkey``, ``response``, ``model_version``, ``feedback`` (null) — the format that
``curation ingest queries FOLDER`` reads. Pass the validator's hotkey from the miner's forward
(``self.image_detector(image, validator_hotkey=synapse.dendrite.hotkey)``) to record it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

import torch
from PIL import ImageOps

MODULE_NAME = "Stage1Roadwork"
DEFAULT_CONFIG = "roadwork_stage1.yaml"

try:  # current subnet layout
    from natix.miner.detectors import FeatureDetector
    from natix.miner.registry import DETECTOR_REGISTRY
except ImportError:
    try:  # older layout
        from base_miner.detectors import FeatureDetector
        from base_miner.registry import DETECTOR_REGISTRY
    except ImportError:  # no subnet installed: standalone use
        FeatureDetector, DETECTOR_REGISTRY = None, None


class StandaloneDetector:
    """Stands in for the subnet's ``FeatureDetector`` when it is not installed (same constructor).

    Reads the YAML config (a path, or a name in ``configs/`` beside this file) into attributes,
    then calls ``load_model``.
    """

    def __init__(self, model_name: str, config_name: str | None = None, device: str = "cpu") -> None:
        self.model_name = model_name
        self.device = torch.device(device if str(device).startswith("cuda") and torch.cuda.is_available() else "cpu")
        if config_name:
            self.set_class_attrs(config_name)
        self.load_model()

    def set_class_attrs(self, detector_config: str) -> None:
        import yaml

        path = _find_config(detector_config)
        for key, value in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).items():
            setattr(self, key, value)


def _find_config(name: str | os.PathLike) -> Path:
    """A config path as given, else ``configs/<name>`` beside this file (the subnet's lookup), else beside it."""
    path = Path(name)
    for candidate in (path, Path(__file__).resolve().parent / "configs" / path, Path(__file__).resolve().parent / path):
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"Detector config {name!r} not found (looked as given, in configs/ and beside {__file__}).")


def _register(cls):
    if DETECTOR_REGISTRY is not None:
        return DETECTOR_REGISTRY.register_module(module_name=MODULE_NAME)(cls)
    return cls


class QueryLogger:
    """Append-only query log: ``images/<sha256>.jpg`` + one JSON line per query in ``log.jsonl``.

    Thread-safe within one process; each line is written with a single ``write`` call in append
    mode, and each image through a temp file + rename, so a crash never leaves a torn image.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).expanduser()
        self._lock = threading.Lock()

    def log(
        self,
        jpeg_bytes: bytes,
        response: float,
        *,
        validator_hotkey: str | None = None,
        model_version: str | None = None,
        received_at: datetime | None = None,
    ) -> dict:
        """Save one query; returns the log entry written."""
        digest = hashlib.sha256(jpeg_bytes).hexdigest()
        relative = f"images/{digest}.jpg"
        when = (received_at or datetime.now(timezone.utc)).astimezone(timezone.utc)  # noqa: UP017  (datetime.UTC needs 3.11; miners may run 3.10)
        entry = {
            "file": relative,
            "received_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "validator_hotkey": validator_hotkey,
            "response": float(response),
            "model_version": model_version,
            "feedback": None,
        }
        with self._lock:
            image_path = self.folder / relative
            image_path.parent.mkdir(parents=True, exist_ok=True)
            if not image_path.exists():
                tmp = image_path.with_name(f".{digest}.{os.getpid()}.tmp")
                tmp.write_bytes(jpeg_bytes)
                os.replace(tmp, image_path)
            with (self.folder / "log.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
        return entry


def image_bytes(image) -> bytes:
    """The bytes the image was decoded from when still available (``Image.open(BytesIO)`` before
    loading), else a JPEG re-encode at quality 95."""
    fp = getattr(image, "fp", None)
    if isinstance(fp, io.BytesIO):
        return fp.getvalue()
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@_register
class RoadworkDetector(FeatureDetector if FeatureDetector is not None else StandaloneDetector):
    """Roadwork probability for a PIL image from the Stage-1 bundle (calibrated threshold at 0.5).

    YAML keys: ``model_dir`` (bundle folder; relative paths resolve against the YAML's folder),
    or ``hf_repo`` (+ ``revision``) to load from the Hub; ``query_log_dir`` (null disables logging);
    ``model_version`` (written into the query log).
    """

    def __init__(self, model_name: str = MODULE_NAME, config_name: str = DEFAULT_CONFIG, device: str = "cpu"):
        self.model_dir = None
        self.hf_repo = None
        self.revision = None
        self.query_log_dir = None
        self.model_version = None
        self.query_logger = None
        self._config_file = _find_config(config_name)
        super().__init__(model_name, str(self._config_file), device)

    def load_model_config(self) -> None:
        """The bundle carries its own config; nothing to fetch (overrides the subnet's Hub lookup)."""

    def model_source(self) -> str:
        if self.model_dir:
            path = Path(str(self.model_dir)).expanduser()
            return str(path if path.is_absolute() else (self._config_file.parent / path).resolve())
        if self.hf_repo:
            return str(self.hf_repo)
        raise ValueError(f"{self._config_file}: set `model_dir` (bundle folder) or `hf_repo`.")

    def load_model(self) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        source = self.model_source()
        self.model = AutoModelForImageClassification.from_pretrained(
            source, trust_remote_code=True, revision=self.revision
        )
        self.model = self.model.to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(source, revision=self.revision)
        self.model_version = self.model_version or getattr(self.model.config, "model_version", None)
        if self.query_log_dir:
            self.query_logger = QueryLogger(self.query_log_dir)

    def __call__(self, image, validator_hotkey: str | None = None) -> float:
        """P(Roadwork) in [0, 1] for a PIL image; > 0.5 means roadwork. Logs the query when configured."""
        raw = image_bytes(image) if self.query_logger is not None else None
        upright = ImageOps.exif_transpose(image).convert("RGB")  # as the platform reads the logged query
        pixels = self.processor(images=upright, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            z = self.model(pixel_values=pixels.to(self.device)).roadwork_logit
        p = float(torch.sigmoid(z.double())[0])
        if self.query_logger is not None:
            try:
                self.query_logger.log(raw, p, validator_hotkey=validator_hotkey, model_version=self.model_version)
            except OSError as e:  # logging must never cost an answer
                print(f"[{MODULE_NAME}] query log failed: {e}")
        return p

    def free_memory(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
