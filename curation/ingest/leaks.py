"""Second leak check, on Stage-1 embeddings, once they exist (FiftyOne Brain leaky splits).

Ingest catches exact copies, shared video sequences and perceptual-hash near-duplicates. Frames
of one scene re-encoded, cropped or shot seconds apart can slip past a 64-bit hash but sit close
in embedding space; Brain's leaky-splits index finds them. Only the trainable side (train, pool)
is tagged ``leak_embedding``; evaluation images keep their split and are never touched. The tag
is separate from ingest's ``leak`` so a re-import's hash-based retagging cannot clear it.
"""

from __future__ import annotations

from typing import Any

from curation import schema, store

TRAINABLE = (schema.Split.TRAIN.value, schema.Split.POOL.value)
EVALUATION = (schema.Split.VAL.value, schema.Split.CALIB.value, schema.Split.TEST.value)


def recheck_leaks_with_embeddings(dataset: Any, *, embeddings_field: str = "stage1_embedding", threshold: float = 0.05) -> int:
    """Tag trainable samples whose embedding nearly duplicates a val/calib/test image; returns how many."""
    import fiftyone.brain as fob
    from fiftyone import ViewField as F

    view = dataset.exists(embeddings_field).match(F("split").is_in(list(TRAINABLE + EVALUATION)))
    if len(view.distinct("split")) < 2:
        return 0
    index = fob.compute_leaky_splits(view, splits="split", threshold=threshold, embeddings=embeddings_field, progress=False)
    trainable = index.leaks_view().match(F("split").is_in(list(TRAINABLE)))
    n = trainable.count()
    if n:
        trainable.tag_samples(schema.TAG_LEAK_EMBEDDING)
    # No `tags=`: a leak tag keeps a near-duplicate out of training, so deleting this run must not lift it.
    store.record_run(dataset, "leaks_embedding", {"threshold": threshold, "embeddings_field": embeddings_field, "tagged": n})
    return n
