"""Learn-then-Test: p-values, fixed-sequence testing, the guarantee by simulation, and routing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import betainc

from curation.errors import InputError
from curation.stage1.risk import (
    DEFAULT_THRESHOLDS,
    binomial_p_values,
    fixed_sequence_test,
    learn_then_test,
    route,
    planned_start,
    threshold_grid,
)

ALPHA, DELTA = 0.1, 0.1


def test_binomial_p_values_by_hand():
    p = binomial_p_values([10, 10, 0, 30], [0, 1, 0, 0], alpha=0.1)
    np.testing.assert_allclose(p, [0.9**10, 0.9**10 + 10 * 0.1 * 0.9**9, 1.0, 0.9**30])


def test_fixed_sequence_stops_at_first_failure_and_restarts_at_each_start():
    p = [0.01, 0.5, 0.01, 0.02]
    np.testing.assert_array_equal(fixed_sequence_test(p, delta=0.05), [True, False, False, False])
    # two starts (positions 0 and 2), each at 0.025
    np.testing.assert_array_equal(fixed_sequence_test(p, delta=0.05, n_starts=2), [True, False, True, True])
    # one start per hypothesis is Bonferroni at 0.0125
    np.testing.assert_array_equal(fixed_sequence_test(p, delta=0.05, n_starts=4), [True, False, True, False])
    batched = fixed_sequence_test([p, [0.5, 0.01, 0.01, 0.01]], delta=0.05)
    np.testing.assert_array_equal(batched, [[True, False, False, False], [False, False, False, False]])


def test_learn_then_test_on_a_hand_made_calib_set():
    # 40 samples at risk 0.05 without a mistake, then 40 at 0.5 of which half are mistakes
    risk = np.r_[np.full(40, 0.05), np.full(40, 0.5)]
    correct = np.r_[np.ones(40, bool), np.arange(40) % 2 == 0]
    result = learn_then_test(risk, correct, alpha=ALPHA, delta=DELTA, thresholds=[0.05, 0.5], n_starts=1)
    assert result.p_values[0] == pytest.approx(0.9**40)  # 0 mistakes in 40: p = 0.0148 ≤ 0.1
    assert result.certified.tolist() == [True, False]  # 20 mistakes in 80 is far above 10 %
    assert (result.threshold, result.coverage, result.selective_risk) == (0.05, 0.5, 0.0)
    assert (result.n_accepted, result.n_errors) == (40, 0)
    saved = json.loads(json.dumps(result.to_dict()))
    assert saved["threshold"] == 0.05 and saved["certified"] == [True, False]


def test_nothing_certified_defers_everything():
    result = learn_then_test([0.1, 0.2], [True, False], alpha=ALPHA, delta=DELTA)
    assert result.threshold is None and result.coverage == 0.0 and not result.certified.any()
    assert set(route([0.9, 0.1], [0.0, 0.0], threshold=0.5, risk_threshold=result.threshold)) == {
        "defer_positive",
        "unsafe_negative",
    }


def test_parameters_are_validated_with_clear_messages():
    message = r"^The 'alpha' parameter must be a float in the range \(0, 1\). Got 1.5 instead.$"
    with pytest.raises(InputError, match=message):
        learn_then_test([0.1], [True], alpha=1.5, delta=0.1)
    with pytest.raises(InputError, match=r"The 'delta' parameter must be a float in the range \(0, 1\). Got 0 "):
        learn_then_test([0.1], [True], alpha=0.1, delta=0)
    with pytest.raises(InputError, match="The 'risk' array must be finite"):
        learn_then_test([np.nan], [True], alpha=0.1, delta=0.1)
    with pytest.raises(InputError, match="n_starts"):
        fixed_sequence_test([0.1, 0.2], delta=0.1, n_starts=3)


def test_threshold_grid_follows_reference_quantiles():
    np.testing.assert_allclose(threshold_grid(np.linspace(0, 1, 101), size=11, min_coverage=0.0), np.linspace(0, 1, 11))
    np.testing.assert_allclose(threshold_grid(np.linspace(0, 1, 101), size=3, min_coverage=0.5), [0.5, 0.75, 1.0])
    assert threshold_grid([0.2, 0.2, 0.2]).tolist() == [0.2]


def test_route_applies_the_seed_policy():
    decisions = route([0.9, 0.9, 0.1, 0.1, 0.5], [0.01, 0.5, 0.01, 0.5, 0.05], threshold=0.5, risk_threshold=0.05)
    assert decisions.tolist() == [
        "accept_positive",
        "defer_positive",
        "accept_negative",
        "unsafe_negative",
        "accept_positive",  # p == threshold counts as positive; risk == risk_threshold is accepted
    ]


# The guarantee by simulation -------------------------------------------------------------------
#
# Synthetic worlds where stage-1 is wrong with probability equal to failure_risk r, so the true
# error among accepted (r ≤ λ) is known exactly: the test split is infinitely large.


def uniform_world(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(size=size)


def uniform_true_risk(lam: np.ndarray) -> np.ndarray:
    return lam / 2  # E[r | r ≤ λ] for r ~ U(0, 1)


A, B = 0.6, 4.0  # a good gate: most risks near 0, base error rate A / (A + B) = 13 %


def gate_world(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    return rng.beta(A, B, size=size)


def gate_true_risk(lam: np.ndarray) -> np.ndarray:
    lam = np.clip(lam, 1e-12, 1.0)
    return A / (A + B) * betainc(A + 1, B, lam) / betainc(A, B, lam)  # E[r | r ≤ λ] for r ~ Beta(A, B)


def simulate_ltt(draw, grid: np.ndarray, *, n_starts: int, n_reps: int, n_calib: int, seed: int):
    """LTT on ``n_reps`` independent calib draws at once (no Python loop over draws).

    Returns the chosen λ per draw (-inf when nothing is certified) and the naive choice: the
    largest λ whose calib error among accepted is ≤ α.
    """
    rng = np.random.default_rng(seed)
    r = draw(rng, (n_reps, n_calib))
    wrong = rng.uniform(size=(n_reps, n_calib)) < r
    g = grid.size
    cell = np.searchsorted(grid, r, side="left")  # accepted at grid index j iff cell ≤ j
    flat = (np.arange(n_reps)[:, None] * (g + 1) + cell).ravel()

    def per_threshold(weights):
        counts = np.bincount(flat, weights=weights, minlength=n_reps * (g + 1)).reshape(n_reps, g + 1)
        return counts[:, :g].cumsum(axis=1)  # [n_reps, G]

    n_accepted, n_errors = per_threshold(None), per_threshold(wrong.ravel())
    p_values = binomial_p_values(n_accepted, n_errors, alpha=ALPHA)
    certified = fixed_sequence_test(p_values, delta=DELTA, n_starts=n_starts)
    last = g - 1 - np.argmax(certified[:, ::-1], axis=1)
    chosen = np.where(certified.any(axis=1), grid[last], -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok_on_calib = n_errors / n_accepted <= ALPHA
    naive = grid[g - 1 - np.argmax(ok_on_calib[:, ::-1], axis=1)]
    return chosen, naive


WORLDS = {
    # hard: only 20 % coverage is attainable; plain fixed sequence from a start with data
    "uniform, fixed sequence": (uniform_world, uniform_true_risk, lambda: np.linspace(0.05, 1.0, 191), 1),
    # the defaults: log grid, three starts
    "gate, default grid": (gate_world, gate_true_risk, lambda: DEFAULT_THRESHOLDS, 3),
    # the recommended path: grid from an independent val draw, one start
    "gate, val grid": (
        gate_world,
        gate_true_risk,
        lambda: threshold_grid(gate_world(np.random.default_rng(99), (2000,))),
        1,
    ),
}


@pytest.mark.parametrize("world", list(WORLDS))
def test_violation_rate_stays_below_delta_over_resampled_calib_sets(world):
    draw, true_risk, make_grid, n_starts = WORLDS[world]
    grid = make_grid()
    n_reps = 1000
    chosen, naive = simulate_ltt(draw, grid, n_starts=n_starts, n_reps=n_reps, n_calib=1000, seed=11)
    certified = np.isfinite(chosen)
    violation_rate = np.mean(certified & (true_risk(np.where(certified, chosen, 0.0)) > ALPHA))
    slack = 3 * np.sqrt(DELTA * (1 - DELTA) / n_reps)  # three Monte-Carlo standard errors
    assert violation_rate <= DELTA + slack
    # not safe by refusing: it certifies something most of the time, close to the oracle λ*
    oracle = grid[true_risk(grid) <= ALPHA].max()
    assert certified.mean() > 0.7
    assert np.median(chosen[certified]) > 0.6 * oracle
    # while "the largest λ with calib error ≤ α" misses the target about half the time
    assert np.mean(true_risk(naive) > ALPHA) > 0.3


@pytest.mark.parametrize("val_seed", [100, 101, 102])
def test_a_start_planned_on_val_certifies_small_calib_sets_the_plain_walk_cannot(val_seed):
    # The demo's size: 225 calib samples. From 5 % coverage (~11 accepted) even zero errors give
    # p = 0.9 ** 11 = 0.31 > δ, so the plain walk almost never starts; planned on an independent
    # val draw, the start keeps the guarantee and certifies nearly every time.
    rng = np.random.default_rng(val_seed)
    val_risk = gate_world(rng, (300,))
    val_correct = rng.uniform(size=300) >= val_risk
    grid = threshold_grid(val_risk)
    start = planned_start(grid, val_risk, val_correct, n_calib=225, alpha=ALPHA)
    assert start > 0
    n_reps = 1000
    plain, _ = simulate_ltt(gate_world, grid, n_starts=1, n_reps=n_reps, n_calib=225, seed=11)
    planned, _ = simulate_ltt(gate_world, grid[start:], n_starts=1, n_reps=n_reps, n_calib=225, seed=11)
    assert np.isfinite(plain).mean() < 0.1
    certified = np.isfinite(planned)
    assert certified.mean() > 0.9
    violation_rate = np.mean(certified & (gate_true_risk(np.where(certified, planned, 0.0)) > ALPHA))
    assert violation_rate <= DELTA + 3 * np.sqrt(DELTA * (1 - DELTA) / n_reps)


def test_planned_start_bad_inputs_name_the_argument():
    with pytest.raises(InputError, match="reference"):
        planned_start([0.1], [], [], n_calib=10, alpha=0.1)
    with pytest.raises(InputError, match="n_calib"):
        planned_start([0.1], [0.1], [True], n_calib=0, alpha=0.1)


def test_batched_simulation_agrees_with_learn_then_test():
    rng = np.random.default_rng(5)
    r = gate_world(rng, (800,))
    correct = rng.uniform(size=800) >= r
    grid = threshold_grid(gate_world(rng, (500,)))
    result = learn_then_test(r, correct, alpha=ALPHA, delta=DELTA, thresholds=grid, n_starts=1)
    order = np.argsort(r)
    n_acc = np.searchsorted(r[order], grid, side="right")
    n_err = np.r_[0, np.cumsum(~correct[order])][n_acc]
    expected = fixed_sequence_test(binomial_p_values(n_acc, n_err, alpha=ALPHA), delta=DELTA)
    np.testing.assert_array_equal(result.certified, expected)
    assert result.threshold == grid[np.flatnonzero(expected)[-1]]
    assert result.selective_risk <= ALPHA
