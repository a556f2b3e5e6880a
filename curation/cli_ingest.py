"""`curation ingest SOURCE PATH`: import a source in its real format and print the summary.

Imported by ``curation/cli.py``; heavy modules load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from curation.cli import SettingsOption, command, console, load_settings

if TYPE_CHECKING:
    from curation.ingest import IngestSummary

MAX_LISTED = 20


@command("ingest")
def ingest_command(
    source: Annotated[str, typer.Argument(help="natix | roadwork | roboflow | queries | all (a corpus folder).")],
    path: Annotated[str, typer.Argument(help="Folder or file in the source's format (NATIX also: a hub id).")],
    settings_file: SettingsOption = None,
    config: Annotated[Path | None, typer.Option("--config", help="Ingest config YAML (splits, limits, slices).")] = None,
    class_map: Annotated[
        list[Path] | None, typer.Option("--class-map", help="Extra class-map YAML merged over the default (repeatable).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit with code 1 when any record was rejected.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Import NATIX, ROADWork, Roboflow or miner query logs; safe to re-run (changes nothing twice)."""
    from curation import store
    from curation.errors import InputError
    from curation.ingest import IngestConfig, ingest, ingest_corpus, make_importer
    from curation.sources.common import default_class_map_path

    settings = load_settings(settings_file)
    cfg = IngestConfig.load(config)
    name = source.lower()
    if name not in ("natix", "all") and not Path(path).expanduser().exists():
        raise InputError(f"{path} does not exist.")
    dataset = store.open_dataset(settings)
    if name == "all":
        summaries = ingest_corpus(dataset, path, settings=settings, config=cfg, console=console, progress=not quiet)
    else:
        maps = None
        if class_map and name in ("roadwork", "roboflow"):
            maps = [default_class_map_path(name), *class_map]
        importer = make_importer(name, path, class_map=maps)
        summaries = [ingest(dataset, importer, settings=settings, config=cfg, console=console, progress=not quiet)]
    for summary in summaries:
        print_run(summary)
    print_dataset(summaries[-1])
    if strict and any(s.rejects for s in summaries):
        raise typer.Exit(1)


def print_run(s: IngestSummary) -> None:
    """What this import did: records, added/updated/unchanged, conversions, rejects, disagreements."""
    console.print(
        f"[bold]{s.source}[/] from {s.path}: {s.records} records → {s.added} added, {s.updated} updated, "
        f"{s.unchanged} unchanged, {len(s.rejects)} rejected; leaks +{s.leaks_tagged}/-{s.leaks_cleared}"
    )
    if s.restored:
        console.print(f"  restored {s.restored} missing media files under the media store (same bytes as the source)")
    if s.conversions:
        console.print("  converted: " + ", ".join(f"{k} {v}" for k, v in sorted(s.conversions.items())))
    for warning in s.warnings:
        console.print(f"  [yellow]warning:[/] {warning}")
    if s.rejects:
        table = Table(title=f"{s.source}: rejected records", header_style="bold")
        table.add_column("reason")
        table.add_column("count", justify="right")
        table.add_column("example")
        by_reason: dict[str, list[str]] = {}
        for r in s.rejects:
            by_reason.setdefault(r.reason, []).append(r.message)
        for reason, messages in sorted(by_reason.items()):
            table.add_row(reason, str(len(messages)), messages[0])
        console.print(table)
        for r in s.rejects[:MAX_LISTED]:
            console.print(f"  [red]rejected[/] {r.message}")
        if len(s.rejects) > MAX_LISTED:
            console.print(f"  ... and {len(s.rejects) - MAX_LISTED} more")
    for d in s.disagreements[:MAX_LISTED]:
        console.print(
            f"  [magenta]human label kept[/] {d.sample_id} ({d.filepath}): human={d.human}, "
            f"rule={d.rule} from {', '.join(d.sources)}"
        )
    if len(s.disagreements) > MAX_LISTED:
        console.print(f"  ... and {len(s.disagreements) - MAX_LISTED} more disagreements")


def print_dataset(s: IngestSummary) -> None:
    """Dataset-wide counts after the import: sources × split × label, slices, conflicts, leaks."""
    table = Table(title=f"dataset: {s.total} samples (a sample with several sources counts under each)", header_style="bold")
    for column in ("source", "split", "label"):
        table.add_column(column)
    table.add_column("samples", justify="right")
    for (source, split, label), n in s.table.items():
        table.add_row(source, split, label, str(n))
    console.print(table)
    slices = Table(title="slices (n=0 is reported, never scored)", header_style="bold")
    slices.add_column("slice")
    slices.add_column("n", justify="right")
    for name, n in s.slices.items():
        slices.add_row(name, str(n))
    console.print(slices)
    console.print(f"label_conflict: {s.conflicts}   leak: {s.leaks}")
