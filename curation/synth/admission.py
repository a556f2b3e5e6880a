"""Admission filter: which generated images may join the dataset.

Three checks, in order, each with a stable reason string:

- ``near_duplicate``: the image's perceptual hash is within ``max_hamming`` bits of an image
  already in the dataset (any split: a synthetic child that near-duplicates a val/test image would
  leak it into training) or of an earlier candidate of the same run.
- ``confident``: a Stage-1 scoring callable is given and it already gets the image right with
  confidence >= ``confidence``; such an image teaches the model little. Used for training data
  only: filtering an evaluation set by the model being evaluated would bias it.
- Everything else is admitted.

Whether an admitted image may be *trained on* is a separate rule, :func:`child_split`: images from
a random-weight generator are never given split ``train`` (see its docstring).

Pure: hashes, labels and scores in, decisions out.

Example:
    >>> from curation.synth.admission import AdmissionConfig, Candidate, admit
    >>> admit([Candidate("ffff0000ffff0000", "no_roadwork")], ["ffff0000ffff0001"], config=AdmissionConfig())
    [Decision(admitted=False, reason='near_duplicate', distance=1, score=None)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.errors import ConfigError
from curation.schema import Label, Split
from curation.typed_config import setting

NEAR_DUPLICATE = "near_duplicate"
CONFIDENT = "confident"

"""Tag on synthetic samples kept out of training (random-weight generator)."""

Scorer = Callable[[Sequence[Any]], Sequence[float]]
"""Takes a list of PIL images, returns Stage-1 ``p_roadwork`` per image."""


@dataclass(frozen=True)
class AdmissionConfig:
    """Options of the admission filter.

    Attributes:
        max_hamming: perceptual-hash distance (bits of 64) at or below which an image is a
            near-duplicate. 0 only rejects identical hashes; ~6 catches re-encodes and small edits.
        reject_confident: drop training images the scorer already gets confidently right.
        confidence: the confidence of the correct label (p or 1−p) at which an image counts as
            confidently right.
    """

    max_hamming: int = setting(6, help="Perceptual-hash distance (bits of 64) that counts as a near-duplicate.", low=0, high=64)
    reject_confident: bool = True
    confidence: float = 0.9

    def __post_init__(self) -> None:
        if not 0 <= int(self.max_hamming) <= 64:
            raise ConfigError(f"The `max_hamming` parameter must be an int in [0, 64]. Got {self.max_hamming} instead.")
        if not 0.5 <= float(self.confidence) <= 1.0:
            raise ConfigError(f"The `confidence` parameter must be a float in [0.5, 1]. Got {self.confidence} instead.")


@dataclass(frozen=True)
class Candidate:
    """A generated image as the filter sees it: its perceptual hash and label by construction."""

    phash: str
    label: str


@dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: str | None = None
    distance: int | None = None
    score: float | None = None


def hashes_to_array(hashes: Sequence[str | None]) -> np.ndarray:
    """Hex perceptual hashes → uint64 array [n] (missing hashes are dropped)."""
    return np.array([int(h, 16) for h in hashes if h], dtype=np.uint64)


def min_hamming(query: str, pool: np.ndarray) -> int | None:
    """Smallest bit distance from ``query`` to any hash in ``pool`` (None for an empty pool)."""
    if pool.size == 0:
        return None
    xor = np.bitwise_xor(pool, np.uint64(int(query, 16)))  # [n]
    return int(np.bitwise_count(xor).min())


def confidently_right(p_roadwork: float, label: str, confidence: float) -> bool:
    """True when the score puts at least ``confidence`` on the correct label."""
    p = float(p_roadwork)
    return p >= confidence if label == Label.ROADWORK else (1.0 - p) >= confidence


def admit(
    candidates: Sequence[Candidate],
    existing_phashes: Sequence[str | None],
    *,
    config: AdmissionConfig,
    scores: Sequence[float] | None = None,
) -> list[Decision]:
    """Decide for each candidate, in order; earlier admitted candidates count as existing.

    Args:
        candidates: generated images (hash + label by construction).
        existing_phashes: perceptual hashes of every image already in the dataset.
        config: thresholds.
        scores: Stage-1 ``p_roadwork`` per candidate, or None to skip the confidence check.
    """
    if scores is not None and len(scores) != len(candidates):
        raise ConfigError(f"Got {len(scores)} scores for {len(candidates)} candidates; give one per image.")
    pool = hashes_to_array(existing_phashes)
    decisions: list[Decision] = []
    for i, c in enumerate(candidates):
        distance = min_hamming(c.phash, pool)
        if distance is not None and distance <= config.max_hamming:
            decisions.append(Decision(False, NEAR_DUPLICATE, distance=distance))
            continue
        score = None if scores is None else float(scores[i])
        if score is not None and config.reject_confident and confidently_right(score, c.label, config.confidence):
            decisions.append(Decision(False, CONFIDENT, distance=distance, score=score))
            continue
        decisions.append(Decision(True, None, distance=distance, score=score))
        pool = np.append(pool, np.uint64(int(c.phash, 16)))
    return decisions


def child_split(purpose: str, *, random_weights: bool) -> str | None:
    """The split of a synthetic child, or None when it must never be trained on or evaluated.

    ``purpose`` ``train`` gives split ``train``; ``val_synthetic`` gives ``val_synthetic``
    (evaluation only). Images from a random-weight generator get **no split** (None) and the
    :data:`curation.schema.TAG_NOT_ADMITTED` tag: training views select ``split == "train"`` and evaluation views
    select their own splits, so a split-less sample is in neither, whatever a later job forgets to
    filter. Keeping them in the dataset (rather than dropping them) lets the demo and tests browse
    what the pipeline produced.
    """
    if purpose not in (Split.TRAIN, Split.VAL_SYNTHETIC):
        raise ConfigError(f"The `purpose` parameter must be 'train' or 'val_synthetic'. Got {purpose!r} instead.")
    if random_weights:
        return None
    return str(purpose)
