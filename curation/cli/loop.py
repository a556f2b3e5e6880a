"""`curation predict | evaluate | gate | mine | run | retrain`: the loop's steps on the dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from curation.cli.base import SettingsOption, command, config_option, console, load_settings
from curation.evaluate.gate_job import GateJobConfig
from curation.mine.job import MiningConfig
from curation.predict.ray_engine import ENGINES
from curation.stage1.gate import GateConfig

ModelOption = Annotated[
    str | None,
    typer.Option("--model", help="Model dir, registered version, 'champion' (default) or a backbone preset (untrained head)."),
]
SplitOption = Annotated[list[str] | None, typer.Option("--split", help="Only these splits (repeatable).")]


def _target(dataset, splits: list[str] | None, view_name: str | None):
    from curation.errors import InputError

    if view_name and view_name not in dataset.list_saved_views():
        raise InputError(f"No saved view `{view_name}`; saved views: {dataset.list_saved_views()}.")
    view = dataset.load_saved_view(view_name) if view_name else dataset.view()
    return view.match({"split": {"$in": splits}}) if splits else view



def _ray_engine(settings: Any, address: str | None) -> Any:
    import dataclasses

    from curation.predict.ray_engine import RayEngine
    from curation.settings import RaySettings

    config = settings.ray or RaySettings()  # `CURATION_RAY=null` switches the section off: defaults
    return RayEngine(dataclasses.replace(config, address=address) if address else config)


@command("predict")
def predict_command(
    settings_file: SettingsOption = None,
    model: ModelOption = None,
    split: SplitOption = None,
    saved_view: Annotated[str | None, typer.Option("--saved-view", help="Predict a saved view only.")] = None,
    view: Annotated[str, typer.Option(help="'stored' image or the 'validator' query built from it.")] = "stored",
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images per forward when decoding in process; the bulk serving path uses stage1_serving.batch_images.")
    ] = 16,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: the `stage1_serving` device, else cpu)")
    ] = None,
    engine: Annotated[
        str, typer.Option(help="'process': this process computes; 'ray': Ray tasks decode, Ray model actors predict (settings `ray`).")
    ] = "process",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join with --engine ray (default: settings `ray.address`, else a local Ray).")
    ] = None,
    repredict: Annotated[
        bool, typer.Option("--repredict", help="With --engine ray, also predict samples that already hold this model version's predictions.")
    ] = False,
) -> None:
    """Run Stage-1 and write stage1, stage1_views, gate_features, model_version (bulk writes)."""
    from curation import store
    from curation.errors import InputError
    from curation.predict.job import predict_collection
    from curation.store import registry

    if engine not in ENGINES:
        raise InputError(f"`--engine` must be one of {', '.join(ENGINES)}; got {engine!r}.")
    if engine != "ray" and (ray_address or repredict):
        raise InputError("`--ray-address` and `--repredict` apply to `--engine ray` only; add `--engine ray`.")
    settings = load_settings(settings_file)
    ray_engine = _ray_engine(settings, ray_address) if engine == "ray" else None
    dataset = store.open_dataset(settings, create=False)
    stage1 = registry.resolve_model(settings, model, device=device)
    if not stage1.config.trained:
        console.print(f"[yellow]warning:[/] {stage1!r} — predictions from random weights are not meaningful.")
    prefix = "validator_" if view == "validator" else ""
    report = predict_collection(
        _target(dataset, split, saved_view), stage1, batch_size=batch_size, view=view, field_prefix=prefix,
        query_policy=settings.query_policy, engine=ray_engine, resume=ray_engine is not None and not repredict,
    )
    console.print(f"Predicted {report.n_predicted} samples with model {report.model_version} (run {report.run_id}).")
    if report.settled.finished or report.settled.discarded:
        console.print(
            f"[yellow]note:[/] staged predictions of interrupted run(s) {', '.join(report.settled.runs) or '(unnamed)'}: "
            f"{report.settled.finished} samples promoted (that run was killed while promoting), "
            f"{report.settled.discarded} discarded (killed before it finished predicting)."
        )
    for path, reason in report.skipped:
        console.print(f"[yellow]skipped[/] {path}: {reason}")


@command("evaluate")
def evaluate_command(
    settings_file: SettingsOption = None,
    split: SplitOption = None,
    view: Annotated[str, typer.Option(help="'stored' predictions or 'validator'-view predictions.")] = "stored",
    eval_key: Annotated[str | None, typer.Option(help="Evaluation key (default eval_stage1 / eval_validator).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the 50/50 rebalanced reward resample.")] = 0,
    shortcuts: Annotated[bool, typer.Option(help="Also check shortcut cues (black bars, JPEG quality, brightness, blur, size, synthetic) per contract.")] = False,
    contracts: Annotated[bool, typer.Option(help="Also score --model on every StreetVision contract's queries, side by side.")] = False,
    model: ModelOption = None,
) -> None:
    """Binary evaluation with per-sample TP/FP/FN/TN, per-slice metrics, failure views and the expected validator reward."""
    from rich.table import Table

    from curation import store
    from curation.evaluate.job import contract_table, evaluate_predictions, shortcut_checks

    settings = load_settings(settings_file)
    dataset = store.open_dataset(settings, create=False)
    pred_field = "validator_stage1" if view == "validator" else "stage1"
    key = eval_key or ("eval_validator" if view == "validator" else "eval_stage1")
    report = evaluate_predictions(_target(dataset, split, None), pred_field=pred_field, eval_key=key, seed=seed)
    table = Table(title=f"{pred_field} vs ground_truth ({key})")
    for col in ("slice", "n", "MCC", "accuracy", "precision", "recall", "AUROC", "reward"):
        table.add_column(col, justify="right" if col != "slice" else "left")
    for row in (report.overall, *report.slices):
        cells = [row.mcc, row.accuracy, row.precision, row.recall, row.auroc, row.reward]
        table.add_row(row.name, str(row.n), *("—" if v is None else f"{v:.3f}" for v in cells))
    console.print(table)
    for line in report.reward_lines():
        console.print(line)
    console.print(
        f"{report.n_label_conflicts_excluded} label_conflict samples excluded, {report.n_missing} without label or prediction. "
        f"Saved views: failures/false_positives, failures/false_negatives, slices/*; workspace 'failure browsing'."
    )
    if shortcuts:
        _print_shortcuts(shortcut_checks(_target(dataset, split, None), pred_field=pred_field, seed=seed))
    if contracts:
        from curation.store import registry

        stage1 = registry.resolve_model(settings, model or "champion")
        _print_contracts(contract_table(_target(dataset, split, None), stage1, seed=seed), stage1)


def _print_contracts(rows: list, model: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{model.config.version} on each contract's queries (same images, same seeds)")
    for col in ("contract", "n", "MCC", "accuracy", "FPR", "expected reward [90% CI]"):
        table.add_column(col, justify="left" if col == "contract" else "right")
    for r in rows:
        reward = f"{r.reward['mean']:.3f} [{r.reward['low']:.3f}, {r.reward['high']:.3f}]" if r.reward else "—"
        table.add_row(r.contract, str(r.n), f"{r.mcc:.3f}", f"{r.accuracy:.3f}", "—" if r.fpr is None else f"{r.fpr:.3f}", reward)
    console.print(table)


def _print_shortcuts(by_view: dict) -> None:
    from rich.table import Table

    table = Table(title="Shortcut cues: AUROC of the cue alone for the label / for Stage-1's errors (0.5 = none)")
    for col in ("images", "cue", "n", "label AUROC", "error AUROC", "label corr", "error corr", ""):
        table.add_column(col, justify="left" if col in ("images", "cue", "") else "right")
    for name, rows in by_view.items():
        for r in rows:
            cells = (r.label_auroc, r.error_auroc, r.label_corr, r.error_corr)
            table.add_row(name, r.cue, str(r.n), *("—" if v is None else f"{v:.3f}" for v in cells), "FLAG" if r.flagged else "")
    console.print(table)


@command("gate")
def gate_command(
    settings_file: SettingsOption = None,
    alpha: Annotated[float, config_option(GateJobConfig, "alpha")] = GateJobConfig.alpha,
    delta: Annotated[float, config_option(GateJobConfig, "delta")] = GateJobConfig.delta,
    kind: Annotated[str, config_option(GateConfig, "kind")] = GateConfig.kind,
) -> None:
    """Fit the failure gate on val (out-of-fold metrics), certify a threshold on calib, write failure_risk."""
    from curation import store
    from curation.evaluate.gate_job import fit_and_apply_gate

    settings = load_settings(settings_file)
    dataset = store.open_dataset(settings, create=False)
    config = GateJobConfig(alpha=alpha, delta=delta, gate=GateConfig(kind=kind))  # type: ignore[arg-type]
    report = fit_and_apply_gate(dataset, runs_root=settings.runs_root, config=config)
    console.print(f"{report.summary()} Risk-coverage plot: {report.plot_path}")


@command("mine")
def mine_command(
    settings_file: SettingsOption = None,
    quota: Annotated[int, config_option(MiningConfig, "quota")] = MiningConfig.quota,
    min_hardness: Annotated[float, config_option(MiningConfig, "min_hardness")] = MiningConfig.min_hardness,
    day: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default today).")] = None,
) -> None:
    """Score hardness on train+pool, pick a diverse batch, tag it hard:YYYY-MM-DD (idempotent per day)."""
    from datetime import date as date_type

    from curation import store
    from curation.errors import InputError
    from curation.mine.job import mine

    try:
        when = date_type.fromisoformat(day) if day else None
    except ValueError:
        raise InputError(f"`--day` must be YYYY-MM-DD; got {day!r}.") from None
    settings = load_settings(settings_file)
    dataset = store.open_dataset(settings, create=False)
    report = mine(dataset, day=when, config=MiningConfig(quota=quota, min_hardness=min_hardness))
    console.print(report.summary())


@command("run")
def run_command(
    pipeline: Annotated[Path, typer.Argument(help="A pipeline YAML, e.g. pipelines/daily_mining.yaml.")],
    settings_file: SettingsOption = None,
) -> None:
    """Run a declarative pipeline (daily mining, retrain-and-export)."""
    import json

    from curation.pipelines import run_pipeline

    result = run_pipeline(load_settings(settings_file), pipeline)
    console.print_json(json.dumps(result, default=str))


@command("retrain")
def retrain_command(
    settings_file: SettingsOption = None,
    pipeline: Annotated[Path, typer.Option(help="Retrain config YAML.")] = Path("pipelines/retrain_export.yaml"),
    version: Annotated[str | None, typer.Option(help="Version X.Y.Z (default: bump the newest registered).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the rule says no (recorded).")] = False,
    run_name: Annotated[str | None, typer.Option(help="Resume a killed run by its name.")] = None,
    mode: Annotated[str | None, typer.Option(help="supervised | self_train (the head then learns from the unlabeled pool; default: the YAML's).")] = None,
    engine: Annotated[
        str | None, typer.Option(help="Where missing cached features are computed: 'process' or 'ray' (settings `ray`; default: the YAML's).")
    ] = None,
) -> None:
    """Snapshot labels, train, calibrate, gate, compare with the champion, promote by rule, export."""
    import dataclasses

    from curation.pipelines import load_pipeline
    from curation.retrain.job import run_retrain

    job, config = load_pipeline(pipeline)
    if job != "retrain_export":
        from curation.errors import ConfigError

        raise ConfigError(f"{pipeline} defines job `{job}`, not `retrain_export`.")
    config = dataclasses.replace(
        config, force=force or config.force, version=version or config.version, mode=mode or config.mode, engine=engine or config.engine
    )
    result = run_retrain(load_settings(settings_file), config, run_name=run_name, console=console)
    verdict = "[green]PROMOTED[/]" if result.promoted else "[yellow]champion kept[/]"
    console.print(f"{result.version}: {verdict} — " + "; ".join(result.reasons))
    console.print(f"Report: {result.report_path}" + (f"\nBundle: {result.bundle_dir}" if result.bundle_dir else ""))
