"""SAM-assisted boxes: turn rough prompts into tight boxes with instance masks.

Prompts come from what the platform already has about an image:

- ``proposals``: detector boxes in ``primitive_proposals`` (see :mod:`curation.label.detector`);
- ``stage1_views``: the top Stage-1 evidence views (``stage1_views`` boxes with attribute ``p``);
- ``boxes``: existing ``primitives`` boxes, to refine them;
- ``points``: clicked points in a ``Keypoints`` field (``sam_points``; one keypoint = one object);
- ``text``: concept prompts ("traffic cone", ...) for SAM 3.

Each image is encoded once and every prompt reuses the embedding. Results go to ``sam_primitives``:
Detections with the unified class, an instance mask cropped to the box (FiftyOne's convention), the
SAM score as ``confidence`` and the prompt that produced it. A person accepts them into
``primitives``; nothing here writes ground truth.

The geometry helpers (:func:`mask_to_box`, :func:`rel_to_xyxy`, :func:`xyxy_to_rel`,
:func:`crop_mask`) are pure and tested on hand-made masks.

Example:
    >>> import numpy as np
    >>> from curation.label.sam import mask_to_box
    >>> m = np.zeros((4, 8), bool); m[1:3, 2:6] = True
    >>> mask_to_box(m)
    [0.25, 0.25, 0.5, 0.5]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curation import schema, store
from curation.errors import ConfigError, InputError, suggest
from curation.typed_config import from_mapping, read_yaml_mapping

if TYPE_CHECKING:
    import fiftyone.core.collections as foc

    from curation.label.sam_backends import SamBackend

OUT_FIELD = "sam_primitives"
POINTS_FIELD = "sam_points"
PROMPT_SOURCES = ("proposals", "stage1_views", "boxes", "points", "text")
BACKENDS = ("segment_anything", "transformers", "sam3")

DEFAULT_CONCEPTS: dict[str, str] = {
    "traffic cone": "cone",
    "construction barrier": "barrier",
    "roadwork sign": "ttc_sign",
    "worker vest": "worker",
    "excavator": "work_vehicle",
}
"""SAM 3 text prompts (the seeds' concepts) and the unified class each one labels."""

Progress = Callable[[int], None]


# Geometry (pure) --------------------------------------------------------------------------------
def mask_box_pixels(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight pixel box of a boolean mask [H, W] as (x0, y0, x1, y1) with exclusive ends; None if empty."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W]; got shape {mask.shape}.")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mask_to_box(mask: np.ndarray) -> list[float] | None:
    """Relative [x, y, w, h] of the pixels a mask covers (pixel edges, not centers); None if empty.

    A mask covering columns 2..5 of an 8-wide image spans the pixel edges 2 to 6, so x = 2/8 and
    w = 4/8: converting back with :func:`rel_to_xyxy` and cropping gives the same pixels.
    """
    box = mask_box_pixels(mask)
    if box is None:
        return None
    h, w = mask.shape
    x0, y0, x1, y1 = box
    return [x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h]


def rel_to_xyxy(box: Sequence[float], width: int, height: int) -> np.ndarray:
    """FiftyOne relative [x, y, w, h] -> pixel [x0, y0, x1, y1] (float), clipped to the image."""
    x, y, w, h = (float(v) for v in box)
    xyxy = np.array([x * width, y * height, (x + w) * width, (y + h) * height], dtype=np.float64)
    return np.clip(xyxy, 0, [width, height, width, height])


def xyxy_to_rel(xyxy: Sequence[float], width: int, height: int) -> list[float]:
    """Pixel [x0, y0, x1, y1] -> relative [x, y, w, h], clipped to the image."""
    x0, y0, x1, y1 = np.clip(np.asarray(xyxy, dtype=np.float64), 0, [width, height, width, height])
    return [x0 / width, y0 / height, max(x1 - x0, 0.0) / width, max(y1 - y0, 0.0) / height]


def crop_mask(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The part of a full-image mask inside a pixel box: FiftyOne stores a detection's mask that way."""
    x0, y0, x1, y1 = box
    return np.ascontiguousarray(np.asarray(mask, dtype=bool)[y0:y1, x0:x1])


# Config -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamBoxesConfig:
    """Which SAM, which prompts, and where the results go.

    Attributes:
        backend: ``segment_anything`` (local checkpoint), ``transformers`` (SamModel) or ``sam3`` (text).
        checkpoint: local ``sam_vit_*.pth`` for ``segment_anything``.
        model_type: ``vit_b``, ``vit_l`` or ``vit_h`` for ``segment_anything``.
        model: hub id or local folder for ``transformers`` / ``sam3``.
        device: ``cpu`` or ``cuda``.
        prompts: prompt sources to use, from ``proposals``, ``stage1_views``, ``boxes``, ``points``, ``text``.
        proposals_field: detector proposals (Detections).
        min_proposal_confidence: proposals below this are not prompted.
        boxes_field: existing boxes to refine.
        stage1_field: Stage-1 evidence views (Detections with attribute ``p``).
        top_views: how many of the highest-``p`` views prompt SAM.
        min_view_p: views below this probability are not prompted.
        view_label: class given to masks prompted by an evidence view (the view has no class).
        points_field: Keypoints field with clicked points (label = class; relative xy).
        text_concepts: SAM 3 text prompt -> unified class; only concepts whose class is in ``classes`` run.
        text_threshold: SAM 3 instance score threshold.
        classes: unified classes this run may write.
        out_field: where results go (never ``primitives``).
        min_score: masks scored below this are dropped.
    """

    backend: str = "segment_anything"
    checkpoint: Path | None = None
    model_type: str = "vit_h"
    model: str | None = None
    device: str = "cpu"
    prompts: tuple[str, ...] = ("proposals", "stage1_views", "boxes", "points")
    proposals_field: str = "primitive_proposals"
    min_proposal_confidence: float = 0.25
    boxes_field: str = "primitives"
    stage1_field: str = "stage1_views"
    top_views: int = 2
    min_view_p: float = 0.5
    view_label: str = "other_roadwork"
    points_field: str = POINTS_FIELD
    text_concepts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CONCEPTS))
    text_threshold: float = 0.3
    classes: tuple[str, ...] = schema.PRIMITIVE_CLASSES
    out_field: str = OUT_FIELD
    min_score: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "text_concepts", dict(self.text_concepts))
        if self.backend not in BACKENDS:
            raise ConfigError(f"Unknown `backend` {self.backend!r}.{suggest(self.backend, BACKENDS)} Allowed: {', '.join(BACKENDS)}.")
        for name in self.prompts:
            if name not in PROMPT_SOURCES:
                raise ConfigError(
                    f"Unknown prompt source `{name}`.{suggest(name, PROMPT_SOURCES)} Allowed: {', '.join(PROMPT_SOURCES)}."
                )
        if not self.prompts:
            raise ConfigError(f"`prompts` must name at least one of {', '.join(PROMPT_SOURCES)}.")
        geometric = [p for p in self.prompts if p != "text"]
        if self.backend == "sam3" and geometric:
            raise ConfigError(
                f"Backend `sam3` takes text prompts only; got {geometric}. Use `prompts: [text]`, or backend "
                "`segment_anything` / `transformers` for box and point prompts."
            )
        if self.backend != "sam3" and "text" in self.prompts:
            raise ConfigError(f"Text prompts need backend `sam3`; got backend `{self.backend}`.")
        for name in [*self.classes, *self.text_concepts.values(), self.view_label]:
            if name not in schema.PRIMITIVE_CLASSES:
                raise ConfigError(
                    f"Unknown class `{name}`.{suggest(name, schema.PRIMITIVE_CLASSES)} "
                    f"Allowed: {', '.join(schema.PRIMITIVE_CLASSES)}."
                )
        if self.out_field == "primitives":
            raise ConfigError("`out_field` must not be `primitives`: SAM boxes are accepted by a person, never written.")
        if self.top_views < 0:
            raise ConfigError(f"The 'top_views' parameter must be an int in the range [0, inf). Got {self.top_views} instead.")
        for name in ("min_proposal_confidence", "min_view_p", "text_threshold", "min_score"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise ConfigError(f"The '{name}' parameter must be a float in the range [-1, 1]. Got {value} instead.")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> SamBoxesConfig:
        """Read a SAM config (``models/sam/*.yaml``); keyword overrides (not None) win over the file."""
        values = read_yaml_mapping(path, what="SAM config")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return from_mapping(cls, values, source=str(path))

    @property
    def concepts(self) -> dict[str, str]:
        """Text concepts whose class this run may write."""
        return {text: cls for text, cls in self.text_concepts.items() if cls in self.classes}


# Prompts (pure) ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    """One object to segment: a pixel box, points, or a text concept, with the class it will get."""

    label: str
    origin: str  # one of PROMPT_SOURCES
    box: tuple[float, float, float, float] | None = None  # pixel xyxy
    points: tuple[tuple[float, float], ...] | None = None  # pixel xy
    point_labels: tuple[int, ...] | None = None  # 1 foreground, 0 background
    text: str | None = None


def _detections(value: Any) -> list[Any]:
    return list(getattr(value, "detections", None) or [])


def collect_prompts(fields: Mapping[str, Any], config: SamBoxesConfig, width: int, height: int) -> list[Prompt]:
    """Prompts for one sample from its label fields (a sample or a plain ``{field: label}`` mapping)."""
    prompts: list[Prompt] = []
    wanted = set(config.prompts)

    def box_prompts(dets: list[Any], origin: str, label: str | None = None) -> None:
        for det in dets:
            cls = label or det.label
            if cls not in config.classes or det.bounding_box is None:
                continue
            xyxy = rel_to_xyxy(det.bounding_box, width, height)
            if xyxy[2] - xyxy[0] >= 1 and xyxy[3] - xyxy[1] >= 1:
                prompts.append(Prompt(label=cls, origin=origin, box=tuple(float(v) for v in xyxy)))

    if "proposals" in wanted:
        dets = _detections(fields.get(config.proposals_field))
        box_prompts([d for d in dets if (d.confidence or 0.0) >= config.min_proposal_confidence], "proposals")
    if "boxes" in wanted:
        box_prompts(_detections(fields.get(config.boxes_field)), "boxes")
    if "stage1_views" in wanted and config.top_views:
        views = [d for d in _detections(fields.get(config.stage1_field)) if _view_p(d) >= config.min_view_p]
        views.sort(key=_view_p, reverse=True)
        box_prompts(views[: config.top_views], "stage1_views", label=config.view_label)
    if "points" in wanted:
        keypoints = getattr(fields.get(config.points_field), "keypoints", None) or []
        for kp in keypoints:
            pts = [(float(x) * width, float(y) * height) for x, y in (kp.points or []) if x == x and y == y]
            if not pts or kp.label not in config.classes:
                continue
            labels = kp["point_labels"] if kp.has_field("point_labels") and kp["point_labels"] else [1] * len(pts)
            prompts.append(
                Prompt(label=kp.label, origin="points", points=tuple(pts), point_labels=tuple(int(v) for v in labels))
            )
    if "text" in wanted:
        prompts.extend(Prompt(label=cls, origin="text", text=text) for text, cls in config.concepts.items())
    return prompts


def _view_p(det: Any) -> float:
    value = det["p"] if det.has_field("p") else det.confidence
    return float(value) if value is not None else 0.0


# Running ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamBoxesResult:
    """What a run did: samples encoded, masks written, prompts whose mask came back empty."""

    n_samples: int
    n_masks: int
    n_empty: int
    field: str


def load_image(sample_id: str, filepath: str | None) -> np.ndarray:
    """RGB uint8 [H, W, 3]; an :class:`InputError` naming the sample when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    if not filepath or not Path(filepath).is_file():
        raise InputError(f"Sample {sample_id}: image {filepath!r} does not exist; cannot run SAM on it.")
    try:
        with Image.open(filepath) as im:
            return np.array(im.convert("RGB"))  # a writable copy (torch warns on read-only arrays)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"Sample {sample_id}: image {filepath} cannot be decoded ({e}).") from None


def segment_prompts(backend: SamBackend, image: np.ndarray, prompts: Sequence[Prompt], config: SamBoxesConfig) -> tuple[list[Any], int]:
    """Encode ``image`` once, answer every prompt, and return (FiftyOne Detections list, n_empty)."""
    import fiftyone as fo

    height, width = image.shape[:2]
    backend.set_image(image)
    results: list[tuple[Prompt, np.ndarray, float]] = []
    boxed = [p for p in prompts if p.box is not None]
    if boxed:
        masks, scores = backend.predict_boxes(np.array([p.box for p in boxed], dtype=np.float32))
        results.extend(zip(boxed, masks, scores.tolist()))
    for p in prompts:
        if p.points is not None:
            mask, score = backend.predict_points(np.array(p.points, np.float32), np.array(p.point_labels, np.int64))
            results.append((p, mask, float(score)))
        elif p.text is not None:
            masks, scores = backend.predict_text(p.text, config.text_threshold)
            results.extend((p, m, float(s)) for m, s in zip(masks, scores))

    detections, n_empty = [], 0
    for prompt, mask, score in results:
        if score < config.min_score:
            continue
        pixel_box = mask_box_pixels(mask)
        if pixel_box is None:
            n_empty += 1
            continue
        attrs: dict[str, Any] = {"prompt": prompt.origin}
        if prompt.box is not None:
            attrs["prompt_box"] = xyxy_to_rel(prompt.box, width, height)
        if prompt.text is not None:
            attrs["prompt_text"] = prompt.text
        detections.append(
            fo.Detection(
                label=prompt.label,
                bounding_box=xyxy_to_rel(pixel_box, width, height),
                mask=crop_mask(mask, pixel_box),
                confidence=float(score),
                **attrs,
            )
        )
    return detections, n_empty


def sam_boxes(
    collection: foc.SampleCollection,
    config: SamBoxesConfig | None = None,
    *,
    backend: SamBackend | None = None,
    extra_prompts: Mapping[str, Sequence[Prompt]] | None = None,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> SamBoxesResult:
    """Segment every prompt of every sample and write ``config.out_field`` in bulk.

    Samples without a prompt are skipped (with text prompts every sample has some). Existing values
    of ``out_field`` on the processed samples are replaced; others are left alone.

    Args:
        collection: the samples (an operator passes ``ctx.target_view()``).
        config: which backend and prompts; defaults to :class:`SamBoxesConfig()`.
        backend: an already built backend (tests, or one model reused across calls); built from
            ``config`` when None.
        extra_prompts: ``{sample_id: [Prompt, ...]}`` added to the sample's own prompts (clicks from
            the App that were not saved to a field).
        batch_size: samples per database write.
        progress: called with the number of samples finished after each batch.

    Example:
        >>> # cfg = SamBoxesConfig(checkpoint="sam_vit_h.pth", prompts=("proposals",))
        >>> # sam_boxes(dataset.exists("primitive_proposals"), cfg)
    """
    import fiftyone as fo

    from curation.label.detector import root_dataset

    config = config or SamBoxesConfig()
    extra_prompts = extra_prompts or {}
    prompt_fields = [config.proposals_field, config.boxes_field, config.stage1_field, config.points_field]
    present = collection.get_field_schema()
    view = collection.select_fields([f for f in prompt_fields if f in present])

    if backend is None:
        from curation.label.sam_backends import load_backend

        backend = load_backend(
            config.backend, checkpoint=config.checkpoint, model_type=config.model_type, model=config.model, device=config.device
        )

    dataset = root_dataset(collection)
    pending: dict[str, Any] = {}
    n_seen = n_samples = n_masks = n_empty = 0

    def flush() -> None:
        nonlocal pending, n_seen
        store.set_values_by_id(dataset, config.out_field, pending)
        if progress and n_seen:
            progress(n_seen)
        pending, n_seen = {}, 0

    for sample in view.iter_samples(progress=False):
        n_seen += 1
        fields = {name: sample[name] for name in prompt_fields if name in present}
        extra = list(extra_prompts.get(sample.id, ()))
        meta = sample.metadata
        image = None
        if meta is None or not meta.width or not meta.height:
            image = load_image(sample.id, sample.filepath)
            height, width = image.shape[:2]
        else:
            width, height = int(meta.width), int(meta.height)
        prompts = collect_prompts(fields, config, width, height)
        if not prompts and not extra:
            continue
        if image is None:
            image = load_image(sample.id, sample.filepath)
            if image.shape[:2] != (height, width):  # stale metadata: trust the pixels
                prompts = collect_prompts(fields, config, image.shape[1], image.shape[0])
        try:
            detections, empty = segment_prompts(backend, image, prompts + extra, config)
        except (RuntimeError, ValueError) as e:
            raise InputError(f"Sample {sample.id} ({sample.filepath}): SAM failed: {e}") from e
        pending[sample.id] = fo.Detections(detections=detections)
        n_samples += 1
        n_masks += len(detections)
        n_empty += empty
        if len(pending) >= batch_size:
            flush()
    flush()
    return SamBoxesResult(n_samples=n_samples, n_masks=n_masks, n_empty=n_empty, field=config.out_field)
