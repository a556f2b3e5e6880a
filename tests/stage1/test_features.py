from __future__ import annotations

import math

import numpy as np
import pytest

from curation.errors import InputError
from curation.stage1.features import (
    FEATURE_NAMES,
    FLIP_FEATURE,
    binary_entropy,
    feature_names,
    gate_feature_dict,
    gate_features,
)


def h(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_features_hand_computed():
    probs = np.array([[0.9, 0.1, 0.5, 0.5]])
    row = gate_feature_dict(gate_features(probs, np.array([0.7]), threshold=0.6, top_k=2)[0], flip=False)
    expected = {
        "p": 0.7,
        "max": 0.9,
        "topk_mean": 0.7,
        "mean": 0.5,
        "var": 0.08,
        "entropy": (2 * h(0.9) + 2 * h(0.5)) / 4,
        "max_minus_mean": 0.4,
        "top1_minus_top2": 0.4,
        "margin": 0.1,
    }
    assert list(row) == list(FEATURE_NAMES)
    assert row == pytest.approx(expected)


def test_flip_consistency_pairs_views_with_their_mirrors():
    probs = np.array([[0.9, 0.1, 0.8, 0.3], [0.2, 0.2, 0.2, 0.2]])
    f = gate_features(probs, np.array([0.5, 0.2]), threshold=0.5, flip=True)
    assert f.shape == (2, len(FEATURE_NAMES) + 1) and feature_names(True)[-1] == FLIP_FEATURE
    assert f[:, -1] == pytest.approx([1 - (0.1 + 0.2) / 2, 1.0])
    with pytest.raises(InputError, match="even"):
        gate_features(probs[:, :3], np.array([0.5, 0.2]), threshold=0.5, flip=True)


def test_single_view_and_empty_and_shape_errors():
    one = gate_features(np.array([[0.3]]), np.array([0.3]), threshold=0.5, top_k=2)
    assert one[0, FEATURE_NAMES.index("top1_minus_top2")] == 0.0
    assert one[0, FEATURE_NAMES.index("var")] == 0.0
    assert gate_features(np.zeros((0, 10)), np.zeros(0), threshold=0.5).shape == (0, len(FEATURE_NAMES))
    with pytest.raises(InputError):
        gate_features(np.zeros((2, 10)), np.zeros(3), threshold=0.5)


def test_binary_entropy_is_finite_at_the_edges():
    assert binary_entropy(np.array([0.0, 1.0, 0.5])) == pytest.approx([0.0, 0.0, math.log(2)], abs=1e-9)
