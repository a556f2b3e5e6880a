"""Shortcut checks: does the label, or Stage-1's error, follow something that is not roadwork?

A dataset where positives come from one camera, one JPEG quality or one source teaches a model
that cue instead of cones (the spurious-correlation audit Cleanlab and others popularise). Each
image gets a few cheap cues (black-bar share, estimated JPEG quality, brightness, blur, size,
synthetic or not); :func:`shortcut_table` scores how well each cue separates the label and
Stage-1's mistakes, as an AUROC folded to [0.5, 1] (0.5: no signal) and a point-biserial
correlation. Pure numpy and PIL, no FiftyOne.

Example:
    >>> import numpy as np
    >>> rows = shortcut_table({"brightness": np.array([0.1, 0.2, 0.8, 0.9])}, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 0]))
    >>> rows[0].label_auroc, rows[0].flagged
    (1.0, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from curation.errors import InputError
from curation.stage1.metrics import auroc

CUES = ("black_bars", "jpeg_quality", "brightness", "blur", "megapixels", "synthetic")
FLAG_AUROC = 0.7
"""A cue that separates the label (or Stage-1's errors) this well on its own is worth a look."""

# libjpeg's luminance table at quality 50 (ITU T.81 Annex K): a file's table divided by this gives
# libjpeg's scale factor, from which the quality it was saved at follows.
_STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.float64)  # fmt: skip


def jpeg_quality(image: Image.Image) -> float:
    """The libjpeg quality a JPEG was saved at, from its luminance table; NaN for other formats.

    Tables are compared as multisets (their stored order is zig-zag, the standard's is raster), so
    the estimate is the median scale factor inverted through libjpeg's quality formula.
    """
    tables = getattr(image, "quantization", None)
    if not tables or 0 not in tables:
        return float("nan")
    luma = np.sort(np.asarray(tables[0], dtype=np.float64))
    scale = float(np.median(luma / np.sort(_STD_LUMA)) * 100.0)
    quality = 5000.0 / scale if scale > 100.0 else (200.0 - scale) / 2.0
    return float(np.clip(round(quality), 1, 100))


def black_bar_share(gray: np.ndarray, *, level: float = 8.0) -> float:
    """Share of the frame in black rows and columns at its edges (letterbox bars, rotation fill)."""
    h, w = gray.shape
    dark_rows = gray.max(axis=1) <= level
    dark_cols = gray.max(axis=0) <= level

    def edge_run(mask: np.ndarray) -> int:
        lead = int(np.argmin(mask)) if not mask.all() else mask.size
        trail = int(np.argmin(mask[::-1])) if not mask.all() else 0
        return lead + trail

    rows, cols = edge_run(dark_rows), edge_run(dark_cols)
    return float(1.0 - (h - rows) * (w - cols) / (h * w)) if rows < h and cols < w else 1.0


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low for a blurred or upsampled image."""
    g = gray.astype(np.float64)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var()) if lap.size else float("nan")


def image_cues(image: Image.Image, *, synthetic: bool) -> dict[str, float]:
    """The cues of one image (as stored, or as a contract renders it)."""
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    return {
        "black_bars": black_bar_share(gray),
        "jpeg_quality": jpeg_quality(image),
        "brightness": float(gray.mean() / 255.0),
        "blur": laplacian_variance(gray),
        "megapixels": image.width * image.height / 1e6,
        "synthetic": float(synthetic),
    }


@dataclass(frozen=True)
class ShortcutRow:
    """How one cue relates to the label and to Stage-1's errors.

    Attributes:
        cue: the cue's name.
        n: samples where the cue is defined (JPEG quality is NaN for PNGs).
        label_auroc, error_auroc: AUROC of the cue alone, folded to [0.5, 1]; None when the cue is
            constant or one class is missing.
        label_corr, error_corr: point-biserial correlation (signed), None as above.
        flagged: either AUROC reaches :data:`FLAG_AUROC`.
    """

    cue: str
    n: int
    label_auroc: float | None
    error_auroc: float | None
    label_corr: float | None
    error_corr: float | None
    flagged: bool


def _folded_auroc(x: np.ndarray, y: np.ndarray) -> float | None:
    if y.min() == y.max() or np.ptp(x) == 0:
        return None
    area = auroc(y, x)
    return float(max(area, 1.0 - area))


def _corr(x: np.ndarray, y: np.ndarray) -> float | None:
    if y.min() == y.max() or np.ptp(x) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def shortcut_table(cues: Mapping[str, np.ndarray], y_true: np.ndarray, wrong: np.ndarray) -> list[ShortcutRow]:
    """One row per cue: how well it alone predicts the label and Stage-1's mistakes."""
    y, err = np.asarray(y_true, dtype=int), np.asarray(wrong, dtype=int)
    if y.shape != err.shape:
        raise InputError(f"`y_true` and `wrong` differ in length: {y.size} vs {err.size}.")
    rows = []
    for name, values in cues.items():
        x = np.asarray(values, dtype=np.float64)
        if x.shape != y.shape:
            raise InputError(f"Cue `{name}` has {x.size} values for {y.size} samples.")
        ok = ~np.isnan(x)
        xs, ys, es = x[ok], y[ok], err[ok]
        label_auroc = _folded_auroc(xs, ys) if xs.size else None
        error_auroc = _folded_auroc(xs, es) if xs.size else None
        flagged = any(a is not None and a >= FLAG_AUROC for a in (label_auroc, error_auroc))
        rows.append(ShortcutRow(name, int(ok.sum()), label_auroc, error_auroc, _corr(xs, ys) if xs.size else None,
                                _corr(xs, es) if xs.size else None, flagged))  # fmt: skip
    return rows
