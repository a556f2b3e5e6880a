"""Detector evidence: roadwork-object proposals (class, confidence) turned into one score in [0, 1].

Each kept detection is an independent chance that a work zone is present, worth
``weight(class) x confidence``; the score is their noisy-OR, 1 - prod(1 - w_i c_i). A row of cones
therefore adds up, one faint cone does not, and context classes (road, sidewalk, police) weigh 0.
Only the ``max_per_class`` most confident detections of each class count, because 30 cones in one
line are one piece of evidence, not 30.

Example:
    >>> from curation.stage2.detector_evidence import detector_evidence
    >>> ev = detector_evidence([("cone", 0.9), ("cone", 0.5), ("road", 0.99)])
    >>> round(ev.score, 3), ev.counts
    (0.95, {'cone': 2})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from curation.errors import ConfigError, InputError
from curation.schema import PRIMITIVE_CLASSES, ROADWORK_PRIMITIVES

# Classes that also stand outside work zones (a fence around a park, a parked truck) count less.
_AMBIGUOUS = {"fence": 0.5, "work_vehicle": 0.7, "work_equipment": 0.7, "other_roadwork": 0.6, "worker": 0.8}

DEFAULT_CLASS_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {name: _AMBIGUOUS.get(name, 1.0) for name in ROADWORK_PRIMITIVES}
)
"""Roadwork primitives weigh 1 (ambiguous ones less); context classes are absent, so they weigh 0."""


@dataclass(frozen=True)
class DetectorConfig:
    """How proposals become evidence.

    Attributes:
        class_weights: weight in [0, 1] per unified class name; classes not listed weigh 0.
        min_confidence: detections below this are noise and are dropped before counting.
        max_per_class: only this many most confident detections per class count.
        decisive_score: a score at or above this decides on its own.
    """

    class_weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_CLASS_WEIGHTS)
    min_confidence: float = 0.25
    max_per_class: int = 3
    decisive_score: float = 0.9

    def __post_init__(self) -> None:
        for name, weight in self.class_weights.items():
            if name not in PRIMITIVE_CLASSES:
                raise ConfigError(
                    f"`class_weights` names unknown class `{name}`; allowed: {sorted(PRIMITIVE_CLASSES)}."
                )
            if not 0.0 <= weight <= 1.0:
                raise ConfigError(f"`class_weights[{name!r}]` must be in [0, 1]; got {weight}.")
        for attr in ("min_confidence", "decisive_score"):
            if not 0.0 <= getattr(self, attr) <= 1.0:
                raise ConfigError(f"`{attr}` must be in [0, 1]; got {getattr(self, attr)}.")
        if self.max_per_class < 1:
            raise ConfigError(f"`max_per_class` must be >= 1; got {self.max_per_class}.")


@dataclass(frozen=True)
class DetectorEvidence:
    """What the detector says.

    Attributes:
        score: noisy-OR of weight x confidence over the counted detections, in [0, 1].
        decisive: score >= the config's decisive_score.
        counts: counted detections per class with non-zero weight.
        per_class: each class's own noisy-OR contribution (what the App shows as "why").
    """

    score: float
    decisive: bool
    counts: dict[str, int]
    per_class: dict[str, float]


def _pairs(proposals: Iterable[Any]) -> Iterable[tuple[str, float]]:
    """Accept (label, confidence) pairs or objects with .label/.confidence (FiftyOne Detections)."""
    for p in proposals:
        label, conf = (p if isinstance(p, tuple) else (getattr(p, "label", None), getattr(p, "confidence", None)))
        if not isinstance(label, str) or conf is None or not 0.0 <= float(conf) <= 1.0:
            raise InputError(f"A proposal needs a class name and a confidence in [0, 1]; got {p!r}.")
        yield label, float(conf)


def detector_evidence(proposals: Iterable[Any], *, config: DetectorConfig | None = None) -> DetectorEvidence:
    """Score roadwork-object proposals.

    Args:
        proposals: (label, confidence) pairs or Detection-like objects, labels in the unified classes.
        config: class weights and thresholds.
    """
    cfg = config or DetectorConfig()
    by_class: dict[str, list[float]] = {}
    for label, conf in _pairs(proposals):
        if conf >= cfg.min_confidence and cfg.class_weights.get(label, 0.0) > 0.0:
            by_class.setdefault(label, []).append(conf)
    miss, counts, per_class = 1.0, {}, {}
    for label, confs in sorted(by_class.items()):
        top = sorted(confs, reverse=True)[: cfg.max_per_class]
        class_miss = 1.0
        for c in top:
            class_miss *= 1.0 - cfg.class_weights[label] * c
        counts[label], per_class[label] = len(top), 1.0 - class_miss
        miss *= class_miss
    score = 1.0 - miss
    return DetectorEvidence(score=score, decisive=score >= cfg.decisive_score, counts=counts, per_class=per_class)
