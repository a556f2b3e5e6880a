"""What a validator would pay: the StreetVision reward over its sliding windows, simulated.

The reward is not a metric of a test set: a validator keeps each miner's last answers and pays
``(w_mcc · max(0, MCC over the last 100) + w_acc · accuracy over the last 10) ** 3`` on
``np.round(p)``, with labels requested 50/50 and (in the newest contract) a share of tasks scored
against the miners' consensus. :func:`simulate_reward` replays that on stored predictions: many
validator histories drawn from the evaluation samples, the reward at the end of each, and a
bootstrap over the samples for the uncertainty of the mean. Pure numpy, no FiftyOne.

Example:
    >>> import numpy as np
    >>> from curation.stage1.query_policies import load_policy
    >>> y = np.array([0, 1] * 50); perfect = y.astype(float)
    >>> simulate_reward(y, perfect, load_policy("streetvision-2025-11").reward, n_histories=50).mean
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from curation.errors import InputError
from curation.stage1.arrays import as_float_array, check_fraction, check_int

if TYPE_CHECKING:
    from curation.stage1.query_policies import QueryPolicy, Reward

__all__ = ["RewardEstimate", "simulate_reward", "window_rewards"]


@dataclass(frozen=True)
class RewardEstimate:
    """Expected end-of-window reward and how sure we are of it.

    Attributes:
        mean: expected reward over validator histories drawn from the samples.
        low, high: bootstrap interval of ``mean`` over resampled evaluation samples.
        spread_low, spread_high: 10th and 90th percentile of single histories (what one day looks like).
        confidence: two-sided confidence of ``low``/``high``.
        consensus_share: share of tasks scored against the consensus, not the truth.
        consensus_from: ``truth`` when no consensus labels were given (an assumption), else ``given``.
    """

    mean: float
    low: float
    high: float
    spread_low: float
    spread_high: float
    confidence: float
    consensus_share: float
    consensus_from: str


def window_rewards(labels: np.ndarray, answers: np.ndarray, *, reward: Reward) -> np.ndarray:
    """Reward at the end of each history. ``labels``/``answers``: [H, W] of 0/1, oldest first.

    ``reward`` is a policy's :class:`~curation.stage1.query_policies.Reward` (window sizes,
    weights, exponent, MCC floor). MCC is 0 when a window holds one class of labels or answers.
    """
    m_win, a_win = int(reward.mcc_window), int(reward.accuracy_window)
    y, a = labels[:, -m_win:].astype(bool), answers[:, -m_win:].astype(bool)
    tp, tn = (y & a).sum(1).astype(float), (~y & ~a).sum(1).astype(float)
    fp, fn = (~y & a).sum(1).astype(float), (y & ~a).sum(1).astype(float)
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        mcc = np.where(denominator > 0, (tp * tn - fp * fn) / denominator, 0.0)
    accuracy = (labels[:, -a_win:] == answers[:, -a_win:]).mean(1)
    score = reward.mcc_weight * np.maximum(reward.mcc_floor, mcc) + reward.accuracy_weight * accuracy
    return score**reward.exponent


def simulate_reward(
    y_true: ArrayLike,
    p: ArrayLike,
    reward: Reward,
    *,
    consensus_share: float = 0.0,
    consensus: ArrayLike | None = None,
    positive_share: float = 0.5,
    n_histories: int = 400,
    n_bootstrap: int = 200,
    confidence: float = 0.9,
    seed: int = 0,
) -> RewardEstimate:
    """Expected StreetVision reward of answers ``p`` on samples with labels ``y_true``.

    Each history draws ``max(mcc_window, accuracy_window)`` queries: the requested label is positive
    with ``positive_share`` (validators ask 50/50), then a sample of that class at random. A query
    is scored against ``consensus`` (the miners' rounded mean) with ``consensus_share``, else
    against the truth; without consensus labels the truth stands in (optimistic: the consensus of
    other miners is not known here) and the estimate says so.

    Args:
        y_true: 0/1 labels; both classes must be present.
        p: the miner's answers in [0, 1]; rounded as the validator does (``np.round``: 0.5 → 0).
        reward: a policy's ``Reward``.
    """
    y = as_float_array(y_true, name="y_true").astype(int)
    answers = np.round(as_float_array(p, name="p")).astype(int)
    if y.shape != answers.shape:
        raise InputError(f"`y_true` and `p` differ in length: {y.size} vs {answers.size}.")
    agreed = y if consensus is None else np.round(as_float_array(consensus, name="consensus")).astype(int)
    if agreed.shape != y.shape:
        raise InputError(f"`consensus` holds {agreed.size} labels for {y.size} samples.")
    consensus_share = check_fraction(consensus_share, name="consensus_share", closed="both")
    positive_share = check_fraction(positive_share, name="positive_share")
    confidence = check_fraction(confidence, name="confidence")
    n_histories = check_int(n_histories, name="n_histories", low=1)
    n_bootstrap = check_int(n_bootstrap, name="n_bootstrap", low=1)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if positives.size == 0 or negatives.size == 0:
        raise InputError("The reward needs samples of both classes (validators ask for both).")

    rng = np.random.default_rng(seed)
    width = max(int(reward.mcc_window), int(reward.accuracy_window))

    def rewards(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        ask_positive = rng.random((n_histories, width)) < positive_share
        idx = np.where(ask_positive, rng.choice(pos, (n_histories, width)), rng.choice(neg, (n_histories, width)))
        by_consensus = rng.random((n_histories, width)) < consensus_share
        labels = np.where(by_consensus, agreed[idx], y[idx])
        return window_rewards(labels, answers[idx], reward=reward)

    single = rewards(positives, negatives)
    means = np.array([rewards(rng.choice(positives, positives.size), rng.choice(negatives, negatives.size)).mean() for _ in range(n_bootstrap)])
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    spread_low, spread_high = np.quantile(single, [0.1, 0.9])
    return RewardEstimate(
        mean=float(single.mean()), low=float(low), high=float(high), spread_low=float(spread_low),
        spread_high=float(spread_high), confidence=confidence, consensus_share=consensus_share,
        consensus_from="truth" if consensus is None else "given",
    )  # fmt: skip


def rewards_by_policy(y_true: ArrayLike, decided: ArrayLike, policies: Sequence[QueryPolicy], *, seed: int = 0) -> dict[str, RewardEstimate]:
    """:func:`simulate_reward` under each contract (its windows, weights and consensus share).

    ``decided`` are the 0/1 answers the exported model gives: the bundle shifts p so that
    ``round(p)`` is exactly the calibrated decision, which is what the validator scores.
    """
    return {
        policy.name: simulate_reward(y_true, decided, policy.reward, consensus_share=policy.consensus_share,
                                     positive_share=policy.sources.label_positive_share, seed=seed)
        for policy in policies
    }  # fmt: skip
