"""Retrain-and-export end to end on a small demo corpus: promotion, refusal, force, resume, atomicity."""

from __future__ import annotations

import json
import shutil

import pytest

from curation import store
from curation.demo.corpus import CorpusSpec, write_corpus
from curation.errors import CurationError
from curation.retrain.job import RetrainConfig, run_retrain
from curation.stage1.promotion import PromotionRule, decide_promotion
from curation.stage1.train import TrainConfig
from curation.store import registry


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, CorpusSpec(n_natix_train=120, n_natix_test=6, n_roadwork=8, n_roboflow=4, n_queries=2, seed=5))
    return root


CONFIG = RetrainConfig(
    head_train=TrainConfig(mode="head", epochs=4, batch_size=64, augmentations=1, lr=5e-3),
    promotion=PromotionRule(bootstrap=200, min_slice_n=5),
)


def test_promote_refuse_resume_force_and_restore(settings, loaded, monkeypatch):
    import curation.export.bundle as bundle
    import curation.retrain.job as retrain
    from curation.label.human_labels import mark_hard_negative
    from curation.serving_config import ServingConfig

    # 1. No champion yet: the first trained model is promoted, exported and registered.
    first = run_retrain(settings, CONFIG)
    assert first.promoted and first.version == "0.1.0"
    assert registry.champion_version(settings) == "0.1.0"
    version_dir = registry.version_dir(settings, "0.1.0")
    assert (version_dir / "stage1.json").is_file() and (version_dir / "gate.json").is_file()
    assert (first.bundle_dir / "config.json").is_file() and (first.bundle_dir / "model_card.json").is_file()
    assert first.report_path.is_file() and (first.run_dir / "pr_curve.png").is_file()
    report_md = first.report_path.read_text()
    assert "| streetvision-2026-05 |" in report_md and "Expected validator reward on calib" in report_md  # reward beside MCC
    snapshot = first.run_dir / "snapshot"
    assert len((snapshot / "labels.jsonl").read_text().splitlines()) == len(loaded)
    assert json.loads((snapshot / "manifest.json").read_text())["n_samples"] == len(loaded)
    assert first.training_counts["n"] == store.training_view(loaded).count()
    # The version keeps what `curation export` / `publish` need later: metrics, data summary, model name.
    assert json.loads((version_dir / "metrics.json").read_text())["calibration"]["threshold"] == pytest.approx(
        json.loads((version_dir / "stage1.json").read_text())["config"]["threshold"]
    )
    assert json.loads((version_dir / "data_summary.json").read_text())["n"] == first.training_counts["n"]
    from curation.export.bundle import export_registered

    again = export_registered(settings, "0.1.0", settings.home / "re-export")
    assert json.loads((again / "model_card.json").read_text())["model_name"] == CONFIG.model_name
    readme = (again / "README.md").read_text()
    assert "No metrics were recorded" not in readme and "calib" in readme

    # 2. The snapshot restores labels changed afterwards.
    before = dict(zip(loaded.values("id"), loaded.values("ground_truth.label")))
    mark_hard_negative(loaded.match({"ground_truth.label": "roadwork"}).limit(3), user="ana", category="ad")
    assert store.restore_fields(loaded, snapshot / "labels.jsonl") == len(loaded)
    assert dict(zip(loaded.values("id"), loaded.values("ground_truth.label"))) == before
    assert loaded.match_tags("hard_negative").count() == 0

    # 3. A run killed mid-export leaves no version; resuming it does not retrain.
    monkeypatch.setattr(bundle, "export_bundle", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):
        run_retrain(settings, CONFIG, run_name="r2")
    assert registry.list_versions(settings) == ["0.1.0"]
    assert not any(p.name.startswith(".") for p in settings.registry_root.iterdir())
    monkeypatch.undo()
    monkeypatch.setattr(retrain, "train_challenger", lambda *a, **k: pytest.fail("resume must not retrain"))
    served_as = []  # the champion is scored like the challenger, on the plain path, whatever serving is configured
    real_resolve = registry.resolve_model
    monkeypatch.setattr(registry, "resolve_model", lambda s, spec, **kw: served_as.append(s.stage1_serving) or real_resolve(s, spec, **kw))
    second = run_retrain(settings.replace(stage1_serving=ServingConfig(device="cpu", dtype="bfloat16")), CONFIG, run_name="r2")
    monkeypatch.undo()
    assert served_as == [None]

    # 4. Same data, same seed: no better than the champion, so it is registered but refused.
    assert not second.promoted and second.version == "0.2.0"
    assert registry.champion_version(settings) == "0.1.0"
    assert "0.2.0" in registry.list_versions(settings)
    assert any("no significant" in r for r in second.reasons)

    # 5. --force promotes anyway, and the run record says so.
    forced = run_retrain(settings, dataclass_replace(CONFIG, force=True))
    assert forced.promoted and any("FORCED" in r for r in forced.reasons)
    assert registry.champion_version(settings) == "0.3.0"
    runs = store.list_runs(loaded, "retrain")
    assert [r["version"] for r in runs] == ["0.3.0", "0.2.0", "0.1.0"] and runs[0]["force"] is True


def test_samples_whose_image_is_gone_are_left_out_and_said(settings, loaded):
    """A database that outlived its media store: retrain goes on without those samples and says so."""
    from pathlib import Path

    from rich.console import Console

    train = store.training_view(loaded)
    n_train = train.count()
    gone = [train.first().filepath, loaded.match({"split": "calib"}).first().filepath]
    for path in gone:
        Path(path).unlink()
    console = Console(record=True, width=400)
    result = run_retrain(settings, CONFIG, console=console)
    text = console.export_text()
    assert "1 training samples have no image file" in text and "1 evaluation samples have no image file" in text
    state = json.loads((result.run_dir / "state.json").read_text())
    assert state["done"]["training_set"]["n"] == n_train - 1


def test_recalibrated_scores_equal_a_second_forward(dataset, tmp_path):
    """Retrain recalibrates val answers from stored raw logits instead of predicting val again."""
    import fiftyone as fo
    import numpy as np
    from PIL import Image

    from curation.evaluate.queries import score_queries
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model
    from curation.stage1.views import ViewPolicy

    rng = np.random.default_rng(0)
    samples = []
    for i in range(6):
        path = tmp_path / f"v{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
        samples.append(fo.Sample(filepath=str(path), split="val", content_hash=f"h{i}",
                                 ground_truth=fo.Classification(label="roadwork" if i % 2 else "no_roadwork")))
    dataset.add_samples(samples)
    model = Stage1Model.build(Stage1Config(views=ViewPolicy(grid=2, flip=True, size=32)), backbone=tiny_random_backbone(seed=0))
    before = score_queries(model, dataset, seed=0)
    model.set_calibration(threshold=0.37, temperature=1.7)
    again = score_queries(model, dataset, seed=0)
    recalibrated = before.recalibrated(model.config)
    assert recalibrated.feature_names == again.feature_names and "flip_consistency" in again.feature_names
    # The forward path applies the temperature in float32; recalibration does it in float64.
    np.testing.assert_allclose(recalibrated.p, again.p, atol=1e-6)
    np.testing.assert_allclose(recalibrated.features, again.features, atol=1e-6)
    assert not np.allclose(before.p, again.p)  # the calibration did change the answers


def test_single_class_slices_are_judged_on_accuracy():
    """orange_distractor holds only negatives: MCC is 0 for every model, so 1 − FPR decides."""
    rule = PromotionRule(min_slice_n=10, max_slice_regression=0.05, targeted_slices=("orange_distractor",))

    def rows(overall, orange_fpr):
        return {"overall": {"n": 200, "positives": 100, "mcc": overall, "accuracy": 0.7},
                "orange_distractor": {"n": 11, "positives": 0, "mcc": 0.0, "accuracy": 1.0 - orange_fpr}}

    # FPR 0.909 → 0.455 with calib MCC flat: the targeted slice justifies promotion.
    ok, why = decide_promotion(rows(0.18, 0.455), rows(0.18, 0.909), (0.0, -0.07, 0.07), rule)
    assert ok and "orange_distractor (accuracy 0.091 → 0.545)" in why[-1]
    # The same slice getting worse by more than the margin blocks even a significant MCC gain.
    ok, why = decide_promotion(rows(0.30, 0.909), rows(0.18, 0.455), (0.12, 0.02, 0.2), rule)
    assert not ok and "orange_distractor (accuracy 0.545 → 0.091)" in why[-1]


def test_promotion_rule_blocks_slice_regressions():
    rule = PromotionRule(min_slice_n=10, max_slice_regression=0.05, targeted_slices=("orange_distractor",))

    def rows(overall, night, orange, n_night=50):
        return {"overall": {"n": 200, "mcc": overall}, "night": {"n": n_night, "mcc": night}, "orange_distractor": {"n": 30, "mcc": orange}}

    ok, why = decide_promotion(rows(0.8, 0.7, 0.6), rows(0.7, 0.7, 0.6), (0.1, 0.02, 0.18), rule)
    assert ok and "beyond its confidence interval" in why[-1]
    ok, why = decide_promotion(rows(0.8, 0.6, 0.6), rows(0.7, 0.7, 0.6), (0.1, 0.02, 0.18), rule)
    assert not ok and "night" in why[-1]
    ok, _ = decide_promotion(rows(0.8, 0.6, 0.6, n_night=5), rows(0.7, 0.7, 0.6, n_night=5), (0.1, 0.02, 0.18), rule)
    assert ok  # a 5-sample slice never blocks
    ok, why = decide_promotion(rows(0.695, 0.7, 0.7), rows(0.7, 0.7, 0.6), (-0.005, -0.05, 0.04), rule)
    assert ok and "orange_distractor" in why[-1]
    ok, _ = decide_promotion(rows(0.65, 0.7, 0.7), rows(0.7, 0.7, 0.6), (-0.05, -0.1, 0.0), rule)
    assert not ok  # beyond tolerance
    assert decide_promotion(rows(0.1, 0.1, 0.1), None, None, rule)[0]


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_retrain_button_is_queued_and_run_by_the_worker(settings, loaded, tmp_path):
    """The lead's button: always delegated, executed by the worker, promotes the first model."""
    from curation.app import operators as cops
    from curation.app.server import run_queued

    pipeline = tmp_path / "retrain.yaml"
    pipeline.write_text(
        "job: retrain_export\nhead_train: {mode: head, epochs: 3, batch_size: 64, augmentations: 1}\n"
        "promotion: {bootstrap: 100, min_slice_n: 5}\n"
    )
    cops.configure_plugins(settings)
    queued = cops.execute("retrain_and_export", loaded, {"pipeline": str(pipeline)})
    assert queued["run_state"] == "queued"  # even without asking: training outlives the App's 600 s
    import fiftyone.operators.delegated as food

    run_queued(log=False)
    done = food.DelegatedOperationService().get(queued["id"])
    assert done.run_state == "completed", (done.result.error, done.result.error_message)
    assert done.result.result["promoted"] is True
    assert registry.champion_version(settings) == done.result.result["version"] == "0.1.0"


def test_one_retrain_per_registry_at_a_time(settings, loaded):
    from curation.errors import CurationError

    lock = f"retrain:{settings.registry_root.resolve()}"
    assert store.acquire_lock(lock, "the-app-worker", ttl_s=60)
    try:
        with pytest.raises(CurationError, match="Another retrain holds the registry lock"):
            run_retrain(settings, CONFIG)
        assert registry.list_versions(settings) == [] and not (settings.runs_root / "retrain").exists()
    finally:
        store.release_lock(lock, "the-app-worker")


def test_resume_keeps_its_version_and_config_and_export_off_still_registers(settings, loaded, monkeypatch):
    import curation.export.bundle as bundle
    from curation.errors import ConfigError, CurationError

    # A named run killed at export has reserved 0.1.0 in its state.
    monkeypatch.setattr(bundle, "export_bundle", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):
        run_retrain(settings, CONFIG, run_name="r1")
    monkeypatch.undo()
    with pytest.raises(CurationError, match="started with another configuration"):
        run_retrain(settings, dataclass_replace(CONFIG, hard_negative_weight=3.0), run_name="r1")
    # Export off: the version is still registered (a promotion always names a registered version).
    quiet = run_retrain(settings, dataclass_replace(CONFIG, export=False))
    assert quiet.version == "0.1.0" and quiet.promoted and quiet.bundle_dir is None
    assert registry.champion_version(settings) == "0.1.0"
    assert not (registry.version_dir(settings, "0.1.0") / "bundle").exists()
    # r1's version is taken now: resuming it is refused instead of registering 0.2.0 with 0.1.0 inside.
    with pytest.raises(CurationError, match=r"0\.1\.0 is already registered \(run `r1` finished, or another run"):
        run_retrain(settings, CONFIG, run_name="r1")
    assert registry.list_versions(settings) == ["0.1.0"]
    with pytest.raises(ConfigError, match=r"unknown slice 'orange_distractors'.*Did you mean `orange_distractor`"):
        PromotionRule(targeted_slices=("orange_distractors",))
    with pytest.raises(ConfigError, match=r"`version` must look like X\.Y\.Z.*'1\.2'"):
        RetrainConfig(version="1.2")  # refused at load time, not after training
    # A saved model under a non-version name in the registry is not a version: the next one is 0.2.0.
    shutil.copytree(registry.version_dir(settings, "0.1.0"), settings.registry_root / "experiment-a")
    from curation.retrain.job import next_version

    assert next_version(settings) == "0.2.0"


def test_a_killed_unnamed_run_of_another_config_is_moved_aside(settings, loaded, monkeypatch):
    import curation.export.bundle as bundle

    monkeypatch.setattr(bundle, "export_bundle", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):
        run_retrain(settings, CONFIG)
    monkeypatch.undo()
    other = dataclass_replace(CONFIG, hard_negative_weight=3.0)
    result = run_retrain(settings, other)
    assert result.version == "0.1.0" and registry.champion_version(settings) == "0.1.0"
    state = json.loads((result.run_dir / "state.json").read_text())
    assert state["done"]["start"]["config"]["hard_negative_weight"] == 3.0  # trained afresh, not the killed run's model
    (aside,) = (settings.runs_root / "retrain").glob("0.1.0.abandoned-*")
    assert json.loads((aside / "state.json").read_text())["done"]["start"]["config"]["hard_negative_weight"] == 2.0


def test_a_contract_in_settings_is_what_the_challenger_trains_and_is_judged_on(settings, loaded):
    """settings.query_policy reaches the feature cache (its key) and the calibration/promotion
    queries, and the run says which contract judged it."""
    chosen = settings.replace(query_policy="streetvision-2026-05")
    result = run_retrain(chosen, CONFIG)
    assert result.reasons[-1] == "judged on calib queries of streetvision-2026-05"
    specs = [json.loads(p.read_text())["spec"] for p in (settings.cache_root / "stage1").glob("*/index.json")]
    assert [s.get("query_policy") for s in specs] == ["streetvision-2026-05"]
    with pytest.raises(CurationError, match="streetvision-2026-05"):  # an unknown name is refused before any work
        run_retrain(settings.replace(query_policy="streetvision-2026-5"), CONFIG)
