"""CLI command for Stage-2: OCR + detector evidence on risky samples, the cascade decision, its evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curation.cli.base import SettingsOption, command, config_option, console, load_settings
from curation.stage2.routing import RoutingConfig


@command("evidence")
def evidence_command(
    settings_file: SettingsOption = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="Only these splits (repeatable).")] = None,
    saved_view: Annotated[str | None, typer.Option("--saved-view", help="Only a saved view.")] = None,
    all_samples: Annotated[bool, typer.Option("--all", help="Read every predicted sample, not only risky ones (full deferral curve).")] = False,
    views: Annotated[bool, typer.Option("--views/--no-views", help="Also read Stage-1's evidence views.")] = True,
    r_accept: Annotated[float, config_option(RoutingConfig, "r_accept")] = RoutingConfig.r_accept,
    default: Annotated[str, config_option(RoutingConfig, "default")] = RoutingConfig.default,
    threshold: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Override Stage-1's decision threshold (default: the predicting model's calibrated one, stage1.threshold).")] = None,
    backend: Annotated[str, typer.Option(help="OCR backend: rapidocr or easyocr.")] = "rapidocr",
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per bulk write.")] = 16,
    evaluate: Annotated[bool, typer.Option("--evaluate/--no-evaluate", help="Compare with Stage-1 alone on labelled samples.")] = True,
    out: Annotated[Path | None, typer.Option(help="Folder for the deferral plot (default <runs>/cascade/<run id>).")] = None,
) -> None:
    """Read sign text and score detector proposals on risky samples; write ocr_text, stage2_evidence, cascade.

    Example: curation evidence --split val --all   (every val sample read: the exact deferral curve)
    """
    from rich.table import Table

    from curation import store
    from curation.cli.loop import _target
    from curation.stage2 import make_backend
    from curation.stage2.cascade import evaluate_cascade, model_routing, run_stage2

    settings = load_settings(settings_file)
    dataset = store.open_dataset(settings, create=False)
    target = _target(dataset, split, saved_view)
    routing = RoutingConfig(r_accept=r_accept, default=default)  # type: ignore[arg-type]
    routing = model_routing(target, routing) if threshold is None else routing.at_threshold(threshold)
    report = run_stage2(target, backend=make_backend(backend), routing=routing, risky_only=not all_samples, views=views, batch_size=batch_size)
    stages = ", ".join(f"{k} {v}" for k, v in sorted(report.stages.items()))
    console.print(
        f"Cascade on {report.n_predicted} samples ({stages}); {report.n_stage2} read by {report.backend} in "
        f"{report.seconds:.1f} s ({report.seconds_per_stage2_image:.2f} s/image). Run {report.run_id}."
    )
    if report.n_missing_risk:
        console.print(f"[yellow]warning:[/] {report.n_missing_risk} samples have no failure_risk (run `curation gate`); treated as risky.")
    for path, reason in report.skipped:
        console.print(f"[yellow]skipped[/] {path}: {reason}")
    if not evaluate or not target.exists("cascade").exists("ground_truth").limit(1).count():
        return
    result = evaluate_cascade(target, routing=routing, out_dir=out or settings.runs_root / "cascade" / str(report.run_id))
    table = Table(title="Cascade vs Stage-1 alone")
    columns = ("slice", "n", "S1 MCC", "cascade MCC", "S1 acc", "cascade acc", "to Stage-2", "deferred", "s/image")
    for col in columns:
        table.add_column(col, justify="left" if col == "slice" else "right")
    for r in result.rows:
        table.add_row(r.name, str(r.n), *(f"{v:.3f}" for v in (r.stage1_mcc, r.cascade_mcc, r.stage1_accuracy, r.cascade_accuracy,
                                                                 r.stage2_share, r.deferred_share, r.seconds_per_image)))
    console.print(table)
    if result.n_without_evidence:
        console.print(f"{result.n_without_evidence} samples have no Stage-2 evidence: the curve treats them as 'nothing found' "
                      "below this run's r_accept (use --all for the exact curve).")
    console.print(f"Deferral plot: {result.plot_path}")
