"""Champion vs challenger: the promotion rule and the numbers it reads (pure, no FiftyOne).

A challenger is promoted only when it is better on calib validator-view queries: its MCC gain is
beyond a paired-bootstrap interval, or it stays within tolerance while a targeted slice improves,
and no slice of a useful size regresses beyond the allowed margin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from curation.errors import ConfigError, suggest
from curation.schema import SLICES
from curation.stage1 import metrics


@dataclass(frozen=True)
class PromotionRule:
    """Promote only when the challenger is better on calib validator-view queries.

    Attributes:
        tolerance: MCC drop on calib still acceptable when a targeted slice improves.
        targeted_slices: slices the run tries to fix (a gain there can justify promotion).
        min_slice_n: slices smaller than this are reported but never block or justify.
        max_slice_regression: a slice (n ≥ min_slice_n) whose MCC drops more than this blocks.
        bootstrap: paired bootstrap resamples for the MCC-difference interval.
        confidence: two-sided confidence of that interval.
    """

    tolerance: float = 0.01
    targeted_slices: tuple[str, ...] = ("orange_distractor",)
    min_slice_n: int = 20
    max_slice_regression: float = 0.05
    bootstrap: int = 1000
    confidence: float = 0.9

    def __post_init__(self) -> None:
        for name in self.targeted_slices:
            if name not in SLICES:
                raise ConfigError(
                    f"`targeted_slices` names an unknown slice {name!r}.{suggest(str(name), SLICES)} "
                    f"Slices: {', '.join(SLICES)}."
                )


def paired_mcc_interval(y: np.ndarray, a: np.ndarray, b: np.ndarray, *, n: int, confidence: float, seed: int) -> tuple[float, float, float]:
    """MCC(a) − MCC(b) and its paired-bootstrap percentile interval (same resampled rows for both)."""
    rng = np.random.default_rng(seed)
    diff = metrics.mcc(y, a) - metrics.mcc(y, b)
    idx = rng.integers(0, len(y), size=(n, len(y)))
    diffs = np.array([metrics.mcc(y[i], a[i]) - metrics.mcc(y[i], b[i]) for i in idx])
    lo, hi = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(diff), float(lo), float(hi)


def slice_rows(
    y_true: np.ndarray, decided: np.ndarray, p: np.ndarray, slices: Sequence[Sequence[str]]
) -> dict[str, dict[str, float | int | None]]:
    """``{slice: row}`` for ``overall`` and every slice, rows of :func:`metrics.slice_table` (the
    table evaluation reports; n = 0 rows kept with None metrics)."""
    overall, rows = metrics.slice_table(y_true, decided, p, [list(s) for s in slices])
    return {m.name: asdict(m) for m in (overall, *rows)}


def slice_score(row: dict[str, Any]) -> tuple[str, float | None]:
    """The metric a slice is judged on: MCC where it holds both classes, accuracy where it holds one.

    ``orange_distractor`` holds only negatives by definition, where MCC is 0 whatever the model
    does; its accuracy is 1 − FPR, the number hard negatives are meant to move.
    """
    positives = row.get("positives")
    if positives is not None and row["n"] and positives in (0, row["n"]):
        return "accuracy", row["accuracy"]
    return "mcc", row["mcc"]


def decide_promotion(
    challenger: dict[str, dict[str, Any]], champion: dict[str, dict[str, Any]] | None, interval: tuple[float, float, float] | None, rule: PromotionRule
) -> tuple[bool, list[str]]:
    """Pure: the promotion rule on per-slice rows of calib (see :class:`PromotionRule`); slices are
    compared on :func:`slice_score`."""
    if champion is None:
        return True, ["no champion yet: the first trained model becomes champion"]
    diff, lo, hi = interval or (0.0, 0.0, 0.0)
    reasons = [f"calib MCC change {diff:+.3f} ({rule.confidence:.0%} interval [{lo:+.3f}, {hi:+.3f}])"]

    def change(name: str) -> str:
        metric, before = slice_score(champion[name])
        return f"{name} ({metric} {before:.3f} → {slice_score(challenger[name])[1]:.3f})"

    def comparable(name: str) -> bool:
        return challenger[name]["n"] >= rule.min_slice_n and slice_score(champion[name])[1] is not None

    regressions = [
        name for name in challenger
        if name != "overall" and comparable(name)
        and slice_score(challenger[name])[1] < slice_score(champion[name])[1] - rule.max_slice_regression
    ]
    if regressions:
        return False, reasons + [f"slice regression beyond {rule.max_slice_regression}: {', '.join(map(change, regressions))}"]
    if lo > 0:
        return True, reasons + ["MCC improves beyond its confidence interval"]
    improved = [
        name for name in rule.targeted_slices
        if comparable(name) and slice_score(challenger[name])[1] > slice_score(champion[name])[1]
    ]
    if diff >= -rule.tolerance and improved:
        return True, reasons + [f"MCC within tolerance {rule.tolerance} and targeted slice(s) improved: {', '.join(map(change, improved))}"]
    return False, reasons + ["no significant calib MCC gain and no targeted slice gain within tolerance"]
