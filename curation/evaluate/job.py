"""Binary evaluation of Stage-1 predictions in the dataset: per-sample outcomes, per-slice
metrics, failure views and a workspace for browsing them in the App.

The per-sample TP/FP/FN/TN field and FiftyOne's evaluation run come from FiftyOne's own binary
evaluation, so the App's Model Evaluation panel shows them; the slice table is computed here with
the platform's metrics (MCC, reward estimate) that FiftyOne does not have.

Example:
    >>> report = evaluate_predictions(dataset.match({"split": "val"}))  # doctest: +SKIP
    >>> report.overall.mcc  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from curation import schema, store
from curation.errors import InputError, SchemaError
from curation.stage1.metrics import SliceMetrics, slice_table
from curation.stage1.query_policies import all_policies, cached_policy, render_query
from curation.stage1.reward_window import rewards_by_policy
from curation.stage1.shortcuts import CUES, ShortcutRow, image_cues, shortcut_table
from curation.stage1.validator_view import query_key, validator_seed

if TYPE_CHECKING:
    import fiftyone.core.collections as foc



@dataclass(frozen=True)
class EvaluationReport:
    eval_key: str
    pred_field: str
    overall: SliceMetrics
    slices: tuple[SliceMetrics, ...]
    n_label_conflicts_excluded: int
    n_missing: int
    run_id: str | None = None
    rewards: dict[str, dict[str, Any]] = field(default_factory=dict)  # per contract: reward_window.RewardEstimate

    def as_rows(self) -> list[dict[str, Any]]:
        return [asdict(self.overall)] + [asdict(s) for s in self.slices]

    def reward_lines(self) -> list[str]:
        """The expected validator reward under each contract, one line each."""
        return [
            f"{name}: expected reward {r['mean']:.3f} ({r['confidence']:.0%} interval [{r['low']:.3f}, {r['high']:.3f}]; "
            f"one history: {r['spread_low']:.3f}-{r['spread_high']:.3f}; consensus share {r['consensus_share']:.0%}"
            + (", consensus assumed = truth)" if r["consensus_from"] == "truth" and r["consensus_share"] else ")")
            for name, r in self.rewards.items()
        ]


def evaluate_predictions(
    collection: foc.SampleCollection,
    *,
    pred_field: str = "stage1",
    gt_field: str = "ground_truth",
    eval_key: str = "eval_stage1",
    seed: int = 0,
    save_views: bool = True,
) -> EvaluationReport:
    """Evaluate ``pred_field`` against ``gt_field`` on ``collection`` and record the run.

    Samples tagged ``label_conflict`` are left out (validators skip them too) and counted;
    samples without a label or a prediction are counted as missing.
    """
    from fiftyone import ViewField as F

    schema_fields = collection.get_field_schema()
    for name in (pred_field, gt_field):
        if name not in schema_fields:
            raise SchemaError(f"Field `{name}` does not exist on `{store.root_dataset(collection).name}`; run `curation predict` first.")
    dataset = store.root_dataset(collection)
    n_conflicts = collection.match_tags(schema.TAG_LABEL_CONFLICT).count()
    scored = collection.match_tags(schema.TAG_LABEL_CONFLICT, bool=False).exists(pred_field).exists(gt_field)
    n_missing = collection.count() - n_conflicts - scored.count()

    if scored.count():
        scored.evaluate_classifications(
            pred_field,
            gt_field=gt_field,
            eval_key=eval_key,
            method="binary",
            classes=[schema.Label.NO_ROADWORK.value, schema.Label.ROADWORK.value],
        )
    gt, pred, p, slices = scored.values([f"{gt_field}.label", f"{pred_field}.label", f"{pred_field}.p_roadwork", "slices"])
    y_true = np.array([g == schema.Label.ROADWORK for g in gt], dtype=np.int64)
    y_pred = np.array([q == schema.Label.ROADWORK for q in pred], dtype=np.int64)
    probs = np.array([np.nan if v is None else v for v in p], dtype=np.float64)
    probs = np.where(np.isnan(probs), y_pred.astype(np.float64), probs)
    overall, rows = slice_table(y_true, y_pred, probs, [s or [] for s in slices], seed=seed)

    if save_views and scored.count():
        for outcome, name in schema.FAILURE_VIEWS.items():
            view = scored.match(F(eval_key) == outcome).sort_by(F(f"{pred_field}.confidence"), reverse=True)
            dataset.save_view(name, view, overwrite=True)
        for row in rows:
            if row.n:
                dataset.save_view(f"slices/{row.name}", scored.match(F("slices").contains(row.name)), overwrite=True)
        _save_failure_workspace(dataset)

    both_classes = y_true.size and 0 < y_true.sum() < y_true.size
    rewards = rewards_by_policy(y_true, y_pred, all_policies(), seed=seed) if both_classes else {}
    report = EvaluationReport(
        eval_key=eval_key,
        pred_field=pred_field,
        overall=overall,
        slices=rows,
        n_label_conflicts_excluded=n_conflicts,
        n_missing=n_missing,
        rewards={name: asdict(r) for name, r in rewards.items()},
    )
    run_id = store.record_run(
        dataset,
        "evaluate",
        {
            "eval_key": eval_key,
            "pred_field": pred_field,
            "model_version": _single_value(scored, "model_version"),
            "table": report.as_rows(),
            "n_label_conflicts_excluded": n_conflicts,
            "n_missing": n_missing,
            "rewards": report.rewards,
        },
    )
    return replace(report, run_id=run_id)


def _single_value(collection: foc.SampleCollection, field: str) -> str | None:
    if field not in collection.get_field_schema():
        return None
    values = collection.distinct(field)
    return values[0] if len(values) == 1 else ",".join(map(str, values)) or None


def _save_failure_workspace(dataset: Any) -> None:
    import fiftyone as fo

    workspace = fo.Space(
        children=[fo.Panel(type="Samples", pinned=True), fo.Panel(type="model_evaluation_panel_builtin")],
        orientation="horizontal",
    )
    dataset.save_workspace(schema.FAILURE_WORKSPACE, workspace, description="Stage-1 failures beside the evaluation panel", overwrite=True)


@dataclass(frozen=True)
class EvidenceCeiling:
    """How many positives' validator queries still show roadwork after the crop.

    A positive whose query kept no roadwork is label noise no model can fix; ``kept / positives``
    is the recall ceiling on the validator view (at ``min_fraction`` of one box kept).
    """

    positives: int  # positive samples with known roadwork boxes
    kept: int  # of those, queries that keep ≥ min_fraction of one box
    without_boxes: int  # positives whose boxes are unknown (not counted above)
    min_fraction: float

    @property
    def share_kept(self) -> float | None:
        return self.kept / self.positives if self.positives else None


def evidence_ceiling(
    collection: foc.SampleCollection,
    *,
    seed: int,
    boxes_by_hash: dict[str, list[list[float]]] | None = None,
    min_fraction: float = 0.5,
) -> EvidenceCeiling:
    """Replay each positive sample's validator query (same seeds as scoring) and check its boxes.

    Boxes come from ``boxes_by_hash`` (content hash → relative ``[x0, y0, x1, y1]``, e.g. the demo
    corpus's truth), else from the sample's ``primitives`` (roadwork classes only).
    """

    from curation.stage1.validator_view import evidence_kept, query_recipe

    positives = collection.match({"ground_truth.label": str(schema.Label.ROADWORK)})
    fields = ["id", "content_hash", "filepath", "primitives.detections"] if positives.has_field("primitives") else ["id", "content_hash", "filepath"]
    rows = zip(*positives.values(fields), strict=True) if len(positives) else []
    kept = counted = missing = 0
    for sample_id, digest, path, *detections in rows:
        if boxes_by_hash is not None:
            boxes = boxes_by_hash.get(digest)
        else:
            found = [d.bounding_box for d in (detections[0] if detections else None) or [] if d.label in schema.ROADWORK_PRIMITIVES]
            boxes = [[x, y, x + w, y + h] for x, y, w, h in found] or None
        if not boxes:
            missing += 1
            continue
        with Image.open(path) as image:  # header only: the size the query was cut from
            width, height = image.size
        recipe = query_recipe(validator_seed(query_key(sample_id, digest), seed), width, height)
        counted += 1
        kept += evidence_kept(recipe, boxes, width, height, min_fraction=min_fraction)
    return EvidenceCeiling(positives=counted, kept=kept, without_boxes=missing, min_fraction=min_fraction)


def shortcut_checks(
    collection: foc.SampleCollection,
    *,
    policies: list[str] | None = None,
    pred_field: str = "stage1",
    gt_field: str = "ground_truth",
    seed: int = 0,
) -> dict[str, list[ShortcutRow]]:
    """Shortcut cues against the label and Stage-1's errors, on the stored images and on each
    contract's queries (``{"stored" | policy name: rows}``); see :mod:`curation.stage1.shortcuts`.

    Stage-1's errors are its stored predictions' (made on the stored images or one query each);
    a contract's rows ask whether a validator's rendering of these images carries a cue the label
    follows (letterbox bars, a JPEG quality) that a model could learn instead of roadwork.
    """
    from curation.media import upright_rgb

    scored = collection.match_tags(schema.TAG_LABEL_CONFLICT, bool=False).exists(pred_field).exists(gt_field)
    ids, paths, hashes, gt, pred, slices = scored.values(
        ["id", "filepath", "content_hash", f"{gt_field}.label", f"{pred_field}.label", "slices"]
    )
    if not ids:
        raise InputError(f"No labelled samples with `{pred_field}` to check; run `curation predict` first.")
    y = np.array([g == schema.Label.ROADWORK for g in gt], dtype=int)
    wrong = np.array([g != q for g, q in zip(gt, pred, strict=True)], dtype=int)
    contracts = all_policies() if policies is None else [cached_policy(name) for name in policies]
    cues: dict[str, list[dict[str, float]]] = {"stored": [], **{c.name: [] for c in contracts}}
    for sample_id, path, digest, sample_slices in zip(ids, paths, hashes, slices, strict=True):
        synthetic = "synthetic" in (sample_slices or [])
        with Image.open(path) as stored:  # decoded once: the file's own JPEG tables, then the upright pixels
            cues["stored"].append(image_cues(stored, synthetic=synthetic))
            image = upright_rgb(stored)
        for contract in contracts:
            query = render_query(image, contract, seed=validator_seed(query_key(sample_id, digest), seed))
            cues[contract.name].append(image_cues(query, synthetic=synthetic))
    return {
        name: shortcut_table({cue: np.array([row[cue] for row in rows]) for cue in CUES}, y, wrong)
        for name, rows in cues.items()
    }


@dataclass(frozen=True)
class ContractRow:
    """One model on one contract's queries of the evaluated samples (a named row per contract)."""

    contract: str
    n: int
    mcc: float
    accuracy: float
    fpr: float | None
    reward: dict[str, Any]  # reward_window.RewardEstimate under this contract's windows and consensus share


def contract_table(collection: foc.SampleCollection, model: Any, *, seed: int = 0, policies: list[str] | None = None) -> list[ContractRow]:
    """Score ``model`` on every contract's queries of the labelled samples, side by side.

    The same images, the same per-image seeds; only the rendering differs (a 224² crop, a
    letterbox, the native frame), so the rows show what each contract costs this model.
    Samples tagged ``label_conflict`` are left out.
    """
    from curation.evaluate.queries import score_queries

    labelled = collection.match_tags(schema.TAG_LABEL_CONFLICT, bool=False).exists("ground_truth")
    if not labelled.count():
        raise InputError("No labelled samples to score per contract.")
    rows = []
    for policy in all_policies() if policies is None else [cached_policy(name) for name in policies]:
        name = policy.name
        scores = score_queries(model, labelled, seed=seed, query_policy=name)
        decided = (scores.p >= model.config.threshold).astype(int)
        overall, _ = slice_table(scores.y, decided, scores.p, scores.slices, slice_names=(), seed=seed)
        reward = rewards_by_policy(scores.y, decided, [policy], seed=seed)[name] if 0 < scores.y.sum() < scores.y.size else None
        rows.append(ContractRow(name, overall.n, overall.mcc, overall.accuracy, overall.fpr, asdict(reward) if reward else {}))
    return rows
