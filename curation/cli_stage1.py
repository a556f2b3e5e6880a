"""CLI commands for Stage-1 in the dataset: predict and evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curation.cli import SettingsOption, command, console, load_settings

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


@command("predict")
def predict_command(
    settings_file: SettingsOption = None,
    model: ModelOption = None,
    split: SplitOption = None,
    saved_view: Annotated[str | None, typer.Option("--saved-view", help="Predict a saved view only.")] = None,
    view: Annotated[str, typer.Option(help="'stored' image or the 'validator' query built from it.")] = "stored",
    shard: Annotated[str | None, typer.Option(help="i/n: this worker's share (sorted ids, every n-th).")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
) -> None:
    """Run Stage-1 and write stage1, stage1_views, gate_features, model_version (bulk writes)."""
    from curation import registry, store
    from curation.predict import Shard, predict_collection

    settings = load_settings(settings_file)
    dataset = store.open_dataset(settings, create=False)
    stage1 = registry.resolve_model(settings, model, device=device)
    if not stage1.config.trained:
        console.print(f"[yellow]warning:[/] {stage1!r} — predictions from random weights are not meaningful.")
    prefix = "validator_" if view == "validator" else ""
    report = predict_collection(
        _target(dataset, split, saved_view), stage1, batch_size=batch_size, shard=Shard.parse(shard), view=view, field_prefix=prefix
    )
    console.print(f"Predicted {report.n_predicted} samples with model {report.model_version} (run {report.run_id}).")
    for path, reason in report.skipped:
        console.print(f"[yellow]skipped[/] {path}: {reason}")


@command("evaluate")
def evaluate_command(
    settings_file: SettingsOption = None,
    split: SplitOption = None,
    view: Annotated[str, typer.Option(help="'stored' predictions or 'validator'-view predictions.")] = "stored",
    eval_key: Annotated[str | None, typer.Option(help="Evaluation key (default eval_stage1 / eval_validator).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the 50/50 rebalanced reward resample.")] = 0,
) -> None:
    """Binary evaluation with per-sample TP/FP/FN/TN, per-slice metrics and failure views."""
    from rich.table import Table

    from curation import store
    from curation.evaluate import evaluate_predictions

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
    console.print(
        f"{report.n_label_conflicts_excluded} label_conflict samples excluded, {report.n_missing} without label or prediction. "
        f"Saved views: failures/false_positives, failures/false_negatives, slices/*; workspace 'failure browsing'."
    )
