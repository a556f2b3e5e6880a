"""Every job's run as a FiftyOne run on the dataset, so the App, ``dataset.list_runs()`` and
``dataset.load_run_results(key)`` show what predict, evaluate, gate, mining, Stage-2 and retrain
did: the config (kind, the fields and tags the run wrote) and the results (the job's summary).

Deleting a run (:func:`delete_run`, or ``dataset.delete_run(key)``) also removes the fields and
tags that no remaining run of the platform wrote (never a protected tag such as `leak`:
run_classes.PROTECTED_TAGS), so a mined batch or a Stage-2 pass can be undone
without touching what later runs still rely on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from curation.errors import CurationError

if TYPE_CHECKING:
    import fiftyone as fo

    from curation.store.run_classes import PlatformRunConfig


def _run_key(kind: str, created: datetime) -> str:
    """``<kind>_<YYYYmmdd_HHMMSS_ffffff>``: a valid FiftyOne run key that sorts by time within a kind."""
    return f"{re.sub(r'[^0-9A-Za-z_]', '_', kind)}_{created:%Y%m%d_%H%M%S_%f}"


def record_run(
    dataset: fo.Dataset, kind: str, payload: Mapping[str, Any], *, fields: Iterable[str] = (), tags: Iterable[str] = ()
) -> str:
    """Register a FiftyOne run of ``kind`` whose results are ``payload``; returns its run key.

    ``fields`` and ``tags`` are what the run wrote on samples; :func:`delete_run` removes them
    with the run unless another run wrote them too.
    """
    from fiftyone.core.runs import RunResults

    from curation.store.registry import jsonable
    from curation.store.run_classes import PlatformRunConfig

    root = dataset._root_dataset
    created = datetime.now(timezone.utc)
    key = _run_key(kind, created)
    while root.has_run(key):  # two runs of one kind in the same microsecond
        created = created.replace(microsecond=(created.microsecond + 1) % 1_000_000)
        key = _run_key(kind, created)
    config = PlatformRunConfig(kind=kind, created_at=created.isoformat(), fields=sorted(set(fields)), tags=sorted(set(tags)))
    root.register_run(key, config, cleanup=False)
    root.save_run_results(key, RunResults(root, config, key, summary=jsonable(dict(payload))))
    return key


def list_runs(dataset: fo.Dataset, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The platform's runs, newest first: each results summary plus ``_id`` (the run key),
    ``kind``, ``created_at`` (UTC datetime), ``run_fields`` and ``run_tags``."""
    from curation.store.run_classes import platform_configs

    root = dataset._root_dataset
    root.reload()  # another process (the worker, the CLI) may have recorded runs since this one loaded it
    configs = platform_configs(root).items()
    chosen = sorted(((k, c) for k, c in configs if kind is None or c.kind == kind), key=lambda kc: (kc[1].created_at, kc[0]), reverse=True)
    return [
        {
            **(root.load_run_results(key, cache=False, load_view=False).summary or {}),
            "_id": key,
            "kind": config.kind,
            "created_at": datetime.fromisoformat(config.created_at),
            "run_fields": config.fields,
            "run_tags": config.tags,
        }
        for key, config in chosen[:limit]
    ]


def runs_with_tag(dataset: fo.Dataset, tag: str) -> list[str]:
    """Keys of the platform runs that wrote ``tag`` (reads configs only, not results)."""
    from curation.store.run_classes import platform_configs

    root = dataset._root_dataset
    root.reload()
    return [k for k, c in platform_configs(root).items() if tag in c.tags]


def delete_run(dataset: fo.Dataset, key: str) -> PlatformRunConfig:
    """Delete platform run ``key`` with the fields and tags only it wrote; returns its config.

    Raises:
        CurationError: no platform run has that key (the message lists the newest ones).
    """
    from curation.store.run_classes import platform_configs

    root = dataset._root_dataset
    config = platform_configs(root).get(key)
    if config is None:
        newest = ", ".join(r["_id"] for r in list_runs(root, limit=5)) or "none"
        raise CurationError(f"Dataset `{root.name}` has no platform run `{key}`. Newest runs: {newest} (see `curation runs`).")
    root.delete_run(key)
    return config
