"""How an import reads on the console: what one run did, and the dataset after it.

Shared by ``curation ingest`` and the demo, so both print an import the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from curation.ingest.job import IngestSummary

MAX_LISTED = 20


def render_run(s: IngestSummary, console: Console) -> None:
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


def render_dataset(s: IngestSummary, console: Console) -> None:
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
