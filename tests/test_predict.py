from __future__ import annotations

import math

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from curation import store
from curation.predict.job import PREDICTION_FIELDS, predict_collection
from curation.stage1.backbone import tiny_random_backbone
from curation.stage1.model import Stage1Config, Stage1Model


@pytest.fixture(scope="module")
def model() -> Stage1Model:
    return Stage1Model.build(Stage1Config(), backbone=tiny_random_backbone(seed=0), seed=0)


def _images(tmp_path, n=5):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        size = (160 + 16 * i, 120)
        arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        path = tmp_path / f"img{i}.jpg"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def _add(dataset, tmp_path, n=5, corrupt=True):
    paths = _images(tmp_path, n)
    samples = [fo.Sample(filepath=str(p)) for p in paths]
    if corrupt:
        bad = tmp_path / "corrupt.jpg"
        bad.write_bytes(b"\xff\xd8 not really a jpeg")
        samples.append(fo.Sample(filepath=str(bad)))
    dataset.add_samples(samples)
    return paths


def test_fields_match_direct_prediction(dataset, tmp_path, model):
    paths = _add(dataset, tmp_path)
    report = predict_collection(dataset, model, batch_size=2, progress=False)
    assert report.n_predicted == 5
    assert [p for p, _ in report.skipped] == [str(tmp_path / "corrupt.jpg")]
    assert report.trained is False

    direct = model.predict([Image.open(p).convert("RGB") for p in paths])
    by_path = {s.filepath: s for s in dataset}
    for path, pred in zip(paths, direct, strict=True):
        s = by_path[str(path)]
        p = s.stage1.p_roadwork
        assert p == pytest.approx(pred.p_roadwork, abs=1e-6)
        assert s.stage1.logits == pytest.approx([math.log(1 - p), math.log(p)], abs=1e-6)
        assert s.stage1.confidence == pytest.approx(p if s.stage1.label == "roadwork" else 1 - p)
        views = s.stage1_views.detections
        assert len(views) == model.config.views.num_views
        assert [d.confidence for d in views] == pytest.approx(list(pred.view_probs), abs=1e-6)
        assert sum(d.label == "evidence" for d in views) == model.config.top_k
        assert set(s.gate_features) == set(pred.gate_features)
        assert s.model_version == model.config.version
        assert len(s.stage1_embedding) == model.hidden_size
    assert by_path[str(tmp_path / "corrupt.jpg")].stage1 is None
    staged = [f for f in dataset.get_field_schema() if f.endswith(store.STAGED_SUFFIX)]
    assert staged == []  # a single worker removes its empty staging fields (no sidebar clutter)
    (run,) = store.list_runs(dataset, "predict")
    assert run["n_predicted"] == 5 and run["n_skipped"] == 1


def test_rerun_overwrites(dataset, tmp_path, model):
    _add(dataset, tmp_path, corrupt=False)
    assert predict_collection(dataset, model, progress=False).n_predicted == 5 and dataset.exists("stage1").count() == 5
    before = dataset.values("stage1.p_roadwork")
    predict_collection(dataset, model, progress=False)
    assert dataset.values("stage1.p_roadwork") == pytest.approx(before)
    assert len(dataset) == 5


def test_killed_run_leaves_no_mixed_fields(dataset, tmp_path, model, monkeypatch):
    _add(dataset, tmp_path, corrupt=False)
    predict_collection(dataset, model, progress=False)
    old = dict(zip(dataset.values("id"), dataset.values("stage1.p_roadwork")))

    other = Stage1Model.build(Stage1Config(version="9.9.9"), backbone=model.backbone, seed=7)
    calls = {"n": 0}
    real = other.predict

    def dies_on_second_batch(images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(images)

    monkeypatch.setattr(other, "predict", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        predict_collection(dataset, other, batch_size=2, progress=False)
    dataset.reload()
    assert set(dataset.values("model_version")) == {"0.0.0"}  # nothing promoted
    assert dict(zip(dataset.values("id"), dataset.values("stage1.p_roadwork"))) == old

    monkeypatch.undo()
    predict_collection(dataset, other, batch_size=2, progress=False)
    assert set(dataset.values("model_version")) == {"9.9.9"}


def test_validator_view_is_deterministic_and_separate(dataset, tmp_path, model):
    _add(dataset, tmp_path, n=2, corrupt=False)
    predict_collection(dataset, model, view="validator", field_prefix="validator_", progress=False)
    first = dataset.values("validator_stage1.p_roadwork")
    predict_collection(dataset, model, view="validator", field_prefix="validator_", progress=False)
    assert dataset.values("validator_stage1.p_roadwork") == first
    assert dataset.exists("stage1").count() == 0


def test_validator_queries_follow_the_image_not_the_sample_id(dataset, settings, tmp_path, model):
    """Same image bytes ⇒ same validator query in any database; a different image ⇒ a different query."""
    path = str(_images(tmp_path, 1)[0])
    dataset.add_samples([fo.Sample(filepath=path, content_hash="h1") for _ in range(2)])  # two ids, one content
    other = store.open_dataset(settings.replace(dataset_name=settings.dataset_name + "_b"))
    try:
        other.add_samples([fo.Sample(filepath=path, content_hash="h1"), fo.Sample(filepath=path, content_hash="h9")])
        for ds in (dataset, other):
            predict_collection(ds, model, view="validator", progress=False)
        here, there = dataset.values("stage1.p_roadwork"), other.values("stage1.p_roadwork")
        assert here[0] == here[1] == there[0]  # ids differ, content hash h1 is shared
        assert there[1] != there[0]  # same pixels, other hash: another query
    finally:
        other.delete()


def test_prediction_fields():
    assert set(PREDICTION_FIELDS) >= {"stage1", "stage1_views", "gate_features", "model_version"}


# The serving bulk path ---------------------------------------------------------------------------------
def _served(path: str = "bulk"):
    from curation.stage1.serving import ServingModel
    from curation.serving_config import ServingConfig

    base = Stage1Model.build(Stage1Config(), backbone=tiny_random_backbone(seed=0), seed=0)
    return ServingModel(base, ServingConfig(path=path, dtype="float32", device="cpu", batch_images=2, num_workers=2))


@pytest.mark.parametrize("view", ["stored", "validator"])
def test_bulk_loader_writes_what_the_in_process_path_writes(dataset, tmp_path, model, view, monkeypatch):
    """Worker-decoded files give the same fields as in-process decoding, and unreadable files —
    one whole loader batch of them included — are skipped and reported without shifting any sample."""
    good = _images(tmp_path, 5)
    bad = [tmp_path / "bad_a.jpg", tmp_path / "bad_b.jpg"]
    for path in bad:
        path.write_bytes(b"\xff\xd8 not really a jpeg")
    order = [good[0], good[1], bad[0], bad[1], good[2], good[3], good[4]]  # steps of 2: the 2nd is all bad
    dataset.add_samples([fo.Sample(filepath=str(p), content_hash=f"h{i}") for i, p in enumerate(order)])

    plain = predict_collection(dataset, model, batch_size=3, view=view, field_prefix="plain_", progress=False)
    served = _served()
    served.serving = served.serving.replace(compile_cache=tmp_path / "cache" / "unused.bin")  # a Path in the run record
    streamed = []
    real_forward_files = served.forward_files
    monkeypatch.setattr(served, "forward_files", lambda paths, **kw: streamed.append(list(paths)) or real_forward_files(paths, **kw))
    report = predict_collection(dataset, served, view=view, progress=False)
    assert streamed == [[s.filepath for s in dataset.sort_by("_id")]]  # every file went through the loader once

    assert report.n_predicted == plain.n_predicted == 5
    assert sorted(p for p, _ in report.skipped) == sorted(p for p, _ in plain.skipped) == sorted(map(str, bad))
    for s in dataset:
        if s.filepath in map(str, bad):
            assert s.stage1 is None and s.plain_stage1 is None
            continue
        assert s.stage1.p_roadwork == pytest.approx(s.plain_stage1.p_roadwork, abs=1e-6)
        assert s.stage1.label == s.plain_stage1.label
        got, ref = s.stage1_views.detections, s.plain_stage1_views.detections
        assert [d.confidence for d in got] == pytest.approx([d.confidence for d in ref], abs=1e-6)
        np.testing.assert_allclose([d.bounding_box for d in got], [d.bounding_box for d in ref])
        assert [d.label for d in got] == [d.label for d in ref]
        assert s.stage1_embedding == pytest.approx(s.plain_stage1_embedding, abs=1e-5)
        assert s.gate_features == pytest.approx(s.plain_gate_features, abs=1e-6)
    run = store.list_runs(dataset, "predict")[0]  # newest first
    assert run["serving"]["path"] == "bulk" and run["n_skipped"] == 2
    assert run["serving"]["compile_cache"] == str(tmp_path / "cache" / "unused.bin")


def test_query_path_serving_model_predicts_in_process(dataset, tmp_path, model):
    """A query-path ServingModel is not streamed: predict_collection calls its predict, one static step per image."""
    from curation.predict.job import streams_files

    served = _served(path="query")
    assert not streams_files(served) and streams_files(_served()) and not streams_files(model)
    _add(dataset, tmp_path, n=3, corrupt=True)
    report = predict_collection(dataset, served, batch_size=2, progress=False)
    assert report.n_predicted == 3 and len(report.skipped) == 1


def test_settings_choose_how_the_model_is_served(settings, tmp_path):
    from curation.stage1.serving import ServingModel
    from curation.serving_config import ServingConfig
    from curation.store import registry

    model_dir = tmp_path / "m"
    Stage1Model.build(Stage1Config(), backbone=tiny_random_backbone(seed=0)).save(model_dir)
    plain = registry.resolve_model(settings, str(model_dir))
    assert type(plain) is Stage1Model and plain.device.type == "cpu"

    serving = ServingConfig(mode="compile", path="bulk", batch_images=8, device="cuda")
    served = registry.resolve_model(settings.replace(stage1_serving=serving), str(model_dir), device="cpu")
    assert isinstance(served, ServingModel)
    assert served.serving.device == "cpu"  # --device overrides the settings' device
    assert served.serving.replace(device="cuda", compile_cache=None) == serving
    assert served.config == plain.config
    # Compiled modes cache their artefacts under the platform's cache root, one file per backbone and step shape.
    cache = served.serving.compile_cache
    assert cache.parent == settings.cache_root / "torch_compile"
    assert cache.name == "tiny-random-8x10x224-compile-blocks-float32.bin"
    query = registry.resolve_model(settings.replace(stage1_serving=serving.replace(path="query")), str(model_dir), device="cpu")
    assert query.serving.compile_cache.name == "tiny-random-1x10x224-compile-blocks-float32.bin"
    named = registry.resolve_model(settings.replace(stage1_serving=serving.replace(compile_cache=tmp_path / "c.bin")), str(model_dir))
    assert named.serving.compile_cache == tmp_path / "c.bin"
    eager = registry.resolve_model(settings.replace(stage1_serving=ServingConfig(device="cpu")), str(model_dir))
    assert eager.serving.compile_cache is None


@pytest.mark.parametrize("path", ["in_process", "bulk"])
def test_validator_view_follows_the_chosen_contract(dataset, tmp_path, model, path):
    """``query_policy`` decides what the validator view is: each stored p equals the model on that
    contract's query of the image (here the 2026-04 letterbox), on both prediction paths."""
    from curation.media import open_rgb
    from curation.stage1.query_policies import contract_query
    from curation.stage1.validator_view import query_key, validator_seed

    paths = _images(tmp_path, 3)
    dataset.add_samples([fo.Sample(filepath=str(p), content_hash=f"c{i}") for i, p in enumerate(paths)])
    runner = model if path == "in_process" else _served()
    predict_collection(dataset, runner, view="validator", query_policy="streetvision-2026-04", progress=False)
    ids, files, hashes, stored = dataset.values(["id", "filepath", "content_hash", "stage1.p_roadwork"])
    queries = [contract_query(open_rgb(f), validator_seed(query_key(i, h), 0), "streetvision-2026-04") for i, f, h in zip(ids, files, hashes)]
    assert all(q.size == (224, 224) for q in queries)
    expected = [p.p_roadwork for p in model.predict(queries)]
    assert stored == pytest.approx(expected, abs=1e-6)
    platform = [p.p_roadwork for p in model.predict([contract_query(open_rgb(f), validator_seed(query_key(i, h), 0), None)
                                                     for i, f, h in zip(ids, files, hashes)])]
    assert stored != pytest.approx(platform, abs=1e-6)  # a different contract is a different view
