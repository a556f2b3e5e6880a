"""Rich consoles for the command line that do not break lines in logs.

On a terminal, output fits the window as usual. When stdout is a file or a pipe (cron, ``| tee``,
CI), rich would assume 80 columns and split long paths and messages across lines, which breaks
``grep`` and copy-paste. There the console does not wrap text, sizes tables to their content (up
to :data:`LOG_WIDTH` columns) and keeps rules short. ``COLUMNS`` still wins when it is set.

Example:
    >>> from curation.console import make_console
    >>> make_console().print("/a/very/long/path/" * 10)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.rule import Rule

LOG_WIDTH = 1000
"""Width assumed when the output is not a terminal (tables narrower than this are not squeezed)."""

RULE_WIDTH = 100
"""Width of a rule (section line) in logs."""


class LogFriendlyConsole(Console):
    """A :class:`rich.console.Console` that decides at each print whether it writes to a terminal."""

    def _logging(self) -> bool:
        return self._width is None and not self.is_terminal and "COLUMNS" not in self._environ

    @property  # type: ignore[override]
    def size(self) -> ConsoleDimensions:
        dims = Console.size.fget(self)  # type: ignore[attr-defined]
        return ConsoleDimensions(LOG_WIDTH, dims.height) if self._logging() else dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
        if soft_wrap is None and self._logging():
            soft_wrap = True
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)

    def rule(self, title: Any = "", **kwargs: Any) -> None:
        if not self._logging():
            super().rule(title, **kwargs)
            return
        self.print(Rule(title=title, **kwargs), width=RULE_WIDTH, soft_wrap=False)


def make_console(*, stderr: bool = False) -> Console:
    """The console every command prints through (``stderr=True`` for errors)."""
    return LogFriendlyConsole(stderr=stderr)
