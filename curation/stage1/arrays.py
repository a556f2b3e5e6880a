"""Argument checks shared by the gate, risk-control and hardness math.

These functions sit at the boundary between database values and numpy math: a NaN that slips
through would silently rank first or last, so every public entry point checks its arrays here
and fails with a message that names the argument, the offending value and what is allowed.

Example:
    >>> from curation.stage1.arrays import as_float_array
    >>> as_float_array([0.1, 0.9], name="risk").tolist()
    [0.1, 0.9]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from curation.errors import InputError


def as_float_array(
    values: ArrayLike, *, name: str, ndim: int = 1, allow_nan: bool = False, allow_neg_inf: bool = False
) -> np.ndarray:
    """Return ``values`` as a float64 array of ``ndim`` dimensions with only finite entries.

    Args:
        values: anything numpy can convert; ``None`` entries become NaN.
        name: argument name used in error messages.
        ndim: required number of dimensions.
        allow_nan: keep NaN entries (callers that treat NaN as "missing").
        allow_neg_inf: keep -inf entries (log-probabilities of impossible classes).
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"The '{name}' array must hold numbers. Got {_preview(values)} instead.") from None
    if array.ndim != ndim:
        raise InputError(f"The '{name}' array must be {ndim}-D. Got shape {array.shape} instead.")
    bad = np.isposinf(array)
    if not allow_neg_inf:
        bad |= np.isneginf(array)
    if not allow_nan:
        bad |= np.isnan(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = index[0] if ndim == 1 else index
        raise InputError(
            f"The '{name}' array must be finite{' or NaN (missing)' if allow_nan else ''}. "
            f"Got {array[index]} at index {where} ({int(bad.sum())} bad entries in all)."
        )
    return array


def as_bool_array(values: ArrayLike, *, name: str) -> np.ndarray:
    """Return a 1-D bool array; accepts bools or 0/1 numbers, nothing else."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"The '{name}' array must be 1-D. Got shape {array.shape} instead.")
    if array.dtype == bool:
        return array
    if array.size and (array.dtype.kind not in "iuf" or not np.isin(array, (0, 1)).all()):
        raise InputError(f"The '{name}' array must hold booleans or 0/1. Got {_preview(array)} instead.")
    return array.astype(bool)


def check_same_length(**arrays: np.ndarray) -> int:
    """Return the common first-axis length or raise naming the arrays that disagree."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"'{k}' has {v}" for k, v in lengths.items())
        raise InputError(f"The arrays must have the same number of samples: {listed}.")
    return next(iter(lengths.values()), 0)


def check_fraction(value: Any, *, name: str, closed: str = "neither") -> float:
    """Check a float in (0, 1), [0, 1), (0, 1] or [0, 1] (``closed``: neither/left/right/both)."""
    low_ok = closed in ("left", "both")
    high_ok = closed in ("right", "both")
    interval = f"{'[' if low_ok else '('}0, 1{']' if high_ok else ')'}"
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (0 <= value if low_ok else 0 < value)
        and (value <= 1 if high_ok else value < 1)
    )
    if not ok:
        raise InputError(f"The '{name}' parameter must be a float in the range {interval}. Got {value!r} instead.")
    return float(value)


def check_int(value: Any, *, name: str, low: int, high: float = math.inf) -> int:
    """Check an int in [low, high] with a sklearn-style message."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        shown = "inf)" if high == math.inf else f"{int(high)}]"
        raise InputError(f"The '{name}' parameter must be an int in the range [{low}, {shown}. Got {value!r} instead.")
    return int(value)


def _preview(values: Any) -> str:
    text = repr(values)
    return text if len(text) <= 60 else text[:57] + "..."
