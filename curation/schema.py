"""The one field table, label names, primitive classes, splits and the label rule.

Pure data and pure functions: no FiftyOne import here, so importers, tests and the Stage-1 code
can use the rule without a database. ``store.py`` turns :data:`FIELDS` into FiftyOne fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

SCHEMA_VERSION = 1
"""Bump when a field is added, renamed or changes type; add a migration in ``store.py``."""


class Label(StrEnum):
    ROADWORK = "roadwork"
    NO_ROADWORK = "no_roadwork"


class Split(StrEnum):
    TRAIN = "train"
    POOL = "pool"
    VAL = "val"
    CALIB = "calib"
    TEST = "test"
    VAL_SYNTHETIC = "val_synthetic"


class Source(StrEnum):
    NATIX = "natix"
    ROADWORK = "roadwork"
    ROBOFLOW = "roboflow"
    QUERIES = "queries"
    SYNTHETIC = "synthetic"


# Higher wins when one image arrives from several sources with different splits: an image that
# is anywhere in test must never be trained on, so it stays test.
SPLIT_PRECEDENCE: dict[Split, int] = {
    Split.TEST: 5,
    Split.CALIB: 4,
    Split.VAL: 3,
    Split.VAL_SYNTHETIC: 2,
    Split.TRAIN: 1,
    Split.POOL: 0,
}
EVALUATION_SPLITS = frozenset({Split.VAL, Split.CALIB, Split.TEST, Split.VAL_SYNTHETIC})

ROADWORK_PRIMITIVES: tuple[str, ...] = (
    "cone",
    "drum",
    "barrier",
    "barricade",
    "fence",
    "vertical_panel",
    "tubular_marker",
    "arrow_board",
    "ttc_sign",
    "ttc_message_board",
    "worker",
    "work_vehicle",
    "work_equipment",
    "other_roadwork",
)
"""Unified classes whose presence makes an image roadwork."""

CONTEXT_CLASSES: tuple[str, ...] = ("road", "sidewalk", "bike_lane", "police_officer", "police_vehicle")
"""Unified classes kept as boxes but outside the label rule."""

PRIMITIVE_CLASSES: tuple[str, ...] = ROADWORK_PRIMITIVES + CONTEXT_CLASSES

SLICES: tuple[str, ...] = (
    "night",
    "rain_snow",
    "highway",
    "urban",
    "small_evidence",
    "orange_distractor",
    "synthetic",
)

HN_CATEGORIES: tuple[str, ...] = ("ad", "crane", "foliage", "vest", "sunset_light", "fence", "vehicle", "other")

# Tags with a platform meaning: the vocabulary lives here, every job imports it.
TAG_LABEL_CONFLICT = "label_conflict"
TAG_LEAK = "leak"
TAG_LEAK_EMBEDDING = "leak_embedding"  # near-duplicate across splits found on Stage-1 embeddings
TAG_LEAK_UNCHECKED = "leak_unchecked"  # imported while the near-duplicate check could not run
TAG_HARD_NEGATIVE = "hard_negative"
TAG_EXCEPTION = "label_exception"  # a person changed an evaluation-split label (audited)
TAG_NOT_ADMITTED = "not_admitted"  # a synthetic image kept out of training
HARD_TAG_PREFIX = "hard:"  # hard:YYYY-MM-DD, the day's mined batch (hard:YYYY-MM-DD:view-<hash> for a view's)
SIMILAR_TAG_PREFIX = "similar:"  # similar:YYYY-MM-DD:<hash>, a "more like this" labeling batch
BATCH_TAG_PREFIXES = (HARD_TAG_PREFIX, SIMILAR_TAG_PREFIX)  # labeling batches: the queues accept either

# Saved views and workspaces the platform writes.
FAILURE_VIEWS = {"FP": "failures/false_positives", "FN": "failures/false_negatives"}
FAILURE_WORKSPACE = "failure browsing"
MAP_WORKSPACE = "embeddings map"  # the grid beside the Embeddings panel
LATEST_HARD_VIEW = "hard/latest"
ORANGE_VIEW = "labels/orange_candidates"
AUDIT_VIEW = "labels/audit_evaluation_splits"

LABEL_ORIGIN_RULE = "rule"
LABEL_ORIGIN_HUMAN = "human"


@dataclass(frozen=True)
class FieldSpec:
    """One dataset field: its name, FiftyOne kind, element kind for lists, and why it exists."""

    name: str
    kind: str  # string | int | float | bool | list | dict | datetime | geo | classification | detections
    doc: str
    element: str | None = None  # for list fields
    indexed: bool = False


FIELDS: tuple[FieldSpec, ...] = (
    # Identity and provenance
    FieldSpec("sources", "list", "every source that supplied this image", element="string", indexed=True),
    FieldSpec("source_ids", "list", "'<source>:<source split>:<id>' per source record", element="string", indexed=True),
    FieldSpec("content_hash", "string", "sha256 hex of the stored image bytes (identity)", indexed=True),
    FieldSpec("phash", "string", "64-bit perceptual hash (hex) linking near-duplicates", indexed=True),
    FieldSpec("near_duplicate_of", "list", "content hashes of near-duplicate images", element="string"),
    FieldSpec("video_id", "string", "NATIX/ROADWork video id"),
    FieldSpec("sequence_id", "string", "NATIX/ROADWork sequence id within the video"),
    FieldSpec("frame_id", "string", "NATIX/ROADWork frame id within the sequence"),
    FieldSpec("sequence_group", "string", "'<video_id>/<sequence_id>': the unit splits never cut", indexed=True),
    FieldSpec("split", "string", "train|pool|val|calib|test|val_synthetic", indexed=True),
    # Labels
    FieldSpec("source_label", "dict", "what each source said: {source: 'roadwork'|'no_roadwork'}"),
    FieldSpec("ground_truth", "classification", "binary label used for training and evaluation", indexed=True),
    FieldSpec("label_origin", "string", "'rule' (derived) or 'human' (a person decided)"),
    FieldSpec("primitives", "detections", "roadwork primitives and context classes, unified names"),
    FieldSpec("label_history", "list", "every human label change: who, when, previous, new, reason", element="dict"),
    FieldSpec("hn_category", "string", "hard-negative category (ad, crane, foliage, ...)"),
    FieldSpec("labeled_by", "string", "user name of the last human label"),
    FieldSpec("labeled_at", "datetime", "time of the last human label"),
    # Scene tags
    FieldSpec("daytime", "string", "Light | Dark | Twilight"),
    FieldSpec("weather", "list", "weather tags", element="string"),
    FieldSpec("scene_environment", "string", "Urban | Highway | Suburban | Rural ..."),
    FieldSpec("travel_alteration", "list", "work-zone alteration tags; ['None'] means no work zone", element="string"),
    FieldSpec("city", "string", "city name from the source"),
    FieldSpec("location", "geo", "GPS point"),
    FieldSpec("scene_description", "string", "free-text description from the source"),
    FieldSpec("slices", "list", "evaluation slices this sample belongs to", element="string", indexed=True),
    FieldSpec("orange_share", "float", "share of strongly orange pixels (HSV), for distractor mining"),
    FieldSpec("brightness", "float", "mean luminance in [0, 1]"),
    # Synthetic provenance
    FieldSpec("generator", "string", "image generator id (synthetic samples)"),
    FieldSpec("prompt", "string", "generation prompt (synthetic samples)"),
    FieldSpec("seed", "int", "generation seed (synthetic samples)"),
    FieldSpec("parent_id", "string", "sample id of the img2img/inpaint parent"),
    # Ingest (issue 3)
    FieldSpec("alt_hashes", "list", "sha256 of other encodings of this frame merged by (vid, seq, frame)", element="string", indexed=True),
    FieldSpec("query_meta", "dict", "miner query log: received_at, validator_hotkey, response, model_version, feedback_source"),
    FieldSpec("negative_prompt", "string", "generation negative prompt (synthetic samples)"),
    FieldSpec("steps", "int", "diffusion steps (synthetic samples)"),
    FieldSpec("strength", "float", "img2img/inpaint strength; None for text-to-image (synthetic samples)"),
    FieldSpec("guidance_scale", "float", "classifier-free guidance scale (synthetic samples)"),
    FieldSpec("synth_mode", "string", "text2img | img2img | inpaint_replace | inpaint_add (synthetic samples)"),
    FieldSpec("generator_random_weights", "bool", "generator had random weights: never admitted to training", indexed=True),
    # Stage-1 and mining (written by predict, gate, mine)
    FieldSpec("stage1", "classification", "Stage-1: label, confidence of that label, logits [log(1-p), log p], p_roadwork, threshold"),
    FieldSpec("stage1_views", "detections", "one box per view with its probability; label 'evidence' for the top views"),
    FieldSpec("gate_features", "dict", "view statistics the failure gate reads (p, max, top-K mean, var, entropy, ...)"),
    FieldSpec("stage1_embedding", "list", "global-view CLS embedding (Brain similarity, mining diversity)", element="float"),
    FieldSpec("model_version", "string", "Stage-1 version that wrote the stage1 fields", indexed=True),
    FieldSpec("failure_risk", "float", "the gate's P(stage-1 wrong)"),
    FieldSpec("stage1_correct", "bool", "routing label on held-out splits: stage-1 right?"),
    FieldSpec("hardness", "float", "combined, rank-normalised hardness of the last mining run"),
    FieldSpec("uniqueness", "float", "FiftyOne Brain uniqueness on stage1_embedding, in [0, 1] (1: nothing like it)"),
    # Self-training (issue 21): a teacher's pseudo-labels on unlabeled pool samples, for a labeler to confirm or reject
    FieldSpec("pseudo_label", "classification", "self-training teacher's pseudo-label: label, confidence, entropy (never ground_truth)"),
    FieldSpec("pseudo_label_teacher", "string", "teacher version that wrote pseudo_label ('<challenger version>/ema-teacher')", indexed=True),
    # Labeling assistance (detector, SAM)
    FieldSpec("primitive_proposals", "detections", "detector proposals with confidences (not ground truth)"),
    FieldSpec("sam_primitives", "detections", "SAM masks and tight boxes with SAM scores (not ground truth)"),
    # Stage-2 evidence and the cascade (written by curation.stage2.cascade.run_stage2)
    FieldSpec("ocr_text", "detections", "Stage-2 OCR reads: label = normalised text, confidence, attribute `keywords`"),
    FieldSpec("stage2_evidence", "dict", "Stage-2 evidence: text_score, detector_score, keywords, matches, seconds"),
    FieldSpec("cascade", "classification", "cascade decision: label, p_roadwork, stage (stage1|stage2|deferred), reason"),
)

FIELD_NAMES = frozenset(f.name for f in FIELDS)


def derive_label(primitive_labels: Iterable[str], source_says_roadwork: bool | None) -> tuple[Label, bool]:
    """Apply the label rule: roadwork iff a roadwork primitive is present or the source says so.

    Returns:
        (label, conflict): ``conflict`` is True when the boxes and the source disagree (boxes
        show a roadwork primitive but the source says no roadwork); the disagreement is tagged,
        never silently resolved, and the positive evidence wins for the label.

    Example:
        >>> derive_label(["road", "cone"], False)
        (<Label.ROADWORK: 'roadwork'>, True)
    """
    has_primitive = any(name in ROADWORK_PRIMITIVES for name in primitive_labels)
    says = bool(source_says_roadwork)
    conflict = has_primitive and source_says_roadwork is False
    return (Label.ROADWORK if has_primitive or says else Label.NO_ROADWORK), conflict


def resolve_split(splits: Iterable[str]) -> Split:
    """The split an image takes when several sources place it: highest precedence wins."""
    members = [Split(s) for s in splits]
    if not members:
        raise ValueError("resolve_split needs at least one split")
    return max(members, key=SPLIT_PRECEDENCE.__getitem__)
