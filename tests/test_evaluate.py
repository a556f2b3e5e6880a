from __future__ import annotations

import math

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from curation import schema, store
from curation.evaluate.job import evaluate_predictions
from curation.stage1.metrics import slice_table

# (truth, predicted label, p_roadwork, slices, tags)
ROWS = [
    ("roadwork", "roadwork", 0.9, ["night"], []),       # TP
    ("roadwork", "roadwork", 0.8, [], []),              # TP
    ("roadwork", "no_roadwork", 0.3, ["night"], []),    # FN
    ("no_roadwork", "roadwork", 0.7, ["orange_distractor"], []),  # FP (conf 0.7)
    ("no_roadwork", "roadwork", 0.95, ["orange_distractor"], []),  # FP (conf 0.95)
    ("no_roadwork", "no_roadwork", 0.1, [], []),        # TN
    ("roadwork", "no_roadwork", 0.2, [], ["label_conflict"]),  # excluded
]


def _add(dataset):
    samples = []
    for i, (gt, label, p, slices, tags) in enumerate(ROWS):
        conf = p if label == "roadwork" else 1 - p
        samples.append(
            fo.Sample(
                filepath=f"/tmp/eval{i}.jpg",
                ground_truth=fo.Classification(label=gt),
                stage1=fo.Classification(label=label, confidence=conf, p_roadwork=p,
                                         logits=[math.log(1 - p), math.log(p)]),
                slices=slices, tags=tags, model_version="0.0.1",
            )
        )
    samples.append(fo.Sample(filepath="/tmp/eval_nopred.jpg", ground_truth=fo.Classification(label="roadwork")))
    return dataset.add_samples(samples)


def test_evaluation_matches_hand_counts(dataset):
    ids = _add(dataset)
    report = evaluate_predictions(dataset)
    # TP=2, FN=1, FP=2, TN=1 over the 6 scored samples
    tp, fn, fp, tn = 2, 1, 2, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert report.overall.n == 6
    assert report.overall.mcc == pytest.approx(mcc)
    assert report.overall.accuracy == pytest.approx(3 / 6)
    assert report.overall.precision == pytest.approx(2 / 4)
    assert report.overall.recall == pytest.approx(2 / 3)
    assert report.n_label_conflicts_excluded == 1
    assert report.n_missing == 1

    outcomes = dict(zip(dataset.values("id"), dataset.values("eval_stage1")))
    assert [outcomes[i] for i in ids[:6]] == ["TP", "TP", "FN", "FP", "FP", "TN"]
    assert outcomes[ids[6]] is None  # the conflict row is never scored

    by_name = {row.name: row for row in report.slices}
    assert by_name["night"].n == 2 and by_name["night"].recall == pytest.approx(0.5)
    assert by_name["orange_distractor"].n == 2 and by_name["orange_distractor"].precision == 0.0
    assert by_name["synthetic"].n == 0 and by_name["synthetic"].mcc is None  # n=0, never a metric of 0

    fps = dataset.load_saved_view(schema.FAILURE_VIEWS["FP"])
    assert fps.values("stage1.p_roadwork") == [0.95, 0.7]  # most confident mistake first
    assert dataset.load_saved_view(schema.FAILURE_VIEWS["FN"]).values("id") == [ids[2]]
    assert schema.FAILURE_WORKSPACE in dataset.list_workspaces()
    assert "eval_stage1" in dataset.list_evaluations()

    (run,) = store.list_runs(dataset, "evaluate")
    assert run["_id"] == report.run_id and run["model_version"] == "0.0.1"
    assert run["table"][0]["n"] == 6

    # the validator's windowed reward, under every contract, beside MCC (simulated; see test_reward_window.py)
    assert set(report.rewards) == {"streetvision-2025-11", "streetvision-2026-04", "streetvision-2026-05"} == set(run["rewards"])
    for r in report.rewards.values():
        assert 0.0 <= r["low"] <= r["mean"] <= r["high"] <= 1.0
    assert report.rewards["streetvision-2026-05"]["consensus_share"] == 0.1
    assert any("consensus assumed = truth" in line for line in report.reward_lines())


def test_rerun_overwrites_same_fields(dataset):
    _add(dataset)
    first = evaluate_predictions(dataset)
    second = evaluate_predictions(dataset)
    assert first.as_rows() == second.as_rows()
    assert dataset.list_evaluations() == ["eval_stage1"]


def test_missing_prediction_field_is_named(dataset):
    dataset.add_sample(fo.Sample(filepath="/tmp/x.jpg", ground_truth=fo.Classification(label="roadwork")))
    with pytest.raises(Exception, match="curation predict"):
        evaluate_predictions(dataset, pred_field="stage9")


def test_slice_table_pure():
    y = np.array([1, 1, 0, 0])
    yhat = np.array([1, 0, 0, 0])
    p = np.array([0.9, 0.4, 0.2, 0.1])
    overall, rows = slice_table(y, yhat, p, [["a"], ["a"], ["b"], []], slice_names=("a", "b", "c"))
    assert overall.mcc == pytest.approx(1 / math.sqrt(3))
    assert [r.n for r in rows] == [2, 1, 0]
    assert rows[0].recall == 0.5 and rows[0].mcc == 0.0  # single-class slice: MCC denominator 0 → 0
    assert rows[0].auroc is None  # one class: AUROC undefined, reported as None


def test_evidence_ceiling_replays_each_positive_query(dataset, tmp_path):
    """Level-0 queries of a 640×360 image keep x ∈ [140, 500): a centred box survives, an edge box does not."""
    from PIL import Image

    from curation.evaluate.job import evidence_ceiling
    from curation.stage1.validator_view import query_recipe, validator_seed

    def level0_hash(start: int) -> str:  # a content hash whose seed-0 query draws level 0
        return next(f"{k:064x}" for k in range(start, start + 1000) if query_recipe(validator_seed(f"{k:064x}", 0), 640, 360).level == 0)

    path = tmp_path / "frame.png"
    Image.new("RGB", (640, 360), "gray").save(path)
    centre, edge = [0.45, 0.4, 0.55, 0.6], [0.0, 0.4, 0.1, 0.6]
    boxes = {level0_hash(0): [centre], level0_hash(2000): [edge, centre], level0_hash(4000): [edge]}
    samples = [fo.Sample(filepath=str(path), content_hash=h, ground_truth=fo.Classification(label="roadwork")) for h in boxes]
    samples += [
        fo.Sample(filepath=str(path), content_hash="f" * 64, ground_truth=fo.Classification(label="roadwork")),  # no boxes
        fo.Sample(filepath=str(path), content_hash="e" * 64, ground_truth=fo.Classification(label="no_roadwork")),
    ]
    dataset.add_samples(samples)
    found = evidence_ceiling(dataset, seed=0, boxes_by_hash=boxes)
    assert (found.positives, found.kept, found.without_boxes) == (3, 2, 1)
    assert found.share_kept == pytest.approx(2 / 3)
    # The same from the dataset's own roadwork primitives (relative [x, y, w, h]); context classes do not count.
    for sample in dataset.match({"content_hash": {"$in": list(boxes)}}):
        dets = [fo.Detection(label="cone", bounding_box=[b[0], b[1], b[2] - b[0], b[3] - b[1]]) for b in boxes[sample.content_hash]]
        sample["primitives"] = fo.Detections(detections=dets + [fo.Detection(label="road", bounding_box=[0.3, 0.3, 0.4, 0.4])])
        sample.save()
    again = evidence_ceiling(dataset, seed=0)
    assert (again.positives, again.kept, again.without_boxes) == (3, 2, 1)


def test_shortcut_checks_flag_a_brightness_shortcut_on_stored_images_and_every_contract(dataset, tmp_path):
    """Positives bright, negatives dark: the label follows brightness in every view of the images
    (as stored, and as each contract renders them); constant cues report no signal, not 0.5."""
    from curation.evaluate.job import shortcut_checks

    rng = np.random.default_rng(0)
    samples = []
    for i in range(16):
        positive = i % 2 == 0
        pixels = rng.integers(150, 256, (90, 160, 3)) if positive else rng.integers(0, 100, (90, 160, 3))
        path = tmp_path / f"s{i}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
        label = "roadwork" if positive else "no_roadwork"
        predicted = label if i % 4 else ("no_roadwork" if positive else "roadwork")  # every 4th wrong
        samples.append(fo.Sample(filepath=str(path), ground_truth=fo.Classification(label=label),
                                 stage1=fo.Classification(label=predicted, p_roadwork=0.5)))
    dataset.add_samples(samples)
    by_view = shortcut_checks(dataset)
    assert set(by_view) == {"stored", "streetvision-2025-11", "streetvision-2026-04", "streetvision-2026-05"}
    for name, rows in by_view.items():
        cues = {r.cue: r for r in rows}
        assert cues["brightness"].label_auroc == 1.0 and cues["brightness"].flagged, name
        assert cues["brightness"].n == 16
    stored = {r.cue: r for r in by_view["stored"]}
    assert stored["jpeg_quality"].label_auroc is None  # every file saved at 90: constant, no signal
    native = {r.cue: r for r in by_view["streetvision-2026-05"]}
    assert native["megapixels"].label_auroc is None  # native size kept for every image


def test_contract_table_scores_one_model_on_each_contracts_queries(dataset, tmp_path):
    """A real (untrained) Stage-1 whose threshold sits at ~0 calls every query roadwork, whatever
    the rendering: accuracy is then the positive share, FPR 1 and MCC 0 under every contract."""
    from curation.evaluate.job import contract_table
    from curation.stage1.model import Stage1Config, Stage1Model

    rng = np.random.default_rng(2)
    samples = []
    for i in range(9):
        path = tmp_path / f"c{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (108, 192, 3)).astype(np.uint8)).save(path, quality=90)
        label = "roadwork" if i < 3 else "no_roadwork"
        samples.append(fo.Sample(filepath=str(path), ground_truth=fo.Classification(label=label), tags=["label_conflict"] if i == 8 else []))
    dataset.add_samples(samples)
    model = Stage1Model.build(Stage1Config())
    model.set_calibration(threshold=1e-6, temperature=1.0)
    rows = contract_table(dataset, model)
    assert [r.contract for r in rows] == ["streetvision-2025-11", "streetvision-2026-04", "streetvision-2026-05"]
    for r in rows:
        assert r.n == 8  # the label_conflict sample is left out
        assert r.accuracy == pytest.approx(3 / 8) and r.fpr == 1.0 and r.mcc == 0.0
        assert 0.0 <= r.reward["mean"] <= 1.0
    assert contract_table(dataset, model) == rows  # same images, same seeds: the same answers
