"""Out-of-fold routing labels: never in-sample, groups never straddle folds."""

from __future__ import annotations

import numpy as np
import pytest

from curation.errors import CurationError, InputError
from curation.stage1.crossfit import out_of_fold_correct


def nearest_neighbour(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """A model that memorises its training set: perfect in-sample, honest only out-of-fold."""
    distance = np.abs(x_test[:, None, 0] - x_train[None, :, 0])
    return y_train[distance.argmin(axis=1)].astype(float)


def test_held_out_rows_are_never_in_the_training_folds_and_groups_stay_whole():
    n = 120
    x = np.arange(n, dtype=float)[:, None]
    y = np.arange(n) % 2
    groups = np.arange(n) // 6  # 20 "video sequences"
    seen: list[tuple[set[float], set[float]]] = []

    def recording(x_train, y_train, x_test):
        seen.append((set(x_train[:, 0]), set(x_test[:, 0])))
        return np.full(len(x_test), 0.7)

    oof = out_of_fold_correct(x, y, recording, n_splits=4, seed=1, groups=groups)
    assert len(seen) == 4
    assert all(train.isdisjoint(test) for train, test in seen)
    assert set().union(*(test for _, test in seen)) == set(x[:, 0])
    for g in np.unique(groups):
        assert len(np.unique(oof.fold[groups == g])) == 1
    # a constant 0.7 predicts "positive" everywhere, so exactly the positives are correct
    np.testing.assert_array_equal(oof.correct, y == 1)
    np.testing.assert_array_equal(oof.probability, 0.7)


def test_memorising_model_is_right_in_sample_but_not_out_of_fold():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 1))
    y = rng.integers(0, 2, size=200)  # labels carry no signal
    in_sample = (nearest_neighbour(x, y, x) >= 0.5) == y
    oof = out_of_fold_correct(x, y, nearest_neighbour, n_splits=5, seed=0)
    assert in_sample.all()
    assert 0.3 < oof.correct.mean() < 0.7


def test_same_seed_same_folds_and_threshold_is_applied():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 3))
    y = (x[:, 0] > 0).astype(int)
    a = out_of_fold_correct(x, y, lambda xt, yt, xs: np.full(len(xs), 0.4), n_splits=3, seed=7)
    b = out_of_fold_correct(x, y, lambda xt, yt, xs: np.full(len(xs), 0.4), n_splits=3, seed=7, threshold=0.3)
    np.testing.assert_array_equal(a.fold, b.fold)
    np.testing.assert_array_equal(a.correct, y == 0)  # 0.4 < 0.5: all predicted negative
    np.testing.assert_array_equal(b.correct, y == 1)  # 0.4 ≥ 0.3: all predicted positive


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_splits": 1}, "The 'n_splits' parameter must be an int in the range [2, inf). Got 1 instead."),
        ({"groups": np.arange(10) // 5}, "must not exceed the number of groups (2)"),
        ({"threshold": 1.5}, "The 'threshold' parameter must be a float in the range (0, 1]. Got 1.5 instead."),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    x = np.zeros((10, 1))
    y = np.arange(10) % 2
    with pytest.raises(InputError) as err:
        out_of_fold_correct(x, y, lambda xt, yt, xs: np.zeros(len(xs)), **{"n_splits": 3, **kwargs})
    assert message in str(err.value)


def test_single_class_and_bad_fit_predict_output_are_rejected():
    x = np.zeros((10, 1))
    with pytest.raises(CurationError, match="both classes"):
        out_of_fold_correct(x, np.ones(10), lambda xt, yt, xs: np.zeros(len(xs)), n_splits=2)
    y = np.arange(10) % 2
    with pytest.raises(InputError, match="probabilities in \\[0, 1\\]"):
        out_of_fold_correct(x, y, lambda xt, yt, xs: np.full(len(xs), 2.0), n_splits=2)
    with pytest.raises(InputError, match="probabilities in \\[0, 1\\]"):
        out_of_fold_correct(x, y, lambda xt, yt, xs: np.zeros(len(xs) + 1), n_splits=2)
