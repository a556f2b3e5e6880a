"""The `curation` command line: one entry point for users, cron jobs and the Makefile.

Heavy libraries (FiftyOne, torch) are imported inside commands so ``curation --help`` is fast.
Errors from the platform (:class:`CurationError`) print one actionable line and exit with 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any, Callable

import typer
from rich.table import Table

from curation.config import Settings
from curation.console import make_console
from curation.errors import CurationError

app = typer.Typer(
    name="curation",
    help="Roadwork data curation and active learning on FiftyOne (NATIX StreetVision).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = make_console()  # no 80-column wrapping when the output is a log file or a pipe
err_console = make_console(stderr=True)

SettingsOption = Annotated[
    Path | None, typer.Option("--settings", help="YAML settings file (default: $CURATION_SETTINGS).")
]


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn platform errors into one red line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CurationError as e:
            err_console.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(2) from None

    return wrapper


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``app.command`` with friendly errors; used by every command module."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        return app.command(*args, **kwargs)(friendly_errors(func))

    return decorate


def load_settings(path: Path | None) -> Settings:
    return Settings.load(path)


def print_counts(title: str, counts: dict[str, int]) -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("value")
    table.add_column("samples", justify="right")
    for key, value in counts.items():
        table.add_row(key, str(value))
    console.print(table)


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
    from curation.app import serve

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

    from curation.app import run_worker
    from curation.config import SETTINGS_FILE_ENV

    settings = load_settings(settings_file)
    if settings_file is not None:  # the operators this process runs load their settings from the environment
        os.environ[SETTINGS_FILE_ENV] = str(settings_file.resolve())
    run_worker(settings, console=console)




@command("demo")
def demo_command(settings_file: SettingsOption = None) -> None:
    """The main job on demo data: corpus → ingest → Stage-1 → evaluate → gate → mine → label → ... → export."""
    from curation.demo.job import run_demo

    run_demo(load_settings(settings_file), console=console)


# Command modules register themselves on `app` when imported (kept last: they import `command`).
from curation import cli_evidence, cli_export, cli_ingest, cli_label, cli_labeling, cli_locks, cli_stage1, cli_synth  # noqa: E402,F401


def main() -> None:  # pragma: no cover - console script shim
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
