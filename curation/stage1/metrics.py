"""Binary metrics and the StreetVision reward estimate, as pure functions on arrays.

Labels are 1 = roadwork, 0 = no roadwork. Degenerate inputs are handled explicitly, never by a
warning: MCC with a zero denominator is 0.0 (as scikit-learn and the validators do), precision
with no predicted positives and recall with no positives are 0.0, AUROC with one class is NaN,
and empty input raises :class:`~curation.errors.InputError` (there is nothing to measure).

Example:
    >>> import numpy as np
    >>> from curation.stage1.metrics import mcc, streetvision_reward
    >>> mcc(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    0.5773502691896258
    >>> streetvision_reward(mcc=1.0, accuracy=1.0)
    1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from curation.errors import InputError
from curation.schema import SLICES


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


@dataclass(frozen=True)
class BinaryMetrics:
    """Everything a model comparison reports at one threshold."""

    n: int
    threshold: float
    mcc: float
    accuracy: float
    precision: float
    recall: float
    auroc: float
    reward: float


def binary_arrays(y_true, y_pred=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate 0/1 labels (and an optional same-length array) and return them flat."""
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    if y.size == 0:
        raise InputError("No samples: metrics need at least one label.")
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"Labels must be 0 or 1; got values {sorted(set(y.tolist()))[:5]}.")
    if y_pred is None:
        return y, None
    p = np.asarray(y_pred).reshape(-1)
    if p.shape != y.shape:
        raise InputError(f"`y_true` and `y_pred` differ in length: {y.shape[0]} vs {p.shape[0]}.")
    return y, p


def confusion(y_true, y_pred) -> Confusion:
    """Counts of a binary confusion matrix; ``y_pred`` holds 0/1 decisions."""
    y, p = binary_arrays(y_true, y_pred)
    p = p.astype(np.int64)
    return Confusion(
        tp=int(((y == 1) & (p == 1)).sum()),
        fp=int(((y == 0) & (p == 1)).sum()),
        tn=int(((y == 0) & (p == 0)).sum()),
        fn=int(((y == 1) & (p == 0)).sum()),
    )


def mcc_from_counts(c: Confusion) -> float:
    """Matthews correlation from counts; 0.0 when any marginal is empty."""
    denominator = (c.tp + c.fp) * (c.tp + c.fn) * (c.tn + c.fp) * (c.tn + c.fn)
    if denominator == 0:
        return 0.0
    return float((c.tp * c.tn - c.fp * c.fn) / math.sqrt(denominator))


def mcc(y_true, y_pred) -> float:
    return mcc_from_counts(confusion(y_true, y_pred))


def accuracy(y_true, y_pred) -> float:
    c = confusion(y_true, y_pred)
    return (c.tp + c.tn) / c.n


def precision(y_true, y_pred) -> float:
    c = confusion(y_true, y_pred)
    return c.tp / (c.tp + c.fp) if c.tp + c.fp else 0.0


def recall(y_true, y_pred) -> float:
    c = confusion(y_true, y_pred)
    return c.tp / (c.tp + c.fn) if c.tp + c.fn else 0.0


def auroc(y_true, scores) -> float:
    """Area under the ROC curve (scikit-learn); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, s = binary_arrays(y_true, scores)
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, s.astype(np.float64)))


def streetvision_reward(*, mcc: float, accuracy: float) -> float:
    """The validators' reward: (0.5·max(0, MCC) + 0.5·accuracy)³."""
    return float((0.5 * max(0.0, mcc) + 0.5 * accuracy) ** 3)


def rebalanced_indices(y_true, *, seed: int, per_class: int | None = None) -> np.ndarray:
    """Indices of a 50/50 resample: ``per_class`` draws with replacement from each class.

    Validators query 50/50 labels while NATIX train is ~80% positive, so the reward is estimated
    on a rebalanced resample. ``per_class`` defaults to the larger class size, so no sample of the
    majority class is systematically dropped.
    """
    y, _ = binary_arrays(y_true)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if not len(positives) or not len(negatives):
        raise InputError("A 50/50 resample needs both classes; got only one.")
    per_class = per_class or max(len(positives), len(negatives))
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(positives, per_class), rng.choice(negatives, per_class)])


def reward_estimate(y_true, y_pred, *, seed: int = 0, per_class: int | None = None) -> float:
    """StreetVision reward on a seeded 50/50 resample; NaN when one class is missing."""
    y, p = binary_arrays(y_true, y_pred)
    if y.min() == y.max():
        return float("nan")
    idx = rebalanced_indices(y, seed=seed, per_class=per_class)
    c = confusion(y[idx], p[idx])
    return streetvision_reward(mcc=mcc_from_counts(c), accuracy=(c.tp + c.tn) / c.n)


def evaluate(y_true, scores, *, threshold: float = 0.5, seed: int = 0) -> BinaryMetrics:
    """All metrics for probabilities ``scores`` decided at ``score ≥ threshold``.

    Example:
        >>> evaluate(np.array([1, 0, 1, 0]), np.array([0.9, 0.2, 0.4, 0.1]), threshold=0.5).recall
        0.5
    """
    y, s = binary_arrays(y_true, scores)
    decided = (s.astype(np.float64) >= threshold).astype(np.int64)
    c = confusion(y, decided)
    return BinaryMetrics(
        n=c.n,
        threshold=float(threshold),
        mcc=mcc_from_counts(c),
        accuracy=(c.tp + c.tn) / c.n,
        precision=c.tp / (c.tp + c.fp) if c.tp + c.fp else 0.0,
        recall=c.tp / (c.tp + c.fn) if c.tp + c.fn else 0.0,
        auroc=auroc(y, s),
        reward=reward_estimate(y, decided, seed=seed),
    )


# Per-slice tables: the one table evaluation, promotion and reports read ----------------------


@dataclass(frozen=True)
class SliceMetrics:
    """Metrics on one slice; ``n == 0`` slices carry None, never a metric of 0."""

    name: str
    n: int
    positives: int | None = None
    mcc: float | None = None
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    auroc: float | None = None
    reward: float | None = None
    fpr: float | None = None  # the rate hard negatives are meant to move (orange_distractor holds only negatives)


def slice_metrics(name: str, y_true: np.ndarray, y_pred: np.ndarray, p: np.ndarray, *, seed: int = 0) -> SliceMetrics:
    """Pure: metrics for one slice of 0/1 labels, 0/1 decisions and probabilities."""
    if len(y_true) == 0:
        return SliceMetrics(name=name, n=0)
    area = auroc(y_true, p)
    reward = reward_estimate(y_true, y_pred, seed=seed)
    y, d = binary_arrays(y_true, y_pred)
    negatives = int((y == 0).sum())
    return SliceMetrics(
        name=name,
        n=int(len(y)),
        positives=int(y.sum()),
        mcc=mcc(y, d),
        accuracy=accuracy(y, d),
        precision=precision(y, d),
        recall=recall(y, d),
        auroc=None if np.isnan(area) else area,
        reward=None if np.isnan(reward) else reward,
        fpr=float(((d == 1) & (y == 0)).sum() / negatives) if negatives else None,
    )


def slice_table(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    p: np.ndarray,
    sample_slices: list[list[str]],
    *,
    slice_names: tuple[str, ...] = SLICES,
    seed: int = 0,
) -> tuple[SliceMetrics, tuple[SliceMetrics, ...]]:
    """Pure: overall metrics and one row per slice (membership from each sample's slice list)."""
    overall = slice_metrics("overall", y_true, y_pred, p, seed=seed)
    rows = []
    for name in slice_names:
        mask = np.array([name in (s or ()) for s in sample_slices], dtype=bool)
        rows.append(slice_metrics(name, y_true[mask], y_pred[mask], p[mask], seed=seed) if mask.size else SliceMetrics(name, 0))
    return overall, tuple(rows)
