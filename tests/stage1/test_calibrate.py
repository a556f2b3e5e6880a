from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curation.errors import ConfigError, InputError
from curation.stage1.calibrate import (
    expected_calibration_error,
    fit_temperature,
    plot_reliability,
    reliability_diagram,
    threshold_for_max_mcc,
    threshold_for_recall,
    threshold_logit_offset,
)
from curation.stage1.metrics import mcc, recall


def test_max_mcc_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(10):
        y = rng.integers(0, 2, 60)
        scores = np.round(np.clip(0.3 * y + rng.random(60) * 0.7, 0, 1), 2)  # rounding makes ties
        best = max(mcc(y, scores >= t) for t in np.unique(scores))
        highest = max(t for t in np.unique(scores) if mcc(y, scores >= t) == pytest.approx(best))
        choice = threshold_for_max_mcc(y, scores)
        assert choice.mcc == pytest.approx(best)
        assert choice.threshold == highest


def test_recall_mode_hand_computed():
    y = np.array([1, 1, 1, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.6, 0.2, 0.7, 0.1])
    assert threshold_for_recall(y, s, target=0.75).threshold == 0.6
    assert threshold_for_recall(y, s, target=0.5).threshold == 0.8
    full = threshold_for_recall(y, s, target=1.0)
    assert full.threshold == 0.2 and full.recall == 1.0 and recall(y, s >= 0.2) == 1.0
    with pytest.raises(InputError, match="positive"):
        threshold_for_recall(np.zeros(3), np.array([0.1, 0.2, 0.3]), target=0.9)
    with pytest.raises(ConfigError):
        threshold_for_recall(y, s, target=0.0)


def test_temperature_is_capped_when_scores_carry_no_information():
    """Uninformative logits: the NLL falls all the way to T → ∞; the cap keeps p away from 0.5 ± 1e-6."""
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, 2000)
    y = (rng.random(2000) < 0.5).astype(int)  # labels independent of the scores
    assert fit_temperature(z, y, max_temperature=1e9) > 100  # what the unbounded fit does
    assert fit_temperature(z, y) == 20.0
    assert fit_temperature(z, y, max_temperature=5.0) == 5.0
    with pytest.raises(ConfigError, match="max_temperature"):
        fit_temperature(z, y, max_temperature=0.0)


def test_temperature_recovers_known_scale_and_is_a_minimum():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z / 2.0))).astype(int)  # true temperature 2
    t = fit_temperature(z, y)
    assert t == pytest.approx(2.0, rel=0.1)

    def nll(temp: float) -> float:
        target = torch.tensor(y, dtype=torch.float64)
        return float(torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(z / temp), target))

    assert nll(t) <= min(nll(t * 0.98), nll(t * 1.02))


def test_ece_and_reliability_hand_computed(tmp_path):
    y, p = np.array([0, 1, 1, 1]), np.array([0.1, 0.1, 0.9, 0.9])
    # bin (0, .5]: mean p .1, 1/2 positive → .5·.4; bin (.5, 1]: mean .9, all positive → .5·.1
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.25)
    data = reliability_diagram(y, p, n_bins=4)
    assert data.counts.tolist() == [2, 0, 0, 2]
    assert math.isnan(data.mean_predicted[1])
    assert data.fraction_positive[[0, 3]].tolist() == [0.5, 1.0]
    out = plot_reliability(data, tmp_path / "plots" / "rel.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="n_bins"):
        reliability_diagram(y, p, n_bins=0)
    with pytest.raises(InputError, match="logits"):
        reliability_diagram(y, np.array([0.1, 2.0, 0.5, 0.5]))


def test_threshold_offset_maps_threshold_to_half():
    offset = threshold_logit_offset(0.8)
    assert offset == pytest.approx(-math.log(4))
    logit = math.log(0.8 / 0.2)
    assert 1 / (1 + math.exp(-(logit + offset))) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        threshold_logit_offset(1.0)
