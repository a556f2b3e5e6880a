"""The `curation` command line: one entry point for users, cron jobs and the Makefile.

Heavy libraries (FiftyOne, torch) are imported inside commands so ``curation --help`` is fast.
Errors from the platform (:class:`~curation.errors.CurationError`) print one actionable line and
exit with 2; anything else is a bug and keeps its traceback. Each module below registers its
commands on the one typer app of :mod:`curation.cli.base` when imported.
"""

from curation.cli import brain, evidence, export, ingest, label, locks, loop, platform, prelabel, synth  # noqa: F401  (registration)
from curation.cli.base import app


def main() -> None:  # pragma: no cover - console script shim
    app()


__all__ = ["app", "main"]
