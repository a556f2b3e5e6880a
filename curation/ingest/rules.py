"""Pure ingest rules: split assignment by sequence, merging records into one sample, leak detection.

Nothing here touches FiftyOne or the disk. A sample is handled as a plain dict of field values
(its *state*); :func:`merge` folds new source records into a state and returns what changed, so
re-running an import yields no changes and tests run on plain dicts.

Example:
    >>> from curation.ingest.rules import SplitConfig, assign_sequence_splits
    >>> splits = assign_sequence_splits({"v/1": ["roadwork"], "v/2": ["no_roadwork"]}, SplitConfig())
    >>> sorted(splits.values())
    ['train', 'train']
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation.errors import ConfigError
from curation.ingest.sources.common import Primitive, SourceRecord
from curation.media import DecodedImage
from curation.schema import (
    EVALUATION_SPLITS,
    LABEL_ORIGIN_HUMAN,
    LABEL_ORIGIN_RULE,
    TAG_LABEL_CONFLICT,
    Label,
    Source,
    Split,
    derive_label,
    resolve_split,
)
from curation.slices import SliceConfig, SliceInputs, brightness, compute_slices, orange_share

SCENE_FIELDS = ("daytime", "weather", "scene_environment", "travel_alteration", "city", "location", "scene_description")
VIDEO_FIELDS = ("video_id", "sequence_id", "frame_id")
MANAGED_FIELDS = (
    "sources",
    "source_ids",
    "split",
    "source_label",
    "ground_truth",
    "label_origin",
    "primitives",
    *VIDEO_FIELDS,
    "sequence_group",
    *SCENE_FIELDS,
    "slices",
    "brightness",
    "orange_share",
    "tags",
    "alt_hashes",
    "query_meta",
)
"""Fields an import may write; everything else on a sample (predictions, hardness ...) is untouched."""

BOX_DECIMALS = 4
BOX_TOLERANCE = 2e-3


# Splits -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitConfig:
    """How NATIX train is cut into val, calib and train.

    Attributes:
        val_fraction: share of sequence groups (per label stratum) that become val.
        calib_fraction: share that becomes calib (disjoint from val).
        salt: changes the deterministic order; changing it reshuffles every new group.
    """

    val_fraction: float = 0.1
    calib_fraction: float = 0.1
    salt: str = "natix-split-v1"

    def __post_init__(self) -> None:
        for name in ("val_fraction", "calib_fraction"):
            value = float(getattr(self, name))
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"The `{name}` parameter must be a float in [0, 1). Got {value} instead.")
        if float(self.val_fraction) + float(self.calib_fraction) >= 1.0:
            raise ConfigError(
                f"`val_fraction` + `calib_fraction` must be below 1 (train needs data). "
                f"Got {self.val_fraction} + {self.calib_fraction}."
            )


def split_key(record: SourceRecord) -> str:
    """The unit a split never cuts: the sequence group, or the row itself when it has none."""
    return record.sequence_group or f"id:{record.source_id}"


def _rank(key: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}\x00{key}".encode()).hexdigest()


def assign_sequence_splits(groups: Mapping[str, Sequence[str | None]], config: SplitConfig) -> dict[str, Split]:
    """Assign each group to val, calib or train, stratified by the group's majority label.

    Within a stratum groups are ordered by a salted hash of their key, so the assignment is a
    pure function of (groups, config): the same input always gives the same splits.
    """
    strata: dict[str, list[str]] = {}
    for key, labels in groups.items():
        positives = sum(1 for v in labels if v == Label.ROADWORK)
        negatives = sum(1 for v in labels if v == Label.NO_ROADWORK)
        stratum = "unknown" if positives + negatives == 0 else (Label.ROADWORK if positives >= negatives else Label.NO_ROADWORK)
        strata.setdefault(str(stratum), []).append(key)
    out: dict[str, Split] = {}
    for keys in strata.values():
        keys.sort(key=lambda k: _rank(k, config.salt))
        n_val = round(len(keys) * float(config.val_fraction))
        n_calib = round(len(keys) * float(config.calib_fraction))
        for i, key in enumerate(keys):
            out[key] = Split.VAL if i < n_val else Split.CALIB if i < n_val + n_calib else Split.TRAIN
    return out


def record_split(record: SourceRecord, group_splits: Mapping[str, Split]) -> Split:
    """Where one record goes: NATIX test → test, NATIX train by sequence, queries → pool, rest → train."""
    if record.source == Source.NATIX:
        if record.source_split == "test":
            return Split.TEST
        return group_splits.get(split_key(record), Split.TRAIN)
    if record.source == Source.QUERIES:
        return Split.POOL
    return Split.TRAIN


# Merging ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Incoming:
    """A decoded record on its way into a sample."""

    record: SourceRecord
    split: Split
    image: DecodedImage


@dataclass
class MergeResult:
    state: dict[str, Any]
    changes: dict[str, Any]
    disagreement: tuple[str, str] | None = None  # (human label, rule label)
    notes: list[str] = field(default_factory=list)


def _box(p: Primitive, width: int, height: int) -> list[float]:
    x, y, w, h = p.box
    if not p.relative:
        x, y, w, h = x / width, y / height, w / width, h / height
    x, y = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
    w, h = min(max(w, 0.0), 1.0 - x), min(max(h, 0.0), 1.0 - y)
    return [round(v, BOX_DECIMALS) for v in (x, y, w, h)]


def primitives_of(incoming: Incoming) -> list[dict[str, Any]] | None:
    prims = incoming.record.primitives
    if prims is None:
        return None
    w, h = incoming.image.width, incoming.image.height
    return [{"label": p.label, "box": _box(p, w, h), "source": incoming.record.source, **dict(p.attrs)} for p in prims]


def _same_boxes(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    if len(a) != len(b):
        return False
    key = lambda d: (d["label"], tuple(d["box"]))  # noqa: E731
    for x, y in zip(sorted(a, key=key), sorted(b, key=key), strict=True):
        if x["label"] != y["label"] or max(abs(p - q) for p, q in zip(x["box"], y["box"], strict=True)) > BOX_TOLERANCE:
            return False
    return True


def source_says(record: SourceRecord, prims: list[dict[str, Any]] | None) -> Label | None:
    """What a record says about the image: its explicit label, else what its boxes imply."""
    if record.label is not None:
        return Label(record.label)
    if prims is not None:
        label, _ = derive_label([p["label"] for p in prims], None)
        return label
    return None


def merge(current: Mapping[str, Any] | None, incoming: Sequence[Incoming], *, slice_config: SliceConfig) -> MergeResult:
    """Fold records into a sample state; returns the new state and only the fields that changed.

    Rules: sources/ids/tags are unions; the split takes the highest precedence; each source's
    boxes replace that source's earlier boxes (unless equal within tolerance); scene fields and
    video ids fill gaps but never overwrite; ``ground_truth`` follows the label rule unless a
    human labeled the sample, in which case the disagreement is returned, never applied.
    """
    old = dict(current or {})
    s: dict[str, Any] = {k: old.get(k) for k in MANAGED_FIELDS}
    s["sources"] = list(s["sources"] or [])
    s["source_ids"] = list(s["source_ids"] or [])
    s["tags"] = list(s["tags"] or [])
    s["alt_hashes"] = list(s["alt_hashes"] or [])
    s["source_label"] = dict(s["source_label"] or {})
    primitives = [dict(p) for p in s["primitives"]] if s["primitives"] is not None else None
    splits = [s["split"]] if s["split"] else []
    content_hash = old.get("content_hash")
    conflict = False

    for item in incoming:
        rec = item.record
        if rec.source not in s["sources"]:
            s["sources"].append(str(rec.source))
        if rec.qualified_id not in s["source_ids"]:
            s["source_ids"].append(rec.qualified_id)
        splits.append(item.split)
        for tag in rec.tags:
            if tag not in s["tags"]:
                s["tags"].append(tag)
        if content_hash and item.image.sha256 != content_hash and item.image.sha256 not in s["alt_hashes"]:
            s["alt_hashes"].append(item.image.sha256)
        prims = primitives_of(item)
        if prims is not None:
            mine = [p for p in primitives or [] if p.get("source") == rec.source]
            if not (mine and _same_boxes(mine, prims)):
                primitives = [p for p in primitives or [] if p.get("source") != rec.source] + prims
        said = source_says(rec, prims)
        if said is not None:
            before = s["source_label"].get(rec.source)
            if before is not None and before != said:
                conflict = True
                said = Label.ROADWORK  # positive evidence wins; the conflict is tagged
            s["source_label"][str(rec.source)] = str(said)
        for key in VIDEO_FIELDS:
            value = getattr(rec, key)
            if s[key] is None and value is not None:
                s[key] = value
        for key in SCENE_FIELDS:
            value = rec.scene.get(key)
            if s[key] in (None, []) and value not in (None, []):
                s[key] = list(value) if isinstance(value, (list, tuple)) else value
        for key, value in rec.extra.items():
            if s.get(key) is None:
                s[key] = value
        if s["brightness"] is None:
            s["brightness"] = round(brightness(item.image.thumb), 4)
        if s["orange_share"] is None:
            s["orange_share"] = round(orange_share(item.image.thumb, slice_config), 4)

    s["primitives"] = primitives
    s["split"] = str(resolve_split(splits)) if splits else None
    if s["video_id"] is not None and s["sequence_id"] is not None:
        s["sequence_group"] = f"{s['video_id']}/{s['sequence_id']}"

    said_values = set(s["source_label"].values())
    says = True if Label.ROADWORK in said_values else (False if Label.NO_ROADWORK in said_values else None)
    prim_labels = [p["label"] for p in primitives or []]
    disagreement = None
    if says is None and not prim_labels:
        rule_label = None
    else:
        rule, rule_conflict = derive_label(prim_labels, says)
        rule_label = str(rule)
        conflict = conflict or rule_conflict or len(said_values) > 1
    if s["label_origin"] == LABEL_ORIGIN_HUMAN:
        if rule_label is not None and s["ground_truth"] != rule_label:
            disagreement = (str(s["ground_truth"]), rule_label)
    elif rule_label is not None:
        s["ground_truth"] = rule_label
        s["label_origin"] = LABEL_ORIGIN_RULE
    if conflict and TAG_LABEL_CONFLICT not in s["tags"]:
        s["tags"].append(TAG_LABEL_CONFLICT)

    s["slices"] = compute_slices(
        SliceInputs(
            daytime=s["daytime"],
            weather=s["weather"] or (),
            scene_environment=s["scene_environment"],
            brightness=s["brightness"],
            orange_share=s["orange_share"],
            label=s["ground_truth"],
            boxes=[(p["label"], p["box"]) for p in primitives or []],
            sources=s["sources"],
        ),
        slice_config,
    )
    changes = {k: v for k, v in s.items() if _differs(old.get(k), v)}
    return MergeResult(state=s, changes=changes, disagreement=disagreement)


def _differs(before: Any, after: Any) -> bool:
    if before in (None, [], {}) and after in (None, [], {}):
        return False
    if isinstance(before, float) or isinstance(after, float):
        try:
            return abs(float(before) - float(after)) > 1e-6
        except (TypeError, ValueError):
            return True
    if isinstance(before, list) and isinstance(after, list) and before and after and isinstance(after[0], dict):
        return not (_same_boxes(before, after) and [p.get("source") for p in before] == [p.get("source") for p in after])
    return before != after


# Leaks --------------------------------------------------------------------------------------------
def hex_to_u64(values: Iterable[str]) -> np.ndarray:
    return np.array([int(v, 16) for v in values], dtype=np.uint64)


def near_duplicates(queries: np.ndarray, references: np.ndarray, max_distance: int, chunk_pairs: int = 4_000_000) -> list[list[int]]:
    """For each query hash, indices of reference hashes within ``max_distance`` bits (vectorized)."""
    out: list[list[int]] = [[] for _ in range(len(queries))]
    if len(queries) == 0 or len(references) == 0:
        return out
    step = max(1, chunk_pairs // len(references))
    for start in range(0, len(queries), step):
        block = queries[start : start + step, None] ^ references[None, :]  # [b, n_ref]
        dist = np.bitwise_count(block)
        rows, cols = np.nonzero(dist <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            out[start + r].append(c)
    return out


@dataclass(frozen=True)
class LeakRow:
    id: str
    split: str | None
    sequence_group: str | None
    phash: str | None
    content_hash: str | None


def find_leaks(rows: Sequence[LeakRow], *, max_distance: int) -> dict[str, list[str]]:
    """Trainable samples (train, pool) that share a sequence group with, or near-duplicate, an
    evaluation sample (val, calib, test, val_synthetic): ``{id: [evidence, ...]}``.

    Evidence is ``group:<vid>/<seq>`` or the content hash of the near-duplicate evaluation image.
    """
    evaluation = [r for r in rows if r.split in EVALUATION_SPLITS]
    trainable = [r for r in rows if r.split in (Split.TRAIN, Split.POOL)]
    eval_groups = {r.sequence_group for r in evaluation if r.sequence_group}
    leaks: dict[str, list[str]] = {}
    for r in trainable:
        if r.sequence_group and r.sequence_group in eval_groups:
            leaks.setdefault(r.id, []).append(f"group:{r.sequence_group}")
    ref = [r for r in evaluation if r.phash]
    qry = [r for r in trainable if r.phash]
    matches = near_duplicates(hex_to_u64(r.phash for r in qry), hex_to_u64(r.phash for r in ref), max_distance)
    for r, found in zip(qry, matches, strict=True):
        for index in found[:5]:
            leaks.setdefault(r.id, []).append(str(ref[index].content_hash or ref[index].id))
    return leaks
