"""Typed configs from YAML: the one loader and the one mapping-to-dataclass builder.

Ground floor: imports nothing of the package but :mod:`curation.errors`. Every settings, pipeline,
preset and model config goes through :func:`read_yaml_mapping` so a missing, unreadable or
malformed file becomes one :class:`~curation.errors.ConfigError` naming the file, never a parser
traceback.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Limits:
    ...     quota: int = 200
    >>> from_mapping(Limits, {"quota": "50"}, source="example").quota
    50
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from curation.errors import ConfigError, CurationError, suggest

T = TypeVar("T")


def read_yaml(path: str | Path, *, what: str, error: type[CurationError] = ConfigError) -> Any:
    """The parsed YAML document at ``path`` (None for an empty file).

    Args:
        what: what the file is, for the message ("Settings file", "Pipeline file", ...).
        error: the error raised; :class:`~curation.errors.InputError` for data files (a class
            map, a dataset's ``data.yaml``), the config error for everything else.

    Raises:
        ``error``: the file is missing or unreadable, or is not valid YAML (with the line).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist.")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{what} {path} cannot be read ({e}).") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{what} {path} is not valid YAML{line}: {problem}.") from None


def read_yaml_mapping(path: str | Path, *, what: str, error: type[CurationError] = ConfigError) -> dict[str, Any]:
    """:func:`read_yaml` for files that must hold a mapping (an empty file is an empty mapping)."""
    doc = read_yaml(path, what=what, error=error)
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise error(f"{what} {path} must hold a mapping, got {type(doc).__name__}.")
    return doc


def from_mapping(cls: type[T], values: Mapping[str, Any], *, source: str) -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys with the nearest valid one.

    Values are coerced to the annotated scalar types (str, int, float, bool, Path) so YAML and
    environment strings both work; nested dataclasses are built recursively.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source} must be a mapping for {cls.__name__}; got {type(values).__name__}.")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in values if k not in known]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"Unknown key `{key}` in {source} for {cls.__name__}.{suggest(key, known)} "
            f"Allowed: {', '.join(sorted(known))}."
        )
    kwargs = {k: _coerce(hints[k], v, f"{source}: `{k}`") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # missing required field
        raise ConfigError(f"{source}: {e}") from None


def _coerce(annotation: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    target = next((t for t in options if t is not type(None)), annotation)
    if dataclasses.is_dataclass(target) and isinstance(value, str | Mapping):
        if isinstance(value, str):  # an environment variable holds the section as YAML
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as e:
                raise ConfigError(f"{where} is not valid YAML ({e}).") from None
            if value is None:  # `export CURATION_X=` or `null` switches an optional section off
                return None
        return from_mapping(target, value, source=where)  # type: ignore[arg-type]
    if typing.get_origin(target) is tuple and isinstance(value, list):
        return tuple(value)
    name = getattr(target, "__name__", str(target))
    try:
        if target is bool:
            if isinstance(value, str):
                if value.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                    raise ValueError(value)
                return value.lower() in {"1", "true", "yes"}
            return bool(value)
        if target is int and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if target in (float, str, Path):
            return Path(str(value)).expanduser() if target is Path else target(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be {name}; got {value!r}.") from None
    return value


# One place per option: a config field carries its default, help text and bounds ------------------


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,  # noqa: A002 - the name typer and argparse use
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that also carries its help text and bounds.

    The CLI options (:func:`curation.cli.base.config_option`) and the App forms
    (:func:`curation.app.operators.config_inputs`) read them, and :func:`check_settings` enforces
    them, so a step's defaults, explanations and validation live in its ``Config`` alone.
    """
    metadata = {"help": help, "low": low, "high": high, "choices": choices}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class SettingInfo:
    """What a :func:`setting` field says about itself."""

    name: str
    default: Any
    help: str
    low: float | None
    high: float | None
    choices: tuple[str, ...] | None
    type: type


def setting_info(cls: type, name: str) -> SettingInfo:
    """The default, help and bounds of field ``name`` of config class ``cls``."""
    by_name = {f.name: f for f in fields(cls)}
    if name not in by_name or "help" not in by_name[name].metadata:
        raise ConfigError(f"{cls.__name__}.{name} is not a setting (declare it with typed_config.setting).")
    f, hints = by_name[name], typing.get_type_hints(cls)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    options = typing.get_args(hints[name]) if isinstance(hints[name], types.UnionType) else (hints[name],)
    kind = next((t for t in options if t is not type(None)), str)
    kind = str if typing.get_origin(kind) is typing.Literal else kind
    return SettingInfo(name, default, f.metadata["help"], f.metadata["low"], f.metadata["high"], f.metadata["choices"], kind)


def setting_error(cls: type, name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for setting ``name`` (None when it is): bounds and choices."""
    info = setting_info(cls, name)
    if value is None:
        return None
    if info.choices is not None and value not in info.choices:
        return f"The '{name}' parameter must be one of {', '.join(info.choices)}. Got {value!r} instead.{suggest(str(value), info.choices)}"
    if (info.low is not None and value < info.low) or (info.high is not None and value > info.high):
        span = f"[{info.low if info.low is not None else '-inf'}, {info.high if info.high is not None else 'inf'}]"
        return f"The '{name}' parameter must be in {span}. Got {value} instead."
    return None


def check_settings(config: Any) -> None:
    """Raise a ConfigError for the first :func:`setting` field of ``config`` out of its bounds."""
    for f in fields(config):
        if "help" in f.metadata:
            error = setting_error(type(config), f.name, getattr(config, f.name))
            if error:
                raise ConfigError(error)
