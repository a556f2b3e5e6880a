"""Decision threshold, temperature scaling and calibration diagnostics (pure; plotting separate).

Decisions are ``score ≥ threshold``. Thresholds are chosen among the observed scores, so a sweep
is exact (no grid resolution) and O(n log n). Validators round the miner's output at 0.5, so an
exported model adds :func:`threshold_logit_offset` to its logit to move the chosen threshold there.

Example:
    >>> import numpy as np
    >>> from curation.stage1.calibrate import threshold_for_max_mcc
    >>> threshold_for_max_mcc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])).threshold
    0.8
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from curation.errors import ConfigError, InputError
from curation.stage1.metrics import binary_arrays


@dataclass(frozen=True)
class ThresholdChoice:
    """A chosen threshold and the validation numbers it was chosen on."""

    threshold: float
    mcc: float
    recall: float
    precision: float


@dataclass(frozen=True)
class ReliabilityData:
    """Equal-width bins of predicted p_roadwork: what a reliability diagram draws.

    ``mean_predicted`` and ``fraction_positive`` are NaN for empty bins.
    """

    bin_edges: np.ndarray  # [B+1]
    mean_predicted: np.ndarray  # [B]
    fraction_positive: np.ndarray  # [B]
    counts: np.ndarray  # [B]
    ece: float


def _sweep(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each unique score t (descending): threshold, tp, fp, tn, fn of ``score ≥ t``."""
    y, s = binary_arrays(y_true, scores)
    s = s.astype(np.float64)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp_cum, fp_cum = np.cumsum(y), np.cumsum(1 - y)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tie group
    tp, fp = tp_cum[last], fp_cum[last]
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    return s[last], tp, fp, negatives - fp, positives - tp


def _choice(thresholds, tp, fp, tn, fn, i: int) -> ThresholdChoice:
    denominator = math.sqrt(float((tp[i] + fp[i]) * (tp[i] + fn[i]) * (tn[i] + fp[i]) * (tn[i] + fn[i])))
    mcc = float((tp[i] * tn[i] - fp[i] * fn[i]) / denominator) if denominator else 0.0
    return ThresholdChoice(
        threshold=float(thresholds[i]),
        mcc=mcc,
        recall=float(tp[i] / (tp[i] + fn[i])) if tp[i] + fn[i] else 0.0,
        precision=float(tp[i] / (tp[i] + fp[i])) if tp[i] + fp[i] else 0.0,
    )


def threshold_for_max_mcc(y_true, scores) -> ThresholdChoice:
    """The observed score that maximises MCC of ``score ≥ t``; ties go to the highest threshold."""
    thresholds, tp, fp, tn, fn = _sweep(y_true, scores)
    numerator = tp * tn - fp * fn
    denominator = np.sqrt(((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).astype(np.float64))
    mccs = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)
    return _choice(thresholds, tp, fp, tn, fn, int(np.argmax(mccs)))  # argmax: first = highest t


def threshold_for_recall(y_true, scores, *, target: float) -> ThresholdChoice:
    """Recall mode: the highest threshold whose recall is ≥ ``target``.

    Raises:
        InputError: no positives to measure recall on.
    """
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"`target` recall must be in (0, 1]; got {target}.")
    thresholds, tp, fp, tn, fn = _sweep(y_true, scores)
    if tp[-1] + fn[-1] == 0:
        raise InputError("Recall mode needs at least one positive (roadwork) label.")
    recalls = tp / (tp + fn)
    i = int(np.flatnonzero(recalls >= target - 1e-12)[0])  # recall only grows as t decreases
    return _choice(thresholds, tp, fp, tn, fn, i)


def fit_temperature(logits, labels, *, max_iter: int = 100, max_temperature: float = 20.0) -> float:
    """Temperature T minimising the NLL of sigmoid(logit / T) (Guo et al. 2017), 0 < T ≤ ``max_temperature``.

    Optimised over log T with L-BFGS in float64, so it is exact to ~1e-6 and cannot go negative.
    Temperature changes confidence, never the ranking, so AUROC is unchanged. On scores that carry
    almost no information the NLL keeps falling as T grows (every p → 0.5): a weak demo model got
    T ≈ 2·10⁵, which squeezes all probabilities into 0.5 ± 10⁻⁶, where the threshold and the
    exported output hang on float rounding. The NLL is convex in 1/T, so capping T at
    ``max_temperature`` gives the constrained optimum.
    """
    if not max_temperature > 0:
        raise ConfigError(f"`max_temperature` must be > 0; got {max_temperature}.")
    y, z = binary_arrays(labels, logits)
    z_t = torch.as_tensor(z, dtype=torch.float64)
    y_t = torch.as_tensor(y, dtype=torch.float64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z_t / log_t.exp(), y_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(min(log_t.detach().exp(), max_temperature))


def expected_calibration_error(y_true, probs, *, n_bins: int = 15) -> float:
    """ECE of p_roadwork: Σ_b (n_b / n)·|fraction positive_b − mean p_b| over equal-width bins."""
    return reliability_diagram(y_true, probs, n_bins=n_bins).ece


def reliability_diagram(y_true, probs, *, n_bins: int = 15) -> ReliabilityData:
    """Bin p_roadwork into ``n_bins`` equal-width bins (right-closed; 0 falls in the first bin)."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(f"The 'n_bins' parameter must be an int in the range [1, inf). Got {n_bins!r} instead.")
    y, p = binary_arrays(y_true, probs)
    p = p.astype(np.float64)
    if (p < 0).any() or (p > 1).any():
        raise InputError("`probs` must lie in [0, 1]; pass probabilities, not logits.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, n_bins - 1)  # [n]
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(bins, weights=p, minlength=n_bins) / counts
        frac = np.bincount(bins, weights=y, minlength=n_bins) / counts
    filled = counts > 0
    ece = float((counts[filled] / len(p) * np.abs(frac[filled] - mean_p[filled])).sum())
    return ReliabilityData(bin_edges=edges, mean_predicted=mean_p, fraction_positive=frac, counts=counts, ece=ece)


def plot_reliability(data: ReliabilityData, path: str | Path, *, title: str = "Stage-1 reliability") -> Path:
    """Write a reliability diagram PNG (bars: fraction positive per bin; dashed: perfect)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    centers = (data.bin_edges[:-1] + data.bin_edges[1:]) / 2
    width = data.bin_edges[1] - data.bin_edges[0]
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    try:
        ax.bar(centers, np.nan_to_num(data.fraction_positive), width=width * 0.9, label="fraction roadwork")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfectly calibrated")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted p_roadwork", ylabel="observed fraction")
        ax.set_title(f"{title} (ECE {data.ece:.3f})")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def threshold_logit_offset(threshold: float) -> float:
    """−logit(threshold): add to a logit so ``p ≥ threshold`` becomes ``p ≥ 0.5`` (validators round)."""
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"`threshold` must be in (0, 1); got {threshold}.")
    return float(-math.log(threshold / (1.0 - threshold)))
