from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from curation.errors import InputError
from curation.stage1.metrics import (
    accuracy,
    auroc,
    confusion,
    evaluate,
    mcc,
    precision,
    rebalanced_indices,
    recall,
    reward_estimate,
    streetvision_reward,
)


def test_against_scikit_learn_on_random_labels():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, p = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
        assert mcc(y, p) == pytest.approx(skm.matthews_corrcoef(y, p))
        assert accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
        assert precision(y, p) == pytest.approx(skm.precision_score(y, p, zero_division=0))
        assert recall(y, p) == pytest.approx(skm.recall_score(y, p, zero_division=0))


def test_hand_computed():
    y, p = np.array([1, 1, 1, 0, 0]), np.array([1, 1, 0, 1, 0])
    c = confusion(y, p)
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 1, 1, 1)
    assert mcc(y, p) == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))
    assert precision(y, p) == pytest.approx(2 / 3) and recall(y, p) == pytest.approx(2 / 3)
    # AUROC by brute force: fraction of (positive, negative) pairs ranked correctly, ties = 1/2.
    scores = np.array([0.9, 0.4, 0.3, 0.4, 0.1])
    pairs = [(sp > sn) + 0.5 * (sp == sn) for sp in scores[y == 1] for sn in scores[y == 0]]
    assert auroc(y, scores) == pytest.approx(np.mean(pairs))


def test_degenerate_inputs_are_explicit():
    ones = np.ones(4, dtype=int)
    assert mcc(ones, ones) == 0.0  # zero denominator
    assert precision(np.array([1, 0]), np.array([0, 0])) == 0.0  # nothing predicted positive
    assert recall(np.array([0, 0]), np.array([1, 0])) == 0.0  # no positives
    assert math.isnan(auroc(ones, np.array([0.1, 0.2, 0.3, 0.4])))
    assert math.isnan(reward_estimate(ones, ones))
    with pytest.raises(InputError, match="No samples"):
        mcc([], [])
    with pytest.raises(InputError, match="0 or 1"):
        accuracy([0, 2], [0, 1])
    with pytest.raises(InputError, match="differ in length"):
        accuracy([0, 1], [0])
    with pytest.raises(InputError, match="both classes"):
        rebalanced_indices(ones, seed=0)


def test_reward_formula_clamps_negative_mcc():
    assert streetvision_reward(mcc=-0.5, accuracy=0.5) == pytest.approx(0.25**3)
    assert streetvision_reward(mcc=0.6, accuracy=0.8) == pytest.approx(0.7**3)


def test_reward_estimate_rebalances_and_is_seeded():
    y = np.array([1] * 80 + [0] * 20)
    always_yes = np.ones(100, dtype=int)
    # Unbalanced accuracy would be 0.8; on a 50/50 resample it is 0.5 with MCC 0.
    assert reward_estimate(y, always_yes, seed=3) == pytest.approx(0.25**3)
    assert reward_estimate(y, y, seed=3) == 1.0
    rng = np.random.default_rng(1)
    noisy = np.where(rng.random(100) < 0.2, 1 - y, y)
    assert reward_estimate(y, noisy, seed=5) == reward_estimate(y, noisy, seed=5)
    idx = rebalanced_indices(y, seed=0)
    assert (y[idx] == 1).sum() == (y[idx] == 0).sum() == 80


def test_evaluate_bundles_metrics_at_threshold():
    result = evaluate(np.array([1, 0, 1, 0]), np.array([0.9, 0.2, 0.4, 0.1]), threshold=0.5)
    assert (result.n, result.recall, result.precision, result.accuracy) == (4, 0.5, 1.0, 0.75)
    assert result.auroc == 1.0
    assert result.mcc == pytest.approx(1 / math.sqrt(3))
