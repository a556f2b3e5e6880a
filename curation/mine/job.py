"""The daily hard-case mining job: score hardness, pick a diverse batch, tag it.

Candidates come from train and pool only (never val/calib/test/val_synthetic, never ``leak``),
skipping samples mined before. Hardness (see :mod:`curation.stage1.hardness`) is the weighted
mean of rank-normalised terms: prediction entropy, failure risk, view disagreement (the gate
feature ``var`` over views) and mistakenness where ground truth exists. Only scalar fields are
read for the whole pool; embeddings are fetched for the shortlist alone. On 1,000,000 documents
(~750k candidates) a pass took ~42 s and 0.9 GB on the 2-core machine (``bench/mining.py``),
most of it MongoDB stamping ``hardness`` and ``last_modified_at`` on every candidate.

Safety: one run per day holds an expiring lock in the database (checked again once held, so a run
that finished meanwhile is returned, not doubled); the day's tag is written only after the batch
is chosen, in one update, so a killed run leaves either nothing or the whole batch; re-running the
same day returns the existing batch unchanged (and re-points ``hard/latest`` if a run was killed
between tagging and saving it).

Scope: the daily batch ``hard:YYYY-MM-DD`` belongs to a run over the whole dataset (the cron job,
or the App with no filter). Mining a filtered view or a selection in the App tags its own batch,
``hard:YYYY-MM-DD:view-<hash of the view>``, so it never uses up the day's cron run; either kind
of tag keeps a sample out of later batches. ``hard/latest`` follows the newest daily batch only,
so backfilling an older day (``--day``) does not move it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from curation import schema, store
from curation.errors import InputError
from curation.stage1 import hardness
from curation.typed_config import setting

if TYPE_CHECKING:
    import fiftyone.core.collections as foc

DAILY_TAG = re.compile(re.escape(schema.HARD_TAG_PREFIX) + r"(\d{4}-\d{2}-\d{2})")
CANDIDATE_SPLITS = (schema.Split.TRAIN.value, schema.Split.POOL.value)


@dataclass(frozen=True)
class MiningConfig:
    """The seeds' defaults: 200 a day, hardness ≥ 0.7, diversity over a 10× shortlist."""

    quota: int = setting(200, help="The day's labeling budget: samples tagged per run.", low=1)
    min_hardness: float = setting(0.7, help="Only samples at least this hard are mined.", low=0.0, high=1.0)
    shortlist_factor: int = 10
    diversity: float = 0.7
    lock_ttl_s: float = 3600.0
    weights: hardness.HardnessWeights = field(default_factory=hardness.HardnessWeights)

    def __post_init__(self) -> None:
        if self.quota < 1:
            raise InputError(f"The 'quota' parameter must be an int ≥ 1. Got {self.quota} instead.")
        if not 0.0 <= self.min_hardness <= 1.0:
            raise InputError(f"The 'min_hardness' parameter must be in [0, 1]. Got {self.min_hardness} instead.")
        if self.shortlist_factor < 1:
            raise InputError(f"The 'shortlist_factor' parameter must be ≥ 1. Got {self.shortlist_factor} instead.")
        if not 0.0 <= self.diversity <= 1.0:
            raise InputError(f"The 'diversity' parameter must be in [0, 1]. Got {self.diversity} instead.")
        if not self.lock_ttl_s > 0:
            raise InputError(f"The 'lock_ttl_s' parameter must be > 0 seconds. Got {self.lock_ttl_s} instead.")


@dataclass(frozen=True)
class MiningReport:
    day: str
    tag: str
    n_candidates: int
    n_passed: int  # candidates with hardness ≥ min_hardness
    selected_ids: tuple[str, ...]
    already_done: bool = False
    run_id: str | None = None
    note: str = ""  # e.g. why the batch is top-hardness rather than diverse

    def summary(self) -> str:
        """What the run did, in the words the CLI prints and the App shows."""
        if self.already_done:
            text = f"{self.tag} already mined: {len(self.selected_ids)} samples (nothing changed)."
        else:
            latest = "" if ":view-" in self.tag else f" Saved view: {schema.LATEST_HARD_VIEW}."
            text = (f"{self.n_passed} of {self.n_candidates} candidates reached the minimum hardness; "
                    f"tagged {len(self.selected_ids)} as {self.tag}.{latest}")  # fmt: skip
        return text + (f" Note: {self.note}." if self.note else "")


def day_tag(day: date, scope: str = "") -> str:
    """``hard:YYYY-MM-DD`` for the daily batch; ``hard:YYYY-MM-DD:<scope>`` for a view's batch."""
    return f"{schema.HARD_TAG_PREFIX}{day.isoformat()}" + (f":{scope}" if scope else "")


def mining_scope(collection: foc.SampleCollection) -> str:
    """"" for the whole dataset, else ``view-<hash>`` of the view's stages (stable across sessions)."""
    stages = _stages(collection)
    if not stages:
        return ""
    spec = json.dumps(stages, sort_keys=True, default=str)
    return f"view-{hashlib.sha256(spec.encode()).hexdigest()[:10]}"


def candidates(collection: foc.SampleCollection) -> foc.SampleCollection:
    """Train and pool samples with predictions, not leaked, in no labeling batch yet (mined or "more like this")."""
    from fiftyone import ViewField as F

    view = collection.match(F("split").is_in(list(CANDIDATE_SPLITS))).match_tags([schema.TAG_LEAK, schema.TAG_LEAK_EMBEDDING], bool=False)
    in_batch = F("tags").filter(F().starts_with(schema.HARD_TAG_PREFIX) | F().starts_with(schema.SIMILAR_TAG_PREFIX)).length() > 0
    return view.exists("stage1").match(~in_batch)


def mine(
    collection: foc.SampleCollection,
    *,
    day: date | None = None,
    config: MiningConfig = MiningConfig(),
    owner: str | None = None,
) -> MiningReport:
    """Pick and tag the day's batch of hard cases (see module docstring)."""
    dataset = store.root_dataset(collection)
    day = day or date.today()
    scope = mining_scope(collection)
    tag = day_tag(day, scope)
    if (done := _already_mined(dataset, tag, day, scope)) is not None:
        return done

    lock = f"mine:{dataset.name}:{day.isoformat()}" + (f":{scope}" if scope else "")
    with store.exclusive(lock, config.lock_ttl_s, holder="mining run holds the lock", owner=owner):
        if (done := _already_mined(dataset, tag, day, scope)) is not None:  # a run finished before we got the lock
            return done
        pool = candidates(collection)
        oids, (p, threshold, risk, view_var, truth, unique) = store.project_columns(
            pool,
            {
                "p": "stage1.p_roadwork",
                "th": "stage1.threshold",
                "r": "failure_risk",
                "v": "gate_features.var",
                "t": "ground_truth.label",
                "u": "uniqueness",
            },
        )
        if not oids:
            return MiningReport(day.isoformat(), tag, 0, 0, ())
        # Ground truth derived by the rule exists for most of train; it counts for mistakenness.
        truth_arr = np.array([np.nan if t is None else float(t == schema.Label.ROADWORK) for t in truth])
        scores = hardness.hardness_scores(
            _floats(p), _floats(risk), _floats(view_var), truth_arr, weights=config.weights, threshold=_floats(threshold), uniqueness=_floats(unique)
        )
        del p, threshold, risk, view_var, truth, truth_arr, unique
        store.write_floats_by_oid(dataset, "hardness", oids, scores)
        passed = np.flatnonzero(scores >= config.min_hardness)
        shortlist = passed[np.argsort(-scores[passed], kind="stable")][: config.quota * config.shortlist_factor]
        short_ids = [str(oids[i]) for i in shortlist]
        chosen_local, note = _diverse(dataset, short_ids, scores[shortlist], config)
        chosen = tuple(short_ids[i] for i in chosen_local)
        if chosen:
            dataset.select(list(chosen)).tag_samples(tag)
            if not scope:
                _point_latest(dataset, tag, day)
        report = MiningReport(day.isoformat(), tag, len(oids), int(len(passed)), chosen, note=note)
        run_id = store.record_run(
            dataset, "mine", {**asdict(report), "selected_ids": list(chosen), "config": asdict(config)}, tags=[tag]
        )
        return MiningReport(**{**asdict(report), "run_id": run_id})


def _already_mined(dataset: Any, tag: str, day: date, scope: str) -> MiningReport | None:
    """The report of a batch already tagged ``tag``, or None; repairs ``hard/latest`` for daily batches."""
    existing = dataset.match_tags(tag)
    if not existing.count():
        return None
    if not scope:
        _point_latest(dataset, tag, day)
    return MiningReport(day.isoformat(), tag, 0, 0, tuple(existing.values("id")), already_done=True)


def _point_latest(dataset: Any, tag: str, day: date) -> None:
    """Save ``hard/latest`` as ``tag``'s batch, hardest first, unless a newer daily batch exists."""
    days = [m.group(1) for t in dataset.distinct("tags") if (m := DAILY_TAG.fullmatch(t))]
    if days and max(days) > day.isoformat():
        return
    view = dataset.match_tags(tag).sort_by("hardness", reverse=True)
    if schema.LATEST_HARD_VIEW in dataset.list_saved_views() and _stages(dataset.load_saved_view(schema.LATEST_HARD_VIEW)) == _stages(view):
        return
    dataset.save_view(schema.LATEST_HARD_VIEW, view, overwrite=True)


def _stages(collection: Any) -> list[dict[str, Any]]:
    """A view's stages as plain data without their per-instance ids (a dataset has none)."""
    return [stage._serialize(include_uuid=False) for stage in getattr(collection, "_stages", None) or []]


def _diverse(dataset: Any, ids: list[str], scores: np.ndarray, config: MiningConfig) -> tuple[list[int], str]:
    """Indices into ``ids`` of the day's batch (diverse when every shortlisted sample has an
    embedding of one size, else top scores) and a note saying why diversity was off."""
    if not ids:
        return [], ""
    top = list(range(min(config.quota, len(ids))))
    if "stage1_embedding" not in dataset.get_field_schema():
        return top, "diversity off: the dataset has no stage1_embedding field"
    emb = dict(zip(*dataset.select(ids).values(["id", "stage1_embedding"])))
    missing = sum(emb.get(i) is None for i in ids)
    if missing:
        return top, f"diversity off: {missing} of {len(ids)} shortlisted samples have no stage1_embedding (predict them)"
    sizes = {len(emb[i]) for i in ids}
    if len(sizes) > 1:
        return top, f"diversity off: shortlisted embeddings have sizes {sorted(sizes)} (predictions from different backbones)"
    embeddings = np.array([emb[i] for i in ids], dtype=np.float64)
    # ``ids`` is already the shortlist: let diverse_select consider all of it.
    chosen = hardness.diverse_select(
        scores, embeddings, config.quota, shortlist_factor=-(-len(ids) // config.quota), diversity=config.diversity
    )
    return list(chosen), ""


def _floats(values: list[Any]) -> np.ndarray:
    """None → NaN (numpy converts None itself when the dtype is float; ~20× faster than a loop)."""
    return np.array(values, dtype=np.float64)
