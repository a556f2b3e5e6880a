"""Human labels with history: hard negatives, missed positives, undo, and box acceptance.

Every change appends one entry to the sample's ``label_history`` — who (the configured user
name; open-source FiftyOne has no login), when, the previous and new label, the reason — so
nothing is overwritten without a trace. A human label overrides the label rule; where it
disagrees with the rule the sample is tagged ``label_exception`` (a decision, not an open
conflict), and any ``label_conflict`` tag is cleared.

Example:
    >>> mark_hard_negative(dataset.select(ids), user="ana", category="ad", reason="billboard")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from curation import schema, store
from curation.errors import InputError, suggest
from curation.typed_config import setting

if TYPE_CHECKING:
    import fiftyone.core.collections as foc

    from curation.slices import SliceConfig

BOX_SOURCES = ("primitives_edit", "primitive_proposals", "sam_primitives")


@dataclass(frozen=True)
class OrangeQueueConfig:
    """Queue order: orange_share × p_roadwork (likely false positives first), then failure risk."""

    min_orange_share: float = setting(0.02, help="Only samples at least this orange (share of orange pixels).", low=0.0, high=1.0)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _check_user(user: str) -> str:
    if not user or not user.strip():
        raise InputError("A label change needs a user name (set `user_name` in settings or CURATION_USER_NAME).")
    return user.strip()


def _rule_label(primitives: Any, source_label: dict[str, str] | None) -> str:
    names = [d.label for d in (primitives.detections if primitives else [])]
    says = None
    if source_label:
        values = set(source_label.values())
        says = True if schema.Label.ROADWORK in values else False if values else None
    return schema.derive_label(names, says)[0].value


def set_human_label(
    collection: foc.SampleCollection,
    *,
    label: str,
    user: str,
    reason: str,
    action: str,
    hn_category: str | None = None,
    extra_tags: tuple[str, ...] = (),
) -> int:
    """Set ``ground_truth`` by hand on every sample of ``collection``, with a history entry each."""
    import fiftyone as fo

    user = _check_user(user)
    if label not in (schema.Label.ROADWORK, schema.Label.NO_ROADWORK):
        raise InputError(f"`label` must be roadwork or no_roadwork; got {label!r}.")
    if hn_category is not None and hn_category not in schema.HN_CATEGORIES:
        raise InputError(
            f"`hn_category` must be one of {', '.join(schema.HN_CATEGORIES)}; got {hn_category!r}.{suggest(hn_category, schema.HN_CATEGORIES)}"
        )
    dataset = store.root_dataset(collection)
    ids, gts, origins, cats, histories, prims, sources, tags, slices, orange = collection.values(
        ["id", "ground_truth.label", "label_origin", "hn_category", "label_history", "primitives", "source_label", "tags",
         "slices", "orange_share"]
    )
    slice_rules = store.slice_config(dataset)
    when = _now()
    new_gt, new_hist, new_tags, new_slices = {}, {}, {}, {}
    for i, sid in enumerate(ids):
        rule = _rule_label(prims[i], sources[i])
        entry = {
            "action": action,
            "who": user,
            "when": when.isoformat(),
            "reason": reason,
            "previous": {"label": gts[i], "origin": origins[i], "hn_category": cats[i]},
            "new": {"label": label, "origin": schema.LABEL_ORIGIN_HUMAN, "hn_category": hn_category},
            "rule_label": rule,
        }
        new_gt[sid] = fo.Classification(label=label)
        new_hist[sid] = list(histories[i] or []) + [entry]
        keep = [t for t in (tags[i] or []) if t not in (schema.TAG_LABEL_CONFLICT, schema.TAG_EXCEPTION)]
        new_tags[sid] = sorted(set(keep) | set(extra_tags) | ({schema.TAG_EXCEPTION} if label != rule else set()))
        new_slices[sid] = _slices_for_label(slices[i], orange[i], label, slice_rules)
    for name, values in (
        ("ground_truth", new_gt),
        ("slices", new_slices),
        ("label_history", new_hist),
        ("tags", new_tags),
        ("label_origin", dict.fromkeys(ids, schema.LABEL_ORIGIN_HUMAN)),
        ("hn_category", dict.fromkeys(ids, hn_category)),
        ("labeled_by", dict.fromkeys(ids, user)),
        ("labeled_at", dict.fromkeys(ids, when)),
    ):
        store.set_values_by_id(dataset, name, values)
    _save_audit_view(dataset)
    return len(ids)


def _slices_for_label(slices: list[str] | None, orange_share: float | None, label: str, rules: SliceConfig) -> list[str]:
    """``orange_distractor`` is the one slice that depends on the label: keep it in step at once, so
    a corrected val/calib sample is evaluated in the right slice before any re-import. ``rules``
    are the dataset's own (:func:`curation.store.slice_config`)."""
    from curation.slices import SliceInputs, compute_slices

    others = [name for name in (slices or []) if name != "orange_distractor"]
    orange = compute_slices(SliceInputs(orange_share=orange_share, label=label), rules)
    return [name for name in schema.SLICES if name in others or name in orange]


def mark_hard_negative(collection: foc.SampleCollection, *, user: str, category: str, reason: str = "") -> int:
    """Orange-but-not-roadwork: ground truth no_roadwork, tag ``hard_negative``, category recorded."""
    return set_human_label(
        collection, label=schema.Label.NO_ROADWORK.value, user=user, reason=reason or f"hard negative: {category}",
        action="mark_hard_negative", hn_category=category, extra_tags=(schema.TAG_HARD_NEGATIVE,),
    )


def mark_roadwork(collection: foc.SampleCollection, *, user: str, reason: str = "missed positive") -> int:
    """A missed positive: ground truth roadwork by a human."""
    return set_human_label(collection, label=schema.Label.ROADWORK.value, user=user, reason=reason, action="mark_roadwork")


def undo_label(collection: foc.SampleCollection, *, user: str, reason: str = "undo") -> int:
    """Restore each sample's label from before its last human change (the undo is itself recorded)."""
    import fiftyone as fo

    user = _check_user(user)
    dataset = store.root_dataset(collection)
    ids, histories, tags, slices, orange = collection.values(["id", "label_history", "tags", "slices", "orange_share"])
    slice_rules = store.slice_config(dataset)
    when = _now()
    changed = 0
    columns: dict[str, dict[str, Any]] = {
        k: {} for k in ("ground_truth", "label_origin", "hn_category", "label_history", "tags", "labeled_by", "labeled_at", "slices")
    }
    for sid, history, sample_tags, sample_slices, share in zip(ids, histories, tags, slices, orange, strict=True):
        undoable = [e for e in (history or []) if e["action"] != "undo" and not e.get("undone")]
        if not undoable:
            continue
        last = undoable[-1]
        prev = last["previous"]
        last["undone"] = True
        history = list(history) + [{
            "action": "undo", "who": user, "when": when.isoformat(), "reason": reason,
            "previous": last["new"], "new": prev, "undoes": last["when"],
        }]
        columns["ground_truth"][sid] = fo.Classification(label=prev["label"]) if prev["label"] else None
        columns["label_origin"][sid] = prev["origin"]
        columns["hn_category"][sid] = prev["hn_category"]
        columns["label_history"][sid] = history
        drop = {schema.TAG_EXCEPTION} | ({schema.TAG_HARD_NEGATIVE} if last["action"] == "mark_hard_negative" else set())
        columns["tags"][sid] = [t for t in (sample_tags or []) if t not in drop]
        columns["labeled_by"][sid] = user
        columns["labeled_at"][sid] = when
        columns["slices"][sid] = _slices_for_label(sample_slices, share, prev["label"], slice_rules)
        changed += 1
    for name, values in columns.items():
        store.set_values_by_id(dataset, name, values)
    return changed


def accept_boxes(
    collection: foc.SampleCollection,
    *,
    user: str,
    sources: tuple[str, ...] = ("primitives_edit",),
    min_confidence: float = 0.0,
    reason: str = "accepted boxes",
) -> int:
    """Promote edited/proposed boxes into ``primitives`` (with history), then re-apply the label rule.

    ``primitives_edit`` (FiftyOne's annotation target) replaces ``primitives`` when present;
    proposals (``primitive_proposals``, ``sam_primitives``) are appended when their confidence
    reaches ``min_confidence``. ``ground_truth`` follows the label rule unless a human label stands.
    """
    import fiftyone as fo

    user = _check_user(user)
    unknown = [s for s in sources if s not in BOX_SOURCES]
    if unknown:
        raise InputError(f"Unknown box source {unknown[0]!r}; allowed: {', '.join(BOX_SOURCES)}.")
    dataset = store.root_dataset(collection)
    present = [s for s in sources if s in dataset.get_field_schema()]
    fields = ["id", "primitives", "ground_truth.label", "label_origin", "label_history", "source_label", *present]
    rows = collection.values(fields)
    when = _now()
    columns: dict[str, dict[str, Any]] = {"primitives": {}, "label_history": {}, "ground_truth": {}}
    for values in zip(*rows, strict=True):
        row = dict(zip(fields, values, strict=True))
        new = list(row["primitives"].detections) if row["primitives"] else []
        used = []
        for source in present:
            dets = row[source].detections if row[source] else []
            if not dets:
                continue
            if source == "primitives_edit":
                new = [d.copy() for d in dets]
            else:
                new += [d.copy() for d in dets if (d.confidence or 0.0) >= min_confidence]
            used.append(source)
        if not used:
            continue
        sid = row["id"]
        columns["primitives"][sid] = fo.Detections(detections=new)
        rule = _rule_label(columns["primitives"][sid], row["source_label"])
        if row["label_origin"] != schema.LABEL_ORIGIN_HUMAN:
            columns["ground_truth"][sid] = fo.Classification(label=rule)
        columns["label_history"][sid] = list(row["label_history"] or []) + [{
            "action": "accept_boxes", "who": user, "when": when.isoformat(), "reason": reason, "sources": used,
            "previous": {"label": row["ground_truth.label"], "n_boxes": len(row["primitives"].detections) if row["primitives"] else 0},
            "new": {"label": columns["ground_truth"].get(sid, fo.Classification(label=row["ground_truth.label"])).label, "n_boxes": len(new)},
        }]
    for name, values in columns.items():
        store.set_values_by_id(dataset, name, values)
    return len(columns["primitives"])


def batch_view(dataset: Any, tag: str) -> foc.SampleCollection:
    """The samples of one labeling batch: a mined ``hard:…`` or a "more like this" ``similar:…`` tag.

    Raises:
        InputError: ``tag`` is not a batch tag, or no sample carries it (the message lists the batches).
    """
    batches = sorted(t for t in dataset.distinct("tags") if t.startswith(schema.BATCH_TAG_PREFIXES))
    if not tag.startswith(schema.BATCH_TAG_PREFIXES):
        raise InputError(f"`{tag}` is not a labeling batch (tags starting {' or '.join(schema.BATCH_TAG_PREFIXES)}); batches: {', '.join(batches[-10:]) or 'none'}.")
    if tag not in batches:
        raise InputError(f"No sample of `{dataset.name}` is tagged `{tag}`; batches: {', '.join(batches[-10:]) or 'none'}.")
    return dataset.match_tags(tag)


def orange_candidates(collection: foc.SampleCollection, config: OrangeQueueConfig = OrangeQueueConfig()) -> foc.SampleCollection:
    """The labeler's queue of likely orange distractors, saved as ``labels/orange_candidates``.

    Order: ``orange_share × p_roadwork`` descending (orange images the model calls roadwork are
    the likeliest false positives), then ``failure_risk`` descending. Already-labeled hard
    negatives are left out.
    """
    from fiftyone import ViewField as F

    view = (
        collection.exists("stage1")
        .match(F("orange_share") >= config.min_orange_share)
        .match_tags(schema.TAG_HARD_NEGATIVE, bool=False)
        .sort_by([(F("orange_share") * F("stage1.p_roadwork"), -1), (F("failure_risk"), -1)])
    )
    store.root_dataset(collection).save_view(schema.ORANGE_VIEW, view, overwrite=True)
    return view


def _save_audit_view(dataset: Any) -> None:
    from fiftyone import ViewField as F

    evaluation = [s.value for s in schema.EVALUATION_SPLITS]
    view = dataset.match((F("label_origin") == schema.LABEL_ORIGIN_HUMAN) & F("split").is_in(evaluation))
    dataset.save_view(schema.AUDIT_VIEW, view.sort_by("labeled_at", reverse=True), overwrite=True)
