"""`--engine ray`: Stage-1 on a local Ray cluster (loopback, started once for the module) gives the
single-process path's fields exactly, survives a model actor dying mid-run, reports unreadable
images, and a re-run finishes only what a killed run left; the feature cache and the App's predict
operator give the single-process path's values on Ray too."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_predict import _add, _images, model  # noqa: F401  (the tiny Stage-1 model fixture)
from typer.testing import CliRunner

from curation import store
from curation.errors import ConfigError, InputError
from curation.predict.job import PREDICTION_FIELDS, predict_collection
from curation.predict.ray_engine import RayEngine, Stage1Actor
from curation.settings import RaySettings, Settings
from curation.stage1.cache import CacheSpec, FeatureCache, cache_features

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module (4 s to start); the engine joins it instead of starting its own."""
    ray.init(num_cpus=3, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    yield
    ray.shutdown()


def _fields(dataset) -> dict[str, dict]:
    """``{filepath: plain Stage-1 values}`` (label ids left out: they are new per write)."""
    out = {}
    for s in dataset:
        if s.stage1 is None:
            out[s.filepath] = None
            continue
        c = s.stage1
        out[s.filepath] = {
            "stage1": (c.label, c.confidence, list(c.logits), c.p_roadwork, c.threshold),
            "views": [(d.label, list(d.bounding_box), d.confidence, d.view_index) for d in s.stage1_views.detections],
            "gate_features": dict(s.gate_features),
            "embedding": list(s.stage1_embedding),
            "model_version": s.model_version,
        }
    return out


def _assert_same(ray_fields: dict, local_fields: dict) -> None:
    assert ray_fields.keys() == local_fields.keys()
    for path, local in local_fields.items():
        got = ray_fields[path]
        if local is None:
            assert got is None, path
            continue
        assert got["stage1"][0] == local["stage1"][0] and got["model_version"] == local["model_version"]
        assert got["stage1"][1:4:2] == pytest.approx(local["stage1"][1:4:2], abs=1e-6)
        assert got["stage1"][2] == pytest.approx(local["stage1"][2], abs=1e-6)
        assert [v[0] for v in got["views"]] == [v[0] for v in local["views"]]
        assert [v[1] for v in got["views"]] == [v[1] for v in local["views"]]
        assert [v[2] for v in got["views"]] == pytest.approx([v[2] for v in local["views"]], abs=1e-6)
        assert got["gate_features"] == pytest.approx(local["gate_features"], abs=1e-6)
        assert got["embedding"] == pytest.approx(local["embedding"], abs=1e-5)


def _staged_left(dataset) -> list[str]:
    return [f for f in dataset.get_field_schema() if f.endswith(store.STAGED_SUFFIX)]


def test_ray_gives_the_single_process_fields_and_reports_unreadable_images(dataset, tmp_path, model):  # noqa: F811
    _add(dataset, tmp_path)  # 5 images + corrupt.jpg
    local = predict_collection(dataset, model, batch_size=2, progress=False)
    local_fields = _fields(dataset)
    for name in PREDICTION_FIELDS:
        dataset.clear_sample_field(name)

    report = predict_collection(dataset, model, progress=False, engine=RayEngine(RaySettings(num_actors=2, batch_size=2)))
    assert report.n_predicted == local.n_predicted == 5
    assert [p for p, _ in report.skipped] == [str(tmp_path / "corrupt.jpg")]  # named, skipped, as in process
    assert report.skipped[0][1] == local.skipped[0][1]
    _assert_same(_fields(dataset), local_fields)
    assert _staged_left(dataset) == []
    (run,) = [r for r in store.list_runs(dataset, "predict") if r["staging_id"] == report.staging_id]
    assert run["engine"] == {"ray": {"address": None, "num_actors": 2, "gpus_per_actor": 0.0, "cpus_per_actor": 1.0, "batch_size": 2}}


def test_validator_view_on_ray_matches(dataset, tmp_path, model):  # noqa: F811
    _add(dataset, tmp_path, n=3, corrupt=False)
    predict_collection(dataset, model, view="validator", field_prefix="validator_", query_policy=None, progress=False)
    local = dataset.values("validator_stage1.p_roadwork")
    dataset.clear_sample_field("validator_stage1")
    engine = RayEngine(RaySettings(batch_size=2))
    predict_collection(dataset, model, view="validator", field_prefix="validator_", query_policy=None, progress=False, engine=engine)
    assert dataset.values("validator_stage1.p_roadwork") == pytest.approx(local, abs=1e-6)


def _dies_once(marker: Path) -> type:
    """A model actor whose process exits on its first block; ``marker`` records that it did.

    Defined in a function so Ray ships the class by value (workers cannot import this test module).
    """

    class DiesOnce(Stage1Actor):
        def __call__(self, batch):
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the process dies mid-run, as on an OOM kill or a lost node
            return super().__call__(batch)

    return DiesOnce


def test_a_killed_actor_is_replaced_and_its_block_retried(dataset, tmp_path, model):  # noqa: F811
    _add(dataset, tmp_path, corrupt=False)
    predict_collection(dataset, model, batch_size=2, progress=False)
    local_fields = _fields(dataset)
    for name in PREDICTION_FIELDS:
        dataset.clear_sample_field(name)

    marker = tmp_path / "died"
    engine = RayEngine(RaySettings(num_actors=1, batch_size=2), actor_class=_dies_once(marker))
    report = predict_collection(dataset, model, progress=False, engine=engine)
    assert marker.exists()  # an actor did die
    assert report.n_predicted == 5 and report.skipped == []
    _assert_same(_fields(dataset), local_fields)


def test_a_rerun_finishes_what_a_killed_run_left(dataset, tmp_path, model, monkeypatch):  # noqa: F811
    from curation.predict import job

    _add(dataset, tmp_path, corrupt=False)
    monkeypatch.setattr(job, "_WRITE_EVERY", 2)  # blocks of two are final as soon as they are written
    engine = RayEngine(RaySettings(batch_size=2))
    first = predict_collection(dataset.limit(3), model, progress=False, engine=engine, resume=True)  # "killed" after 3
    assert first.n_predicted == 3
    before = dict(zip(*dataset.values(["id", "stage1.id"])))
    rest = predict_collection(dataset, model, progress=False, engine=engine, resume=True)
    assert rest.n_predicted == 2  # not 5: what is stored for this model version is not predicted twice
    after = dict(zip(*dataset.values(["id", "stage1.id"])))
    assert all(after[i] == before[i] for i in before if before[i] is not None)  # untouched, not rewritten
    assert dataset.exists("stage1").count() == 5 and _staged_left(dataset) == []
    assert predict_collection(dataset, model, progress=False, engine=engine, resume=True).n_predicted == 0


def test_cli_predict_engine_ray(dataset, settings, tmp_path, monkeypatch, model):  # noqa: F811
    from curation.cli import app

    _add(dataset, tmp_path, n=3)
    model.save(tmp_path / "m")
    monkeypatch.setenv("CURATION_DATASET_NAME", settings.dataset_name)
    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    monkeypatch.setenv("CURATION_RAY", "{num_actors: 1, batch_size: 2}")
    result = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "m"), "--engine", "ray"])
    assert result.exit_code == 0, result.output
    assert "Predicted 3 samples" in result.output and "corrupt.jpg" in result.output
    again = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "m"), "--engine", "ray"])
    assert "Predicted 0 samples" in again.output  # already stored for this model version
    bad = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "m"), "--engine", "spark"])
    assert bad.exit_code != 0 and "process, ray" in bad.output
    silent = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "m"), "--ray-address", "head:6379"])
    assert silent.exit_code == 2 and "apply to `--engine ray` only" in silent.output  # not silently ignored


def test_ray_settings_parse_and_explain():
    s = Settings.load(env={"CURATION_RAY": "{address: 'head:6379', num_actors: 4, gpus_per_actor: 1}"})
    assert s.ray == RaySettings(address="head:6379", num_actors=4, gpus_per_actor=1.0)
    assert Settings.load(env={}).ray == RaySettings()
    with pytest.raises(ConfigError, match="num_actors"):
        Settings.load(env={"CURATION_RAY": "{num_actor: 2}"})
    with pytest.raises(ConfigError, match="'batch_size' parameter must be in"):
        RaySettings(batch_size=0)


def test_daily_mining_takes_the_ray_engine(tmp_path):
    from curation.pipelines import DailyMiningConfig, load_pipeline

    path = tmp_path / "daily.yaml"
    path.write_text("job: daily_mining\nengine: ray\n")
    assert load_pipeline(path) == ("daily_mining", DailyMiningConfig(engine="ray"))
    with pytest.raises(ConfigError, match="Did you mean `ray`"):
        DailyMiningConfig(engine="rya")


def test_feature_cache_on_ray_matches_the_process_path(tmp_path, model):  # noqa: F811
    paths = [str(p) for p in _images(tmp_path, n=4)]
    hashes = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
    images = [*paths[:3], Image.open(paths[3]).convert("RGB")]  # an in-memory image travels pickled
    spec = CacheSpec.for_model(model, dtype="float32")  # float16 storage could round a 1e-7 difference to one ulp
    local = cache_features(images, hashes, model, FeatureCache(tmp_path / "local", spec), augmentations=2, batch_queries=3)

    engine = RayEngine(RaySettings(num_actors=1, batch_size=2))
    cache = FeatureCache(tmp_path / "ray", spec)
    on_ray = cache_features(images, hashes, model, cache, augmentations=2, batch_queries=3, engine=engine)
    assert (on_ray.report.hits, on_ray.report.computed) == (0, 8)
    assert on_ray.keys == local.keys
    assert torch.allclose(on_ray.features, local.features, atol=1e-5)
    assert torch.allclose(on_ray.stats, local.stats, atol=1e-5)

    again = cache_features(paths, hashes, model, FeatureCache(tmp_path / "ray", spec), augmentations=2, engine=engine)  # read back from disk
    assert (again.report.hits, again.report.computed, again.report.forwards) == (8, 0, 0)
    assert torch.equal(again.features, on_ray.features)


def test_feature_cache_on_ray_names_an_unreadable_image_as_the_process_path_does(tmp_path, model):  # noqa: F811
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    paths = [*map(str, _images(tmp_path, n=2)), str(bad)]
    hashes = [f"{i:064x}" for i in range(3)]
    spec = CacheSpec.for_model(model, dtype="float32")
    with pytest.raises(InputError) as here:
        cache_features(paths, hashes, model, FeatureCache(tmp_path / "local", spec), augmentations=1)
    with pytest.raises(InputError) as on_ray:
        cache_features(paths, hashes, model, FeatureCache(tmp_path / "ray", spec), augmentations=1, engine=RayEngine(RaySettings(num_actors=1, batch_size=1)))
    assert str(on_ray.value) == str(here.value) and str(bad) in str(on_ray.value)


def test_predict_operator_takes_the_ray_engine(settings, dataset, tmp_path, monkeypatch):
    from curation.app import operators as cops

    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    monkeypatch.setenv("CURATION_RAY", "{num_actors: 1, batch_size: 2}")
    cops.configure_plugins(settings)
    _add(dataset, tmp_path, n=3)
    local = cops.execute("predict_stage1", dataset, {"model": "tiny-random", "batch_size": 2})
    local_fields = _fields(dataset)
    for name in PREDICTION_FIELDS:
        dataset.clear_sample_field(name)

    result = cops.execute("predict_stage1", dataset, {"model": "tiny-random", "engine": "ray"})
    assert (result["n_predicted"], result["n_skipped"]) == (local["n_predicted"], local["n_skipped"]) == (3, 1)
    assert "corrupt.jpg" in result["skipped"][0]
    _assert_same(_fields(dataset), local_fields)
    again = cops.execute("predict_stage1", dataset, {"model": "tiny-random", "engine": "ray"})
    assert again["n_predicted"] == 0  # already stored for this model version: the CLI's resume
    with pytest.raises(ConfigError, match="process, ray"):
        cops.predict_target(dataset, model="tiny-random", engine="spark")


def test_retrain_takes_the_ray_engine_for_feature_caching(tmp_path, monkeypatch):
    from curation.cli import app
    from curation.pipelines import load_pipeline
    from curation.retrain import job
    from curation.retrain.job import RetrainConfig

    path = tmp_path / "retrain.yaml"
    path.write_text("job: retrain_export\nengine: ray\n")
    _, config = load_pipeline(path)
    assert config.engine == "ray" and job._feature_engine(config, Settings.load(env={})) == RayEngine(RaySettings())
    assert job._feature_engine(RetrainConfig(), Settings.load(env={})) is None
    with pytest.raises(ConfigError, match="Did you mean `ray`"):
        RetrainConfig(engine="rya")

    seen = []

    def stop(settings, config, **_):
        seen.append(config)
        raise RuntimeError("stop before training")

    monkeypatch.setattr(job, "run_retrain", stop)
    CliRunner().invoke(app, ["retrain", "--pipeline", "pipelines/retrain_export.yaml", "--engine", "ray"])
    assert [c.engine for c in seen] == ["ray"]


def test_asking_for_more_gpus_than_the_cluster_has_is_refused_not_waited_for():
    from curation.predict.ray_engine import connect

    with pytest.raises(ConfigError, match=r"2 actors × 1 GPU = 2 GPUs; the Ray cluster has 0"):
        connect(RaySettings(num_actors=2, gpus_per_actor=1))
