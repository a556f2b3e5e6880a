"""Retrain-and-export: snapshot → training set → train → calibrate → gate → compare → promote → export.

Each step writes its output under the run folder and marks itself done in ``state.json``, so a
killed run resumes where it stopped. The challenger and the champion are scored on identical
validator-view queries (same images, same seeds) of calib and val_synthetic; the promotion rule
(:class:`PromotionRule`) decides, and its reasons are recorded either way.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from curation import schema, store
from curation.errors import ConfigError, CurationError, InputError, suggest
from curation.evaluate.gate_job import GateJobConfig, fit_gate_arrays
from curation.evaluate.queries import QueryScores, score_queries
from curation.predict.ray_engine import ENGINES, RayEngine
from curation.settings import Settings
from curation.stage1 import calibrate
from curation.stage1.gate import GateConfig
from curation.stage1.model import Stage1Config, Stage1Model
from curation.stage1.promotion import PromotionRule, decide_promotion, paired_mcc_interval, slice_rows
from curation.stage1.query_policies import all_policies, cached_policy
from curation.stage1.reward_window import rewards_by_policy
from curation.stage1.self_train import MODES as TRAIN_MODES
from curation.stage1.self_train import SelfTrainConfig
from curation.stage1.train import TrainConfig
from curation.stage1.views import ViewPolicy
from curation.store import registry

SNAPSHOT_FIELDS = ("ground_truth", "label_origin", "hn_category", "label_history", "labeled_by", "labeled_at", "primitives", "tags", "split")
VERSION_PATTERN = re.compile(r"\d+\.\d+\.\d+")


@dataclass(frozen=True)
class RetrainConfig:
    """One retrain-and-export run (``pipelines/retrain_export.yaml``)."""

    backbone: str = "tiny-random"
    views: ViewPolicy = field(default_factory=ViewPolicy)
    aggregator: str = "topk_mean"
    model_name: str = "roadwork-stage1"  # model_card.json `model_name` (the HF repo name when published)
    version: str | None = None  # None: bump the champion's minor version
    head_train: TrainConfig = field(default_factory=TrainConfig)
    finetune: TrainConfig | None = None  # partial/LoRA before the head, when set
    mode: str = "supervised"  # or self_train: the supervised head, then the unlabeled pool with an EMA teacher (issue 21)
    self_train: SelfTrainConfig = field(default_factory=SelfTrainConfig)
    hard_negative_weight: float = 2.0
    calib_seed: int = 0
    gate: GateConfig = field(default_factory=GateConfig)
    alpha: float = GateJobConfig.alpha
    delta: float = GateJobConfig.delta
    query_policy: str | None = None  # the contract training, calibration and promotion follow; None: settings' (else the platform's 2025-11 model)
    promotion: PromotionRule = field(default_factory=PromotionRule)
    force: bool = False
    export: bool = True
    lock_ttl_s: float = 6 * 3600.0  # expiry of a lock whose holder stops its heartbeat; a dead holder is taken over at once (curation.store.locks)
    engine: str = "process"  # where the feature cache's missing backbone features are computed: process | ray (settings `ray`)

    def __post_init__(self) -> None:
        if self.version is not None and not VERSION_PATTERN.fullmatch(str(self.version)):
            raise ConfigError(f"`version` must look like X.Y.Z (e.g. 1.4.0); got {self.version!r}.")
        if self.mode not in TRAIN_MODES:
            raise ConfigError(f"`mode` must be one of {', '.join(TRAIN_MODES)}; got {self.mode!r}.")
        if self.engine not in ENGINES:
            raise ConfigError(f"`engine` must be one of {', '.join(ENGINES)}; got {self.engine!r}.{suggest(self.engine, ENGINES)}")


@dataclass
class RetrainResult:
    run_dir: Path
    version: str
    promoted: bool
    reasons: list[str]
    comparison: dict[str, Any]
    training_counts: dict[str, Any]
    report_path: Path | None = None
    bundle_dir: Path | None = None


class _State:
    """Steps done so far, persisted atomically in ``state.json``."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "state.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {"done": {}}

    def done(self, step: str) -> Any:
        return self.data["done"].get(step)

    def mark(self, step: str, value: Any) -> None:
        self.data["done"][step] = value
        registry.write_json_atomic(self.path, self.data)


# Step 1: snapshot -----------------------------------------------------------------------------
def snapshot_labels(dataset: Any, out_dir: Path, *, config: RetrainConfig) -> dict[str, Any]:
    """A restorable copy of every label field (see :func:`curation.store.restore_fields`) and a manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = store.dump_fields(dataset, SNAPSHOT_FIELDS, out_dir / "labels.jsonl")
    manifest = {
        "dataset": dataset.name,
        "n_samples": n,
        "fields": list(SNAPSHOT_FIELDS),
        "label_revisions": int(sum(len(h or []) for h in dataset.values("label_history"))),
        "config": registry.jsonable(dataclasses.asdict(config)),
        "git_commit": _git_commit(),
        "created_at": datetime.now(timezone.utc).isoformat(),
    }
    registry.write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


# Step 2: training set -------------------------------------------------------------------------
def training_counts(view: Any) -> dict[str, Any]:
    return {
        "n": view.count(),
        "by_source": view.count_values("sources"),
        "by_label": view.count_values("ground_truth.label"),
        "by_slice": view.count_values("slices"),
        "hard_negatives": view.match_tags(schema.TAG_HARD_NEGATIVE).count(),
        "human_labeled": view.match({"label_origin": schema.LABEL_ORIGIN_HUMAN}).count(),
    }


# Step 3: train ----------------------------------------------------------------------------------
def train_challenger(
    view: Any, config: RetrainConfig, *, settings: Settings, version: str, checkpoint_dir: Path, dataset: Any = None
) -> Stage1Model:
    """Train a fresh Stage-1 on the training view (fine-tune first when configured, then the head; with
    ``mode: self_train`` the head then learns from ``dataset``'s unlabeled pool, see :mod:`curation.retrain.self_train`)."""
    import torch

    from curation.stage1.cache import CacheSpec, FeatureCache, cache_features
    from curation.stage1.train import train_finetune, train_head

    ids, paths, hashes, labels, tags = view.values(["id", "filepath", "content_hash", "ground_truth.label", "tags"])
    if len(ids) < 10:
        raise InputError(f"Only {len(ids)} training samples: nothing to retrain on (need ≥ 10).")
    y = np.array([label == schema.Label.ROADWORK for label in labels], dtype=np.int64)
    if y.min() == y.max():
        raise InputError("The training view holds one class only; label both roadwork and no_roadwork samples.")
    model = Stage1Model.build(
        Stage1Config(backbone=config.backbone, views=config.views, aggregator=config.aggregator), seed=config.head_train.seed
    )
    if config.finetune is not None:
        finetune = dataclasses.replace(config.finetune, query_policy=config.finetune.query_policy or config.query_policy)
        train_finetune(paths, y, finetune, model=model, content_hashes=hashes, checkpoint_dir=checkpoint_dir / "finetune")
    cache = FeatureCache(settings.cache_root / "stage1", CacheSpec.for_model(model, query_policy=config.query_policy))
    engine = _feature_engine(config, settings)
    cached = cache_features(paths, hashes, model, cache, augmentations=config.head_train.augmentations, seed=config.head_train.seed, engine=engine)
    weights = torch.tensor(
        [config.hard_negative_weight if schema.TAG_HARD_NEGATIVE in (t or []) else 1.0 for t in tags], dtype=torch.float32
    )
    train_head(
        cached.features, y, config.head_train, model=model, stats=cached.stats, content_hashes=hashes,
        sample_weights=weights, version=version, checkpoint_dir=checkpoint_dir / "head",
    )
    if config.mode == "self_train":
        from curation.retrain.self_train import run_self_training

        run_self_training(dataset if dataset is not None else store.root_dataset(view), model, cached.features, y, config.self_train, cache=cache, version=version,
                          seed=config.head_train.seed, out_dir=checkpoint_dir, engine=engine)
    return model


def _written(config: RetrainConfig) -> list[str]:
    """Sample fields a retrain writes (its run names them, so deleting the run removes them)."""
    return ["pseudo_label", "pseudo_label_teacher"] if config.mode == "self_train" else []


def _feature_engine(config: RetrainConfig, settings: Settings) -> Any:
    """The Ray engine for feature caching when ``config.engine`` asks for it; None computes in this process."""
    if config.engine != "ray":
        return None
    from curation.settings import RaySettings

    return RayEngine(settings.ray or RaySettings())


# Steps 4-5: validator-view predictions, calibration, gate ----------------------------------------------
def calibrate_on_val(model: Stage1Model, val: QueryScores) -> dict[str, Any]:
    """Temperature on val logits, then the max-MCC threshold on the calibrated probabilities."""
    temperature = calibrate.fit_temperature(val.logits, val.y)
    p = 1.0 / (1.0 + np.exp(-val.logits / temperature))
    choice = calibrate.threshold_for_max_mcc(val.y, p)
    threshold = float(np.clip(choice.threshold, 1e-4, 1 - 1e-4))
    model.set_calibration(threshold=threshold, temperature=float(temperature))
    return {
        "temperature": float(temperature),
        "threshold": threshold,
        "val_mcc": float(choice.mcc),
        "ece_val": float(calibrate.expected_calibration_error(val.y, p)),
    }


# Step 6: compare ---------------------------------------------------------------------------------
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _with_media(view: Any, purpose: str, say: Callable[..., None]) -> Any:
    """``view`` without samples whose image file is gone, said with an example and the fix.

    A database can outlive its media store (a deleted checkout, a wiped disk); one missing file
    should not stop a retrain, and re-importing the source restores what it still has.
    """
    ids, paths = view.values(["id", "filepath"])
    missing = [(i, p) for i, p in zip(ids, paths, strict=True) if not p or not Path(p).is_file()]
    if not missing:
        return view
    say(
        f"[yellow]warning:[/] {len(missing)} {purpose} samples have no image file (e.g. {missing[0][1]}); "
        "left out. Re-import their source (`curation ingest ...`) to restore them."
    )
    return view.exclude([i for i, _ in missing])


def next_version(settings: Settings) -> str:
    """The champion line's next minor version; registered folders not named X.Y.Z are not versions."""
    numbered = [v for v in registry.list_versions(settings) if VERSION_PATTERN.fullmatch(v)]
    current = max(numbered or ["0.0.0"], key=registry.semver)
    major, minor, _ = (int(p) for p in current.split("."))
    return f"{major}.{minor + 1}.0"


# The pipeline ------------------------------------------------------------------------------------
def run_retrain(settings: Settings, config: RetrainConfig, *, run_name: str | None = None, console: Any = None) -> RetrainResult:
    """The whole retrain-and-export job (resumable by ``run_name`` with the same config).

    Holds the registry's lock throughout, so concurrent runs (the App's worker and a CLI run)
    cannot pick the same version or race to the champion pointer.
    """
    dataset = store.open_dataset(settings, create=False)
    # One retrain per registry at a time: two runs would pick the same version, share its run
    # folder and temp folder, and race to the champion pointer.
    lock = f"retrain:{settings.registry_root.resolve()}"
    with store.exclusive(lock, config.lock_ttl_s, holder="retrain holds the registry lock"):
        return _run_retrain(settings, dataset, config, run_name=run_name, console=console)


def _run_retrain(settings: Settings, dataset: Any, config: RetrainConfig, *, run_name: str | None, console: Any) -> RetrainResult:
    from curation.export.bundle import export_bundle
    from curation.retrain.report import write_report

    say = console.print if console else (lambda *a, **k: None)
    if config.query_policy is None and settings.query_policy:
        config = dataclasses.replace(config, query_policy=settings.query_policy)
    config = dataclasses.replace(config, query_policy=config.query_policy or None)  # "" also means the platform model
    if config.query_policy:
        cached_policy(config.query_policy)  # an unknown contract is refused before any work, naming the nearest one
    # Where features are computed does not change them: a run may resume on another engine.
    wanted = {k: v for k, v in registry.jsonable(dataclasses.asdict(config)).items() if k != "engine"}
    runs = settings.runs_root / "retrain"
    if run_name:  # resuming a named run keeps its version and must keep its configuration
        run_dir = runs / run_name
        state = _State(run_dir)
        started = state.done("start")
        if started and started["config"] != wanted:
            raise CurationError(
                f"Run `{run_name}` was started with another configuration ({state.path}); resume it with the same "
                "one, or start a new run (another `--run-name`)."
            )
        version = started["version"] if started else config.version or next_version(settings)
    else:
        version = config.version or next_version(settings)
        run_dir = runs / version
        state = _State(run_dir)
        started = state.done("start")
        if started and started["config"] != wanted:  # a killed run of another configuration: keep it aside
            aside = run_dir.with_name(f"{version}.abandoned-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
            run_dir.rename(aside)
            say(f"[yellow]note:[/] an unfinished run of {version} with another configuration was moved to {aside}.")
            state = _State(run_dir)
    if (finished := registry.finish_pending_promotion(settings)) is not None:
        say(f"[yellow]note:[/] {finished} was registered as promoted by a run that stopped before moving the champion; it is champion now.")
    if version in registry.list_versions(settings):
        decision = registry.read_promotion(settings, version) or {}
        if run_name and started and decision.get("run_dir") == str(run_dir) and state.done("compare"):
            return _finish_registered(settings, dataset, config, run_dir, version, state)  # killed after registering
        raise CurationError(
            f"Version {version} is already registered"
            + (f" (run `{run_name}` finished, or another run registered its version since)" if run_name and started else "")
            + "; pass another `version` or start a new run."
        )
    state.mark("start", {"version": version, "config": wanted})

    if not state.done("snapshot"):
        state.mark("snapshot", snapshot_labels(dataset, run_dir / "snapshot", config=config))
    from curation.ingest.job import complete_leak_check

    if complete_leak_check(dataset):  # an interrupted import's leak check, before anything trains
        say("[yellow]note:[/] an import stopped before its leak check; the check ran now.")
    view = _with_media(store.training_view(dataset), "training", say)
    counts = state.done("training_set") or registry.jsonable(training_counts(view))
    state.mark("training_set", counts)
    say(f"training set: {counts['n']} samples, {counts['hard_negatives']} hard negatives, by label {counts['by_label']}")

    model_dir = run_dir / "challenger"
    if state.done("train"):
        model = Stage1Model.load(model_dir)
    else:
        model = train_challenger(view, config, settings=settings, version=version, checkpoint_dir=run_dir / "checkpoints", dataset=dataset)
        model.save(model_dir, include_backbone=True)  # the cache and head belong to exactly these backbone weights
        state.mark("train", {"version": version})

    scored_splits = [schema.Split.VAL, schema.Split.CALIB, schema.Split.VAL_SYNTHETIC]
    clean = _with_media(
        dataset.match_tags(schema.TAG_LABEL_CONFLICT, bool=False).exists("ground_truth").match({"split": {"$in": scored_splits}}),
        "evaluation",
        say,
    )
    val = score_queries(model, clean.match({"split": schema.Split.VAL}), seed=config.calib_seed, query_policy=config.query_policy)
    calibration = calibrate_on_val(model, val)
    val = val.recalibrated(model.config)  # gate features depend on the new temperature and threshold
    calib = score_queries(model, clean.match({"split": schema.Split.CALIB}), seed=config.calib_seed, query_policy=config.query_policy)
    try:
        fitted = fit_gate_arrays(
            val.features, (val.p >= model.config.threshold).astype(int) == val.y, val.groups,
            calib.features, (calib.p >= model.config.threshold).astype(int) == calib.y,
            names=val.feature_names, config=config.gate, alpha=config.alpha, delta=config.delta,
        )
    except InputError as e:  # too few val mistakes to learn from: ship without a gate, and say so
        fitted = None
        calibration["gate"] = f"not fitted: {e}"
        say(f"[yellow]gate not fitted:[/] {e}")
    model.save(model_dir, include_backbone=True)
    state.mark("calibrate", calibration)

    champion_version = registry.champion_version(settings)
    # Both models are scored the same way, on the plain Stage-1 path: a served champion (another
    # dtype, compiled) would make the paired comparison compare numerics as well as models.
    champion = registry.resolve_model(settings.replace(stage1_serving=None), "champion") if champion_version else None
    evaluation: dict[str, Any] = {}
    policies = all_policies()
    decided = {"challenger": (calib.p >= model.config.threshold).astype(int)}
    evaluation["challenger"] = {"calib": slice_rows(calib.y, decided["challenger"], calib.p, calib.slices)}
    interval = None
    if champion is not None:
        champ_calib = score_queries(champion, clean.match({"split": schema.Split.CALIB}), seed=config.calib_seed, query_policy=config.query_policy)
        decided["champion"] = (champ_calib.p >= champion.config.threshold).astype(int)
        evaluation["champion"] = {"calib": slice_rows(champ_calib.y, decided["champion"], champ_calib.p, champ_calib.slices)}
        rule = config.promotion
        interval = paired_mcc_interval(calib.y, decided["challenger"], decided["champion"], n=rule.bootstrap, confidence=rule.confidence, seed=config.calib_seed)
    synth_view = clean.match({"split": schema.Split.VAL_SYNTHETIC})
    if synth_view.count():
        s = score_queries(model, synth_view, seed=config.calib_seed, query_policy=config.query_policy)
        evaluation["challenger"]["val_synthetic"] = slice_rows(s.y, (s.p >= model.config.threshold).astype(int), s.p, s.slices)
        if champion is not None:
            cs = score_queries(champion, synth_view, seed=config.calib_seed, query_policy=config.query_policy)
            evaluation["champion"]["val_synthetic"] = slice_rows(cs.y, (cs.p >= champion.config.threshold).astype(int), cs.p, cs.slices)

    scored = {"challenger": calib.y, **({"champion": champ_calib.y} if champion is not None else {})}
    evaluation["reward"] = {
        who: {name: asdict(r) for name, r in rewards_by_policy(y, decided[who], policies, seed=config.calib_seed).items()}
        for who, y in scored.items() if 0 < y.sum() < y.size
    }  # fmt: skip
    promoted, reasons = decide_promotion(
        evaluation["challenger"]["calib"], evaluation.get("champion", {}).get("calib"), interval, config.promotion
    )
    if config.force and not promoted:
        promoted, reasons = True, reasons + ["FORCED by --force (recorded)"]
    reasons.append(f"judged on calib queries of {config.query_policy or 'the platform model of streetvision-2025-11'}")
    report_path = write_report(run_dir, version=version, evaluation=evaluation, calibration=calibration, val=val, calib=calib,
                               fitted=fitted, promoted=promoted, reasons=reasons, counts=counts, model=model)
    state.mark("compare", registry.jsonable(
        {"promoted": promoted, "reasons": reasons, "interval": interval, "evaluation": evaluation, "calibration": calibration}
    ))
    say(("PROMOTE " if promoted else "KEEP CHAMPION ") + "; ".join(reasons))

    metrics_payload = registry.jsonable(
        {"calibration": calibration, "evaluation": evaluation, "gate": dataclasses.asdict(fitted.metrics) if fitted else None}
    )
    gate_payload = registry.jsonable({"gate": fitted.gate.to_dict(), "ltt": fitted.ltt} if fitted else {"gate": None, "reason": calibration["gate"]})
    final = registry.version_dir(settings, version)
    tmp = final.parent / f".{version}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:  # register the version (and its bundle): a promotion always names a registered version
        model.save(tmp, include_backbone=True)
        registry.write_json_atomic(tmp / "gate.json", gate_payload)
        registry.write_json_atomic(tmp / "metrics.json", metrics_payload)  # for `curation export` / `publish` later
        registry.write_json_atomic(tmp / "data_summary.json", registry.jsonable(counts))
        # The decision travels with the version (one rename): a run killed before it moves the
        # pointer leaves a pending promotion that the next retrain or this run's resume finishes.
        registry.write_json_atomic(tmp / registry.PROMOTION_FILE, {
            "promoted": promoted, "reasons": reasons, "champion_before": champion_version, "run_dir": str(run_dir),
        })
        if config.export:
            export_bundle(
                model, tmp / "bundle", model_card={"model_name": config.model_name, "submitted_by": settings.user_name},
                metrics=metrics_payload, data_summary=counts, gate=gate_payload,
            )
        tmp.rename(final)  # atomic: the registry never lists a half-written version
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle_dir = final / "bundle" if config.export else None
    if promoted:
        registry.set_champion(settings, version, reason="; ".join(reasons))
    result = RetrainResult(run_dir, version, promoted, reasons, evaluation, counts, report_path, bundle_dir)
    store.record_run(
        dataset, "retrain", registry.jsonable({**dataclasses.asdict(result), "force": config.force, "calibration": calibration}), fields=_written(config)
    )
    state.mark("finished", {"version": version})
    return result


def _finish_registered(settings: Settings, dataset: Any, config: RetrainConfig, run_dir: Path, version: str, state: _State) -> RetrainResult:
    """Resume a run killed after it registered its version: promote (when decided and still
    pending) and write the run record it never wrote; a finished run is refused as before."""
    if state.done("finished"):
        raise CurationError(f"Run `{run_dir.name}` finished and registered {version}; start a new run (another `--run-name`).")
    compare = state.done("compare")
    if compare["promoted"] and registry.champion_version(settings) != version:
        registry.finish_pending_promotion(settings)
    bundle = registry.version_dir(settings, version) / "bundle"
    report = run_dir / "report.md"
    result = RetrainResult(
        run_dir, version, compare["promoted"], compare["reasons"], compare.get("evaluation", {}), state.done("training_set") or {},
        report if report.is_file() else None, bundle if bundle.is_dir() else None,
    )
    store.record_run(dataset, "retrain", registry.jsonable(
        {**dataclasses.asdict(result), "force": config.force, "calibration": compare.get("calibration"), "resumed_after_register": True}
    ), fields=_written(config))
    state.mark("finished", {"version": version})
    return result
