"""Helpers shared by the project's FiftyOne plugin operators, and their Python entry point.

Operators in ``plugins/`` are thin adapters: they read ``ctx.params``, call one function here or
elsewhere in :mod:`curation`, and return plain JSON-able dicts. Anything two operators need (the
delegation switch, the plugin's URIs, rendering a result as Markdown) lives here, not copied
between plugins.

Scripts and tests run operators through :func:`execute`, which goes through FiftyOne's
``execute_operator`` exactly like the App does, so there is one code path for all three.

Example:
    >>> from curation.app.operators import operator_uri
    >>> operator_uri("dataset_status")
    '@roadwork/curation/dataset_status'
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from curation.assets import asset_dir
from curation.errors import ConfigError, CurationError, suggest
from curation.evaluate.gate_job import GateJobConfig
from curation.mine.job import MiningConfig
from curation.mine.similar import SimilarConfig
from curation.settings import Settings
from curation.stage2.routing import RoutingConfig
from curation.typed_config import from_mapping, read_yaml_mapping, setting_error, setting_info

if TYPE_CHECKING:
    import fiftyone.core.collections as foc

T = TypeVar("T")

PLUGIN_NAME = "@roadwork/curation"
"""The ``name`` in ``plugins/roadwork/fiftyone.yml``; operator URIs are ``<PLUGIN_NAME>/<operator>``."""

PLUGIN_DIR = "roadwork"
"""The plugin's folder under the plugins directory; its ``fiftyone.yml`` lists every operator."""

DELEGATE_PARAM = "delegate"


@functools.cache
def operator_names() -> tuple[str, ...]:
    """The plugin's operators as its manifest lists them: FiftyOne registers only those, so the
    manifest is the one list (the plugin registers every operator class it defines)."""
    manifest = read_yaml_mapping(asset_dir("plugins") / PLUGIN_DIR / "fiftyone.yml", what="Plugin manifest")
    return tuple(manifest.get("operators") or ())


def operator_uri(name: str) -> str:
    """The full URI of one of the plugin's operators."""
    names = operator_names()
    if name not in names:
        raise ConfigError(f"Unknown operator `{name}`.{suggest(name, names)} Allowed: {', '.join(names)}.")
    return f"{PLUGIN_NAME}/{name}"


def operator_settings(collection: foc.SampleCollection) -> Settings:
    """The settings an operator runs with: the environment's, for the dataset it targets."""
    from curation import store

    return Settings.load().replace(dataset_name=store.root_dataset(collection).name)


def configure_plugins(settings: Settings) -> str:
    """Point FiftyOne (this process and its children) at the project's plugins directory.

    FiftyOne reads ``FIFTYONE_PLUGINS_DIR`` once, at import, so the live config is updated too.

    Returns:
        the plugins directory, as a string.
    """
    root = settings.plugins_root
    if not root.is_dir():
        raise ConfigError(f"Plugins directory {root} does not exist; set `plugins_dir` in the settings.")
    path = str(root.resolve())
    os.environ["FIFTYONE_PLUGINS_DIR"] = path
    os.environ["CURATION_PLUGINS_DIR"] = path
    import fiftyone as fo

    fo.config.plugins_dir = path
    return path


# Helpers for operator forms -----------------------------------------------------------------
def add_delegation_input(inputs: Any, *, default: bool = False, what: str = "this job") -> None:
    """Add the "run in the background" switch every long operator offers.

    The App stops immediate runs after 600 s; delegated runs are queued and executed by the
    worker that ``curation app`` starts (or ``curation worker``).
    """
    inputs.bool(
        DELEGATE_PARAM,
        default=default,
        label="Run in the background (delegated)",
        description=f"Queue {what} for the delegated-operation worker instead of running it now.",
    )


def config_errors(cls: type, names: Sequence[str], params: Mapping[str, Any]) -> dict[str, str]:
    """``{setting: message}`` for the form values config ``cls`` rejects: its bounds first, then
    its own validation (building the config from the values), so the App says what the CLI says."""
    values = {n: params[n] for n in names if params.get(n) is not None}
    errors = {n: e for n, v in values.items() if (e := setting_error(cls, n, v))}
    if not errors:
        try:
            from_mapping(cls, values, source="the form")
        except CurationError as e:
            named = next((n for n in names if f"'{n}'" in str(e) or f"`{n}`" in str(e)), names[0])
            errors[named] = str(e)
    return errors


def config_inputs(inputs: Any, cls: type, names: Sequence[str], params: Mapping[str, Any]) -> None:
    """Form inputs for settings ``names`` of config ``cls``: default, label and bounds from the
    config; a value it rejects marks the input invalid with the config's message while the form
    is filled (``resolve_input`` runs on every change)."""
    errors = config_errors(cls, names, params)
    for name in names:
        info = setting_info(cls, name)
        shown = {"default": info.default, "label": info.help}
        if name in errors:
            shown.update(invalid=True, error_message=errors[name])
        if info.choices:
            inputs.enum(name, list(info.choices), **shown)
        elif info.type is bool:
            inputs.bool(name, **shown)
        elif info.type in (int, float):
            getattr(inputs, info.type.__name__)(name, min=info.low, max=info.high, **shown)
        else:
            inputs.str(name, **shown)


def config_from_params(cls: type[T], params: Mapping[str, Any], names: Sequence[str]) -> T:
    """Config ``cls`` from the form's values for ``names`` (the config's defaults for the rest)."""
    return from_mapping(cls, {n: params[n] for n in names if params.get(n) is not None}, source="operator params")


def wants_delegation(params: Mapping[str, Any]) -> bool:
    """The operator's ``resolve_delegation`` answer from its params."""
    return bool(params.get(DELEGATE_PARAM, False))


# Library calls the operators make -------------------------------------------------------------
def collection_status(collection: foc.SampleCollection) -> dict[str, Any]:
    """Counts by source, split, label, slice and tag of a dataset or view, as a plain dict."""
    from curation import store

    return dataclasses.asdict(store.status(collection))


def status_markdown(status: Mapping[str, Any]) -> str:
    """Render :func:`collection_status` output as Markdown for the App's output panel."""
    lines = [f"**{status['name']}**: {status['total']} samples", "", f"_{status['location']}_", ""]
    for key, title in (
        ("by_source", "Sources"),
        ("by_split", "Split"),
        ("by_label", "Label"),
        ("by_slice", "Slices"),
        ("by_tag", "Tags"),
    ):
        counts = status.get(key) or {}
        lines.append(f"**{title}**: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def predict_target(
    collection: foc.SampleCollection,
    *,
    model: str = "champion",
    view: str = "stored",
    batch_size: int = 16,
    engine: str = "process",
    repredict: bool = False,
    on_progress: Any = None,
) -> dict[str, Any]:
    """Predict a dataset/view with a named model (see :func:`curation.store.registry.resolve_model`).

    ``engine="ray"`` predicts on Ray (settings ``ray``) as ``curation predict --engine ray`` does: samples
    already holding this model version's predictions are skipped unless ``repredict``, so a re-run after a
    killed one finishes the rest.
    """
    from curation.predict.job import predict_collection
    from curation.predict.ray_engine import ENGINES, RayEngine
    from curation.settings import RaySettings
    from curation.store import registry

    if engine not in ENGINES:
        raise ConfigError(f"`engine` must be one of {', '.join(ENGINES)}; got {engine!r}.")
    settings = operator_settings(collection)
    ray_engine = RayEngine(settings.ray or RaySettings()) if engine == "ray" else None
    stage1 = registry.resolve_model(settings, model)
    prefix = "validator_" if view == "validator" else ""
    report = predict_collection(
        collection, stage1, batch_size=batch_size, view=view, field_prefix=prefix, progress=False, on_progress=on_progress,
        query_policy=settings.query_policy, engine=ray_engine, resume=ray_engine is not None and not repredict,
    )
    return {
        "n_predicted": report.n_predicted,
        "n_skipped": len(report.skipped),
        "skipped": [f"{p}: {r}" for p, r in report.skipped[:20]],
        "model_version": report.model_version,
        "trained": report.trained,
        "run_id": report.run_id,
    }


def evaluate_target(collection: foc.SampleCollection, *, view: str = "stored") -> dict[str, Any]:
    """Evaluate stored- or validator-view predictions; returns the slice table as rows."""
    from curation.evaluate.job import evaluate_predictions

    pred_field, key = ("validator_stage1", "eval_validator") if view == "validator" else ("stage1", "eval_stage1")
    report = evaluate_predictions(collection, pred_field=pred_field, eval_key=key)
    return {
        "rows": report.as_rows(),
        "n_label_conflicts_excluded": report.n_label_conflicts_excluded,
        "n_missing": report.n_missing,
        "eval_key": key,
        "run_id": report.run_id,
        "rewards": report.rewards,
        "reward_lines": report.reward_lines(),
    }


def gate_dataset(collection: foc.SampleCollection, config: GateJobConfig = GateJobConfig()) -> dict[str, Any]:
    """Fit the gate on the dataset's val split, LTT on calib, write failure_risk."""
    from curation import store
    from curation.evaluate.gate_job import fit_and_apply_gate

    report = fit_and_apply_gate(store.root_dataset(collection), runs_root=operator_settings(collection).runs_root, config=config)
    return {**dataclasses.asdict(report), "summary": report.summary()}


def mine_target(collection: foc.SampleCollection, config: MiningConfig = MiningConfig()) -> dict[str, Any]:
    from curation.mine.job import mine

    report = mine(collection, config=config)
    return {**dataclasses.asdict(report), "selected_ids": list(report.selected_ids), "summary": report.summary()}


def embeddings_map_target(collection: foc.SampleCollection, *, method: str = "umap", overwrite: bool = False) -> dict[str, Any]:
    """The Brain map, similarity index and uniqueness of the dataset's Stage-1 embeddings."""
    from curation import store
    from curation.store.brain import index_embeddings

    report = index_embeddings(store.root_dataset(collection), method=method, overwrite=overwrite, progress=False)
    return {**dataclasses.asdict(report), "summary": report.summary()}


MAX_QUERY_SAMPLES = 100


def similar_target(collection: foc.SampleCollection, query_ids: Sequence[str], config: SimilarConfig = SimilarConfig(), *, tag: bool = True) -> dict[str, Any]:
    """The pool/train samples most like ``query_ids``, nearest first; with ``tag``, tagged as a ``similar:`` labeling batch."""
    from curation import store
    from curation.mine.similar import find_similar, tag_similar

    if len(query_ids) > MAX_QUERY_SAMPLES:
        raise CurationError(f"{len(query_ids)} samples targeted; select at most {MAX_QUERY_SAMPLES} examples to search like.")
    dataset = store.root_dataset(collection)
    if not tag:
        ids, key = find_similar(dataset, list(query_ids), config)
        summary = f"{len(ids)} samples most like the {len(set(query_ids))} selected (index `{key}`), nearest first; not tagged."
        return {"tag": None, "ids": ids, "n": len(ids), "brain_key": key, "summary": summary}
    batch = tag_similar(dataset, list(query_ids), config)
    return {**dataclasses.asdict(batch), "n": len(batch.ids), "summary": batch.summary()}


def sam_boxes_target(collection: foc.SampleCollection, *, config_path: str, on_progress: Any = None) -> dict[str, Any]:
    """SAM-assisted boxes from a SAM config YAML (``models/sam/*.yaml`` or a user file)."""
    from pathlib import Path

    from curation.label.sam import SamBoxesConfig, sam_boxes

    path = Path(config_path)
    if not path.is_absolute():
        path = operator_settings(collection).models_root / path
    result = sam_boxes(collection, SamBoxesConfig.from_yaml(path), progress=on_progress)
    return dataclasses.asdict(result)


def synthesize_target(collection: foc.SampleCollection, *, params: Mapping[str, Any], model: str = "tiny-random") -> dict[str, Any]:
    """SDXL synthesis with the job's parameters (see :class:`curation.synth.plan.SynthJob`)."""
    from curation.synth.generate import synthesize
    from curation.synth.pipeline import GeneratorConfig
    from curation.synth.plan import SynthJob
    from curation.typed_config import from_mapping

    job = from_mapping(SynthJob, dict(params), source="operator params")
    report = synthesize(collection, job, settings=operator_settings(collection), pipelines=GeneratorConfig(model=model), progress=False)
    return dataclasses.asdict(report)


def evidence_target(
    collection: foc.SampleCollection,
    *,
    routing: RoutingConfig = RoutingConfig(),
    backend: str = "rapidocr",
    risky_only: bool = True,
    views: bool = True,
    evaluate: bool = True,
    batch_size: int = 16,
    on_progress: Any = None,
) -> dict[str, Any]:
    """Stage-2 evidence (OCR + detector proposals) and the cascade decision; evaluates the cascade
    against Stage-1 alone when labelled samples exist (plot under ``<runs>/cascade/<run id>``).
    ``routing`` is used at the predicting model's calibrated threshold (:func:`model_routing`)."""
    from curation.stage2 import make_backend
    from curation.stage2.cascade import evaluate_cascade, model_routing, run_stage2

    routing = model_routing(collection, routing)
    report = run_stage2(
        collection, backend=make_backend(backend), routing=routing, risky_only=risky_only, views=views,
        batch_size=batch_size, progress=on_progress,
    )  # fmt: skip
    result: dict[str, Any] = {**dataclasses.asdict(report), "skipped": [f"{p}: {r}" for p, r in report.skipped[:20]]}
    result["evaluation"] = None
    if evaluate and collection.exists("cascade").exists("ground_truth").limit(1).count():
        out_dir = operator_settings(collection).runs_root / "cascade" / str(report.run_id)
        result["evaluation"] = dataclasses.asdict(evaluate_cascade(collection, routing=routing, out_dir=out_dir))
    return result


def retrain_target(collection: foc.SampleCollection, *, pipeline: str = "retrain_export.yaml", force: bool = False) -> dict[str, Any]:
    """The lead's button: run the retrain-and-export pipeline (see :mod:`curation.retrain.job`)."""
    from pathlib import Path

    from curation.assets import asset_dir
    from curation.pipelines import load_pipeline
    from curation.retrain.job import run_retrain

    path = Path(pipeline)
    if not path.is_absolute():
        path = asset_dir("pipelines") / path
    job, config = load_pipeline(path)
    if job != "retrain_export":
        raise ConfigError(f"{path} defines job `{job}`, not `retrain_export`.")
    settings = operator_settings(collection)
    result = run_retrain(settings, dataclasses.replace(config, force=force or config.force))
    return {
        "version": result.version,
        "promoted": result.promoted,
        "reasons": result.reasons,
        "report": str(result.report_path),
        "bundle": str(result.bundle_dir) if result.bundle_dir else None,
    }


def labeler_name() -> str:
    """The configured user name recorded on human labels."""
    return Settings.load().user_name


def rows_markdown(rows: list[Mapping[str, Any]], columns: tuple[str, ...]) -> str:
    """A Markdown table for the App's output panel (None shows as an em dash)."""
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    body = [
        "| " + " | ".join("—" if r.get(c) is None else f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r[c]) for c in columns) + " |"
        for r in rows
    ]
    return "\n".join([head, *body]) + "\n"


# Python entry point ---------------------------------------------------------------------------
def execute(
    name: str,
    collection: foc.SampleCollection,
    params: Mapping[str, Any] | None = None,
    *,
    delegate: bool = False,
) -> Any:
    """Run one of the plugin's operators on a dataset or view, as the App would.

    Args:
        name: operator name, e.g. ``"dataset_status"``.
        collection: the dataset or view the operator targets (``ctx.target_view()``).
        params: the operator's form values.
        delegate: queue the run for the delegated-operation worker instead of running it now.

    Returns:
        the operator's result dict for an immediate run; for a delegated run, the queued
        operation document (its ``id`` and ``run_state``).

    Example:
        >>> status = execute("dataset_status", dataset)  # doctest: +SKIP
        >>> status["total"]  # doctest: +SKIP
    """
    import fiftyone.core.dataset as fod
    import fiftyone.operators as foo

    params = dict(params or {})
    if delegate:
        params[DELEGATE_PARAM] = True
    ctx: dict[str, Any] = {"params": params, "request_delegation": delegate}
    if isinstance(collection, fod.Dataset):
        ctx["dataset"] = collection
    else:
        ctx["view"] = collection
    result = foo.execute_operator(operator_uri(name), ctx=ctx)
    return result.result
