from __future__ import annotations

import pytest

from curation.errors import ConfigError
from curation.synth.targeting import (
    CategoryStats,
    allocate_budget,
    largest_remainder,
    shrunk_error_rates,
    stats_from_counts,
)

CATS = ("ad", "crane", "foliage", "vest", "sunset_light", "fence", "vehicle")


def test_budget_goes_to_the_failing_categories():
    stats = stats_from_counts(
        {"ad": 50, "crane": 40, "foliage": 60, "vest": 30, "sunset_light": 20, "fence": 25, "vehicle": 45},
        {"ad": 1, "crane": 28, "foliage": 0, "vest": 2, "sunset_light": 12, "fence": 0, "vehicle": 1},
    )
    out = allocate_budget(stats, 100, categories=CATS, exploration=0.0)
    assert sum(out.values()) == 100
    assert list(out) == list(CATS)
    top = sorted(out, key=out.get, reverse=True)[:2]
    assert set(top) == {"crane", "sunset_light"}
    assert out["crane"] > out["sunset_light"] > 0
    assert out["foliage"] == 0 and out["fence"] == 0  # solved categories get nothing without exploration


def test_exploration_keeps_every_category_covered():
    stats = [CategoryStats("crane", 40, 30), CategoryStats("ad", 40, 0)]
    out = allocate_budget(stats, 20, categories=CATS, exploration=0.35)
    assert sum(out.values()) == 20
    assert all(n >= 1 for n in out.values())
    assert out["crane"] == max(out.values())


def test_small_samples_are_shrunk_towards_the_overall_rate():
    # 2/2 wrong is pulled most of the way to the overall rate; 60/100 barely moves
    stats = [CategoryStats("vest", 2, 2), CategoryStats("crane", 100, 60), CategoryStats("ad", 100, 0)]
    rates = shrunk_error_rates(stats, prior_strength=5)
    overall = 62 / 202
    assert overall < rates["vest"] < 0.6
    assert rates["crane"] == pytest.approx(0.586, abs=1e-3)
    assert rates["ad"] > 0.0
    assert shrunk_error_rates([CategoryStats("x", 0, 0)]) == {"x": 0.0}


def test_degenerate_cases():
    assert allocate_budget([], 10, categories=()) == {}
    assert allocate_budget([CategoryStats("ad", 10, 0)], 0, categories=CATS) == dict.fromkeys(CATS, 0)
    # nothing fails (or no data at all): spread evenly, still summing to the budget
    even = allocate_budget([], 14, categories=CATS)
    assert sum(even.values()) == 14 and set(even.values()) == {2}
    # a category outside the bank (other) is ignored
    out = allocate_budget([CategoryStats("other", 10, 10), CategoryStats("ad", 10, 5)], 5, categories=("ad",))
    assert out == {"ad": 5}


def test_order_invariance_and_idempotence():
    stats = [CategoryStats("crane", 40, 30), CategoryStats("vest", 30, 9), CategoryStats("ad", 40, 1)]
    a = allocate_budget(stats, 33, categories=CATS)
    b = allocate_budget(list(reversed(stats)), 33, categories=CATS)
    assert a == b == allocate_budget(stats, 33, categories=CATS)


def test_largest_remainder_sums_exactly():
    assert largest_remainder([1, 1, 1], 10) == [4, 3, 3]
    assert sum(largest_remainder([0.1, 0.7, 0.2], 7)) == 7
    assert largest_remainder([0, 0], 5) == [0, 0]


def test_validation_messages():
    with pytest.raises(ConfigError, match="errors <= mined"):
        CategoryStats("ad", 2, 3)
    with pytest.raises(ConfigError, match=r"`budget` parameter must be an int in \[0, inf\). Got -1"):
        allocate_budget([], -1)
    with pytest.raises(ConfigError, match="`exploration`"):
        allocate_budget([], 3, exploration=2.0)
    with pytest.raises(ConfigError, match="no mined count"):
        stats_from_counts({"ad": 1}, {"crane": 1})
