"""The demo's scripted labeler: answers from the corpus's hidden ``truth.csv``, and says so.

It stands in for a person in ``curation demo`` only. Every label it writes goes through the same
labeling functions a person's clicks do (history, hard-negative tags, categories), under the user
name :data:`SCRIPTED_USER`, so nobody mistakes its labels for human ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from curation import schema, store
from curation.errors import InputError
from curation.label import human_labels

if TYPE_CHECKING:
    import fiftyone.core.collections as foc

SCRIPTED_USER = "scripted-demo-labeler"
REASON = "scripted demo labeler: answer read from the corpus's hidden truth.csv"


@dataclass(frozen=True)
class ScriptedLabels:
    hard_negatives: int
    roadwork: int
    unchanged: int
    unknown: int  # samples whose image is not in truth.csv


def load_truth(truth_csv: Path) -> pd.DataFrame:
    if not truth_csv.is_file():
        raise InputError(f"{truth_csv} does not exist: the scripted labeler needs the demo corpus's truth.csv.")
    truth = pd.read_csv(truth_csv, keep_default_na=False)
    return truth.drop_duplicates("sha256").set_index("sha256")


def truth_boxes(truth_csv: Path) -> dict[str, list[list[float]]]:
    """Content hash → relative roadwork boxes ``[x0, y0, x1, y1]`` of every image the corpus drew."""
    import json

    truth = load_truth(truth_csv)
    if "roadwork_boxes" not in truth.columns:
        raise InputError(f"{truth_csv} has no `roadwork_boxes` column: rewrite the corpus with `curation demo-data`.")
    return {digest: json.loads(text) for digest, text in truth["roadwork_boxes"].items() if text}


def label_like_a_person(collection: foc.SampleCollection, truth_csv: Path) -> ScriptedLabels:
    """Correct each sample's ground truth where it disagrees with the hidden truth.

    Negatives with a distractor category become hard negatives of that category (``other`` when
    the corpus gave none); missed positives become roadwork.
    """
    truth = load_truth(truth_csv)
    ids, hashes, labels, origins, categories = collection.values(
        ["id", "content_hash", "ground_truth.label", "label_origin", "hn_category"]
    )
    hard: dict[str, list[str]] = {}
    positives, unchanged, unknown = [], 0, 0
    for sample_id, digest, label, origin, current in zip(ids, hashes, labels, origins, categories, strict=True):
        if digest not in truth.index:
            unknown += 1
            continue
        row = truth.loc[digest]
        is_roadwork = int(row["is_roadwork"]) == 1
        category = row["hn_category"] if row["hn_category"] in schema.HN_CATEGORIES else "other"
        answered = origin == schema.LABEL_ORIGIN_HUMAN  # already answered this way: a re-run changes nothing
        if is_roadwork and label != schema.Label.ROADWORK:
            positives.append(sample_id)
        elif not is_roadwork and (label != schema.Label.NO_ROADWORK or (row["hn_category"] and not (answered and current == category))):
            hard.setdefault(category, []).append(sample_id)
        else:
            unchanged += 1
    dataset = store.root_dataset(collection)
    for category, members in hard.items():
        human_labels.mark_hard_negative(dataset.select(members), user=SCRIPTED_USER, category=category, reason=REASON)
    if positives:
        human_labels.mark_roadwork(dataset.select(positives), user=SCRIPTED_USER, reason=REASON)
    return ScriptedLabels(sum(map(len, hard.values())), len(positives), unchanged, unknown)
