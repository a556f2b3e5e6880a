"""`curation status | demo-data | demo | app | worker`: the dataset, the demo and the App."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curation.cli.base import SettingsOption, command, console, load_settings, print_counts


@command("status")
def status_command(settings_file: SettingsOption = None) -> None:
    """Dataset counts by source, split, label, slice and tag, and where the database is."""
    from curation import store

    settings = load_settings(settings_file)
    dataset = store.open_dataset(settings, create=False)
    s = store.status(dataset)
    console.print(f"[bold]{s.name}[/]: {s.total} samples — {s.location}")
    for title, counts in (
        ("sources", s.by_source),
        ("split", s.by_split),
        ("label", s.by_label),
        ("slices (n=0 shown, never scored)", s.by_slice),
        ("tags", s.by_tag),
    ):
        print_counts(title, counts)


@command("demo-data")
def demo_data_command(
    out: Annotated[Path, typer.Argument(help="Folder to write the corpus into.")],
    n_natix_train: Annotated[int, typer.Option(help="NATIX-style train rows.")] = 240,
    n_natix_test: Annotated[int, typer.Option(help="NATIX-style test rows.")] = 80,
    n_roadwork: Annotated[int, typer.Option(help="ROADWork-style COCO images.")] = 80,
    n_roboflow: Annotated[int, typer.Option(help="Roboflow images per export format.")] = 30,
    n_queries: Annotated[int, typer.Option(help="Miner query-log images.")] = 20,
    seed: Annotated[int, typer.Option(help="Corpus seed (same seed, same bytes).")] = 0,
) -> None:
    """Write a deterministic synthetic street-scene corpus in the real source formats."""
    from curation.demo.corpus import CorpusSpec, write_corpus

    spec = CorpusSpec(
        n_natix_train=n_natix_train,
        n_natix_test=n_natix_test,
        n_roadwork=n_roadwork,
        n_roboflow=n_roboflow,
        n_queries=n_queries,
        seed=seed,
    )
    manifest = write_corpus(out, spec)
    console.print(f"Wrote {manifest.n_images} images to {out}")
    for name, path in manifest.paths.items():
        console.print(f"  {name:<16} {path}")


@command("app")
def app_command(
    settings_file: SettingsOption = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings, 5151).")] = None,
    address: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    worker: Annotated[bool, typer.Option(help="Also run a delegated-operation worker.")] = True,
) -> None:
    """Launch the FiftyOne App on the platform dataset with the project's plugins."""
    from curation.app.server import serve

    settings = load_settings(settings_file)
    if port is not None:
        settings = settings.replace(app_port=port)
    if address is not None:
        settings = settings.replace(app_host=address)
    serve(settings, with_worker=worker, console=console, settings_file=settings_file)


@command("worker")
def worker_command(settings_file: SettingsOption = None) -> None:
    """Run a delegated-operation worker alone (executes jobs queued from the App)."""
    import os

    from curation.app.server import run_worker
    from curation.settings import SETTINGS_FILE_ENV

    settings = load_settings(settings_file)
    if settings_file is not None:  # the operators this process runs load their settings from the environment
        os.environ[SETTINGS_FILE_ENV] = str(settings_file.resolve())
    run_worker(settings, console=console)




@command("demo")
def demo_command(settings_file: SettingsOption = None) -> None:
    """The main job on demo data: corpus → ingest → Stage-1 → evaluate → gate → mine → label → ... → export."""
    from curation.demo.job import run_demo

    run_demo(load_settings(settings_file), console=console)
