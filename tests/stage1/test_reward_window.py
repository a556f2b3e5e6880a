"""The validator's windowed reward, replayed: hand-computed windows, rounding, consensus, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curation.errors import InputError
from curation.stage1.query_policies import Reward, available_policies, load_policy
from curation.stage1.reward_window import simulate_reward, window_rewards

SMALL = Reward(mcc_window=4, accuracy_window=2, mcc_weight=0.5, accuracy_weight=0.5, exponent=3.0, rounding="half_to_even")


def test_one_window_by_hand():
    # last 4: MCC of [1,1,0,0] vs [1,0,0,0] = 1/sqrt(3); last 2 all right: accuracy 1
    got = window_rewards(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 0]]), reward=SMALL)
    assert got[0] == pytest.approx((0.5 / math.sqrt(3) + 0.5) ** 3)
    # a window with one class of labels has MCC 0 (the subnet's rule), accuracy still counts
    assert window_rewards(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]), reward=SMALL)[0] == pytest.approx(0.5**3)
    # negative MCC is floored at 0: all wrong gives 0
    assert window_rewards(np.array([[1, 1, 0, 0]]), np.array([[0, 0, 1, 1]]), reward=SMALL)[0] == 0.0


@pytest.mark.parametrize("name", available_policies())
def test_every_contract_pays_a_perfect_miner_1_and_a_constant_one_little(name):
    policy = load_policy(name)
    y = np.array([0, 1] * 60)
    assert simulate_reward(y, y.astype(float), policy.reward, n_histories=100, n_bootstrap=20).mean == 1.0
    constant = simulate_reward(y, np.zeros(y.size), policy.reward, n_histories=200, n_bootstrap=20)
    assert constant.mean < 0.1  # MCC 0 (one class of answers), accuracy ~0.5 over 10: (0.5 · ~0.5) ** 3


def test_p_of_one_half_counts_as_no_roadwork_like_np_round():
    y = np.array([0, 1] * 50)
    r = load_policy("streetvision-2025-11").reward
    half = simulate_reward(y, np.full(y.size, 0.5), r, n_histories=100, n_bootstrap=10, seed=3)
    zero = simulate_reward(y, np.zeros(y.size), r, n_histories=100, n_bootstrap=10, seed=3)
    assert half == zero


def test_consensus_labels_replace_the_truth_on_their_share():
    y = np.array([0, 1] * 50)
    r = load_policy("streetvision-2026-05").reward
    # a perfect miner scored only against a consensus that is always wrong earns nothing
    against_wrong = simulate_reward(y, y.astype(float), r, consensus_share=1.0, consensus=1 - y, n_histories=100, n_bootstrap=10)
    assert against_wrong.mean == 0.0 and against_wrong.consensus_from == "given"
    assumed = simulate_reward(y, y.astype(float), r, consensus_share=0.1, n_histories=100, n_bootstrap=10)
    assert assumed.mean == 1.0 and assumed.consensus_from == "truth"


def test_interval_brackets_the_mean_and_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    r = load_policy("streetvision-2026-05").reward

    def estimate(n):
        y = rng.integers(0, 2, n)
        p = np.where(rng.random(n) < 0.8, y, 1 - y).astype(float)
        return simulate_reward(y, p, r, n_histories=300, n_bootstrap=100, seed=1)

    small, large = estimate(60), estimate(3000)
    for e in (small, large):
        assert e.low <= e.mean <= e.high and e.spread_low <= e.mean <= e.spread_high
    assert large.high - large.low < small.high - small.low
    # 80% right, balanced: MCC ~0.6, accuracy ~0.8 → about (0.3 + 0.4) ** 3 = 0.34 before window noise
    assert 0.25 < large.mean < 0.40


def test_bad_inputs_are_named():
    r = load_policy("streetvision-2026-05").reward
    with pytest.raises(InputError, match="both classes"):
        simulate_reward(np.ones(10), np.ones(10), r)
    with pytest.raises(InputError, match="differ in length"):
        simulate_reward(np.array([0, 1]), np.array([0.1]), r)
    with pytest.raises(InputError, match="consensus_share"):
        simulate_reward(np.array([0, 1]), np.array([0.1, 0.9]), r, consensus_share=1.5)
