from __future__ import annotations

import fiftyone as fo
import pytest

from curation import schema
from curation.errors import InputError
from curation.label.human_labels import (
    accept_boxes,
    mark_hard_negative,
    mark_roadwork,
    orange_candidates,
    undo_label,
)


def _det(label, conf=None):
    return fo.Detection(label=label, bounding_box=[0.1, 0.1, 0.2, 0.2], confidence=conf)


@pytest.fixture
def labeled(dataset):
    dataset.add_samples([
        fo.Sample(filepath="/tmp/l0.jpg", split="train", ground_truth=fo.Classification(label="roadwork"),
                  label_origin="rule", source_label={"natix": "roadwork"}, orange_share=0.3,
                  stage1=fo.Classification(label="roadwork", p_roadwork=0.9), failure_risk=0.2),
        fo.Sample(filepath="/tmp/l1.jpg", split="val", ground_truth=fo.Classification(label="no_roadwork"),
                  label_origin="rule", source_label={"natix": "no_roadwork"}, tags=["label_conflict"],
                  orange_share=0.5, stage1=fo.Classification(label="no_roadwork", p_roadwork=0.3), failure_risk=0.9),
        fo.Sample(filepath="/tmp/l2.jpg", split="train", ground_truth=fo.Classification(label="no_roadwork"),
                  label_origin="rule", primitives=fo.Detections(detections=[_det("road")]),
                  primitive_proposals=fo.Detections(detections=[_det("cone", 0.9), _det("drum", 0.2)]),
                  orange_share=0.01, stage1=fo.Classification(label="roadwork", p_roadwork=0.95), failure_risk=0.1),
    ])
    return dataset


def _by_path(ds):
    return {s.filepath: s for s in ds}


def test_hard_negative_records_history_and_exception(labeled):
    n = mark_hard_negative(labeled.match({"filepath": "/tmp/l0.jpg"}), user="ana", category="ad", reason="billboard")
    assert n == 1
    s = _by_path(labeled)["/tmp/l0.jpg"]
    assert s.ground_truth.label == "no_roadwork" and s.label_origin == "human"
    assert s.hn_category == "ad" and s.labeled_by == "ana" and s.labeled_at is not None
    assert schema.TAG_HARD_NEGATIVE in s.tags
    assert schema.TAG_EXCEPTION in s.tags  # the source said roadwork: the human overrides the rule
    (entry,) = s.label_history
    assert entry["previous"] == {"label": "roadwork", "origin": "rule", "hn_category": None}
    assert entry["new"]["label"] == "no_roadwork" and entry["who"] == "ana" and entry["reason"] == "billboard"
    assert entry["rule_label"] == "roadwork"


def test_human_label_clears_conflict_and_lands_in_audit_view(labeled):
    mark_roadwork(labeled.match({"filepath": "/tmp/l1.jpg"}), user="bo")
    s = _by_path(labeled)["/tmp/l1.jpg"]
    assert "label_conflict" not in s.tags and s.ground_truth.label == "roadwork"
    assert labeled.load_saved_view(schema.AUDIT_VIEW).values("filepath") == ["/tmp/l1.jpg"]  # val corrections are audited


def test_undo_restores_previous_label_and_keeps_trace(labeled):
    target = labeled.match({"filepath": "/tmp/l0.jpg"})
    mark_hard_negative(target, user="ana", category="vest")
    assert undo_label(target, user="cy") == 1
    s = _by_path(labeled)["/tmp/l0.jpg"]
    assert s.ground_truth.label == "roadwork" and s.label_origin == "rule" and s.hn_category is None
    assert schema.TAG_HARD_NEGATIVE not in s.tags and schema.TAG_EXCEPTION not in s.tags
    assert [e["action"] for e in s.label_history] == ["mark_hard_negative", "undo"]
    assert s.label_history[0]["undone"] is True
    assert undo_label(target, user="cy") == 0  # nothing left to undo


def test_bad_inputs_are_named(labeled):
    with pytest.raises(InputError, match="Did you mean `crane`"):
        mark_hard_negative(labeled, user="ana", category="crain")
    with pytest.raises(InputError, match="user name"):
        mark_roadwork(labeled, user=" ")
    with pytest.raises(InputError, match="box source"):
        accept_boxes(labeled, user="ana", sources=("boxes",))


def test_accept_boxes_applies_label_rule_unless_human(labeled):
    n = accept_boxes(labeled, user="ana", sources=("primitive_proposals",), min_confidence=0.5)
    assert n == 1
    s = _by_path(labeled)["/tmp/l2.jpg"]
    assert sorted(d.label for d in s.primitives.detections) == ["cone", "road"]  # drum below 0.5 dropped
    assert s.ground_truth.label == "roadwork"  # the rule now sees a cone
    assert s.label_history[-1]["action"] == "accept_boxes"

    mark_hard_negative(labeled.match({"filepath": "/tmp/l2.jpg"}), user="ana", category="other")
    accept_boxes(labeled, user="ana", sources=("primitive_proposals",), min_confidence=0.0)
    assert _by_path(labeled)["/tmp/l2.jpg"].ground_truth.label == "no_roadwork"  # human label stands


def test_orange_queue_orders_likely_false_positives_first(labeled):
    view = orange_candidates(labeled)
    # scores: l0 0.3×0.9=0.27, l1 0.5×0.3=0.15; l2 below the orange floor
    assert view.values("filepath") == ["/tmp/l0.jpg", "/tmp/l1.jpg"]
    assert labeled.load_saved_view(schema.ORANGE_VIEW).values("filepath") == ["/tmp/l0.jpg", "/tmp/l1.jpg"]


def test_label_cli_queue_and_changes(labeled, settings, monkeypatch):
    from typer.testing import CliRunner

    from curation.cli import app

    monkeypatch.setenv("CURATION_DATASET_NAME", labeled.name)
    monkeypatch.setenv("CURATION_USER_NAME", "dee")
    runner = CliRunner()
    out = runner.invoke(app, ["label", "orange-candidates"], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    first, second = [line.split()[0] for line in out.output.splitlines()[:2]]
    by_path = {s.filepath: s.id for s in labeled}
    assert [first, second] == [by_path["/tmp/l0.jpg"], by_path["/tmp/l1.jpg"]]

    out = runner.invoke(app, ["label", "hard-negative", first, "--category", "ad"])
    assert out.exit_code == 0 and labeled[first].labeled_by == "dee"
    out = runner.invoke(app, ["label", "hard-negative", "ffffffffffffffffffffffff", "--category", "ad"])
    assert out.exit_code == 2 and "No sample with id" in out.output
    out = runner.invoke(app, ["label", "undo", first])
    assert out.exit_code == 0 and labeled[first].ground_truth.label == "roadwork"


def test_relabeling_moves_a_sample_in_and_out_of_the_orange_distractor_slice(dataset):
    dataset.add_samples([fo.Sample(filepath="/tmp/s0.jpg", split="val", ground_truth=fo.Classification(label="roadwork"),
                                   orange_share=0.3, slices=["night"]),
                         fo.Sample(filepath="/tmp/s1.jpg", split="val", ground_truth=fo.Classification(label="roadwork"),
                                   orange_share=0.001, slices=[])])
    mark_hard_negative(dataset, user="ann", category="ad")
    assert dict(zip(*dataset.values(["filepath", "slices"]))) == {"/tmp/s0.jpg": ["night", "orange_distractor"], "/tmp/s1.jpg": []}
    mark_roadwork(dataset, user="ann")
    assert dict(zip(*dataset.values(["filepath", "slices"]))) == {"/tmp/s0.jpg": ["night"], "/tmp/s1.jpg": []}
    undo_label(dataset, user="ann")  # back to the hard negative
    assert dict(zip(*dataset.values(["filepath", "slices"])))["/tmp/s0.jpg"] == ["night", "orange_distractor"]


def test_relabeling_uses_the_slice_rules_the_dataset_was_imported_with(dataset):
    """With an import's stricter rule (orange share ≥ 0.10), a 6%-orange hard negative is not an
    orange_distractor, although the default rule (≥ 0.04) would put it there."""
    from curation import store
    from curation.slices import SliceConfig

    store.record_slice_config(dataset, SliceConfig(orange_share=0.10))
    dataset.add_samples([
        fo.Sample(filepath="/tmp/r0.jpg", split="val", ground_truth=fo.Classification(label="roadwork"), orange_share=0.06),
        fo.Sample(filepath="/tmp/r1.jpg", split="val", ground_truth=fo.Classification(label="roadwork"), orange_share=0.12),
    ])
    mark_hard_negative(dataset, user="ann", category="ad")
    assert dict(zip(*dataset.values(["filepath", "slices"]))) == {"/tmp/r0.jpg": [], "/tmp/r1.jpg": ["orange_distractor"]}
    mark_roadwork(dataset, user="ann")
    undo_label(dataset, user="ann")
    assert dict(zip(*dataset.values(["filepath", "slices"]))) == {"/tmp/r0.jpg": [], "/tmp/r1.jpg": ["orange_distractor"]}
