"""Detector evidence on hand-computed values."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from curation.errors import ConfigError, InputError
from curation.stage2.detector_evidence import DetectorConfig, detector_evidence


def test_noisy_or_hand_computed() -> None:
    ev = detector_evidence([("cone", 0.9), ("cone", 0.5), ("drum", 0.6), ("road", 0.99), ("fence", 0.8)])
    # cone: 1-(0.1)(0.5)=0.95; drum: 0.6; fence weighs 0.5 -> 0.4; road weighs 0.
    assert ev.per_class == pytest.approx({"cone": 0.95, "drum": 0.6, "fence": 0.4})
    assert ev.score == pytest.approx(1 - 0.05 * 0.4 * 0.6)
    assert ev.counts == {"cone": 2, "drum": 1, "fence": 1}
    assert ev.decisive  # 0.988 >= 0.9


def test_low_confidence_and_per_class_cap() -> None:
    cfg = DetectorConfig(max_per_class=2, min_confidence=0.3)
    ev = detector_evidence([("cone", 0.5)] * 10 + [("barrier", 0.2)], config=cfg)
    assert ev.counts == {"cone": 2}
    assert ev.score == pytest.approx(1 - 0.5 * 0.5)
    assert not ev.decisive


def test_detection_objects_and_empty() -> None:
    dets = [SimpleNamespace(label="arrow_board", confidence=0.7)]
    assert detector_evidence(dets).score == pytest.approx(0.7)
    empty = detector_evidence([])
    assert (empty.score, empty.decisive, empty.counts) == (0.0, False, {})


def test_order_invariance() -> None:
    props = [("cone", 0.9), ("worker", 0.6), ("cone", 0.4), ("drum", 0.3)]
    assert detector_evidence(props).score == pytest.approx(detector_evidence(list(reversed(props))).score)


def test_validation() -> None:
    with pytest.raises(ConfigError, match="unknown class `cones`"):
        DetectorConfig(class_weights={"cones": 1.0})
    with pytest.raises(ConfigError, match="max_per_class"):
        DetectorConfig(max_per_class=0)
    with pytest.raises(InputError, match="confidence"):
        detector_evidence([("cone", 1.5)])
