"""Failure gate: fitting, JSON round trip, metrics against hand-computed values, plot, Gatekeeper loss."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from curation.errors import ConfigError, InputError
from curation.stage1.gate import FailureGate, GateConfig, fit_gate, gate_metrics, risk_coverage_curve
from curation.stage1.gate_plots import plot_risk_coverage
from curation.stage1.gatekeeper import gatekeeper_loss

NAMES = ["p", "var", "flip_consistency"]


def synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features whose first two columns predict stage-1 mistakes; the third is noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [0.5, 1.0, 0.0]
    logit_wrong = 2.0 * (x[:, 0] - 0.5) - 1.0 * (x[:, 1] - 1.0) - 1.5
    correct = rng.uniform(size=n) >= 1.0 / (1.0 + np.exp(-logit_wrong))
    return x, correct


# Metrics against hand-computed values ---------------------------------------------------------


def test_metrics_match_hand_computed_values():
    # risks 0.1..0.4, mistakes at 0.2 and 0.4
    m = gate_metrics([0.1, 0.2, 0.3, 0.4], [True, False, True, False])
    assert m.auroc == pytest.approx(0.75)  # 3 of 4 (mistake, correct) pairs ordered right
    assert m.fpr_at_95_tpr == pytest.approx(0.5)  # flag both mistakes => flag risk ≥ 0.2 => 0.3 too
    assert m.aurc == pytest.approx((0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)
    assert (m.n, m.n_errors) == (4, 2)
    assert json.loads(json.dumps(m.to_dict()))["n_errors"] == 2


def test_risk_coverage_groups_ties_and_ignores_order():
    curve = risk_coverage_curve([0.1, 0.1, 0.2], [True, False, True])
    np.testing.assert_allclose(curve.threshold, [0.1, 0.2])
    np.testing.assert_allclose(curve.coverage, [2 / 3, 1.0])
    np.testing.assert_allclose(curve.selective_risk, [0.5, 1 / 3])
    a = gate_metrics([0.1, 0.1, 0.2], [True, False, True])
    b = gate_metrics([0.2, 0.1, 0.1], [True, True, False])
    assert a.aurc == pytest.approx(2 / 3 * 0.5 + 1 / 3 * 1 / 3) == b.aurc
    assert a.auroc == b.auroc == pytest.approx(0.25)  # the mistake ties one correct sample (½), loses to the other


def test_perfect_and_reversed_rankings():
    correct = np.array([True] * 8 + [False] * 2)
    perfect = gate_metrics(np.linspace(0, 1, 10), correct)
    reversed_ = gate_metrics(np.linspace(1, 0, 10), correct)
    assert (perfect.auroc, perfect.fpr_at_95_tpr) == (1.0, 0.0)
    assert (reversed_.auroc, reversed_.fpr_at_95_tpr) == (0.0, 1.0)
    assert perfect.aurc == pytest.approx((1 / 9 + 2 / 10) / 10)
    assert perfect.aurc < reversed_.aurc


def test_degenerate_metrics_are_explicit():
    no_errors = gate_metrics([0.3, 0.1], [True, True])
    assert math.isnan(no_errors.auroc) and math.isnan(no_errors.fpr_at_95_tpr) and no_errors.aurc == 0.0
    assert gate_metrics([0.3, 0.1], [False, False]).aurc == 1.0
    assert risk_coverage_curve([], []).coverage.size == 0
    with pytest.raises(InputError, match="at least one sample"):
        gate_metrics([], [])
    with pytest.raises(InputError, match="The 'risk' array must be finite. Got nan at index 1"):
        gate_metrics([0.1, float("nan")], [True, False])
    with pytest.raises(InputError, match="same number of samples"):
        gate_metrics([0.1, 0.2], [True])


# Fitting and persistence ----------------------------------------------------------------------


def test_logistic_gate_ranks_mistakes_and_matches_sklearn_probabilities():
    from sklearn.linear_model import LogisticRegression

    x, correct = synthetic()
    gate = fit_gate(x, correct, feature_names=NAMES)
    risk = gate.predict_risk(x)
    z = (x - x.mean(0)) / x.std(0)
    expected = LogisticRegression(C=1.0, max_iter=1000).fit(z, ~correct).predict_proba(z)[:, 1]
    np.testing.assert_allclose(risk, expected, atol=1e-10)
    x_test, correct_test = synthetic(seed=1)
    assert gate_metrics(gate.predict_risk(x_test), correct_test).auroc > 0.8


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mlp_gate_forward_matches_sklearn_and_round_trips_through_json():
    from sklearn.neural_network import MLPClassifier

    x, correct = synthetic(n=300)
    config = GateConfig(kind="mlp", hidden=(8, 4), max_iter=300, seed=2)
    gate = fit_gate(x, correct, feature_names=NAMES, config=config)
    z = (x - x.mean(0)) / x.std(0)
    model = MLPClassifier(hidden_layer_sizes=(8, 4), alpha=1e-3, max_iter=300, random_state=2).fit(z, ~correct)
    np.testing.assert_allclose(gate.predict_risk(x), model.predict_proba(z)[:, 1], atol=1e-10)

    restored = FailureGate.from_dict(json.loads(json.dumps(gate.to_dict())))
    np.testing.assert_allclose(restored.predict_risk(x), gate.predict_risk(x), atol=1e-12)
    assert restored.config == config and restored.feature_names == tuple(NAMES)


def test_features_are_matched_by_name():
    x, correct = synthetic()
    gate = fit_gate(x, correct, feature_names=NAMES)
    shuffled = x[:, [2, 0, 1]]
    np.testing.assert_allclose(
        gate.predict_risk(shuffled, feature_names=["flip_consistency", "p", "var"]), gate.predict_risk(x)
    )
    with pytest.raises(InputError, match="needs feature `var`.*Did you mean `vars`"):
        gate.predict_risk(x, feature_names=["p", "vars", "flip_consistency"])
    with pytest.raises(InputError, match="must have 3 columns"):
        gate.predict_risk(x[:, :2])


def test_constant_feature_is_inert():
    x, correct = synthetic()
    x[:, 2] = 4.0
    gate = fit_gate(x, correct, feature_names=NAMES)
    assert gate.scale[2] == 1.0 and np.isfinite(gate.predict_risk(x)).all()


def test_fit_rejects_unusable_inputs():
    x, correct = synthetic(n=20)
    with pytest.raises(InputError, match="both right and wrong.*got 0 wrong of 20"):
        fit_gate(x, np.ones(20, dtype=bool), feature_names=NAMES)
    with pytest.raises(InputError, match="name each of the 3 columns once"):
        fit_gate(x, correct, feature_names=["p", "p", "var"])
    x[3, 1] = np.nan
    with pytest.raises(InputError, match=r"The 'features' array must be finite. Got nan at index \(3, 1\)"):
        fit_gate(x, correct, feature_names=NAMES)
    with pytest.raises(ConfigError, match="Did you mean `mlp`"):
        GateConfig(kind="mpl")
    with pytest.raises(InputError, match="Not a saved failure gate"):
        FailureGate.from_dict({"format": "pickle"})


# Plot -----------------------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path):
    x, correct = synthetic()
    curve = risk_coverage_curve(fit_gate(x, correct, feature_names=NAMES).predict_risk(x), correct)
    out = plot_risk_coverage(curve, tmp_path / "plots" / "rc.png", alpha=0.1, operating_point=(0.6, 0.08))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Gatekeeper loss ------------------------------------------------------------------------------


def test_gatekeeper_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 0])  # first right, second wrong (predicts class 1)
    ce_right = math.log(1 + math.exp(-2))
    p = 1 / (1 + math.e)
    kl_wrong = p * math.log(p) + (1 - p) * math.log(1 - p) + math.log(2)  # KL(p || uniform)
    loss = gatekeeper_loss(logits, labels, weight=0.3)
    assert float(loss.detach()) == pytest.approx(0.3 * ce_right / 2 + 0.7 * kl_wrong / 2, rel=1e-6)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    # weight=1 keeps only the cross-entropy of the correctly classified sample
    assert float(gatekeeper_loss(logits.detach(), labels, weight=1.0)) == pytest.approx(ce_right / 2, rel=1e-6)


def test_gatekeeper_single_logit_equals_two_logits_and_validates_weight():
    z = torch.tensor([1.5, -0.3, 0.2])
    labels = torch.tensor([1, 1, 0])
    two = torch.stack([torch.zeros(3), z], dim=1)
    assert float(gatekeeper_loss(z, labels)) == pytest.approx(float(gatekeeper_loss(two, labels)))
    assert float(gatekeeper_loss(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))) == 0.0
    message = r"The 'weight' parameter must be a float in the range \[0, 1\]. Got 2 instead."
    with pytest.raises(InputError, match=message):
        gatekeeper_loss(z, labels, weight=2)
