"""The views jobs agree on: what a model may train on, and the source × split × label table."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from curation import schema

if TYPE_CHECKING:
    import fiftyone as fo


LEAK_CHECK_KEY = "curation_leak_check"
"""Dataset info ``{"pending": bool, "max_distance": int}``: an import began and its leak check has not finished."""


def trainable_samples(collection: Any) -> Any:
    """Samples a model may learn from, whatever the label it needs.

    Split train, plus pool samples a human labeled (mined hard cases); never ``leak``,
    ``leak_embedding``, ``leak_unchecked`` (added by an import whose leak check has not run yet,
    e.g. a killed one), ``label_conflict`` or ``not_admitted``; never an image from a
    random-weight generator. The detector trains on these where they have boxes.
    """
    from fiftyone import ViewField as F

    trainable = (F("split") == schema.Split.TRAIN) | (
        (F("split") == schema.Split.POOL) & (F("label_origin") == schema.LABEL_ORIGIN_HUMAN)
    )
    excluded = [schema.TAG_LEAK, schema.TAG_LEAK_UNCHECKED, schema.TAG_LEAK_EMBEDDING, schema.TAG_LABEL_CONFLICT, schema.TAG_NOT_ADMITTED]
    return (
        collection.match(trainable)
        .match_tags(excluded, bool=False)
        .match(F("generator_random_weights") != True)  # noqa: E712 - a MongoDB expression, not a Python test
    )


def training_view(collection: Any) -> Any:
    """The one definition of what Stage-1 may train on: :func:`trainable_samples` with a label."""
    return trainable_samples(collection).exists("ground_truth")


def source_split_label_counts(dataset: fo.Dataset) -> dict[tuple[str, str, str], int]:
    """Samples per (source, split, label); a sample with two sources counts under each."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for sources, split, label in zip(*dataset.values(["sources", "split", "ground_truth.label"]), strict=True):
        for source in sources or ["(none)"]:
            counts[(source, split or "(none)", label or "unlabeled")] += 1
    return dict(sorted(counts.items()))
