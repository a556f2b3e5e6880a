"""Selective risk control with Learn-then-Test (Angelopoulos et al. 2021, arXiv 2110.01052).

We accept stage-1's answer when ``failure_risk ≤ λ`` and defer the rest to a person. Picking λ
as "the largest with calib error ≤ α" fails about half the time on new data, because the calib
estimate is noisy. Learn-then-Test turns the choice into multiple testing: for each λ on a grid
fixed before looking at calib, test H0(λ): "error among accepted > α"; the λs whose H0 is
rejected with family-wise error ≤ δ are all safe at once, so we may take the one that accepts the
most. The guarantee: P(error among accepted at the chosen λ > α) ≤ δ over calib draws.

p-values: the loss is 0/1, so given the n(λ) accepted calib samples the number of errors is
exactly Binomial(n(λ), R(λ)); the exact binomial tail P(Bin(n, α) ≤ errors) is a valid p-value
for H0(λ) and is never looser than the Hoeffding-Bentkus bound LTT uses for general losses.

Family-wise control: fixed-sequence testing walks the grid from the most conservative λ
(smallest, accepts least) and stops at the first H0 it cannot reject. The smallest λs accept too
few calib samples for any rejection, so a walk started there stops at once. Two remedies, both
valid: start the grid where there is data (:func:`threshold_grid` on val risks, cut at
:func:`planned_start`, ``n_starts=1``: the most powerful), or walk from ``n_starts`` evenly spaced
grid points, each at level δ / n_starts (Bonferroni across starts; LTT's fixed sequence with
multiple starts), which the default log-spaced grid uses.

Example:
    >>> import numpy as np
    >>> from curation.stage1.risk import learn_then_test
    >>> rng = np.random.default_rng(0)
    >>> risk = rng.uniform(size=5000); correct = rng.uniform(size=5000) >= risk
    >>> result = learn_then_test(risk, correct, alpha=0.1, delta=0.1)
    >>> bool(0.1 < result.threshold <= 0.2), result.selective_risk <= 0.1
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from curation.errors import InputError
from curation.stage1.arrays import as_bool_array, as_float_array, check_fraction, check_int, check_same_length

DEFAULT_THRESHOLDS = np.r_[0.0, np.geomspace(1e-4, 1.0, 200)]
"""Acceptance thresholds on ``failure_risk``: log-spaced because a good gate puts most risks near 0."""

ACCEPT_POSITIVE = "accept_positive"
ACCEPT_NEGATIVE = "accept_negative"
UNSAFE_NEGATIVE = "unsafe_negative"
DEFER_POSITIVE = "defer_positive"


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class LTTResult:
    """The acceptance threshold Learn-then-Test certifies, and what it buys on calib.

    Attributes:
        threshold: accept ``failure_risk ≤ threshold``; None when no threshold could be certified
            (defer everything, or collect more calib data).
        coverage: fraction of calib samples accepted at ``threshold``.
        selective_risk: stage-1 error rate among those accepted calib samples (0 when none).
        n_accepted: accepted calib samples.
        n_errors: stage-1 errors among them.
        alpha: target error among accepted.
        delta: allowed probability that the target is missed.
        thresholds: the grid tested, ascending.
        p_values: binomial-tail p-value of H0 "error > alpha" per grid threshold.
        certified: grid thresholds whose H0 was rejected (all safe simultaneously).
    """

    threshold: float | None
    coverage: float
    selective_risk: float
    n_accepted: int
    n_errors: int
    alpha: float
    delta: float
    thresholds: np.ndarray
    p_values: np.ndarray
    certified: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary, saved with the model version."""
        return {
            "threshold": self.threshold,
            "coverage": self.coverage,
            "selective_risk": self.selective_risk,
            "n_accepted": self.n_accepted,
            "n_errors": self.n_errors,
            "alpha": self.alpha,
            "delta": self.delta,
            "thresholds": self.thresholds.tolist(),
            "p_values": self.p_values.tolist(),
            "certified": self.certified.tolist(),
        }


def binomial_p_values(n_accepted: ArrayLike, n_errors: ArrayLike, *, alpha: float) -> np.ndarray:
    """P(Binomial(n, alpha) ≤ errors): small when the error rate among accepted is below alpha.

    Vectorised over any shape; an empty acceptance set (n = 0) gets p = 1 (no evidence).
    """
    from scipy.stats import binom

    alpha = check_fraction(alpha, name="alpha")
    n = np.asarray(n_accepted)
    return np.where(n > 0, binom.cdf(np.asarray(n_errors), n, alpha), 1.0)


def fixed_sequence_test(p_values: ArrayLike, *, delta: float, n_starts: int = 1) -> np.ndarray:
    """Rejections of fixed-sequence testing with ``n_starts`` starts, FWER ≤ ``delta``.

    Args:
        p_values: [..., G] p-values ordered from the most conservative hypothesis; leading axes
            are independent problems (used to simulate many calib draws at once).
        delta: family-wise error level.
        n_starts: chains start at evenly spaced grid positions, each tested at delta / n_starts
            and walking forward until its first non-rejection.

    Returns:
        Bool array like ``p_values``: True where H0 is rejected (the threshold is certified).
    """
    delta = check_fraction(delta, name="delta")
    p = np.asarray(p_values, dtype=np.float64)
    size = p.shape[-1]
    n_starts = check_int(n_starts, name="n_starts", low=1, high=max(size, 1))
    passes = p <= delta / n_starts
    rejected = np.zeros_like(passes)
    for start in np.unique(np.linspace(0, size, n_starts, endpoint=False).astype(int)):
        rejected[..., start:] |= np.logical_and.accumulate(passes[..., start:], axis=-1)
    return rejected


def threshold_grid(reference_risk: ArrayLike, *, size: int = 100, min_coverage: float = 0.05) -> np.ndarray:
    """Quantiles of ``failure_risk`` on data disjoint from calib (val), from ``min_coverage`` up.

    Evenly spaced in coverage, and starting where a fixed-sequence walk has data to reject with.
    The grid must not depend on the calib data LTT tests on, or the guarantee is lost.
    """
    r = as_float_array(reference_risk, name="reference_risk")
    size = check_int(size, name="size", low=2)
    min_coverage = check_fraction(min_coverage, name="min_coverage", closed="left")
    if r.size == 0:
        raise InputError("The 'reference_risk' array must not be empty.")
    return np.unique(np.quantile(r, np.linspace(min_coverage, 1.0, size)))


def planned_start(
    thresholds: ArrayLike, reference_risk: ArrayLike, reference_correct: ArrayLike, *, n_calib: int, alpha: float
) -> int:
    """Grid index where the fixed-sequence walk should start, planned on data disjoint from calib.

    The walk stops at its first non-rejection, so a start that accepts too few calib samples
    wastes it: with 225 calib samples, 5 % coverage accepts ~11 and even zero errors leave
    p = 0.9 ** 11 = 0.31. Each grid point's accepted and wrong counts on the reference data
    (val, out-of-fold risks) are scaled to ``n_calib`` and the start is the point whose projected
    p-value is smallest: the one most likely to be rejected. Only smaller thresholds are skipped,
    and the largest certified one is what we take. Depending on val alone, the start is fixed
    before calib is seen, so the guarantee stands (LTT's "learn" step).

    Example:
        >>> planned_start([0.1, 0.2, 0.3], [0.05, 0.15, 0.15, 0.25], [True, True, True, False], n_calib=40, alpha=0.1)
        1
    """
    grid = np.unique(as_float_array(thresholds, name="thresholds"))
    r = as_float_array(reference_risk, name="reference_risk")
    wrong = ~as_bool_array(reference_correct, name="reference_correct")
    check_same_length(reference_risk=r, reference_correct=wrong)
    n_calib = check_int(n_calib, name="n_calib", low=1)
    if grid.size == 0 or r.size == 0:
        raise InputError("planned_start needs a non-empty grid and reference data.")
    order = np.argsort(r, kind="stable")
    n_accepted = np.searchsorted(r[order], grid, side="right")
    n_errors = np.r_[0, np.cumsum(wrong[order])][n_accepted]
    scale = n_calib / r.size
    projected = binomial_p_values(np.rint(n_accepted * scale), np.rint(n_errors * scale), alpha=alpha)
    return int(np.argmin(projected))


def learn_then_test(
    risk: ArrayLike,
    correct: ArrayLike,
    *,
    alpha: float,
    delta: float,
    thresholds: ArrayLike | None = None,
    n_starts: int = 3,
) -> LTTResult:
    """Largest acceptance threshold on ``failure_risk`` with P(error among accepted > alpha) ≤ delta.

    Args:
        risk: ``failure_risk`` of the calib samples (the gate must not have been fit on them).
        correct: ``stage1_correct`` of the calib samples.
        alpha: target error rate among accepted samples, in (0, 1).
        delta: allowed probability of missing the target, in (0, 1).
        thresholds: grid to test, fixed before seeing calib; defaults to
            :data:`DEFAULT_THRESHOLDS`. Tested from the smallest up. For the most coverage pass
            :func:`threshold_grid` of the val risks with ``n_starts=1``.
        n_starts: starts of the fixed-sequence walk (see the module docstring).
    """
    alpha = check_fraction(alpha, name="alpha")
    delta = check_fraction(delta, name="delta")
    n_starts = check_int(n_starts, name="n_starts", low=1)
    r = as_float_array(risk, name="risk")
    wrong = ~as_bool_array(correct, name="correct")
    check_same_length(risk=r, correct=wrong)
    grid = np.unique(as_float_array(DEFAULT_THRESHOLDS if thresholds is None else thresholds, name="thresholds"))
    if grid.size == 0:
        raise InputError("The 'thresholds' grid must not be empty.")

    order = np.argsort(r, kind="stable")
    errors_so_far = np.r_[0, np.cumsum(wrong[order])]
    n_accepted = np.searchsorted(r[order], grid, side="right")  # [G], accept risk ≤ λ
    n_errors = errors_so_far[n_accepted]
    p_values = binomial_p_values(n_accepted, n_errors, alpha=alpha)
    certified = fixed_sequence_test(p_values, delta=delta, n_starts=min(n_starts, grid.size))

    if certified.any():
        best = int(np.flatnonzero(certified)[-1])
        threshold, n_acc, n_err = float(grid[best]), int(n_accepted[best]), int(n_errors[best])
    else:
        threshold, n_acc, n_err = None, 0, 0
    return LTTResult(
        threshold=threshold,
        coverage=n_acc / r.size if r.size else 0.0,
        selective_risk=n_err / n_acc if n_acc else 0.0,
        n_accepted=n_acc,
        n_errors=n_err,
        alpha=alpha,
        delta=delta,
        thresholds=grid,
        p_values=p_values,
        certified=certified,
    )


def route(p: ArrayLike, risk: ArrayLike, *, threshold: float, risk_threshold: float | None) -> np.ndarray:
    """Decide per sample whether stage-1's answer is accepted or deferred to a person.

    The seeds' policy: a missed roadwork scene is the costly error, so a negative is accepted only
    when p is low (below the decision threshold) AND the gate's risk is low; every other negative is
    an "unsafe negative" and is deferred. A positive is accepted when its risk is low.

    Args:
        p: stage-1 roadwork probability; predicted positive iff ``p ≥ threshold``.
        risk: ``failure_risk``.
        threshold: stage-1 decision threshold.
        risk_threshold: accept ``risk ≤ risk_threshold`` (from :func:`learn_then_test`); None
            defers everything.

    Returns:
        String array of ``accept_positive``, ``accept_negative``, ``unsafe_negative``,
        ``defer_positive``.

    Example:
        >>> route([0.9, 0.9, 0.1, 0.1], [0.01, 0.5, 0.01, 0.5], threshold=0.5, risk_threshold=0.05).tolist()
        ['accept_positive', 'defer_positive', 'accept_negative', 'unsafe_negative']
    """
    prob = as_float_array(p, name="p")
    r = as_float_array(risk, name="risk")
    check_same_length(p=prob, risk=r)
    threshold = check_fraction(threshold, name="threshold", closed="both")
    low_risk = np.zeros(r.shape, dtype=bool) if risk_threshold is None else r <= float(risk_threshold)
    positive = prob >= threshold
    return np.where(
        positive,
        np.where(low_risk, ACCEPT_POSITIVE, DEFER_POSITIVE),
        np.where(low_risk, ACCEPT_NEGATIVE, UNSAFE_NEGATIVE),
    )
