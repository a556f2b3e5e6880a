"""Hardness scores for hard-case mining: which images are worth a person's labeling time.

Each signal is on its own scale (entropy in nats, risk as a probability, a spread of view
probabilities), so they are rank-normalised to [0, 1] before being combined as a weighted mean;
a signal a sample lacks (mistakenness without ground truth) is skipped for that sample and the
remaining weights renormalised. A day's batch is then drawn from a shortlist of the hardest by
max-marginal-relevance on embeddings, so 200 frames of one traffic jam do not fill it.

Values that come from the database may be None/NaN; in this module NaN means "missing" only
where a docstring says so, and is rejected everywhere else.

Example:
    >>> import numpy as np
    >>> from curation.stage1.hardness import HardnessWeights, combine_hardness, prediction_entropy
    >>> p = np.array([0.5, 0.9, 0.99])
    >>> entropy = prediction_entropy(np.log(np.stack([1 - p, p], axis=1)))
    >>> terms = {"entropy": entropy, "failure_risk": [0.2, 0.1, 0.9]}
    >>> combine_hardness(terms, weights=HardnessWeights()).round(3).tolist()
    [0.75, 0.25, 0.5]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike

from curation.errors import ConfigError, InputError, suggest
from curation.stage1.arrays import as_float_array, check_fraction, check_int, check_same_length


@dataclass(frozen=True)
class HardnessWeights:
    """Weights of the rank-normalised terms in the combined hardness (renormalised per sample).

    Attributes:
        entropy: prediction entropy from the two logits (uncertain stage-1).
        failure_risk: the gate's P(stage-1 wrong).
        view_disagreement: spread of the per-view probabilities (evidence in one tile only).
        mistakenness: FiftyOne-style mistakenness; only where ground truth exists.
        uniqueness: FiftyOne Brain uniqueness on Stage-1 embeddings (nothing like it in the
            dataset); only where computed (``curation brain``). Off by default: the batch is
            already diversified by max-marginal-relevance, and rarity alone is not error.
    """

    entropy: float = 1.0
    failure_risk: float = 1.0
    view_disagreement: float = 0.5
    mistakenness: float = 1.0
    uniqueness: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ConfigError(f"Hardness weight `{f.name}` must be a finite number ≥ 0; got {value!r}.")
        if not any(getattr(self, f.name) > 0 for f in fields(self)):
            raise ConfigError("At least one hardness weight must be > 0; all are 0.")

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


def prediction_entropy(logits: ArrayLike) -> np.ndarray:
    """Entropy (nats) of softmax(logits) per row: FiftyOne Brain's ``compute_hardness``, vectorised.

    Stage-1 stores two logits [log(1 − p), log p]; -inf (p exactly 0 or 1) is allowed and
    contributes 0 · log 0 = 0.

    Args:
        logits: [n, k] logits.
    """
    z = as_float_array(logits, name="logits", ndim=2, allow_neg_inf=True)
    if z.shape[0] and (np.isneginf(z).all(axis=1)).any():
        row = int(np.flatnonzero(np.isneginf(z).all(axis=1))[0])
        raise InputError(f"The 'logits' array has a row of only -inf at index {row}; no class has any probability.")
    if z.shape[0] == 0:
        return np.empty(0)
    log_p = z - _logsumexp(z)  # [n, k]
    return -np.sum(np.exp(log_p) * np.where(np.isneginf(log_p), 0.0, log_p), axis=1)


def mistakenness(logits: ArrayLike, correct: ArrayLike) -> np.ndarray:
    """FiftyOne Brain's classification mistakenness from logits; NaN where ``correct`` is NaN/None.

    (exp(−entropy) · (+1 if wrong else −1) + 1) / 2: near 1 for confident mistakes, near 0 for
    confident correct answers; with two classes exp(−entropy) ≥ 0.5, so an unsure prediction
    (p = 0.5) scores 0.25 when right and 0.75 when wrong. ``correct`` is NaN where there is no
    ground truth (pool images), which :func:`combine_hardness` treats as missing.
    """
    confidence = np.exp(-prediction_entropy(logits))
    right = as_float_array(correct, name="correct", allow_nan=True)
    check_same_length(logits=confidence, correct=right)
    known = ~np.isnan(right)
    if not np.isin(right[known], (0.0, 1.0)).all():
        raise InputError("The 'correct' array must hold booleans, 0/1 or NaN (no ground truth).")
    sign = 1.0 - 2.0 * right  # +1 wrong, -1 correct, NaN unknown
    return (sign * confidence + 1.0) / 2.0


def view_disagreement(view_probs: ArrayLike) -> np.ndarray:
    """Standard deviation of the per-view roadwork probabilities [n, views] per image.

    High when some tiles see roadwork and others do not: small or partial evidence, which is
    where the aggregator is most likely to be wrong.
    """
    return as_float_array(view_probs, name="view_probs", ndim=2).std(axis=1)


def rank_normalize(values: ArrayLike) -> np.ndarray:
    """Map values to [0, 1] by rank (ties share their average rank); one value maps to 0.5.

    Ranks make terms with different scales and outliers comparable; the hardest sample of a term
    gets 1 and the easiest 0 whatever the raw units.

    Example:
        >>> rank_normalize([3.0, 1.0, 3.0, 2.0]).tolist()
        [0.8333333333333334, 0.0, 0.8333333333333334, 0.3333333333333333]
    """
    x = as_float_array(values, name="values")
    if x.size <= 1:
        return np.full(x.shape, 0.5)
    from scipy.stats import rankdata  # scipy.stats costs ~1 s to import: only when ranking

    return (rankdata(x, method="average") - 1.0) / (x.size - 1.0)


def combine_hardness(terms: Mapping[str, ArrayLike | None], *, weights: HardnessWeights) -> np.ndarray:
    """Weighted mean of rank-normalised terms; NaN/None entries mean "missing for this sample".

    Args:
        terms: ``{term name: raw values [n]}`` with names from :class:`HardnessWeights`; a term
            that is absent or None is skipped for every sample.
        weights: per-term weights; a sample's weights are renormalised over its available terms.

    Returns:
        Hardness in [0, 1] per sample.
    """
    allowed = weights.as_dict()
    columns: dict[str, np.ndarray] = {}
    for name, values in terms.items():
        if name not in allowed:
            raise InputError(f"Unknown hardness term `{name}`.{suggest(name, allowed)} Allowed: {', '.join(allowed)}.")
        if values is not None and allowed[name] > 0:
            columns[name] = as_float_array(values, name=name, allow_nan=True)
    if not columns:
        raise InputError(f"No hardness term with a weight > 0 was given; weights: {allowed}.")
    n = check_same_length(**columns)
    total = np.zeros(n)
    weight_sum = np.zeros(n)
    for name, x in columns.items():
        present = ~np.isnan(x)
        normalised = np.zeros(n)
        normalised[present] = rank_normalize(x[present])
        total += allowed[name] * normalised
        weight_sum += allowed[name] * present
    if (weight_sum == 0).any():
        index = int(np.flatnonzero(weight_sum == 0)[0])
        raise InputError(
            f"Sample at index {index} has no hardness term ({', '.join(columns)} are all missing); "
            "compute stage-1 predictions for it first."
        )
    return total / weight_sum


def hardness_scores(
    p: np.ndarray,
    risk: np.ndarray,
    view_var: np.ndarray,
    truth: np.ndarray,
    *,
    weights: HardnessWeights,
    threshold: np.ndarray | float = 0.5,
    uniqueness: np.ndarray | None = None,
) -> np.ndarray:
    """Pure: combined hardness from per-sample arrays (NaN marks a missing term).

    Uncertainty is measured around each prediction's decision threshold, not 0.5: ``p`` becomes
    ``sigmoid(logit p − logit threshold)`` (the shift the export applies), so with a calibrated
    threshold of 0.3 a sample at p = 0.3 is the most uncertain, and correctness for mistakenness is
    judged at that threshold. A NaN threshold (predictions older than the field) means 0.5.
    ``uniqueness`` (NaN where not computed) counts only with a weight > 0.
    """
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    t = np.broadcast_to(np.asarray(threshold, dtype=np.float64), p.shape)
    t = np.clip(np.where(np.isnan(t), 0.5, t), 1e-7, 1 - 1e-7)
    z = (np.log(p) - np.log1p(-p)) - (np.log(t) - np.log1p(-t))  # logit relative to the threshold
    logits = np.stack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)], axis=1)  # [log(1−q), log q]
    has_truth = ~np.isnan(truth)
    correct = np.where(has_truth, (z >= 0) == (truth > 0.5), False)
    mistaken = mistakenness(logits, np.where(has_truth, correct, np.nan))
    return combine_hardness(
        {
            "entropy": prediction_entropy(logits),
            "failure_risk": risk,
            "view_disagreement": view_var,
            "mistakenness": mistaken,
            "uniqueness": uniqueness,
        },
        weights=weights,
    )


def diverse_select(
    scores: ArrayLike,
    embeddings: ArrayLike,
    quota: int,
    *,
    shortlist_factor: int = 10,
    diversity: float = 0.7,
) -> np.ndarray:
    """Pick ``quota`` hard samples that are not near-duplicates of each other.

    The ``quota × shortlist_factor`` highest scores form the shortlist; from it, samples are taken
    greedily by max-marginal-relevance: (1 − diversity) · relevance − diversity · redundancy, where
    relevance is the score min-max scaled over the shortlist and redundancy is the cosine
    similarity to the closest sample already picked. At the default 0.7 a candidate more than
    0.43 cosine-similarity closer to the batch loses even to the least hard shortlisted sample.

    Args:
        scores: hardness per sample [n].
        embeddings: one embedding per sample [n, dim] (any scale: rows are L2-normalised).
        quota: how many to pick (the day's labeling budget).
        shortlist_factor: shortlist size as a multiple of the quota.
        diversity: weight of redundancy in [0, 1); 0 is plain top-k by score.

    Returns:
        Indices into ``scores`` in pick order (hardest first).

    Example:
        >>> diverse_select([0.9, 0.8, 0.1], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], 2).tolist()
        [0, 2]
    """
    s = as_float_array(scores, name="scores")
    emb = as_float_array(embeddings, name="embeddings", ndim=2)
    check_same_length(scores=s, embeddings=emb)
    quota = check_int(quota, name="quota", low=0)
    shortlist_factor = check_int(shortlist_factor, name="shortlist_factor", low=1)
    diversity = check_fraction(diversity, name="diversity", closed="left")
    norms = np.linalg.norm(emb, axis=1)
    if (norms == 0).any():
        raise InputError(f"The 'embeddings' array has an all-zero row at index {int(np.flatnonzero(norms == 0)[0])}.")

    shortlist = np.argsort(-s, kind="stable")[: quota * shortlist_factor]  # hardest first, ties by index
    quota = min(quota, shortlist.size)
    unit = emb[shortlist] / norms[shortlist, None]  # [m, dim]
    top = s[shortlist]
    span = top.max(initial=0.0) - top.min(initial=0.0)
    relevance = (top - top.min(initial=0.0)) / span if span > 0 else np.zeros(shortlist.size)
    redundancy = np.full(shortlist.size, -np.inf)  # max cosine similarity to the picked set
    available = np.ones(shortlist.size, dtype=bool)
    picked: list[int] = []
    for _ in range(quota):
        gain = (1.0 - diversity) * relevance - diversity * np.maximum(redundancy, -1.0)
        best = int(np.argmax(np.where(available, gain, -np.inf)))
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, unit @ unit[best])  # [m]
    return shortlist[np.asarray(picked, dtype=int)]


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = np.max(z, axis=1, keepdims=True)  # [n, 1], finite: rows of only -inf are rejected
    return top + np.log(np.sum(np.exp(z - top), axis=1, keepdims=True))
