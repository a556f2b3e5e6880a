"""What a Stage-1 training run saw: content hashes, augmentation seeds and the data fingerprint.

Training sees what validators send, so every (image, augmentation index m) pair gets a seed derived
from the image's content hash: the same image always gets the same M validator queries, whatever
its position in the dataset or which process reads it. The fingerprint of a run is the hash of the
sorted ``(content_hash, label)`` pairs; :meth:`Stage1Model.mark_trained` records it in the model
version, so "which data made this model" has one answer.

Example:
    >>> from curation.stage1.training_data import augmentation_seed, data_fingerprint
    >>> augmentation_seed("ab" * 32, 0) == augmentation_seed("ab" * 32, 0)
    True
    >>> data_fingerprint(["b" * 64, "a" * 64], [1, 0]) == data_fingerprint(["a" * 64, "b" * 64], [0, 1])
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from curation.errors import InputError
from curation.schema import TAG_LEAK

# Splits training may read (DESIGN.md section 3): val/calib/test choose and judge models.
TRAINING_SPLITS = ("train",)
FORBIDDEN_SPLITS = ("val", "calib", "test", "val_synthetic")


def image_content_hash(image) -> str:
    """sha256 hex of a PIL image's decoded pixels (mode, size, bytes).

    Prefer the dataset's ``content_hash`` (sha256 of the stored file); this is for images that
    exist only in memory.
    """
    digest = hashlib.sha256()
    digest.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def augmentation_seed(content_hash: str, m: int, base_seed: int = 0) -> int:
    """Seed of the ``m``-th validator query of an image (63-bit, stable across runs and processes)."""
    if m < 0:
        raise InputError(f"Augmentation index `m` must be ≥ 0; got {m}.")
    digest = hashlib.sha256(f"{content_hash}:{m}:{base_seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def data_fingerprint(content_hashes: Sequence[str], labels: Iterable[int]) -> str:
    """sha256 hex of the sorted ``(content_hash, label)`` pairs: order-independent, label-sensitive."""
    labels = [int(v) for v in labels]
    if len(labels) != len(content_hashes):
        raise InputError(f"{len(content_hashes)} content hashes but {len(labels)} labels.")
    bad = [v for v in labels if v not in (0, 1)]
    if bad:
        raise InputError(f"Labels must be 0 (no_roadwork) or 1 (roadwork); got {bad[0]!r}.")
    digest = hashlib.sha256()
    for h, y in sorted(zip((str(h) for h in content_hashes), labels, strict=True)):
        digest.update(f"{h}\t{y}\n".encode())
    return digest.hexdigest()


def check_training_rows(splits: Sequence[str], tags: Sequence[Sequence[str]] | None = None, *, ids: Sequence[str] | None = None) -> None:
    """Refuse rows that must never reach training: val/calib/test splits and ``leak``-tagged rows.

    Raises:
        InputError: naming the first offending row (its id when given) and why.
    """
    for i, split in enumerate(splits):
        row_tags = tags[i] if tags is not None else ()
        where = f"sample {ids[i]}" if ids is not None else f"row {i}"
        if split not in TRAINING_SPLITS:
            raise InputError(
                f"{where} is in split `{split}`; training reads only {TRAINING_SPLITS} "
                f"({', '.join(FORBIDDEN_SPLITS)} choose and judge models)."
            )
        if TAG_LEAK in row_tags:
            raise InputError(f"{where} is tagged `{TAG_LEAK}` (near-duplicate of an evaluation image); drop it.")
