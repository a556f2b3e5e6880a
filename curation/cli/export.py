"""CLI commands for deployable bundles: ``export`` (re-export a registered version) and ``publish``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curation.cli.base import SettingsOption, command, console, load_settings

VersionOption = Annotated[str | None, typer.Option("--version", help="Registered model version X.Y.Z.")]
NameOption = Annotated[
    str | None, typer.Option("--model-name", help="model_name in model_card.json (default: the name the version was exported under).")
]
SubmittedByOption = Annotated[
    str | None,
    typer.Option("--submitted-by", help="Your miner hotkey (SS58) for model_card.json; default: settings user_name."),
]
RepoOption = Annotated[str | None, typer.Option("--hf-repo", help="Hugging Face repo id written into the miner config.")]


@command("export")
def export_command(
    version: VersionOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Bundle directory to write (replaced atomically).")] = None,
    settings_file: SettingsOption = None,
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Also write onnx/model.onnx (224×224, dynamic batch), checked.")
    ] = False,
    model_name: NameOption = None,
    submitted_by: SubmittedByOption = None,
    hf_repo: RepoOption = None,
) -> None:
    """Re-export a registered Stage-1 version as a self-contained Hugging Face bundle."""
    from curation.errors import ConfigError
    from curation.export.bundle import export_registered

    if not version or out is None:
        raise ConfigError("`curation export` needs `--version X.Y.Z` (a registered version) and `--out DIR`.")
    settings = load_settings(settings_file)
    path = export_registered(
        settings, version, out, model_name=model_name, submitted_by=submitted_by, onnx=onnx, hf_repo=hf_repo
    )
    console.print(f"Exported {version} to {path}")


@command("publish")
def publish_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Lay out and check the repo folder; upload nothing.")] = False,
    version: VersionOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Repo folder (default: <home>/publish/<version>).")] = None,
    settings_file: SettingsOption = None,
    model_name: NameOption = None,
    submitted_by: SubmittedByOption = None,
    hf_repo: RepoOption = None,
    warm_calls: Annotated[int, typer.Option("--warm-calls", min=1, help="Warm queries timed after the first (p50 / p99 over them).")] = 20,
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="Also time the query under ONNX Runtime (exported to a temporary file and checked against PyTorch).")] = True,
) -> None:
    """Lay out the Hugging Face repo for a model version and check it against the validators' 9 s timeout.

    Only --dry-run exists: uploading needs the network and a token and is out of scope here. Upload the
    checked folder yourself, e.g. `hf upload <user>/<repo> <folder>`. The version defaults to the champion.
    """
    from curation.errors import ConfigError
    from curation.export.bundle import export_registered
    from curation.export.publish import check_bundle
    from curation.store import registry

    if not dry_run:
        raise ConfigError(
            "Real publishing is out of scope (it needs the network and a Hugging Face token). Run "
            "`curation publish --dry-run`, then upload the folder with `hf upload <user>/<repo> <folder>`."
        )
    settings = load_settings(settings_file)
    version = version or registry.champion_version(settings)
    if version is None:
        raise ConfigError("No champion model yet: pass `--version X.Y.Z` (a registered version).")
    out = out or Path(settings.home) / "publish" / version
    export_registered(settings, version, out, model_name=model_name, submitted_by=submitted_by, hf_repo=hf_repo)
    report = check_bundle(out, warm_calls=warm_calls, onnx=onnx)
    console.print(f"[bold]Hugging Face repo folder[/] (what would be uploaded): {out}")
    for name, size in report.files:
        console.print(f"  {size:>12,d}  {name}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    for problem in report.problems:
        console.print(f"[red]problem:[/] {problem}")
    if report.cold_latency_s is not None:
        console.print(
            f"CPU latency per query, {report.num_views} views, {report.threads} threads "
            f"(model load {report.load_s:.2f} s; validator timeout {report.timeout_s:.0f} s):"
        )
        for label, s in report.latency_rows():
            console.print(
                f"  {label:<44} first {s.cold_s * 1e3:8.1f} ms   p50 {s.p50_s * 1e3:8.1f} ms   p99 {s.p99_s * 1e3:8.1f} ms   "
                f"P(Roadwork) {s.probability:.4f}"
            )
    if report.passed:
        console.print(
            f"[bold green]PASS[/]: {version} answers within the {report.timeout_s:.0f} s timeout "
            "and the repo is complete."
        )
    else:
        console.print(f"[bold red]FAIL[/]: {version} — see the problems / latency above.")
        raise typer.Exit(1)
