"""Run Stage-1 over a FiftyOne collection and write its fields in bulk.

Fields written per sample (names in :data:`PREDICTION_FIELDS`):
- ``stage1``: Classification with label, confidence of that label, logits [log(1−p), log p]
  (two logits so Brain hardness works) and ``p_roadwork``;
- ``stage1_views``: one Detection per view (label ``evidence`` for the top views, else
  ``view``) with the view's probability as confidence, so evidence tiles show as boxes and views
  can be browsed as patches;
- ``gate_features`` (dict), ``stage1_embedding`` (global-view CLS, for Brain similarity and
  diversity) and ``model_version``.

Values go to staged fields while the run works and are promoted per document at the end
(:func:`curation.store.promote_staged`), so a killed run never leaves a sample — or a field —
mixing two models. Unreadable images are reported and skipped.

The same code predicts with a plain :class:`~curation.stage1.model.Stage1Model` (images decoded
here) or a :class:`~curation.stage1.serving.ServingModel` on the bulk path (decoded by loader
workers while the accelerator computes); ``Settings.stage1_serving`` chooses.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from curation import store
from curation.errors import InputError
from curation.media import OPEN_ERRORS, open_rgb
from curation.stage1.validator_view import query_key, validator_seed
from curation.store.registry import jsonable

if TYPE_CHECKING:
    import fiftyone.core.collections as foc

    from curation.predict.ray_engine import RayEngine
    from curation.stage1.model import Stage1Model, Stage1Prediction
    from curation.stage1.serving import ServingModel

PREDICTION_FIELDS = ("stage1", "stage1_views", "gate_features", "stage1_embedding", "model_version")
STAGING_RUN_FIELD = "predict_run"
"""``<prefix>predict_run_staged`` holds the id of the run that staged a sample's values (until promotion)."""
LEASE_TTL_S = 3600.0  # expiry of a run's staging lease whose heartbeat stops (a dead holder loses it at once)
VIEW_MODES = ("stored", "validator")


@dataclass
class PredictReport:
    n_predicted: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (filepath, reason)
    model_version: str = ""
    trained: bool = False
    run_id: str | None = None
    staging_id: str = ""
    settled: store.Settled = field(default_factory=store.Settled)  # leftovers of killed runs, finished or discarded


def _validator_seeds(collection: foc.SampleCollection, seed: int) -> dict[str, int]:
    """``{sample id: validator query seed}``; a collection without ``content_hash`` keys on ids."""
    ids = collection.values("id")
    hashes = collection.values("content_hash") if collection.has_field("content_hash") else [None] * len(ids)
    return {sid: validator_seed(query_key(sid, h), seed) for sid, h in zip(ids, hashes, strict=True)}


def to_fields(pred: Stage1Prediction) -> dict[str, Any]:
    """Turn one prediction into FiftyOne field values (pure apart from label classes)."""
    import fiftyone as fo

    evidence = set(pred.evidence_views)
    detections = [
        fo.Detection(
            label="evidence" if i in evidence else "view",
            bounding_box=[float(v) for v in box],
            confidence=float(p),
            view_index=i,
        )
        for i, (box, p) in enumerate(zip(pred.view_boxes, pred.view_probs, strict=True))
    ]
    return {
        "stage1": fo.Classification(
            label=pred.label,
            confidence=pred.confidence,
            logits=list(pred.logits),
            p_roadwork=pred.p_roadwork,
            threshold=pred.threshold,
        ),
        "stage1_views": fo.Detections(detections=detections),
        "gate_features": dict(pred.gate_features),
        "stage1_embedding": [float(v) for v in pred.embedding],
        "model_version": pred.model_version,
    }


@dataclass
class _Predicted:
    """One batch of predictions: the samples predicted, their predictions, files skipped, samples done."""

    sample_ids: list[str]
    predictions: list[Stage1Prediction]
    skipped: list[tuple[str, str]]
    n_done: int


def _in_process(
    model: Stage1Model, ids: Sequence[str], paths: dict[str, str], seeds: dict[str, int] | None, batch_size: int,
    contract: str | None,
) -> Iterator[_Predicted]:
    """Decode in this process, ``batch_size`` images per :meth:`Stage1Model.predict` call."""
    from curation.stage1.query_policies import contract_query

    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        images, kept, skipped = [], [], []
        for sample_id in batch:
            try:
                image = open_rgb(paths[sample_id])
            except OPEN_ERRORS as e:
                skipped.append((paths[sample_id], f"{type(e).__name__}: {e}"))
                continue
            images.append(image if seeds is None else contract_query(image, seeds[sample_id], contract))
            kept.append(sample_id)
        yield _Predicted(kept, model.predict(images), skipped, len(batch))


def _streamed(
    model: ServingModel, ids: Sequence[str], paths: dict[str, str], seeds: dict[str, int] | None, contract: str | None
) -> Iterator[_Predicted]:
    """The serving bulk path: worker processes decode and build views while the model computes."""
    files = model.forward_files(
        [paths[i] for i in ids], validator_seeds=None if seeds is None else [seeds[i] for i in ids], skip_unreadable=True,
        query_policy=contract,
    )
    for batch in files:
        predictions = [] if batch.output is None else model.predictions(batch.output, batch.sizes)
        kept = [ids[i] for i in batch.indices]
        yield _Predicted(kept, predictions, list(batch.skipped), len(kept) + len(batch.skipped))


def streams_files(model: Stage1Model) -> bool:
    """Whether ``model`` is served on the bulk path (:class:`ServingConfig` ``path: bulk``)."""
    from curation.stage1.serving import ServingModel

    return isinstance(model, ServingModel) and model.serving.path == "bulk"


# Samples per staged write: ``set_values`` has a fixed cost per call (schema checks, reloads)
# that every 16-image batch paid five times; writing every 256 samples took the five writes from
# ~2.0 to ~1.1-1.7 ms per sample (measured on 2,048 samples). Values stay staged until promotion.
_WRITE_EVERY = 256


def _write_staged(dataset: Any, columns: dict[str, dict[str, Any]], run_field: str, staging_id: str) -> None:
    """Write the buffered ``{field: {sample_id: value}}`` into the staged fields, each sample
    claimed first with this run's ``staging_id`` (so no staged value is ever unowned), then empty it."""
    store.set_values_by_id(dataset, run_field, dict.fromkeys(next(iter(columns.values())), staging_id))
    for name, values in columns.items():
        store.set_values_by_id(dataset, f"{name}{store.STAGED_SUFFIX}", values)
        values.clear()


def _not_predicted(collection: foc.SampleCollection, ids: Sequence[str], version_field: str, version: str) -> list[str]:
    """``ids`` without the samples whose ``version_field`` already says ``version``, in order."""
    from fiftyone import ViewField as F

    done = set(collection.match(F(version_field) == version).values("id"))
    return [i for i in ids if i not in done]


def predict_collection(
    collection: foc.SampleCollection,
    model: Stage1Model,
    *,
    batch_size: int = 16,
    view: str = "stored",
    seed: int = 0,
    query_policy: str | None = None,
    field_prefix: str = "",
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    engine: RayEngine | None = None,
    resume: bool = False,
) -> PredictReport:
    """Predict every sample of ``collection`` and write the Stage-1 fields.

    One run covers the whole collection; to spread it over processes, GPUs or machines pass a
    Ray ``engine`` (hand-started ``--shard i/n`` workers are gone: Ray schedules, retries and places).

    Args:
        view: ``stored`` predicts the stored image; ``validator`` predicts the query a validator
            would send for it (seeded per image, see :func:`validator_seed`).
        query_policy: the contract that validator query follows (``models/streetvision/policies``);
            None = the platform's own model of the 2025-11 contract.
        field_prefix: prefix for the written fields (e.g. ``validator_``), so validator-view
            predictions sit beside stored-view ones.
        on_progress: called with (done, total) after each batch (delegated operators report it).
        engine: a :class:`~curation.predict.ray_engine.RayEngine` decodes in Ray tasks and predicts
            in Ray model actors (local or a cluster); None computes in this process.
        resume: skip samples that already hold this model version's predictions and promote each
            written block at once, so a killed run, run again, finishes the rest instead of starting over
            (samples never mix two models; the collection may, until the re-run ends).

    A model served on the bulk path (:class:`~curation.stage1.serving.ServingModel`, ``path:
    bulk``) is fed by its loader's worker processes, ``batch_images`` per step; any other model
    decodes in this process, ``batch_size`` images per forward.
    """
    from rich.progress import Progress

    if view not in VIEW_MODES:
        raise InputError(f"`view` must be one of {VIEW_MODES}; got {view!r}.")
    if batch_size < 1:
        raise InputError(f"`batch_size` must be ≥ 1; got {batch_size}.")
    dataset = store.root_dataset(collection)
    names = [f"{field_prefix}{name}" for name in PREDICTION_FIELDS]
    ids = collection.values("id")
    if resume:
        ids = _not_predicted(collection, ids, f"{field_prefix}model_version", model.config.version)
    selected = collection.select(ids)
    paths = dict(zip(*selected.values(["id", "filepath"])))
    report = PredictReport(model_version=model.config.version, trained=model.config.trained)
    seeds = _validator_seeds(selected, seed) if view == "validator" else None
    if engine is not None:
        batches = (_Predicted(*block) for block in engine.batches(model, ids, paths, seeds, query_policy))
    elif streams_files(model):
        batches = _streamed(model, ids, paths, seeds, query_policy)
    else:
        batches = _in_process(model, ids, paths, seeds, batch_size, query_policy)
    # Staged values belong to their run: leftovers of killed runs are finished (killed while
    # promoting) or discarded now, and this run promotes only what it staged itself.
    run_field = f"{field_prefix}{STAGING_RUN_FIELD}{store.STAGED_SUFFIX}"
    lease_prefix = f"predict:{dataset.name}:{field_prefix}:"
    report.settled = store.settle_staged(dataset, names, run_field=run_field, lease_prefix=lease_prefix)
    report.staging_id = uuid.uuid4().hex
    lease = f"{lease_prefix}{report.staging_id}"
    with store.exclusive(lease, LEASE_TTL_S, holder="prediction run holds") as owner:
        columns: dict[str, dict[str, Any]] = {name: {} for name in names}  # staged values not yet written
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"Stage-1 {view} view", total=len(ids))
            for batch in batches:
                for sample_id, pred in zip(batch.sample_ids, batch.predictions, strict=True):
                    for name, value in to_fields(pred).items():
                        columns[f"{field_prefix}{name}"][sample_id] = value
                if len(columns[names[0]]) >= _WRITE_EVERY:
                    _write_staged(dataset, columns, run_field, report.staging_id)
                    if resume:  # this block is final now: a kill keeps it, and the re-run skips it
                        store.promote_staged(dataset, names, run_field=run_field, run_id=report.staging_id)
                report.n_predicted += len(batch.sample_ids)
                report.skipped.extend(batch.skipped)
                bar.advance(task, batch.n_done)
                if on_progress:
                    on_progress(int(bar.tasks[0].completed), len(ids))

        _write_staged(dataset, columns, run_field, report.staging_id)
        if report.n_predicted:
            store.mark_lock(lease, owner, promoting=True)  # from here a killed run is finished, not discarded
            store.promote_staged(dataset, names, run_field=run_field, run_id=report.staging_id)
            store.drop_staged_fields(dataset, names, extra=[run_field], lease_prefix=lease_prefix, own_lease=lease)
    report.run_id = store.record_run(
        dataset,
        "predict",
        {
            "model_version": model.config.version,
            "trained": model.config.trained,
            "view": view,
            "view_policy": dataclasses.asdict(model.config.views),
            "serving": jsonable(dataclasses.asdict(model.serving)) if hasattr(model, "serving") else None,
            "threshold": model.config.threshold,
            "fields": names,
            "engine": "in-process" if engine is None else {"ray": dataclasses.asdict(engine.config)},
            "resume": resume,
            "staging_id": report.staging_id,
            "settled": dataclasses.asdict(report.settled),
            "n_predicted": report.n_predicted,
            "n_skipped": len(report.skipped),
            "skipped": report.skipped[:100],
        },
        fields=names,
    )
    return report
