"""The demo's floors: read from the steps' results, judged against the issue's numbers, stored as JSON."""

from __future__ import annotations

import json
from types import SimpleNamespace

from curation.demo.job import DemoReport, demo_summary, floor_lines


def _report(*, champion_mcc, auroc, ltt, fpr_before, fpr_after) -> DemoReport:
    calib = lambda mcc, fpr: {"overall": {"mcc": mcc}, "orange_distractor": {"fpr": fpr}}  # noqa: E731
    retrain = SimpleNamespace(
        comparison={"champion": {"calib": calib(champion_mcc, fpr_before)}, "challenger": {"calib": calib(0.4, fpr_after)}},
        promoted=False,
    )
    report = DemoReport()
    report.steps = {
        "champion": {"version": "0.1.0", "backbone": "efficientnet-lite0 (ImageNet-pretrained)"},
        "gate": SimpleNamespace(metrics={"auroc": auroc}, ltt=ltt),
        "ceiling": SimpleNamespace(share_kept=0.66),
        "retrain": retrain,
    }
    report.seconds = {"predict": 12.34}
    return report


def test_floors_met_and_missed():
    summary = demo_summary(_report(champion_mcc=0.52, auroc=0.69, ltt={"threshold": 0.2, "coverage": 0.3}, fpr_before=0.5, fpr_after=0.5))
    assert summary["backbone"].endswith("(ImageNet-pretrained)") and summary["seconds"] == {"predict": 12.3}
    met = [m for _, m in floor_lines(summary)]
    assert met == [True, False, True, False]  # 0.52 ≥ 0.5; 0.69 < 0.7; threshold with coverage; FPR not lowered
    json.dumps(summary)  # a run record


def test_the_mcc_floor_reads_the_champion_the_demo_ends_with():
    report = _report(champion_mcc=0.4, auroc=0.8, ltt={"threshold": None}, fpr_before=0.5, fpr_after=0.0)
    report.steps["retrain"].promoted = True  # the challenger (0.4 + ... = 0.4 in _report) becomes champion
    report.steps["retrain"].comparison["challenger"]["calib"]["overall"]["mcc"] = 0.55
    (text, met), *_ = floor_lines(demo_summary(report))
    assert met and "promoted challenger" in text and "first champion scored 0.400" in text
    report.steps["retrain"].promoted = False
    assert floor_lines(demo_summary(report))[0][1] is False


def test_ltt_without_threshold_and_missing_steps():
    summary = demo_summary(_report(champion_mcc=0.1, auroc=0.85, ltt={"threshold": None}, fpr_before=0.9, fpr_after=0.8))
    assert [m for _, m in floor_lines(summary)] == [False, True, False, True]
    empty = demo_summary(DemoReport())
    assert [m for _, m in floor_lines(empty)] == [None, None, None, None]
