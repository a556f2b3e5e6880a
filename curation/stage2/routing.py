"""The cascade policy: Stage-1 answers unless its failure risk is high; then grounded evidence decides.

    failure_risk < r_accept            -> Stage-1's answer                          (stage "stage1")
    strong evidence, one direction     -> that direction                            (stage "stage2")
    otherwise (weak, none, conflicting)-> the configured conservative default       (stage "deferred")

"Recall" defers to roadwork when Stage-1 or weak positive evidence leans that way at a lowered
threshold (validators' MCC punishes a missed work zone as much as a false alarm, but the miner's
known weakness is small, far-away evidence); "balanced" keeps Stage-1's threshold. Weak positive
evidence can only raise the deferred probability (noisy-OR with Stage-1's p), never lower it.

Evaluation helpers are pure: they take arrays and decisions and return numbers; plotting is separate.

Example:
    >>> from curation.stage2.routing import RoutingConfig, route
    >>> route(0.3, 0.05).stage
    'stage1'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from curation.errors import ConfigError, InputError
from curation.schema import Label
from curation.stage1.metrics import mcc
from curation.stage2.detector_evidence import DetectorEvidence
from curation.stage2.keywords import TextEvidence
from curation.typed_config import setting

Stage = Literal["stage1", "stage2", "deferred"]


@dataclass(frozen=True)
class RoutingConfig:
    """Cascade thresholds.

    Attributes:
        r_accept: Stage-1 is accepted when its failure risk is below this.
        threshold: Stage-1's decision threshold on p_roadwork. Jobs on a dataset take it from the
            predictions (``stage1.threshold``, the model's calibrated one; see
            :func:`curation.stage2.cascade.model_routing`); 0.5 is only for arrays with no model behind them.
        default: what a deferred sample becomes: "recall" or "balanced".
        recall_threshold: the lowered threshold "recall" applies to the deferred probability.
        against_decisive: negative (advert) text at or above this, with no positive evidence,
            decides "no roadwork".
    """

    r_accept: float = setting(0.2, help="Accept Stage-1's answer below this failure risk (r_accept).", low=0.0, high=1.0)
    threshold: float = 0.5
    default: Literal["recall", "balanced"] = setting(
        "recall", help="What a deferred sample becomes: recall (a lowered threshold) or balanced.", choices=("recall", "balanced")
    )
    recall_threshold: float = 0.3
    against_decisive: float = 0.6

    def __post_init__(self) -> None:
        for name in ("r_accept", "threshold", "recall_threshold", "against_decisive"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"`{name}` must be in [0, 1]; got {value}.")
        if self.default not in ("recall", "balanced"):
            raise ConfigError(f"`default` must be 'recall' or 'balanced'; got {self.default!r}.")
        if self.recall_threshold > self.threshold:
            raise ConfigError(
                f"`recall_threshold` ({self.recall_threshold}) must not exceed `threshold` ({self.threshold}): "
                "the recall default only ever lowers the bar."
            )

    def at_threshold(self, threshold: float) -> RoutingConfig:
        """This config at Stage-1's calibrated ``threshold``; ``recall_threshold`` never rises above it."""
        return replace(self, threshold=float(threshold), recall_threshold=min(self.recall_threshold, float(threshold)))


@dataclass(frozen=True)
class CascadeDecision:
    """One sample's routing record.

    Attributes:
        label: "roadwork" or "no_roadwork".
        probability: p_roadwork after the cascade.
        stage: "stage1" (accepted), "stage2" (evidence decided) or "deferred" (default applied).
        reason: one sentence a reviewer can read in the App.
        failure_risk: the Stage-1 failure risk the decision started from.
        text_score: positive text evidence (None when OCR was not run).
        detector_score: detector evidence (None when no proposals were scored).
    """

    label: str
    probability: float
    stage: Stage
    reason: str
    failure_risk: float
    text_score: float | None = None
    detector_score: float | None = None


def needs_stage2(failure_risk: float, config: RoutingConfig | None = None) -> bool:
    """Whether a sample's risk sends it to Stage-2 (call before paying for OCR)."""
    return float(failure_risk) >= (config or RoutingConfig()).r_accept


def _label(positive: bool) -> str:
    return str(Label.ROADWORK if positive else Label.NO_ROADWORK)


def route(
    p_roadwork: float,
    failure_risk: float,
    text: TextEvidence | None = None,
    detector: DetectorEvidence | None = None,
    *,
    config: RoutingConfig | None = None,
) -> CascadeDecision:
    """Decide one sample.

    Args:
        p_roadwork: Stage-1's calibrated probability.
        failure_risk: the failure gate's estimate that Stage-1 is wrong, in [0, 1].
        text: OCR keyword evidence, or None when OCR was not run.
        detector: detector evidence, or None when no detector ran.
        config: thresholds and the deferral default.
    """
    cfg = config or RoutingConfig()
    p, risk = float(p_roadwork), float(failure_risk)
    if not (0.0 <= p <= 1.0 and 0.0 <= risk <= 1.0):
        raise InputError(f"`p_roadwork` and `failure_risk` must be in [0, 1]; got {p} and {risk}.")
    stage1_positive = p >= cfg.threshold
    t_score = None if text is None else text.score
    d_score = None if detector is None else detector.score
    if risk < cfg.r_accept:
        return CascadeDecision(
            _label(stage1_positive), p, "stage1",
            f"Stage-1 accepted: failure risk {risk:.2f} < r_accept {cfg.r_accept:.2f}.", risk, t_score, d_score,
        )  # fmt: skip

    support = []
    if text is not None and text.decisive:
        support.append(f"sign text {', '.join(map(repr, text.keywords))} (score {text.score:.2f})")
    if detector is not None and detector.decisive:
        objects = ", ".join(f"{n} {c}" for c, n in detector.counts.items())
        support.append(f"detected {objects} (score {detector.score:.2f})")
    any_positive = max(t_score or 0.0, d_score or 0.0)
    against = 0.0 if text is None else text.against
    strong_against = against >= cfg.against_decisive and any_positive == 0.0

    if support and against < cfg.against_decisive:
        prob = max(p, any_positive)
        return CascadeDecision(
            str(Label.ROADWORK), prob, "stage2", f"Stage-2 evidence: {'; '.join(support)}.", risk, t_score, d_score
        )
    if strong_against:
        ads = ", ".join(m.keyword for m in text.matches if m.polarity < 0)  # type: ignore[union-attr]
        return CascadeDecision(
            str(Label.NO_ROADWORK), min(p, 1.0 - against), "stage2",
            f"Stage-2 evidence against: advert text {ads} (score {against:.2f}) and no roadwork evidence.",
            risk, t_score, d_score,
        )  # fmt: skip

    if support:
        why = "conflicting evidence (roadwork and advert text)"
    elif text is None and detector is None:
        why = "no Stage-2 evidence available"
    else:
        why = f"Stage-2 evidence too weak (text {t_score or 0.0:.2f}, detector {d_score or 0.0:.2f})"
    prob = 1.0 - (1.0 - p) * (1.0 - any_positive)
    cut = cfg.recall_threshold if cfg.default == "recall" else cfg.threshold
    return CascadeDecision(
        _label(prob >= cut), prob, "deferred",
        f"Deferred: {why}; '{cfg.default}' default, p {prob:.2f} vs {cut:.2f}.", risk, t_score, d_score,
    )  # fmt: skip


def route_many(
    p_roadwork: Sequence[float],
    failure_risk: Sequence[float],
    texts: Sequence[TextEvidence | None] | None = None,
    detectors: Sequence[DetectorEvidence | None] | None = None,
    *,
    config: RoutingConfig | None = None,
) -> list[CascadeDecision]:
    """:func:`route` over aligned sequences (None evidence lists mean "not run" for every sample)."""
    n = len(p_roadwork)
    texts = [None] * n if texts is None else list(texts)
    detectors = [None] * n if detectors is None else list(detectors)
    if not len(failure_risk) == len(texts) == len(detectors) == n:
        raise InputError(
            f"Inputs must align: {n} probabilities, {len(failure_risk)} risks, {len(texts)} texts, "
            f"{len(detectors)} detector results."
        )
    return [route(p, r, t, d, config=config) for p, r, t, d in zip(p_roadwork, failure_risk, texts, detectors)]


# Evaluation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CascadeMetrics:
    """Cascade against Stage-1 alone on the same samples.

    Attributes:
        n: samples.
        stage1_mcc, stage1_accuracy: Stage-1 at its threshold.
        cascade_mcc, cascade_accuracy: the cascade's final labels.
        stage2_share: share of samples that reached Stage-2 (the compute spent).
        deferred_share: share that Stage-2 could not decide (the default answered).
    """

    n: int
    stage1_mcc: float
    stage1_accuracy: float
    cascade_mcc: float
    cascade_accuracy: float
    stage2_share: float
    deferred_share: float


def cascade_metrics(
    y_true: Sequence[bool] | np.ndarray,
    p_roadwork: Sequence[float] | np.ndarray,
    decisions: Sequence[CascadeDecision],
    *,
    threshold: float = 0.5,
) -> CascadeMetrics:
    """Compare the cascade's decisions with Stage-1 alone (thresholded at `threshold`)."""
    t = np.asarray(y_true, dtype=bool)
    if not len(t) == len(p_roadwork) == len(decisions):
        raise InputError(f"Inputs must align: {len(t)} labels, {len(p_roadwork)} probabilities, {len(decisions)} decisions.")
    if len(t) == 0:
        raise InputError("Cannot evaluate a cascade on zero samples.")
    s1 = np.asarray(p_roadwork, dtype=float) >= threshold
    final = np.array([d.label == Label.ROADWORK for d in decisions])
    stages = [d.stage for d in decisions]
    return CascadeMetrics(
        n=len(t),
        stage1_mcc=mcc(t, s1),
        stage1_accuracy=float(np.mean(t == s1)),
        cascade_mcc=mcc(t, final),
        cascade_accuracy=float(np.mean(t == final)),
        stage2_share=sum(s != "stage1" for s in stages) / len(t),
        deferred_share=stages.count("deferred") / len(t),
    )


@dataclass(frozen=True)
class DeferralCurve:
    """Cascade quality as r_accept moves from "everything to Stage-2" to "nothing to Stage-2".

    Arrays are aligned with `r_accept`.
    """

    r_accept: np.ndarray
    stage2_share: np.ndarray
    deferred_share: np.ndarray
    accuracy: np.ndarray
    mcc: np.ndarray
    stage1_accuracy: float
    stage1_mcc: float


def deferral_curve(
    y_true: Sequence[bool] | np.ndarray,
    p_roadwork: Sequence[float] | np.ndarray,
    failure_risk: Sequence[float] | np.ndarray,
    texts: Sequence[TextEvidence | None] | None = None,
    detectors: Sequence[DetectorEvidence | None] | None = None,
    *,
    config: RoutingConfig | None = None,
    r_accepts: Sequence[float] | None = None,
) -> DeferralCurve:
    """Route every sample at each r_accept (default: 0 to 1 in steps of 0.05, plus each distinct risk).

    Evidence must be given for every sample so any r_accept can be simulated from one OCR pass.
    """
    cfg = config or RoutingConfig()
    grid = np.unique(np.concatenate([np.linspace(0, 1, 21), np.asarray(failure_risk, dtype=float)]))
    grid = np.asarray(r_accepts if r_accepts is not None else grid, dtype=float)
    if grid.size == 0:
        raise InputError("`r_accepts` is empty; give at least one acceptance threshold.")
    rows = [
        cascade_metrics(
            y_true, p_roadwork,
            route_many(p_roadwork, failure_risk, texts, detectors, config=replace(cfg, r_accept=float(r))),
            threshold=cfg.threshold,
        )
        for r in grid
    ]  # fmt: skip
    return DeferralCurve(
        r_accept=grid,
        stage2_share=np.array([m.stage2_share for m in rows]),
        deferred_share=np.array([m.deferred_share for m in rows]),
        accuracy=np.array([m.cascade_accuracy for m in rows]),
        mcc=np.array([m.cascade_mcc for m in rows]),
        stage1_accuracy=rows[0].stage1_accuracy,
        stage1_mcc=rows[0].stage1_mcc,
    )


def plot_deferral_curve(curve: DeferralCurve, path: str | Path, *, title: str = "Cascade: accuracy vs Stage-2 share") -> Path:
    """Write a PNG: cascade accuracy and MCC against the share sent to Stage-2, Stage-1 alone as lines."""
    from matplotlib.figure import (
        Figure,  # no pyplot: no global backend or figure state is touched
    )

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    order = np.argsort(curve.stage2_share, kind="stable")
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    ax.plot(curve.stage2_share[order], curve.accuracy[order], marker="o", ms=3, label="cascade accuracy")
    ax.plot(curve.stage2_share[order], curve.mcc[order], marker="s", ms=3, label="cascade MCC")
    ax.axhline(curve.stage1_accuracy, ls="--", color="gray", label="Stage-1 accuracy")
    ax.axhline(curve.stage1_mcc, ls=":", color="gray", label="Stage-1 MCC")
    ax.set_xlabel("share of images sent to Stage-2 (failure risk >= r_accept)")
    ax.set_ylabel("score")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
