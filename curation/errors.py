"""One exception family for the platform.

Every error a user can act on derives from :class:`CurationError`; the CLI turns these into a
one-line message and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CurationError(Exception):
    """Base class for errors a person can act on (bad input, bad config, bad state)."""


class ConfigError(CurationError):
    """A settings file, pipeline or model config is invalid."""


class InputError(CurationError):
    """An input file, image or label record cannot be used; the message names it."""


class SchemaError(CurationError):
    """The dataset schema is newer than this code or cannot be migrated."""


def suggest(name: str, allowed: Iterable[str]) -> str:
    """Return ' Did you mean `x`?' for the nearest allowed name, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    return f" Did you mean `{match[0]}`?" if match else ""
