"""CLI command ``locks``: list the platform's locks with their holders' state, clear dead ones."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from curation.cli.base import SettingsOption, command, console, load_settings


@command("locks")
def locks_command(
    clear: Annotated[str | None, typer.Option("--clear", help="Remove this lock (refused while its holder is alive).")] = None,
    clear_dead: Annotated[bool, typer.Option("--clear-dead", help="Remove every lock whose holder is dead or expired.")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --clear: remove it even though its holder looks alive.")] = False,
    settings_file: SettingsOption = None,
) -> None:
    """List locks (retrain, mining, prediction runs) with who holds them and whether that run is alive.

    A lock whose holder died frees itself when the next run asks for it (same host: its pid is
    gone; another host: its heartbeat stopped), so clearing by hand is rarely needed.
    """
    from curation import store
    from curation.store import locks as lk

    store.connect(load_settings(settings_file))
    if clear:
        gone = store.clear_lock(clear, force=force)
        console.print(f"cleared `{clear}` ({lk.describe(gone)}: {gone['why']})")
    if clear_dead:
        for doc in store.list_locks():
            if doc["state"] != lk.ALIVE:
                store.clear_lock(doc["name"])
                console.print(f"cleared `{doc['name']}` ({lk.describe(doc)}: {doc['why']})")
    rows = store.list_locks()
    if not rows:
        console.print("no locks held")
        return
    table = Table(title="locks", show_header=True, header_style="bold")
    for column in ("name", "holder", "state", "why", "since"):
        table.add_column(column, overflow="fold")
    for doc in rows:
        since = doc.get("acquired_at")
        table.add_row(doc["name"], lk.describe(doc), doc["state"], doc["why"], f"{since:%Y-%m-%d %H:%M:%S}" if since else "")
    console.print(table)
