"""`curation ingest SOURCE PATH`: import a source in its real format and print the summary.

Registered by :mod:`curation.cli`; heavy modules load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curation.cli.base import SettingsOption, command, console, load_settings


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
    from curation.ingest.job import IngestConfig, ingest, ingest_corpus, make_importer
    from curation.ingest.report import render_dataset, render_run
    from curation.ingest.sources.common import default_class_map_path

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
        render_run(summary, console)
    render_dataset(summaries[-1], console)
    if strict and any(s.rejects for s in summaries):
        raise typer.Exit(1)
