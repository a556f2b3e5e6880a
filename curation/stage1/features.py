"""Gate features: how a Stage-1 decision was reached, summarised from the per-view probabilities.

The failure gate (:mod:`curation.stage1.gate`) predicts "Stage-1 is wrong here" from these numbers;
they are cheap, need no extra forward, and describe disagreement between views (one bright tile vs.
uniform evidence), distance from the decision threshold and, with flips on, left/right stability.

Columns, in :data:`FEATURE_NAMES` order:
    p                image probability (after temperature)
    max, topk_mean, mean   view-probability summaries
    var              population variance of view probabilities
    entropy          mean binary entropy of view probabilities, in nats (0 = every view certain)
    max_minus_mean   how much one view stands out
    top1_minus_top2  whether the top view has a runner-up
    margin           |p − threshold|; the signed version would only repeat ``p``
    flip_consistency 1 − mean |p_v − p_flip(v)| over view pairs (only with flips)

Example:
    >>> import numpy as np
    >>> from curation.stage1.features import gate_features
    >>> f = gate_features(np.array([[0.9, 0.1]]), np.array([0.5]), threshold=0.5, top_k=2)
    >>> round(float(f[0, 3]), 3)  # mean
    0.5
"""

from __future__ import annotations

import numpy as np

from curation.errors import InputError

FEATURE_NAMES: tuple[str, ...] = (
    "p",
    "max",
    "topk_mean",
    "mean",
    "var",
    "entropy",
    "max_minus_mean",
    "top1_minus_top2",
    "margin",
)
FLIP_FEATURE = "flip_consistency"

_EPS = 1e-12


def feature_names(flip: bool) -> tuple[str, ...]:
    """Column names for a view policy with or without flips."""
    return (*FEATURE_NAMES, FLIP_FEATURE) if flip else FEATURE_NAMES


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Elementwise −p·ln p − (1−p)·ln(1−p), with 0·ln 0 = 0."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def gate_features(
    view_probs: np.ndarray,
    p: np.ndarray,
    *,
    threshold: float,
    top_k: int = 2,
    flip: bool = False,
) -> np.ndarray:
    """Compute the gate feature matrix.

    Args:
        view_probs: per-view probabilities [N, V]; with ``flip`` the second half of the views are
            the flipped copies of the first half, in the same order.
        p: image probabilities [N].
        threshold: the decision threshold the label was taken at.
        top_k: K of the top-K mean (capped at V).
        flip: add ``flip_consistency``.

    Returns:
        float64 array [N, len(feature_names(flip))].
    """
    probs = np.asarray(view_probs, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if probs.ndim != 2 or probs.shape[1] < 1 or probs.shape[0] != p.shape[0]:
        raise InputError(f"`view_probs` must be [N, V≥1] with N = len(p) = {p.shape[0]}; got {probs.shape}.")
    if flip and probs.shape[1] % 2:
        raise InputError(f"With flips the number of views must be even; got {probs.shape[1]}.")
    ranked = -np.sort(-probs, axis=1)  # [N, V] descending
    k = max(1, min(top_k, probs.shape[1]))
    mean = probs.mean(axis=1)
    second = ranked[:, 1] if probs.shape[1] > 1 else ranked[:, 0]
    columns = [
        p,
        ranked[:, 0],
        ranked[:, :k].mean(axis=1),
        mean,
        probs.var(axis=1),
        binary_entropy(probs).mean(axis=1),
        ranked[:, 0] - mean,
        ranked[:, 0] - second,
        np.abs(p - threshold),
    ]
    if flip:
        half = probs.shape[1] // 2
        columns.append(1.0 - np.abs(probs[:, :half] - probs[:, half:]).mean(axis=1))
    return np.stack(columns, axis=1)  # [N, F]


def gate_feature_dict(row: np.ndarray, flip: bool) -> dict[str, float]:
    """One row of :func:`gate_features` as ``{name: value}`` (what the dataset stores)."""
    return {name: float(v) for name, v in zip(feature_names(flip), row, strict=True)}
