from __future__ import annotations

import pytest

from curation import schema
from curation.schema import Label, Split, derive_label, resolve_split


@pytest.mark.parametrize(
    ("labels", "source", "expected"),
    [
        ([], None, (Label.NO_ROADWORK, False)),
        ([], True, (Label.ROADWORK, False)),
        ([], False, (Label.NO_ROADWORK, False)),
        (["cone"], None, (Label.ROADWORK, False)),
        (["cone"], True, (Label.ROADWORK, False)),
        (["cone"], False, (Label.ROADWORK, True)),  # boxes and source disagree: tagged
        (["road", "sidewalk", "police_vehicle"], False, (Label.NO_ROADWORK, False)),
        (["road", "bike_lane"], True, (Label.ROADWORK, False)),
    ],
)
def test_label_rule(labels, source, expected):
    assert derive_label(labels, source) == expected


def test_every_roadwork_primitive_triggers_the_rule():
    for name in schema.ROADWORK_PRIMITIVES:
        assert derive_label([name], None)[0] is Label.ROADWORK
    for name in schema.CONTEXT_CLASSES:
        assert derive_label([name], None)[0] is Label.NO_ROADWORK


def test_split_precedence_test_wins_over_everything():
    assert resolve_split(["train", "test", "pool"]) is Split.TEST
    assert resolve_split(["val", "calib"]) is Split.CALIB
    assert resolve_split(["pool", "train"]) is Split.TRAIN
    assert resolve_split(["pool"]) is Split.POOL
    with pytest.raises(ValueError):
        resolve_split([])
    with pytest.raises(ValueError):
        resolve_split(["validation"])


def test_field_table_is_consistent():
    names = [f.name for f in schema.FIELDS]
    assert len(names) == len(set(names)), "duplicate field names"
    for f in schema.FIELDS:
        assert (f.kind == "list") == (f.element is not None), f.name
        assert f.doc
    assert set(schema.SLICES) >= {"night", "orange_distractor", "synthetic"}
    assert not set(schema.ROADWORK_PRIMITIVES) & set(schema.CONTEXT_CLASSES)
