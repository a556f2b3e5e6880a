"""Out-of-fold routing labels: was stage-1 right on a sample it never trained on?

The failure gate learns to predict stage-1 mistakes, so its training labels must look like the
mistakes stage-1 makes on unseen images. In-sample predictions are almost always right (the head
has memorised them), which would teach the gate that nothing ever fails. Cross-fitting gives every
sample a prediction from a model fit without it; folds are split by group (video sequence) because
neighbouring frames of one sequence are near-duplicates and would leak across folds.

Example:
    >>> import numpy as np
    >>> from curation.stage1.crossfit import out_of_fold_correct
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, 2)); y = (x[:, 0] > 0).astype(int)
    >>> def fit_predict(x_train, y_train, x_test):
    ...     from sklearn.linear_model import LogisticRegression
    ...     return LogisticRegression().fit(x_train, y_train).predict_proba(x_test)[:, 1]
    >>> oof = out_of_fold_correct(x, y, fit_predict, n_splits=3, seed=0, groups=np.arange(60) // 4)
    >>> bool(oof.correct.mean() > 0.8)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from curation.errors import InputError
from curation.stage1.arrays import as_bool_array, as_float_array, check_fraction, check_int, check_same_length

FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray], ArrayLike]
"""``fit_predict(x_train, y_train, x_test) -> P(positive) for x_test``; fits a fresh model each call."""


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class OutOfFold:
    """Cross-fitted predictions for every sample.

    Attributes:
        probability: P(positive) from the model that did not see the sample.
        correct: routing label ``stage1_correct``: (probability ≥ threshold) == label.
        fold: index of the held-out fold that produced each prediction.
    """

    probability: np.ndarray
    correct: np.ndarray
    fold: np.ndarray


def out_of_fold_correct(
    features: ArrayLike,
    labels: ArrayLike,
    fit_predict: FitPredict,
    *,
    n_splits: int = 5,
    seed: int = 0,
    groups: ArrayLike | None = None,
    threshold: float = 0.5,
) -> OutOfFold:
    """Predict each sample with a model fit on the other folds and mark whether it was right.

    Args:
        features: per-sample inputs, first axis = samples (scores [n], features [n, d], or cached
            view embeddings [n, views, dim]); passed to ``fit_predict`` sliced along axis 0.
        labels: binary ground truth (0/1 or bool), length n.
        fit_predict: fits a fresh model on the training folds and returns P(positive) for the
            held-out fold.
        n_splits: number of folds (≥ 2).
        seed: shuffles the fold assignment reproducibly.
        groups: group id per sample (video sequence); a group never straddles folds.
        threshold: decision threshold; predicted positive iff probability ≥ threshold.

    Returns:
        :class:`OutOfFold` with probability, ``correct`` and fold per sample.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    x = np.asarray(features)
    y = as_bool_array(labels, name="labels").astype(int)
    n = check_same_length(features=x, labels=y)
    n_splits = check_int(n_splits, name="n_splits", low=2)
    threshold = check_fraction(threshold, name="threshold", closed="right")
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        group_ids = None
    else:
        group_ids = np.asarray(groups)
        check_same_length(features=x, groups=group_ids)
        n_groups = len(np.unique(group_ids))
        if n_groups < n_splits:
            raise InputError(
                f"The 'n_splits' parameter must not exceed the number of groups ({n_groups}). Got {n_splits} instead."
            )
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    if n < n_splits or np.bincount(y, minlength=2).min() == 0:
        raise InputError(
            f"Cross-fitting needs at least {n_splits} samples with both classes present; "
            f"got {n} samples with {int(y.sum())} positive."
        )

    probability = np.full(n, np.nan)
    fold = np.full(n, -1, dtype=int)
    for k, (train, test) in enumerate(splitter.split(np.zeros(n), y, group_ids)):
        predicted = as_float_array(fit_predict(x[train], y[train], x[test]), name="fit_predict output")
        if predicted.shape != (len(test),) or not ((predicted >= 0) & (predicted <= 1)).all():
            raise InputError(
                f"`fit_predict` must return {len(test)} probabilities in [0, 1] for the held-out fold; "
                f"got shape {predicted.shape} with values {predicted.ravel()[:5].round(3).tolist()}..."
            )
        probability[test] = predicted
        fold[test] = k
    correct = (probability >= threshold) == y.astype(bool)
    return OutOfFold(probability=probability, correct=correct, fold=fold)
