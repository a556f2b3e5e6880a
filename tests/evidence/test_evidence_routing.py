"""The cascade policy on constructed cases, and its evaluation helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curation.errors import ConfigError, InputError
from curation.stage2.detector_evidence import detector_evidence
from curation.stage2.keywords import text_evidence
from curation.stage2.routing import (
    RoutingConfig,
    cascade_metrics,
    deferral_curve,
    mcc,
    needs_stage2,
    plot_deferral_curve,
    route,
    route_many,
)

SIGN = text_evidence(["ROAD WORK AHEAD"])
WEAK_SIGN = text_evidence(["CAUTION"])
ADVERT = text_evidence(["SALE", "OPEN", "SALE 50% OFF"], [0.99, 0.99, 0.99])
NO_TEXT = text_evidence([])
CONES = detector_evidence([("cone", 0.9), ("cone", 0.8), ("drum", 0.7)])
ONE_FAINT_CONE = detector_evidence([("cone", 0.4)])


@pytest.mark.parametrize(
    ("p", "risk", "text", "det", "config", "label", "stage", "reason_part"),
    [
        # Low risk: Stage-1 stands, whatever Stage-2 would say.
        (0.9, 0.05, None, None, RoutingConfig(), "roadwork", "stage1", "accepted"),
        (0.1, 0.19, SIGN, CONES, RoutingConfig(), "no_roadwork", "stage1", "accepted"),
        # High risk, strong evidence decides (either kind), overriding a negative Stage-1.
        (0.1, 0.6, SIGN, None, RoutingConfig(), "roadwork", "stage2", "road work"),
        (0.1, 0.6, NO_TEXT, CONES, RoutingConfig(), "roadwork", "stage2", "2 cone"),
        (0.2, 0.9, SIGN, CONES, RoutingConfig(), "roadwork", "stage2", "sign text"),
        # Advert text with no roadwork evidence at all decides "no roadwork".
        (0.7, 0.6, ADVERT, detector_evidence([]), RoutingConfig(), "no_roadwork", "stage2", "advert"),
        # Roadwork sign and advert text together conflict: defer.
        (0.2, 0.6, text_evidence(["ROAD WORK", "SALE", "OPEN"]), None, RoutingConfig(), "roadwork", "deferred", "conflicting"),
        # Weak evidence defers; "recall" lowers the bar, "balanced" keeps Stage-1's.
        (0.2, 0.6, WEAK_SIGN, None, RoutingConfig(default="recall"), "roadwork", "deferred", "too weak"),
        (0.2, 0.6, NO_TEXT, ONE_FAINT_CONE, RoutingConfig(default="recall"), "roadwork", "deferred", "too weak"),
        (0.35, 0.6, NO_TEXT, None, RoutingConfig(default="recall"), "roadwork", "deferred", "recall"),
        (0.35, 0.6, NO_TEXT, None, RoutingConfig(default="balanced"), "no_roadwork", "deferred", "balanced"),
        (0.1, 0.6, NO_TEXT, detector_evidence([]), RoutingConfig(default="recall"), "no_roadwork", "deferred", "too weak"),
        (0.6, 0.6, None, None, RoutingConfig(default="balanced"), "roadwork", "deferred", "no Stage-2 evidence"),
    ],
)
def test_constructed_cases(p, risk, text, det, config, label, stage, reason_part) -> None:
    d = route(p, risk, text, det, config=config)
    assert (d.label, d.stage) == (label, stage), d.reason
    assert reason_part in d.reason
    assert (d.probability >= config.threshold) == (label == "roadwork") or stage == "deferred"
    assert d.failure_risk == risk


def test_deferred_probability_only_rises_with_weak_evidence() -> None:
    d = route(0.2, 0.6, WEAK_SIGN)
    assert d.probability == pytest.approx(1 - 0.8 * 0.5)
    assert route(0.2, 0.6, NO_TEXT).probability == pytest.approx(0.2)


def test_needs_stage2_boundary() -> None:
    cfg = RoutingConfig(r_accept=0.3)
    assert not needs_stage2(0.29, cfg) and needs_stage2(0.3, cfg)


def test_validation() -> None:
    with pytest.raises(ConfigError, match="default"):
        RoutingConfig(default="precision")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="recall_threshold"):
        RoutingConfig(threshold=0.4, recall_threshold=0.5)
    with pytest.raises(InputError, match="failure_risk"):
        route(0.5, 1.2)
    with pytest.raises(InputError, match="align"):
        route_many([0.5, 0.4], [0.1])


def test_mcc_hand_computed_and_degenerate_cases() -> None:
    # tp=2, tn=1, fp=1, fn=0: (2*1 - 1*0) / sqrt(3*2*2*1)
    assert mcc([1, 1, 0, 0], [1, 1, 1, 0]) == pytest.approx(2 / np.sqrt(12))
    assert mcc([1, 0], [0, 1]) == pytest.approx(-1.0)
    assert mcc([True, True], [True, True]) == 0.0  # an empty margin: 0, as scikit-learn returns


def _toy_set():
    """Six samples: Stage-1 is wrong exactly where its risk is high, and Stage-2 evidence is right there."""
    y = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    p = np.array([0.9, 0.2, 0.1, 0.8, 0.3, 0.2])  # samples 1, 3 and 4 are Stage-1 mistakes
    risk = np.array([0.05, 0.7, 0.1, 0.5, 0.9, 0.3])
    texts = [NO_TEXT, SIGN, NO_TEXT, ADVERT, NO_TEXT, NO_TEXT]
    dets = [detector_evidence([])] * 4 + [CONES, detector_evidence([])]
    return y, p, risk, texts, dets


def test_cascade_metrics_hand_computed() -> None:
    y, p, risk, texts, dets = _toy_set()
    decisions = route_many(p, risk, texts, dets, config=RoutingConfig(r_accept=0.2, default="balanced"))
    assert [d.stage for d in decisions] == ["stage1", "stage2", "stage1", "stage2", "stage2", "deferred"]
    m = cascade_metrics(y, p, decisions)
    assert m.stage1_accuracy == pytest.approx(3 / 6)
    assert m.cascade_accuracy == 1.0 and m.cascade_mcc == pytest.approx(1.0)
    assert m.stage2_share == pytest.approx(4 / 6) and m.deferred_share == pytest.approx(1 / 6)


def test_deferral_curve_and_plot(tmp_path: Path) -> None:
    y, p, risk, texts, dets = _toy_set()
    curve = deferral_curve(y, p, risk, texts, dets, config=RoutingConfig(default="balanced"), r_accepts=[0.0, 0.4, 0.6, 1.0])
    assert curve.stage2_share.tolist() == pytest.approx([1.0, 3 / 6, 2 / 6, 0.0])
    assert curve.accuracy[-1] == pytest.approx(curve.stage1_accuracy)  # nothing routed = Stage-1 alone
    assert curve.accuracy[0] == 1.0
    png = plot_deferral_curve(curve, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="empty"):
        deferral_curve(y, p, risk, texts, dets, r_accepts=[])
