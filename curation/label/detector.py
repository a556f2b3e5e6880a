"""Primitive detector: train a YOLO model on the unified boxes and propose boxes for unboxed images.

NATIX images carry no boxes. A detector trained on the ROADWork and Roboflow ``primitives`` pre-labels
them (``primitive_proposals``) so a person only accepts or fixes boxes, and SAM (:mod:`curation.label.sam`)
can tighten them.

Ultralytics is AGPL-3.0: it is used as a dependency behind this thin wrapper (nothing is copied from
it), it is imported lazily, and nothing it produces goes into the exported Stage-1 bundle. Everything
here runs offline: ultralytics is pointed at a config folder under the platform home that already
holds its font, its settings have ``sync`` and the logging integrations off, models are built from a
yaml or a local checkpoint (never a ``.pt`` *name*, which it would try to download), and AMP and
plots are off (both fetch assets). Checkpoints are the platform's own safe format
(:mod:`curation.label.detector_weights`): a ``.pt`` is read with ``torch.load(weights_only=True)`` and never
unpickled, so a crafted file cannot run code.

Example:
    >>> from curation.label.detector import DetectorConfig
    >>> DetectorConfig(epochs=1, imgsz=160).holdout_fraction
    0.2
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import PIL.Image

from curation import schema, store
from curation.errors import ConfigError, InputError, suggest
from curation.typed_config import from_mapping, read_yaml_mapping, setting

if TYPE_CHECKING:
    import fiftyone.core.collections as foc

PROPOSALS_FIELD = "primitive_proposals"
"""Detections (unified class names, with confidences) proposed by the detector; never ground truth."""

CARD_NAME = "detector.json"
WEIGHTS_NAME = "detector.pt"
QUALITY_DEMO = "untrained-demo"
QUALITY_CANDIDATE = "candidate"
TRAIN_SOURCES = (schema.Source.ROADWORK.value, schema.Source.ROBOFLOW.value)

Progress = Callable[[int], None]
"""Called with the number of samples just finished (drives a CLI bar or an operator's progress)."""


@dataclass(frozen=True)
class DetectorConfig:
    """How the proposal detector is built, trained and judged.

    Attributes:
        model: an ultralytics architecture yaml (``yolo11n.yaml``: random init) or a local checkpoint
            file (``.pt`` written by :func:`train_detector`: fine-tune; other pickles are refused, see
            :mod:`curation.label.detector_weights`). Checkpoint *names* are refused: ultralytics would download them.
        imgsz: training and inference image side in pixels (multiple of 32).
        epochs: training epochs.
        batch: images per batch.
        device: ``cpu``, ``0`` (first GPU) or ``0,1``.
        workers: dataloader worker processes (0 keeps everything in this process).
        holdout_fraction: share of sequence groups held out for the mAP in the model card.
        seed: seed for the hold-out draw and for training.
        sources: sources whose train-split boxes are exported (NATIX has no boxes).
        classes: class list in model index order; the unified primitive and context classes.
        min_train_images: fewer training images than this marks the card ``untrained-demo``.
        min_map50: a held-out mAP50 below this marks the card ``untrained-demo``.
        conf: default confidence threshold for proposals.
        iou: NMS IoU threshold for proposals.
        max_det: most proposals per image.
    """

    model: str = "yolo11n.yaml"
    imgsz: int = setting(640, help="Training and inference image side in pixels (multiple of 32).", low=32)
    epochs: int = 50
    batch: int = 16
    device: str = setting("cpu", help="cpu, a GPU index (0) or several (0,1).")
    workers: int = 0
    holdout_fraction: float = 0.2
    seed: int = 0
    sources: tuple[str, ...] = TRAIN_SOURCES
    classes: tuple[str, ...] = schema.PRIMITIVE_CLASSES
    min_train_images: int = 200
    min_map50: float = 0.1
    conf: float = setting(0.25, help="Keep proposals at or above this confidence.", low=0.0, high=1.0)
    iou: float = setting(0.7, help="NMS IoU threshold of proposals.", low=0.0, high=1.0)
    max_det: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "classes", tuple(self.classes))
        _check_range("imgsz", self.imgsz, 32, None)
        if self.imgsz % 32:
            raise ConfigError(f"The 'imgsz' parameter must be a multiple of 32. Got {self.imgsz} instead.")
        _check_range("epochs", self.epochs, 1, None)
        _check_range("batch", self.batch, 1, None)
        _check_range("workers", self.workers, 0, None)
        _check_range("max_det", self.max_det, 1, None)
        _check_range("min_train_images", self.min_train_images, 0, None)
        for name in ("conf", "iou", "min_map50"):
            _check_range(name, getattr(self, name), 0.0, 1.0)
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(
                f"The 'holdout_fraction' parameter must be a float in the range (0, 1). Got {self.holdout_fraction} instead."
            )
        for name in self.classes:
            if name not in schema.PRIMITIVE_CLASSES:
                raise ConfigError(
                    f"Unknown class `{name}` in `classes`.{suggest(name, schema.PRIMITIVE_CLASSES)} "
                    f"Allowed: {', '.join(schema.PRIMITIVE_CLASSES)}."
                )
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"`classes` must be a non-empty list without repeats; got {list(self.classes)}.")
        allowed_sources = [s.value for s in schema.Source]
        for name in self.sources:
            if name not in allowed_sources:
                raise ConfigError(
                    f"Unknown source `{name}` in `sources`.{suggest(name, allowed_sources)} Allowed: {', '.join(allowed_sources)}."
                )
        if Path(self.model).suffix not in {".yaml", ".yml", ".pt"}:
            raise ConfigError(
                f"`model` must be an architecture yaml (e.g. yolo11n.yaml) or a local .pt checkpoint; got {self.model!r}."
            )

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> DetectorConfig:
        """Read a detector config (``models/detector/*.yaml``); keyword overrides win over the file."""
        values = read_yaml_mapping(path, what="Detector config")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return from_mapping(cls, values, source=str(path))


def _check_range(name: str, value: float, low: float | None, high: float | None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ConfigError(f"The '{name}' parameter must be in the range {span}. Got {value} instead.")


# Offline ultralytics --------------------------------------------------------------------------
def _font_source() -> Path:
    system = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if system.is_file():
        return system
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def ultralytics_offline(config_root: str | Path) -> Any:
    """Import ultralytics configured to never reach the network; returns the ``ultralytics`` module.

    Must run before ultralytics is first imported for ``YOLO_CONFIG_DIR`` to count; if it was imported
    earlier the font is also placed in the folder that import chose.
    """
    config_root = Path(config_root)
    os.environ["YOLO_CONFIG_DIR"] = str(config_root)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    font = _font_source()
    _place_font(config_root / "Ultralytics", font)
    import ultralytics
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR, patches

    # Importing ultralytics replaces PIL.Image.open process-wide with a wrapper that, on an
    # unidentifiable file, tries to pip-install pi-heif and raises ModuleNotFoundError offline.
    # Put PIL's own function back so corrupt images keep failing as UnidentifiedImageError
    # everywhere else in the platform (ingest, predict) when a detector ran in the same process.
    PIL.Image.open = patches._image_open
    _place_font(Path(USER_CONFIG_DIR), font)
    wanted = {"sync": False}
    wanted.update({k: False for k in ("clearml", "comet", "dvc", "mlflow", "neptune", "raytune", "tensorboard", "wandb") if k in SETTINGS})
    if any(SETTINGS.get(k) != v for k, v in wanted.items()):
        SETTINGS.update(wanted)
    return ultralytics


def _place_font(folder: Path, font: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "Arial.ttf"
    if not target.exists():
        shutil.copyfile(font, target)


def _resolve_model(model: str) -> str:
    """Refuse anything ultralytics would download: a missing checkpoint or an unknown yaml."""
    path = Path(model).expanduser()
    if path.suffix == ".pt":
        if not path.is_file():
            raise InputError(
                f"Detector checkpoint {path} does not exist. Pass a local .pt file, or an architecture "
                "yaml such as yolo11n.yaml to start from random weights (weights are never downloaded)."
            )
        return str(path)
    if path.is_file():
        return str(path)
    from ultralytics.nn.tasks import yaml_model_load  # resolves scaled names (yolo11n -> yolo11 + scale n)

    try:
        yaml_model_load(model)
        return model
    except FileNotFoundError:
        raise ConfigError(f"Architecture yaml {model!r} is neither a file nor an ultralytics model yaml.") from None


def _load_yolo(weights: str | Path, config_root: Path) -> Any:
    """A YOLO built from an architecture yaml, or rebuilt from safe-format weights (never unpickled)."""
    ultralytics_offline(config_root)
    from ultralytics import YOLO

    from curation.label.detector_weights import build_from_weights

    resolved = _resolve_model(str(weights))
    if Path(resolved).suffix == ".pt":
        return build_from_weights(resolved, Path(config_root))
    return YOLO(resolved)


# Data selection and hold-out (pure) ------------------------------------------------------------
def holdout_mask(groups: Sequence[str], fraction: float, seed: int = 0) -> list[bool]:
    """Which items go to the held-out part; every item of one group goes the same way.

    Groups (sequence groups, or sample ids when there are none) are hashed with the seed, so the draw
    is stable across runs and does not depend on order. With two or more groups both parts are
    non-empty: frames of one video never sit on both sides, so the held-out mAP is not inflated.

    Example:
        >>> holdout_mask(["a", "a", "b"], 0.5, seed=0) in ([True, True, False], [False, False, True])
        True
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"The 'fraction' parameter must be in the range (0, 1). Got {fraction} instead.")
    draw = {g: int(hashlib.sha256(f"{seed}:{g}".encode()).hexdigest()[:12], 16) / 16**12 for g in set(groups)}
    held = {g for g, u in draw.items() if u < fraction}
    if len(draw) >= 2:
        ordered = sorted(draw, key=draw.__getitem__)
        if not held:
            held = {ordered[0]}
        elif len(held) == len(draw):
            held.discard(ordered[-1])
    return [g in held for g in groups]


def detector_training_view(collection: foc.SampleCollection, config: DetectorConfig) -> foc.SampleCollection:
    """Samples a model may learn from (:func:`curation.store.trainable_samples`: no leak of any kind,
    no label conflict, no unadmitted or random-generator image) from the box sources, with only the
    configured classes."""
    from fiftyone import ViewField as F

    return (
        store.trainable_samples(collection)
        .match(F("sources").contains(list(config.sources)))
        .exists("primitives")
        .filter_labels("primitives", F("label").is_in(list(config.classes)), only_matches=False)
    )


# Training --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectorTrainResult:
    """Where the trained weights and card are, and what the card says."""

    weights: Path
    card_path: Path
    card: dict[str, Any] = field(repr=False)

    @property
    def map50(self) -> float:
        return float(self.card["metrics"]["map50"])

    @property
    def map50_95(self) -> float:
        return float(self.card["metrics"]["map50_95"])


def train_detector(
    collection: foc.SampleCollection,
    out_dir: str | Path,
    config: DetectorConfig | None = None,
    *,
    config_root: str | Path | None = None,
) -> DetectorTrainResult:
    """Export the unified boxes through FiftyOne, train a YOLO detector and write its card.

    The train-split ROADWork/Roboflow samples (no ``leak`` tag) are exported with FiftyOne's YOLOv5
    exporter; a seeded share of sequence groups is held out. Ultralytics validates only after the
    last epoch, so the held-out part never chooses a checkpoint and its mAP is an honest estimate.
    ``out_dir`` receives ``detector.pt``, ``detector.json`` (the card), the export (``data/``) and
    ultralytics' run folder (``train/``).

    Args:
        collection: a dataset or view holding the training samples.
        out_dir: folder for this run (created).
        config: the detector config; defaults to :class:`DetectorConfig()`.
        config_root: ultralytics' config folder (font, settings); defaults to ``out_dir/.ultralytics``.

    Returns:
        the weights, the card path and the card.

    Example:
        >>> # train_detector(dataset, "runs/detector/1", DetectorConfig(epochs=1, imgsz=320))
    """
    import fiftyone as fo

    config = config or DetectorConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_root = Path(config_root) if config_root else out_dir / ".ultralytics"

    view = detector_training_view(collection, config)
    ids, groups = view.values(["id", "sequence_group"])
    if len(ids) < 2:
        raise InputError(
            f"`{collection.name}` has {len(ids)} train-split sample(s) with `primitives` from "
            f"{', '.join(config.sources)} that a model may train on (no leak, conflict or unadmitted tag); the detector needs at least 2 (one to hold out)."
        )
    held = holdout_mask([g or i for i, g in zip(ids, groups)], config.holdout_fraction, config.seed)
    parts = {
        "train": [i for i, h in zip(ids, held) if not h],
        "val": [i for i, h in zip(ids, held) if h],
    }
    data_dir = out_dir / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    for split, part_ids in parts.items():
        view.select(part_ids).export(
            export_dir=str(data_dir),
            dataset_type=fo.types.YOLOv5Dataset,
            label_field="primitives",
            split=split,
            classes=list(config.classes),
            export_media="symlink",
        )
    data_yaml = data_dir / "dataset.yaml"

    model = _load_yolo(config.model, config_root)
    metrics = model.train(
        data=str(data_yaml),
        epochs=config.epochs,
        imgsz=config.imgsz,
        batch=config.batch,
        device=config.device,
        workers=config.workers,
        seed=config.seed,
        project=str(out_dir),
        name="train",
        exist_ok=True,
        amp=False,
        plots=False,
        val=False,  # validate once, after the last epoch: the held-out part picks nothing
        verbose=False,
    )
    best = Path(model.trainer.best)
    if not best.is_file():
        raise InputError(f"Training finished without weights in {best.parent}; see ultralytics' log above.")
    weights = out_dir / WEIGHTS_NAME
    from curation.label.detector_weights import save_detector_weights

    save_detector_weights(model.model, weights)  # the safe format: `propose` never unpickles a file

    results = getattr(metrics, "results_dict", None) or {}
    map50 = float(results.get("metrics/mAP50(B)", 0.0))
    map50_95 = float(results.get("metrics/mAP50-95(B)", 0.0))
    n_boxes = {split: view.select(part_ids).count("primitives.detections") for split, part_ids in parts.items()}
    card = build_card(
        config=config,
        dataset_name=collection.name,
        n_train=len(parts["train"]),
        n_holdout=len(parts["val"]),
        n_boxes=n_boxes,
        map50=map50,
        map50_95=map50_95,
        weights=weights,
        ultralytics_version=_ultralytics_version(),
    )
    card_path = out_dir / CARD_NAME
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    return DetectorTrainResult(weights=weights, card_path=card_path, card=card)


def build_card(
    *,
    config: DetectorConfig,
    dataset_name: str,
    n_train: int,
    n_holdout: int,
    n_boxes: dict[str, int],
    map50: float,
    map50_95: float,
    weights: Path,
    ultralytics_version: str,
) -> dict[str, Any]:
    """The model card written beside the weights (JSON-able dict).

    ``quality`` is ``untrained-demo`` when the model started from random weights on fewer than
    ``min_train_images`` images, or its held-out mAP50 is below ``min_map50``: such a model only shows
    that the pipeline runs, and its proposals must not be trusted.
    """
    random_init = Path(config.model).suffix in {".yaml", ".yml"}
    reasons = []
    if n_train < config.min_train_images:
        reasons.append(f"{n_train} training images < min_train_images={config.min_train_images}")
    if map50 < config.min_map50:
        reasons.append(f"held-out mAP50 {map50:.3f} < min_map50={config.min_map50}")
    return {
        "model_name": f"primitive-detector-{Path(config.model).stem}",
        "kind": "primitive-detector",
        "framework": f"ultralytics {ultralytics_version} (AGPL-3.0; not part of the Stage-1 bundle)",
        "architecture": config.model,
        "init": "random" if random_init else f"checkpoint:{config.model}",
        "classes": list(config.classes),
        "dataset": dataset_name,
        "sources": list(config.sources),
        "n_train_images": n_train,
        "n_holdout_images": n_holdout,
        "n_train_boxes": n_boxes.get("train", 0),
        "n_holdout_boxes": n_boxes.get("val", 0),
        "holdout": {"fraction": config.holdout_fraction, "seed": config.seed, "unit": "sequence_group (else sample)"},
        "metrics": {"map50": map50, "map50_95": map50_95, "evaluated_on": "held-out part, final epoch weights"},
        "quality": QUALITY_DEMO if reasons else QUALITY_CANDIDATE,
        "quality_reasons": reasons,
        "weights": weights.name,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": dataclasses.asdict(config),
    }


def _ultralytics_version() -> str:
    import ultralytics

    return str(ultralytics.__version__)


# Proposals -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProposeResult:
    """How many samples got proposals and how many boxes were written."""

    n_samples: int
    n_boxes: int
    field: str


def root_dataset(collection: foc.SampleCollection) -> Any:
    """The dataset behind a view (bulk writes go to the dataset, keyed by sample id)."""
    import fiftyone as fo

    return collection if isinstance(collection, fo.Dataset) else fo.load_dataset(collection.dataset_name)


def unboxed_view(collection: foc.SampleCollection) -> foc.SampleCollection:
    """Samples without any box in ``primitives`` (missing field or empty list): NATIX, queries, ..."""
    from fiftyone import ViewField as F

    return collection.match((F("primitives") == None) | (F("primitives.detections").length() == 0))  # noqa: E711


def propose(
    collection: foc.SampleCollection,
    weights: str | Path,
    conf: float = DetectorConfig.conf,
    *,
    iou: float = DetectorConfig.iou,
    imgsz: int = DetectorConfig.imgsz,
    max_det: int = DetectorConfig.max_det,
    device: str = DetectorConfig.device,
    batch_size: int = 16,
    field: str = PROPOSALS_FIELD,
    only_unboxed: bool = True,
    config_root: str | Path | None = None,
    progress: Progress | None = None,
) -> ProposeResult:
    """Write detector proposals (Detections with confidences) to ``field``, in bulk.

    Args:
        collection: the samples to consider (an operator passes ``ctx.target_view()``).
        weights: a local detector checkpoint (``detector.pt`` from :func:`train_detector`).
        conf: keep boxes at or above this confidence.
        iou: NMS IoU threshold.
        imgsz: inference image side.
        max_det: most boxes per image.
        device: ``cpu`` or a GPU index.
        batch_size: images per forward and per database write.
        field: where proposals go; never ``primitives`` (proposals are not ground truth).
        only_unboxed: skip samples that already have boxes in ``primitives``.
        config_root: ultralytics' config folder; defaults to ``<weights folder>/.ultralytics``.
        progress: called with the number of samples finished after each batch.

    Example:
        >>> # propose(dataset.match_tags("natix"), "runs/detector/1/detector.pt", conf=0.3)
    """
    import fiftyone as fo

    _check_range("conf", conf, 0.0, 1.0)
    _check_range("batch_size", batch_size, 1, None)
    if field == "primitives":
        raise ConfigError("`field` must not be `primitives`: proposals are accepted into it by a person, never written.")
    weights = check_weights(weights)
    view = unboxed_view(collection) if only_unboxed else collection
    ids, paths = view.values(["id", "filepath"])
    for sample_id, path in zip(ids, paths):
        if not path or not Path(path).is_file():
            raise InputError(f"Sample {sample_id}: image {path!r} does not exist; cannot propose boxes for it.")
    if not ids:
        return ProposeResult(n_samples=0, n_boxes=0, field=field)
    model = _load_yolo(weights, Path(config_root) if config_root else weights.parent / ".ultralytics")
    names = dict(model.names)

    n_boxes = 0
    for start in range(0, len(ids), batch_size):
        chunk_ids, chunk_paths = ids[start : start + batch_size], paths[start : start + batch_size]
        results = model.predict(
            chunk_paths, conf=conf, iou=iou, imgsz=imgsz, max_det=max_det, device=device, verbose=False
        )
        values = {}
        for sample_id, result in zip(chunk_ids, results):
            dets = [
                fo.Detection(label=names[int(c)], bounding_box=xyxy_to_xywh(box), confidence=float(s))
                for box, c, s in zip(
                    result.boxes.xyxyn.tolist(), result.boxes.cls.tolist(), result.boxes.conf.tolist()
                )
            ]
            n_boxes += len(dets)
            values[sample_id] = fo.Detections(detections=dets)
        store.set_values_by_id(root_dataset(collection), field, values)
        if progress:
            progress(len(chunk_ids))
    return ProposeResult(n_samples=len(ids), n_boxes=n_boxes, field=field)


def check_weights(weights: str | Path) -> Path:
    """The weights path, or an :class:`InputError` naming it when the file is missing."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise InputError(f"Detector weights file {path} does not exist; train with `curation detector train` first.")
    return path


def xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    """Relative [x1, y1, x2, y2] to FiftyOne's relative [x, y, w, h], clipped to the image.

    Example:
        >>> xyxy_to_xywh([0.1, 0.2, 0.5, 1.2])
        [0.1, 0.2, 0.4, 0.8]
    """
    x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) for v in box)
    return [x1, y1, round(max(x2 - x1, 0.0), 12), round(max(y2 - y1, 0.0), 12)]
