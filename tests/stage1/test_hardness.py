"""Hardness: entropy equal to FiftyOne Brain's, rank normalisation, combination, diverse selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from curation.errors import ConfigError, InputError
from curation.stage1.hardness import (
    HardnessWeights,
    combine_hardness,
    diverse_select,
    mistakenness,
    prediction_entropy,
    rank_normalize,
    view_disagreement,
)


def binary_logits(p) -> np.ndarray:
    """Stage-1's stored logits [log(1 − p), log p]."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log(np.stack([1 - p, p], axis=1))


# Entropy and mistakenness ----------------------------------------------------------------------


def test_entropy_by_hand_and_against_scipy():
    h = prediction_entropy(binary_logits([0.5, 0.0, 1.0, 0.9]))
    assert h[0] == pytest.approx(math.log(2))
    assert h[1] == h[2] == 0.0  # -inf logits: 0 · log 0 = 0
    assert h[3] == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))
    logits = np.random.default_rng(0).normal(scale=3, size=(50, 4))
    np.testing.assert_allclose(prediction_entropy(logits), entropy(softmax(logits, axis=1), axis=1), atol=1e-12)
    assert prediction_entropy(np.zeros((0, 2))).shape == (0,)


def test_entropy_rejects_nan_and_impossible_rows():
    with pytest.raises(InputError, match=r"The 'logits' array must be finite. Got nan at index \(1, 0\)"):
        prediction_entropy([[0.0, 0.0], [np.nan, 0.0]])
    with pytest.raises(InputError, match="only -inf at index 0"):
        prediction_entropy([[-np.inf, -np.inf]])
    with pytest.raises(InputError, match="must be 2-D"):
        prediction_entropy([0.1, 0.2])


def test_matches_fiftyone_brain_hardness_and_mistakenness(dataset):
    import fiftyone as fo
    import fiftyone.brain as fob

    rng = np.random.default_rng(0)
    p = np.r_[0.5, 0.02, 0.98, rng.uniform(0.01, 0.99, size=9)]
    truth = np.r_[1, 0, 0, rng.integers(0, 2, size=9)]
    logits = binary_logits(p)
    dataset.add_samples(
        [
            fo.Sample(
                filepath=f"/nonexistent/{i}.jpg",
                stage1=fo.Classification(
                    label="roadwork" if p[i] >= 0.5 else "no_roadwork",
                    confidence=float(max(p[i], 1 - p[i])),
                    logits=logits[i],
                ),
                ground_truth=fo.Classification(label="roadwork" if truth[i] else "no_roadwork"),
            )
            for i in range(len(p))
        ]
    )
    fob.compute_hardness(dataset, "stage1", hardness_field="brain_hardness", progress=False)
    fob.compute_mistakenness(
        dataset,
        "stage1",
        label_field="ground_truth",
        mistakenness_field="brain_mistakenness",
        use_logits=True,
        progress=False,
    )

    stored = np.array(dataset.values("stage1.logits"), dtype=float)
    np.testing.assert_allclose(prediction_entropy(stored), dataset.values("brain_hardness"), atol=1e-12)
    correct = (p >= 0.5) == truth.astype(bool)
    np.testing.assert_allclose(mistakenness(stored, correct), dataset.values("brain_mistakenness"), atol=1e-12)


def test_mistakenness_by_hand_and_missing_ground_truth():
    m = mistakenness(binary_logits([0.5, 0.999999, 0.999999, 0.3, 0.5]), [True, True, False, None, False])
    assert (m[0], m[4]) == pytest.approx((0.25, 0.75))  # unsure: exp(-ln 2) = 0.5 of the way to 0 or 1
    assert m[1] == pytest.approx(0.0, abs=1e-4)  # confident and right
    assert m[2] == pytest.approx(1.0, abs=1e-4)  # confident and wrong
    assert math.isnan(m[3])  # no ground truth
    with pytest.raises(InputError, match="booleans, 0/1 or NaN"):
        mistakenness(binary_logits([0.5]), [0.5])


def test_view_disagreement():
    d = view_disagreement([[0.1, 0.1, 0.1], [0.0, 1.0, 0.5]])
    np.testing.assert_allclose(d, [0.0, np.std([0.0, 1.0, 0.5])], atol=1e-12)


# Rank normalisation and combination ------------------------------------------------------------


def test_rank_normalize_averages_ties_and_handles_degenerate_inputs():
    np.testing.assert_allclose(rank_normalize([3.0, 1.0, 3.0, 2.0]), [5 / 6, 0.0, 5 / 6, 1 / 3])
    np.testing.assert_allclose(rank_normalize([10.0, -5.0, 7.0]), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(rank_normalize([2.0, 2.0, 2.0]), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(rank_normalize([4.0]), [0.5])
    assert rank_normalize([]).shape == (0,)
    with pytest.raises(InputError, match="The 'values' array must be finite. Got nan at index 2"):
        rank_normalize([1.0, 2.0, float("nan")])


def test_combined_hardness_orders_constructed_cases():
    # sample 0: unsure, risky, views disagree -> hardest; sample 2: confident, safe, agreeing -> easiest
    p = np.array([0.5, 0.8, 0.99])
    scores = combine_hardness(
        {
            "entropy": prediction_entropy(binary_logits(p)),
            "failure_risk": [0.6, 0.3, 0.01],
            "view_disagreement": view_disagreement([[0.1, 0.9], [0.6, 0.9], [0.99, 0.99]]),
        },
        weights=HardnessWeights(),
    )
    assert np.argsort(-scores).tolist() == [0, 1, 2]
    assert scores[0] == 1.0 and scores[2] == 0.0


def test_missing_terms_are_skipped_with_weights_renormalised():
    scores = combine_hardness(
        {"entropy": [0.1, 0.2, 0.3], "mistakenness": [np.nan, 0.9, 0.1], "failure_risk": None},
        weights=HardnessWeights(entropy=1.0, mistakenness=3.0),
    )
    # entropy ranks [0, .5, 1]; mistakenness ranks over the two present [-, 1, 0]
    np.testing.assert_allclose(scores, [0.0, (0.5 + 3 * 1.0) / 4, (1.0 + 3 * 0.0) / 4])


def test_uniqueness_counts_only_with_a_weight_and_only_where_computed():
    entropy = [0.69, 0.33, 0.06]  # ranks 1, 0.5, 0
    unique = [0.9, np.nan, 0.2]  # ranks over the two computed: 1, -, 0
    assert HardnessWeights().uniqueness == 0.0
    off = combine_hardness({"entropy": entropy, "uniqueness": unique}, weights=HardnessWeights(failure_risk=0))
    np.testing.assert_allclose(off, [1.0, 0.5, 0.0])
    on = combine_hardness({"entropy": entropy, "uniqueness": unique}, weights=HardnessWeights(uniqueness=3.0))
    np.testing.assert_allclose(on, [(1 + 3 * 1) / 4, 0.5, (0 + 3 * 0) / 4])


def test_combination_rejects_bad_terms_and_samples_without_any_term():
    weights = HardnessWeights()
    with pytest.raises(InputError, match="Unknown hardness term `entropie`. Did you mean `entropy`"):
        combine_hardness({"entropie": [0.1]}, weights=weights)
    with pytest.raises(InputError, match="index 1 has no hardness term"):
        combine_hardness({"entropy": [0.1, np.nan]}, weights=weights)
    with pytest.raises(InputError, match="same number of samples"):
        combine_hardness({"entropy": [0.1, 0.2], "failure_risk": [0.3]}, weights=weights)
    with pytest.raises(InputError, match="No hardness term with a weight > 0"):
        combine_hardness({"view_disagreement": [0.1]}, weights=HardnessWeights(view_disagreement=0.0))
    assert combine_hardness({"entropy": []}, weights=weights).shape == (0,)


def test_weights_are_validated_and_parse_from_config():
    from curation.typed_config import from_mapping

    assert from_mapping(HardnessWeights, {"entropy": "2"}, source="daily_mining.yaml").entropy == 2.0
    with pytest.raises(ConfigError, match="Did you mean `failure_risk`"):
        from_mapping(HardnessWeights, {"failure_rsk": 1}, source="daily_mining.yaml")
    with pytest.raises(ConfigError, match="`entropy` must be a finite number ≥ 0; got -1"):
        HardnessWeights(entropy=-1)
    with pytest.raises(ConfigError, match="At least one hardness weight must be > 0"):
        HardnessWeights(entropy=0, failure_risk=0, view_disagreement=0, mistakenness=0)


# Diverse selection -----------------------------------------------------------------------------


def test_duplicated_frames_do_not_fill_the_batch():
    rng = np.random.default_rng(0)
    scenes = rng.normal(size=(5, 16))
    # scene 0 has 20 near-identical frames, all harder than anything else
    embeddings = np.r_[scenes[0] + 1e-3 * rng.normal(size=(20, 16)), scenes[1:]]
    scores = np.r_[np.linspace(1.0, 0.9, 20), [0.5, 0.4, 0.3, 0.2]]
    picked = diverse_select(scores, embeddings, quota=5, shortlist_factor=10)
    assert picked[0] == 0  # the hardest frame comes first
    assert sorted(picked.tolist()) == [0, 20, 21, 22, 23]  # one per scene
    top_k = diverse_select(scores, embeddings, quota=5, diversity=0.0)
    assert top_k.tolist() == [0, 1, 2, 3, 4]  # without diversity: five copies of scene 0


def test_shortlist_bounds_what_can_be_picked():
    scores = np.array([0.9, 0.8, 0.1, 0.05])
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    # quota 1 × factor 2: only the two hardest are eligible, however redundant
    assert diverse_select(scores, embeddings, quota=1, shortlist_factor=2).tolist() == [0]
    assert diverse_select(scores, embeddings, quota=2, shortlist_factor=1).tolist() == [0, 1]
    assert diverse_select(scores, embeddings, quota=2, shortlist_factor=2).tolist() == [0, 2]


def test_diverse_select_degenerate_inputs():
    assert diverse_select([], np.zeros((0, 3)), quota=5).shape == (0,)
    assert diverse_select([0.5, 0.5], [[1.0, 0.0], [0.0, 1.0]], quota=0).shape == (0,)
    assert sorted(diverse_select([0.5, 0.5, 0.5], np.eye(3), quota=10).tolist()) == [0, 1, 2]
    with pytest.raises(InputError, match="The 'scores' array must be finite. Got nan at index 0"):
        diverse_select([np.nan], [[1.0]], quota=1)
    with pytest.raises(InputError, match="all-zero row at index 1"):
        diverse_select([0.1, 0.2], [[1.0], [0.0]], quota=1)
    with pytest.raises(InputError, match=r"The 'quota' parameter must be an int in the range \[0, inf\). Got -1"):
        diverse_select([0.1], [[1.0]], quota=-1)
