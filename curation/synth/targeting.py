"""Targeting: spend a generation budget on the hard-negative categories where Stage-1 fails most.

Input is, per ``hn_category``, how many hard negatives were mined and how many of them the current
Stage-1 gets wrong. The error rate of a category with few mined examples is shrunk towards the
overall error rate (a Beta prior of ``prior_strength`` pseudo-samples), so three lucky mistakes do
not grab the whole budget. Categories whose shrunk error rate is below ``min_error_rate`` are
considered solved and get nothing beyond the ``exploration`` share, which is spread evenly so every
category keeps a little coverage. The budget is split with largest-remainder rounding: the counts
always sum to the budget, and ties go to the category listed first.

Pure: plain numbers in, a dict out.

Example:
    >>> from curation.synth.targeting import CategoryStats, allocate_budget
    >>> stats = [CategoryStats("crane", mined=40, errors=30), CategoryStats("ad", mined=400, errors=2)]
    >>> allocate_budget(stats, 10, exploration=0.0)
    {'crane': 10, 'ad': 0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from curation.errors import ConfigError


@dataclass(frozen=True)
class CategoryStats:
    """Mined hard negatives of one category and how many Stage-1 gets wrong."""

    category: str
    mined: int
    errors: int

    def __post_init__(self) -> None:
        if int(self.mined) < 0 or int(self.errors) < 0 or int(self.errors) > int(self.mined):
            raise ConfigError(
                f"CategoryStats for `{self.category}` needs 0 <= errors <= mined. "
                f"Got mined={self.mined}, errors={self.errors} instead."
            )


@dataclass(frozen=True)
class TargetingConfig:
    """How the budget is allocated.

    Attributes:
        prior_strength: pseudo-samples pulling a category's error rate towards the overall rate.
        min_error_rate: shrunk error rate below which a category is considered solved.
        exploration: share of the budget spread evenly over all categories regardless of errors.
        power: weights are ``rate ** power``; above 1 concentrates the budget on the worst categories.
    """

    prior_strength: float = 5.0
    min_error_rate: float = 0.05
    exploration: float = 0.1
    power: float = 1.0

    def __post_init__(self) -> None:
        if not float(self.prior_strength) >= 0:
            raise ConfigError(f"The `prior_strength` parameter must be a float in [0, inf). Got {self.prior_strength} instead.")
        for name in ("min_error_rate", "exploration"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"The `{name}` parameter must be a float in [0, 1]. Got {value} instead.")
        if not float(self.power) > 0:
            raise ConfigError(f"The `power` parameter must be a float in (0, inf). Got {self.power} instead.")


def stats_from_counts(mined: Mapping[str, int], errors: Mapping[str, int]) -> list[CategoryStats]:
    """Pair ``{category: mined}`` with ``{category: errors}`` (missing errors count as 0)."""
    unknown = sorted(set(errors) - set(mined))
    if unknown:
        raise ConfigError(f"Error counts for `{unknown[0]}` have no mined count; give both for every category.")
    return [CategoryStats(c, int(n), int(errors.get(c, 0))) for c, n in mined.items()]


def shrunk_error_rates(stats: Sequence[CategoryStats], *, prior_strength: float = 5.0) -> dict[str, float]:
    """Per-category error rate shrunk towards the overall rate: ``(e + k·g) / (n + k)``.

    A category with no mined samples gets the overall rate ``g``; with no data at all, 0.
    """
    total = sum(s.mined for s in stats)
    overall = sum(s.errors for s in stats) / total if total else 0.0
    out: dict[str, float] = {}
    for s in stats:
        denominator = s.mined + prior_strength
        out[s.category] = (s.errors + prior_strength * overall) / denominator if denominator > 0 else overall
    return out


def allocate_budget(
    stats: Sequence[CategoryStats],
    budget: int,
    *,
    config: TargetingConfig | None = None,
    categories: Sequence[str] | None = None,
    **overrides: float,
) -> dict[str, int]:
    """Split ``budget`` images over categories, most to the ones Stage-1 fails most.

    Args:
        stats: mined count and error count per category.
        budget: images to generate, >= 0.
        config: allocation options; keyword ``overrides`` (``exploration=0.0``) replace its fields.
        categories: the categories that can be generated (the prompt bank's); stats of other
            categories (``other``) are ignored, and listed categories without stats get only
            exploration. None means the categories in ``stats``.

    Returns:
        ``{category: count}`` in ``categories`` order, summing to ``budget``. When no category
        fails (all below ``min_error_rate``) the budget is spread evenly.
    """
    if int(budget) < 0:
        raise ConfigError(f"The `budget` parameter must be an int in [0, inf). Got {budget} instead.")
    config = TargetingConfig(**{**(config or TargetingConfig()).__dict__, **overrides})
    names = list(categories) if categories is not None else [s.category for s in stats]
    if len(set(names)) != len(names):
        raise ConfigError(f"The `categories` parameter lists a category twice: {names}.")
    if not names:
        return {}
    usable = [s for s in stats if s.category in set(names)]
    rates = shrunk_error_rates(usable, prior_strength=config.prior_strength)
    weights = [rates.get(c, 0.0) ** config.power if rates.get(c, 0.0) >= config.min_error_rate else 0.0 for c in names]
    total = sum(weights)
    even = [1.0 / len(names)] * len(names)
    if total <= 0:
        shares = even
    else:
        shares = [config.exploration * e + (1 - config.exploration) * w / total for e, w in zip(even, weights)]
    return dict(zip(names, largest_remainder(shares, int(budget))))


def largest_remainder(shares: Sequence[float], total: int) -> list[int]:
    """Integers proportional to ``shares`` that sum to ``total``; ties go to the earlier entry."""
    s = sum(shares)
    if total == 0 or s <= 0:
        return [0] * len(shares)
    exact = [total * x / s for x in shares]
    counts = [math.floor(x) for x in exact]
    left = total - sum(counts)
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return counts
