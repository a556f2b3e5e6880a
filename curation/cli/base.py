"""What every command module shares: the typer app, ``command`` with friendly errors, consoles,
the settings option.

Command modules import this and register themselves on :data:`app`; :mod:`curation.cli`
imports every command module, so nothing here imports a command.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Callable

import typer
from rich.table import Table

from curation.console import make_console
from curation.errors import CurationError
from curation.settings import Settings
from curation.typed_config import setting_info

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


def config_option(cls: type, name: str, *param_decls: str) -> Any:
    """A typer option whose help and bounds come from setting ``name`` of config ``cls``.

    Write the default as the config's own (``quota: Annotated[int, config_option(MiningConfig,
    "quota")] = MiningConfig.quota``); ``tests/test_cli_contract.py`` checks every such option's
    default against its config, so a default lives in one place.
    """
    info = setting_info(cls, name)
    help_text = info.help + (f" One of: {', '.join(info.choices)}." if info.choices else "")
    option = typer.Option(*param_decls, help=help_text, min=info.low, max=info.high)
    option.config_setting = (cls, name)  # read back by the contract test
    return option


def load_settings(path: Path | None) -> Settings:
    return Settings.load(path)


def print_counts(title: str, counts: dict[str, int]) -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("value")
    table.add_column("samples", justify="right")
    for key, value in counts.items():
        table.add_row(key, str(value))
    console.print(table)
