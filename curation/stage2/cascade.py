"""The Stage-2 cascade in the dataset: OCR and detector evidence for risky samples, one decision for all.

:func:`run_stage2` picks the samples whose Stage-1 failure risk reaches ``r_accept`` (or every
predicted sample), reads text from the whole image and from Stage-1's evidence views, scores the
text and the detector proposals (:mod:`curation.stage2`), and writes in bulk:

- ``ocr_text``: Detections, one per (deduplicated) read: label = normalised text, confidence,
  attributes ``keywords`` (vocabulary phrases the read takes part in, both polarities, so the App
  and ``filter_labels`` can select by keyword), ``text`` (raw read) and ``source`` (image|view:i);
- ``stage2_evidence``: dict with text_score, text_against, text_decisive, keywords,
  against_keywords, matches (every keyword match, enough to route again without OCR),
  detector_score / detector_decisive / detector_counts (None without ``primitive_proposals``),
  n_reads, n_views, seconds, backend, model_version;
- ``cascade``: Classification on EVERY sample of the target with ``stage1``: label, confidence of
  that label, ``p_roadwork``, ``stage`` (stage1|stage2|deferred), ``reason``, ``failure_risk``,
  ``r_accept``.

A run defines the Stage-2 state of its target: samples it does not send to Stage-2 get their
``ocr_text`` and ``stage2_evidence`` cleared, so the fields always show the last run's routing and
a re-run writes the same values. :func:`evaluate_cascade` compares the cascade with Stage-1 alone,
overall and per slice, and plots accuracy against the share sent to Stage-2 as ``r_accept`` moves
(re-routing the stored evidence; run with ``risky_only=False`` on evaluation splits so every sample
has evidence and the whole curve is exact).

Example:
    >>> from curation.stage2.cascade import run_stage2, evaluate_cascade  # doctest: +SKIP
    >>> report = run_stage2(dataset.match({"split": "val"}))  # doctest: +SKIP
    >>> evaluate_cascade(dataset.match({"split": "val"}), out_dir="runs/cascade").rows[0]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curation import schema, store
from curation.errors import InputError
from curation.stage2.detector_evidence import DetectorConfig, DetectorEvidence, detector_evidence
from curation.stage2.keywords import KeywordConfig, KeywordMatch, TextEvidence, evidence_from_reads, normalize_text
from curation.stage2.ocr import OcrBackend, ReadConfig, TextBox, make_backend, merge_reads, read_text
from curation.stage2.routing import (
    CascadeDecision,
    CascadeMetrics,
    RoutingConfig,
    cascade_metrics,
    deferral_curve,
    plot_deferral_curve,
    route,
)

if TYPE_CHECKING:
    import fiftyone as fo
    import fiftyone.core.collections as foc

STAGE2_FIELDS = ("ocr_text", "stage2_evidence", "cascade")
RUN_KIND = "stage2"
EVAL_RUN_KIND = "evaluate_cascade"
PLOT_FILE = "cascade_deferral.png"
EVIDENCE_LABEL = "evidence"  # stage1_views label of the top views (curation.predict.job)


@dataclass
class Stage2Report:
    """What one :func:`run_stage2` call did.

    Attributes:
        n_predicted: samples of the target with ``stage1`` (each got a ``cascade`` decision).
        n_stage2: samples sent to Stage-2 and read.
        n_missing_risk: samples without ``failure_risk``; treated as risk 1 (no gate: trust nothing).
        stages: decisions per stage (stage1, stage2, deferred).
        labels: decisions per label.
        seconds: wall time spent on Stage-2 evidence (image decode + OCR + scoring).
        seconds_per_stage2_image: ``seconds / n_stage2`` (0 when nothing reached Stage-2).
        skipped: (filepath, reason) for unreadable images; they are routed without evidence.
        backend: OCR backend name.
        run_id: the run record.
    """

    n_predicted: int = 0
    n_stage2: int = 0
    n_missing_risk: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    seconds_per_stage2_image: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    backend: str = ""
    run_id: str | None = None


# Pure conversions ---------------------------------------------------------------------------------


def read_keywords(read: TextBox, matches: Sequence[KeywordMatch]) -> list[str]:
    """Vocabulary phrases a read takes part in: a match's words (as read) found inside the read's text.

    A phrase split over two lines ("LANE" / "CLOSED") tags both reads; single letters never tag.
    """
    compact = normalize_text(read.text).replace(" ", "")
    if not compact:
        return []
    return list(dict.fromkeys(m.keyword for m in matches if any(len(w) >= 2 and w in compact for w in m.found.split())))


def _clip_box(box: Sequence[float]) -> list[float]:
    x, y, w, h = (float(v) for v in box)
    x0, y0 = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
    return [x0, y0, max(0.0, min(x + w, 1.0) - x0), max(0.0, min(y + h, 1.0) - y0)]


def ocr_detections(reads: Sequence[TextBox], text: TextEvidence) -> fo.Detections:
    """The ``ocr_text`` value: deduplicated reads with normalised labels and their keywords."""
    import fiftyone as fo

    detections = []
    for read in merge_reads(reads):
        label = normalize_text(read.text)
        if not label:
            continue
        detections.append(
            fo.Detection(
                label=label,
                bounding_box=_clip_box(read.box),
                confidence=float(read.confidence),
                keywords=read_keywords(read, text.matches),
                text=read.text,
                source=read.source,
            )
        )
    return fo.Detections(detections=detections)


def evidence_record(
    text: TextEvidence, detector: DetectorEvidence | None, *, n_reads: int, n_views: int, seconds: float, backend: str, model_version: str | None
) -> dict[str, Any]:
    """The ``stage2_evidence`` dict (plain JSON values; :func:`evidence_from_record` inverts it)."""
    return {
        "text_score": float(text.score),
        "text_against": float(text.against),
        "text_decisive": bool(text.decisive),
        "keywords": list(text.keywords),
        "against_keywords": list(dict.fromkeys(m.keyword for m in text.matches if m.polarity < 0)),
        "matches": [dataclasses.asdict(m) for m in text.matches],
        "text": text.text[:500],
        "detector_score": None if detector is None else float(detector.score),
        "detector_decisive": None if detector is None else bool(detector.decisive),
        "detector_counts": None if detector is None else dict(detector.counts),
        "detector_per_class": None if detector is None else {k: float(v) for k, v in detector.per_class.items()},
        "n_reads": int(n_reads),
        "n_views": int(n_views),
        "seconds": float(seconds),
        "backend": backend,
        "model_version": model_version,
    }


def evidence_from_record(record: Mapping[str, Any] | None) -> tuple[TextEvidence | None, DetectorEvidence | None]:
    """Rebuild the evidence objects from a stored ``stage2_evidence`` dict (None: Stage-2 never ran)."""
    if not record:
        return None, None
    matches = tuple(KeywordMatch(**m) for m in record.get("matches") or [])
    text = TextEvidence(
        score=float(record["text_score"]), against=float(record.get("text_against") or 0.0),
        decisive=bool(record.get("text_decisive")), matches=matches, text=str(record.get("text") or ""),
    )  # fmt: skip
    detector = None
    if record.get("detector_score") is not None:
        detector = DetectorEvidence(
            score=float(record["detector_score"]), decisive=bool(record.get("detector_decisive")),
            counts=dict(record.get("detector_counts") or {}), per_class=dict(record.get("detector_per_class") or {}),
        )  # fmt: skip
    return text, detector


def cascade_label(decision: CascadeDecision, r_accept: float) -> fo.Classification:
    """The ``cascade`` value: a Classification the App shows as a chip and filters by label and stage."""
    import fiftyone as fo

    positive = decision.label == schema.Label.ROADWORK
    return fo.Classification(
        label=decision.label,
        confidence=float(decision.probability if positive else 1.0 - decision.probability),
        p_roadwork=float(decision.probability),
        stage=decision.stage,
        reason=decision.reason,
        failure_risk=float(decision.failure_risk),
        r_accept=float(r_accept),
    )


def decision_from_label(label: Any) -> CascadeDecision:
    """A stored ``cascade`` Classification back as a :class:`CascadeDecision`."""
    return CascadeDecision(
        label=label.label, probability=float(label["p_roadwork"]), stage=label["stage"], reason=label["reason"],
        failure_risk=float(label["failure_risk"]),
    )  # fmt: skip


# Running Stage-2 ----------------------------------------------------------------------------------


def _load_rgb(path: str) -> np.ndarray:
    from curation.media import open_rgb

    return np.asarray(open_rgb(path))


def _evidence_views(views: Any) -> list[list[float]]:
    """Stage-1's evidence view boxes, most probable first."""
    if views is None:
        return []
    boxes = [d for d in views.detections if d.label == EVIDENCE_LABEL]
    return [list(d.bounding_box) for d in sorted(boxes, key=lambda d: -(d.confidence or 0.0))]


def model_routing(collection: foc.SampleCollection, routing: RoutingConfig | None = None) -> RoutingConfig:
    """``routing`` (default: the defaults) at the threshold Stage-1 labelled ``collection`` with.

    The threshold belongs to the model (calibrated when it was registered, stored with every
    prediction as ``stage1.threshold``), so the cascade's Stage-1 answer is ``stage1.label``.
    Predictions made at different thresholds cannot share one cascade run.
    """
    thresholds = sorted(t for t in collection.exists("stage1").distinct("stage1.threshold") if t is not None)
    if not thresholds:
        raise InputError("No sample has a Stage-1 prediction with its threshold (`stage1.threshold`); run `curation predict` first.")
    if len(thresholds) > 1:
        versions = sorted(v for v in collection.exists("stage1").distinct("model_version") if v)
        raise InputError(
            f"These samples were predicted at {len(thresholds)} different thresholds ({', '.join(f'{t:.4f}' for t in thresholds)}; "
            f"model versions {', '.join(versions) or 'unknown'}): run Stage-2 on one model's predictions "
            "(re-predict with the champion, or pick the samples with --split / --saved-view)."
        )
    return (routing or RoutingConfig()).at_threshold(thresholds[0])


def run_stage2(
    collection: foc.SampleCollection,
    *,
    backend: OcrBackend | None = None,
    routing: RoutingConfig | None = None,
    keywords: KeywordConfig | None = None,
    detector: DetectorConfig | None = None,
    read: ReadConfig | None = None,
    risky_only: bool = True,
    views: bool = True,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> Stage2Report:
    """Run Stage-2 on a dataset or view and write ``ocr_text``, ``stage2_evidence`` and ``cascade``.

    Args:
        collection: the target; only samples with ``stage1`` take part.
        backend: an OCR backend (default: PP-OCRv4 via rapidocr, loaded on first read).
        routing: cascade thresholds; ``r_accept`` picks the risky samples. Default: the defaults
            at the predicting model's threshold (:func:`model_routing`); a given config is used as is.
        keywords: vocabulary and the multi-keyword rule.
        detector: how ``primitive_proposals`` become evidence (used when the field is set).
        read: whole image vs views and upscaling (``views=False`` forces ``max_views=0``).
        risky_only: read only samples with failure risk ≥ ``r_accept`` (the cascade's own rule);
            False reads every predicted sample (what the deferral curve needs).
        views: also read Stage-1's evidence views (``stage1_views`` label ``evidence``).
        batch_size: samples per bulk write.
        progress: called with (done, total) after each batch.

    Returns:
        a :class:`Stage2Report`; a run record of kind ``stage2`` is stored.

    Example:
        >>> report = run_stage2(dataset, risky_only=True)  # doctest: +SKIP
        >>> report.stages  # doctest: +SKIP
        {'stage1': 812, 'stage2': 61, 'deferred': 127}
    """
    if batch_size < 1:
        raise InputError(f"`batch_size` must be ≥ 1; got {batch_size}.")
    backend = backend or make_backend("rapidocr")
    keywords = keywords or KeywordConfig()
    read_cfg = read or ReadConfig()
    if not views:
        read_cfg = dataclasses.replace(read_cfg, max_views=0, whole_image=True)
    routing = routing or model_routing(collection)
    dataset = store.root_dataset(collection)
    store.declare_schema(dataset, [s for s in schema.FIELDS if s.name in STAGE2_FIELDS])

    target = collection.exists("stage1")
    ids, paths, probs, risks, versions = target.values(["id", "filepath", "stage1.p_roadwork", "failure_risk", "model_version"])
    report = Stage2Report(n_predicted=len(ids), backend=getattr(backend, "name", type(backend).__name__))
    missing = [i for i, p in zip(ids, probs, strict=True) if p is None]
    if missing:
        raise InputError(f"{len(missing)} samples have `stage1` without `p_roadwork` (e.g. {missing[0]}); re-run `curation predict`.")
    report.n_missing_risk = sum(r is None for r in risks)
    risk = {i: 1.0 if r is None else float(r) for i, r in zip(ids, risks, strict=True)}
    chosen = [i for i in ids if not risky_only or risk[i] >= routing.r_accept]
    info = {i: (path, version) for i, path, version in zip(ids, paths, versions, strict=True)}

    has_proposals = "primitive_proposals" in dataset.get_field_schema()
    evidence: dict[str, tuple[TextEvidence | None, DetectorEvidence | None]] = {}
    started = time.perf_counter()
    for start in range(0, len(chosen), batch_size):
        batch = chosen[start : start + batch_size]
        columns = ["id", "stage1_views", *(["primitive_proposals"] if has_proposals else [])]
        rows = zip(*target.select(batch).values(columns), strict=True)
        by_id = {row[0]: (row[1], row[2] if has_proposals else None) for row in rows}
        ocr_values: dict[str, Any] = {}
        records: dict[str, Any] = {}
        for sample_id in batch:
            t0 = time.perf_counter()
            path, version = info[sample_id]
            try:
                image = _load_rgb(path)
            except (OSError, ValueError) as e:
                report.skipped.append((path, f"{type(e).__name__}: {e}"))
                ocr_values[sample_id] = records[sample_id] = None
                continue
            boxes, props = by_id[sample_id]
            view_list = _evidence_views(boxes) if views else []
            reads = read_text(backend, image, views=view_list, config=read_cfg)
            text = evidence_from_reads(reads, config=keywords)
            det = None if props is None else detector_evidence(props.detections, config=detector)
            seconds = time.perf_counter() - t0
            evidence[sample_id] = (text, det)
            ocr_values[sample_id] = ocr_detections(reads, text)
            records[sample_id] = evidence_record(
                text, det, n_reads=len(reads), n_views=min(len(view_list), read_cfg.max_views), seconds=seconds,
                backend=report.backend, model_version=version,
            )  # fmt: skip
        store.set_values_by_id(dataset, "ocr_text", ocr_values)
        store.set_values_by_id(dataset, "stage2_evidence", records)
        if progress:
            progress(min(start + batch_size, len(chosen)), len(chosen))
    report.seconds = time.perf_counter() - started
    report.n_stage2 = len(evidence)
    report.seconds_per_stage2_image = report.seconds / report.n_stage2 if report.n_stage2 else 0.0

    not_read = [i for i in ids if i not in evidence]
    store.set_values_by_id(dataset, "ocr_text", {i: None for i in not_read})
    store.set_values_by_id(dataset, "stage2_evidence", {i: None for i in not_read})
    decisions = {
        i: route(float(p), risk[i], *evidence.get(i, (None, None)), config=routing) for i, p in zip(ids, probs, strict=True)
    }
    store.set_values_by_id(dataset, "cascade", {i: cascade_label(d, routing.r_accept) for i, d in decisions.items()})
    if decisions:  # declare the label attributes (keywords, stage, ...) so the App's sidebar can filter them
        dataset.add_dynamic_sample_fields(fields=["cascade", *(["ocr_text"] if evidence else [])])
    report.stages = dict(Counter(d.stage for d in decisions.values()))
    report.labels = dict(Counter(d.label for d in decisions.values()))
    report.run_id = store.record_run(
        dataset,
        RUN_KIND,
        {
            "routing": dataclasses.asdict(routing),
            "risky_only": risky_only,
            "views": views,
            "read": dataclasses.asdict(read_cfg),
            **{k: v for k, v in dataclasses.asdict(report).items() if k not in ("run_id", "skipped")},
            "skipped": report.skipped[:100],
        },
        fields=["cascade", *(["ocr_text"] if evidence else [])],
    )
    return report


def keyword_view(collection: foc.SampleCollection, keyword: str) -> foc.SampleCollection:
    """Samples whose OCR reads match a vocabulary phrase, with only those reads kept (App: filter by keyword)."""
    from fiftyone import ViewField as F

    return collection.filter_labels("ocr_text", F("keywords").contains(keyword))


# Evaluation ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CascadeRow(CascadeMetrics):
    """The cascade against Stage-1 alone (:class:`CascadeMetrics`) on one slice (or ``overall``)."""

    name: str
    seconds_per_image: float  # Stage-2 seconds averaged over ALL samples (Stage-1-only ones cost 0)


@dataclass(frozen=True)
class CascadeEvaluation:
    """Result of :func:`evaluate_cascade`.

    Attributes:
        rows: ``overall`` first, then every slice with samples.
        n_without_evidence: evaluated samples without stored Stage-2 evidence (routed as "nothing
            found" when the curve lowers r_accept below the run's).
        curve: the deferral curve as plain lists (r_accept, stage2_share, deferred_share, accuracy, mcc).
        plot_path: the PNG, when ``out_dir`` was given.
        routing: the routing config the curve used.
        run_id: the run record.
    """

    rows: tuple[CascadeRow, ...]
    n_without_evidence: int
    n_label_conflicts_excluded: int
    curve: dict[str, list[float]]
    plot_path: str | None
    routing: dict[str, Any]
    run_id: str | None = None

    def as_rows(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in self.rows]


def _row(name: str, y: np.ndarray, p: np.ndarray, decisions: list[CascadeDecision], seconds: np.ndarray, threshold: float) -> CascadeRow:
    m = cascade_metrics(y, p, decisions, threshold=threshold)
    return CascadeRow(**dataclasses.asdict(m), name=name, seconds_per_image=float(seconds.mean()))


def latest_routing(dataset: fo.Dataset) -> RoutingConfig:
    """The routing config of the dataset's last Stage-2 run (defaults when none ran)."""
    runs = store.list_runs(dataset, RUN_KIND, limit=1)
    return RoutingConfig(**runs[0]["routing"]) if runs and runs[0].get("routing") else RoutingConfig()


def evaluate_cascade(
    collection: foc.SampleCollection,
    *,
    routing: RoutingConfig | None = None,
    out_dir: str | Path | None = None,
    gt_field: str = "ground_truth",
) -> CascadeEvaluation:
    """Compare the stored cascade decisions with Stage-1 alone, overall and per slice, and plot the
    accuracy against the Stage-2 share as r_accept moves.

    Samples tagged ``label_conflict`` are left out (as in Stage-1 evaluation).

    Args:
        collection: labelled samples with ``stage1`` and ``cascade`` (run :func:`run_stage2` first).
        routing: thresholds for Stage-1's baseline and the curve; default: the last Stage-2 run's.
        out_dir: where to write :data:`PLOT_FILE` (None: no plot).
        gt_field: the ground-truth Classification field.
    """
    dataset = store.root_dataset(collection)
    routing = routing or latest_routing(dataset)
    labelled = collection.exists("stage1").exists("cascade").exists(gt_field)
    clean = labelled.match_tags(schema.TAG_LABEL_CONFLICT, bool=False)
    n_conflicts = labelled.count() - clean.count()
    truth, probs, risks, labels, records, slices = clean.values(
        [f"{gt_field}.label", "stage1.p_roadwork", "failure_risk", "cascade", "stage2_evidence", "slices"]
    )
    if not truth:
        raise InputError(
            f"No labelled samples with `stage1` and `cascade` to evaluate (field `{gt_field}`); run `curation evidence` first."
        )
    y = np.array([t == schema.Label.ROADWORK for t in truth])
    p = np.array(probs, dtype=float)
    decisions = [decision_from_label(c) for c in labels]
    seconds = np.array([r.get("seconds", 0.0) if r else 0.0 for r in records], dtype=float)
    rows = [_row("overall", y, p, decisions, seconds, routing.threshold)]
    for name in schema.SLICES:
        idx = [i for i, s in enumerate(slices) if s and name in s]
        if idx:
            rows.append(_row(name, y[idx], p[idx], [decisions[i] for i in idx], seconds[idx], routing.threshold))

    evidence = [evidence_from_record(r) for r in records]
    risk = np.array([1.0 if r is None else float(r) for r in risks])
    curve = deferral_curve(y, p, risk, [e[0] for e in evidence], [e[1] for e in evidence], config=routing)
    plot_path = None
    if out_dir is not None:
        plot_path = str(plot_deferral_curve(curve, Path(out_dir) / PLOT_FILE))
    result = CascadeEvaluation(
        rows=tuple(rows),
        n_without_evidence=sum(r is None for r in records),
        n_label_conflicts_excluded=n_conflicts,
        curve={k: [float(v) for v in getattr(curve, k)] for k in ("r_accept", "stage2_share", "deferred_share", "accuracy", "mcc")},
        plot_path=plot_path,
        routing=dataclasses.asdict(routing),
    )
    run_id = store.record_run(dataset, EVAL_RUN_KIND, dataclasses.asdict(result))
    return dataclasses.replace(result, run_id=run_id)
