"""The FiftyOne run classes of platform jobs (FiftyOne finds them again by module path, so they
live here, apart from :mod:`curation.store.runs`, which imports FiftyOne only when called)."""

from __future__ import annotations

from typing import Any

from fiftyone.core.runs import Run, RunConfig

from curation import schema

PROTECTED_TAGS = frozenset({
    schema.TAG_LEAK, schema.TAG_LEAK_EMBEDDING, schema.TAG_LEAK_UNCHECKED, schema.TAG_LABEL_CONFLICT,
    schema.TAG_NOT_ADMITTED, schema.TAG_HARD_NEGATIVE, schema.TAG_EXCEPTION,
})  # fmt: skip
"""Tags that keep data out of training or record a person's decision: deleting a run never removes them."""


class PlatformRunConfig(RunConfig):
    """What a platform job was and wrote: ``kind``, ``created_at`` (ISO, microseconds), ``fields``, ``tags``."""

    def __init__(self, kind: str = "", created_at: str = "", fields: list[str] | None = None, tags: list[str] | None = None, **kwargs: Any):
        super().__init__(method=kwargs.pop("method", kind), **kwargs)
        self.kind = kind
        self.created_at = created_at
        self.fields = list(fields or [])
        self.tags = list(tags or [])


class PlatformRun(Run):
    """FiftyOne builds this from :class:`PlatformRunConfig` (by name) to list fields and clean up."""

    def get_fields(self, samples: Any, key: str) -> list[str]:
        return list(self.config.fields)

    def cleanup(self, samples: Any, key: str) -> None:
        """Remove the fields and tags of run ``key`` that no other platform run names."""
        dataset = samples._root_dataset
        others = [c for k, c in platform_configs(dataset).items() if k != key]
        kept_fields = {f for c in others for f in c.fields}
        kept_tags = {t for c in others for t in c.tags}
        fields = [f for f in self.config.fields if f not in kept_fields and dataset.has_sample_field(f)]
        if fields:
            dataset.delete_sample_fields(fields)
        for tag in (t for t in self.config.tags if t not in kept_tags and t not in PROTECTED_TAGS):
            dataset.untag_samples(tag)


def platform_configs(dataset: Any) -> dict[str, PlatformRunConfig]:
    """``{run key: config}`` of the runs the platform registered on ``dataset``, each read once
    (other tools' runs, and runs whose config cannot be loaded, are left out)."""
    configs = {}
    for key in dataset.list_runs():
        try:
            config = dataset.get_run_info(key).config
        except Exception:  # noqa: BLE001 - another tool's run whose config cannot be loaded is not ours
            continue
        if isinstance(config, PlatformRunConfig):
            configs[key] = config
    return configs
