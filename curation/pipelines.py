"""Declarative jobs users schedule: each YAML in ``pipelines/`` parses into one typed config.

``curation run pipelines/daily_mining.yaml`` reads the file's ``job`` key, builds that job's
config (unknown keys are rejected with the nearest valid key) and runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from curation import store
from curation.errors import ConfigError, suggest
from curation.evaluate.gate_job import GateJobConfig
from curation.mine.job import MiningConfig
from curation.predict.ray_engine import ENGINES
from curation.schema import Split
from curation.settings import Settings
from curation.stage1.gate import GateConfig
from curation.typed_config import from_mapping, read_yaml_mapping


@dataclass(frozen=True)
class DailyMiningConfig:
    """Predict what changed, refit the gate, mine the day's hard cases.

    Attributes:
        model: model to predict with (dir, registered version or ``champion``).
        predict_splits: splits predicted before mining (mining needs train/pool; the gate val/calib).
        repredict: predict samples that already have this model's predictions again.
        engine: ``process`` predicts in this process; ``ray`` on Ray (settings ``ray``: a local Ray,
            or the cluster at ``ray.address``), finishing what a killed run left on a re-run.
        map_method: the Brain map of the model's embeddings (``umap``, ``tsne``, ``pca``), refreshed
            with the similarity index and uniqueness after mining (a no-op when nothing was
            predicted; a failure is reported, the day's batch stands); empty or null skips all three.
        alpha, delta: Learn-then-Test target error among accepted and its confidence.
        gate: how the failure gate is fit.
        mining: quota, threshold, diversity, weights.
    """

    model: str = "champion"
    predict_splits: tuple[str, ...] = ("train", "pool", "val", "calib")
    repredict: bool = False
    engine: str = "process"
    map_method: str | None = "umap"
    alpha: float = GateJobConfig.alpha
    delta: float = GateJobConfig.delta
    gate: GateConfig = field(default_factory=GateConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)

    def __post_init__(self) -> None:
        known = [split.value for split in Split]
        for name in self.predict_splits:
            if name not in known:
                raise ConfigError(f"`predict_splits` names an unknown split {name!r}.{suggest(str(name), known)} Splits: {known}.")
        from curation.store.brain import MAP_METHODS

        if self.map_method and self.map_method not in MAP_METHODS:
            raise ConfigError(f"`map_method` must be one of {', '.join(MAP_METHODS)} or empty; got {self.map_method!r}.{suggest(str(self.map_method), MAP_METHODS)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"`engine` must be one of {', '.join(ENGINES)}; got {self.engine!r}.{suggest(self.engine, ENGINES)}")


def run_daily_mining(settings: Settings, config: DailyMiningConfig, *, day: date | None = None) -> dict[str, Any]:
    """The daily job: predict new samples, refit the gate, mine and tag the day's batch."""
    from fiftyone import ViewField as F

    from curation.evaluate.gate_job import fit_and_apply_gate
    from curation.ingest.leaks import recheck_leaks_with_embeddings
    from curation.mine.job import mine
    from curation.predict.job import predict_collection
    from curation.store import registry

    dataset = store.open_dataset(settings, create=False)
    model = registry.resolve_model(settings, config.model)
    target = dataset.match(F("split").is_in(list(config.predict_splits)))
    if not config.repredict:
        target = target.match(F("model_version") != model.config.version)
    engine = None
    if config.engine == "ray":
        from curation.predict.ray_engine import RayEngine
        from curation.settings import RaySettings

        engine = RayEngine(settings.ray or RaySettings())
    predicted = predict_collection(target, model, progress=True, engine=engine, resume=engine is not None and not config.repredict).n_predicted
    leaks = recheck_leaks_with_embeddings(dataset)  # embeddings exist now: the second leak check
    gate_config = GateJobConfig(alpha=config.alpha, delta=config.delta, gate=config.gate)
    gate = fit_and_apply_gate(dataset, runs_root=settings.runs_root, config=gate_config, model_version=model.config.version)
    mined = mine(dataset, day=day, config=config.mining)
    return {"predicted": predicted, "leaks_embedding": leaks, "gate": asdict(gate), "mining": asdict(mined), "brain": _refresh_brain(dataset, model, config)}


def _refresh_brain(dataset: Any, model: Any, config: DailyMiningConfig) -> dict[str, Any] | None:
    """The map, index and uniqueness for the day's model, after mining: a failure here (too few
    embeddings, a vector database down) is reported and never costs the day's batch."""
    import logging

    from curation.errors import CurationError
    from curation.store.brain import index_embeddings

    if not config.map_method:
        return None
    try:
        return asdict(index_embeddings(dataset, version=model.config.version, method=config.map_method))
    except (CurationError, OSError, ValueError) as e:
        logging.getLogger(__name__).warning("Embeddings map not refreshed: %s", e)
        return {"error": f"{type(e).__name__}: {e}"}


def run_retrain_export(settings: Settings, config: Any) -> dict[str, Any]:
    from curation.retrain.job import run_retrain

    result = run_retrain(settings, config)
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}


def _retrain_config() -> type:
    from curation.retrain.job import RetrainConfig

    return RetrainConfig


JOBS: dict[str, tuple[Callable[[], type], Callable[..., dict[str, Any]]]] = {
    "daily_mining": (lambda: DailyMiningConfig, run_daily_mining),
    "retrain_export": (_retrain_config, run_retrain_export),
}


def resolve_pipeline(path: Path) -> Path:
    """``path`` as given, or, for a relative ``pipelines/<name>.yaml`` (or a bare ``<name>.yaml``)
    that is not in the working directory, the project's shipped copy: cron jobs and commands run
    outside the checkout find the default pipelines.

    Raises:
        ConfigError: no such file, naming every place looked in.
    """
    path = Path(path)
    if path.is_file():
        return path
    tried = [path.absolute()]
    parts = path.parts
    if not path.is_absolute() and parts and (len(parts) == 1 or (parts[0] == "pipelines" and len(parts) > 1)):
        from curation.assets import asset_dir

        try:
            shipped = asset_dir("pipelines") / Path(*parts[1:] if parts[0] == "pipelines" and len(parts) > 1 else parts)
        except ConfigError:
            shipped = None
        if shipped is not None:
            if shipped.is_file():
                return shipped
            tried.append(shipped)
    raise ConfigError(f"Pipeline file {path} does not exist (looked in {', '.join(map(str, tried))}).")


def load_pipeline(path: Path) -> tuple[str, Any]:
    """Parse a pipeline YAML into (job name, typed config); see :func:`resolve_pipeline` for ``path``."""
    path = resolve_pipeline(path)
    raw = read_yaml_mapping(path, what="Pipeline file")
    if "job" not in raw:
        raise ConfigError(f"{path} must be a mapping with a `job` key (one of {sorted(JOBS)}).")
    job = raw.pop("job")
    if job not in JOBS:
        raise ConfigError(f"{path}: unknown job `{job}`.{suggest(str(job), JOBS)} Known jobs: {sorted(JOBS)}.")
    config_type = JOBS[job][0]()
    return job, from_mapping(config_type, raw, source=str(path))


def run_pipeline(settings: Settings, path: Path) -> dict[str, Any]:
    job, config = load_pipeline(path)
    return JOBS[job][1](settings, config)
