"""The plugin's Stage-1 and labeling operators through FiftyOne's execute_operator."""

from __future__ import annotations

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from curation.app import operators as cops
from curation.app.server import run_queued


@pytest.fixture
def app_dataset(settings, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("CURATION_USER_NAME", "labeler-1")
    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    cops.configure_plugins(settings)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(6):
        path = tmp_path / f"op{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
        samples.append(fo.Sample(filepath=str(path), split="val" if i < 4 else "train",
                                 ground_truth=fo.Classification(label="roadwork" if i % 2 else "no_roadwork"),
                                 label_origin="rule", orange_share=0.1 * i))
    dataset.add_samples(samples)
    return dataset


def test_predict_then_evaluate_through_the_operators(app_dataset):
    result = cops.execute("predict_stage1", app_dataset, {"model": "tiny-random", "batch_size": 4})
    assert result["n_predicted"] == 6 and result["trained"] is False
    assert "UNTRAINED" in result["summary"]
    assert app_dataset.exists("stage1_views").count() == 6

    result = cops.execute("evaluate_stage1", app_dataset)
    labels = app_dataset.values("ground_truth.label")
    preds = app_dataset.values("stage1.label")
    accuracy = np.mean([a == b for a, b in zip(labels, preds, strict=True)])
    assert result["rows"][0]["n"] == 6
    assert result["rows"][0]["accuracy"] == pytest.approx(accuracy)
    assert "| overall | 6 |" in result["summary"]


def test_predict_queued_and_run_by_worker_on_a_view(app_dataset):
    view = app_dataset.match({"split": "train"})
    queued = cops.execute("predict_stage1", view, {"model": "tiny-random"}, delegate=True)
    assert queued["run_state"] == "queued"
    assert app_dataset.exists("stage1").count() == 0
    run_queued(log=False)
    app_dataset.reload()
    assert app_dataset.exists("stage1").count() == 2  # only the targeted view


def test_labeling_operators_record_the_configured_user(app_dataset):
    first = app_dataset.first()
    target = app_dataset.select(first.id)
    out = cops.execute("mark_hard_negative", target, {"category": "foliage", "reason": "autumn trees"})
    assert out["summary"] == "Marked 1 hard negatives (foliage)."
    sample = app_dataset[first.id]
    assert sample.labeled_by == "labeler-1" and sample.hn_category == "foliage"
    assert "hard_negative" in sample.tags
    cops.execute("undo_label", target)
    assert app_dataset[first.id].hn_category is None

    cops.execute("mark_roadwork", target, {"reason": "cone behind car"})
    assert app_dataset[first.id].ground_truth.label == "roadwork"
    assert [e["action"] for e in app_dataset[first.id].label_history] == ["mark_hard_negative", "undo", "mark_roadwork"]


def test_mark_hard_negative_requires_a_known_category(app_dataset):
    with pytest.raises(Exception):
        cops.execute("mark_hard_negative", app_dataset.limit(1), {"category": "billboardz"})
    assert app_dataset.match_tags("hard_negative").count() == 0


def test_synthesize_operator_with_tiny_generator_is_never_admitted(app_dataset):
    out = cops.execute(
        "synthesize", app_dataset, {"model": "tiny-random", "mode": "text2img", "count": 2, "steps": 2, "size": 64, "seed": 3}
    )
    assert out["random_weights"] is True and out["split"] is None
    added = app_dataset.select(out["added"])
    assert len(added) == 2
    assert set(added.values("generator_random_weights")) == {True}
    assert "not_admitted" in added.count_sample_tags()
    assert app_dataset.match({"split": "train"}).match({"generator_random_weights": True}).count() == 0
