"""Issue 24, operating defects: each test is named after its item and failed on the code before the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation import schema
from curation.settings import Settings


def test_item07_registry_follows_the_home(tmp_path: Path) -> None:
    settings = Settings.load(env={"CURATION_HOME": str(tmp_path / "home")})
    assert settings.registry_root == tmp_path / "home" / "registry"
    explicit = Settings.load(env={"CURATION_HOME": str(tmp_path / "home"), "CURATION_REGISTRY_DIR": str(tmp_path / "r")})
    assert explicit.registry_root == tmp_path / "r"


# Item 8: dead locks ---------------------------------------------------------------------------
def _hold_lock_in_child(name: str, ttl_s: float) -> "subprocess.Popen[str]":
    """A child process that takes lock ``name`` (as a run would) and waits to be killed."""
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from curation import store\n"
        "from curation.settings import Settings\n"
        "store.connect(Settings.load(env={}))\n"
        f"with store.exclusive({name!r}, {ttl_s}, holder='test run holds'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_item08_dead_lock_is_cleared_when_its_holder_was_killed(settings):
    import signal
    import uuid

    from curation import store
    from curation.errors import CurationError

    store.connect(settings)
    name = f"retrain:test-{uuid.uuid4().hex[:8]}"
    child = _hold_lock_in_child(name, ttl_s=6 * 3600)
    try:
        with pytest.raises(CurationError, match="Another retrain"):  # a live holder keeps it
            with store.exclusive(name, 60, holder="retrain holds the registry lock"):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with store.exclusive(name, 60, holder="retrain holds the registry lock") as owner:  # no 6 h wait
        assert store.list_locks()[0]["owner"] == owner or any(d["owner"] == owner for d in store.list_locks())


def test_item08_lock_of_another_host_lives_by_its_heartbeat(settings):
    import uuid
    from datetime import timedelta

    from curation import store
    from curation.store import locks as lk

    store.connect(settings)
    coll = store._platform_collection(store.LOCKS_COLLECTION)
    name = f"mine:test-{uuid.uuid4().hex[:8]}"
    now = lk.utcnow()
    doc = {"_id": name, "owner": "far:1:x", "host": "another-host", "pid": 1, "pid_started": 0.0,
           "expires_at": now + timedelta(hours=1), "acquired_at": now}
    coll.insert_one({**doc, "heartbeat_at": now})
    assert not store.acquire_lock(name, "me", ttl_s=60)  # its heartbeat is fresh: a live run elsewhere
    coll.update_one({"_id": name}, {"$set": {"heartbeat_at": now - timedelta(seconds=lk.STALE_AFTER_S + 5)}})
    assert store.acquire_lock(name, "me", ttl_s=60)  # heartbeat stopped: that run is gone
    store.release_lock(name, "me")


def test_item08_curation_locks_lists_and_clears(settings, monkeypatch):
    import uuid
    from datetime import timedelta

    from typer.testing import CliRunner

    from curation import store
    from curation.cli import app
    from curation.store import locks as lk

    store.connect(settings)
    coll = store._platform_collection(store.LOCKS_COLLECTION)
    dead, live = f"dead-{uuid.uuid4().hex[:6]}", f"live-{uuid.uuid4().hex[:6]}"
    now = lk.utcnow()
    coll.insert_one({"_id": dead, "owner": "gone", "host": "h2", "pid": 7, "heartbeat_at": now - timedelta(hours=1),
                     "expires_at": now + timedelta(hours=5), "acquired_at": now})
    assert store.acquire_lock(live, "me", ttl_s=60)
    runner = CliRunner()
    listed = runner.invoke(app, ["locks"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert dead in listed.output and live in listed.output and "dead" in listed.output and "alive" in listed.output
    refused = runner.invoke(app, ["locks", "--clear", live])
    assert refused.exit_code == 2 and "live run" in refused.output
    cleared = runner.invoke(app, ["locks", "--clear-dead"], env={"COLUMNS": "200"})
    assert cleared.exit_code == 0 and f"cleared `{dead}`" in cleared.output
    assert [d["name"] for d in store.list_locks() if d["name"] in (dead, live)] == [live]
    store.release_lock(live, "me")


# Item 6: a killed predict's staging ------------------------------------------------------------
def _add_random_jpegs(dataset, folder, *, n: int, seed: int) -> None:
    """``n`` random 128×96 JPEGs in ``folder``, added to ``dataset`` as samples."""
    import fiftyone as fo
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = [folder / f"img{i}.jpg" for i in range(n)]
    for path in paths:
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in paths])


def test_item06_killed_predict_staging_is_not_promoted_by_the_next_run(dataset, tmp_path, monkeypatch):

    from curation.predict import job as predict_mod
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model

    _add_random_jpegs(dataset, tmp_path, n=6, seed=0)
    backbone = tiny_random_backbone(seed=0)
    first = Stage1Model.build(Stage1Config(version="1.0.0"), backbone=backbone, seed=0)
    predict_mod.predict_collection(dataset, first, batch_size=2, progress=False)

    killed = Stage1Model.build(Stage1Config(version="6.6.6"), backbone=backbone, seed=6)
    real, calls = killed.predict, {"n": 0}

    def dies_on_third_batch(images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(images)

    monkeypatch.setattr(killed, "predict", dies_on_third_batch)
    monkeypatch.setattr(predict_mod, "_WRITE_EVERY", 2)  # its first batches reach the staged fields
    with pytest.raises(KeyboardInterrupt):
        predict_mod.predict_collection(dataset, killed, batch_size=2, progress=False)
    monkeypatch.undo()

    # An unrelated run on one sample (another model, another subset) must not promote 6.6.6 anywhere.
    last = dataset.select(dataset.values("id")[-1:])
    other = Stage1Model.build(Stage1Config(version="2.0.0"), backbone=backbone, seed=2)
    report = predict_mod.predict_collection(last, other, progress=False)
    dataset.reload()
    assert dataset.values("model_version") == ["1.0.0"] * 5 + ["2.0.0"]
    assert report.settled.discarded == 4  # the killed run's staged samples were dropped, and said so
    assert not [f for f in dataset.get_field_schema() if f.endswith("_staged")]


# Item 9: a retrain killed between registering its version and moving the champion ---------------
def test_item09_promotion_lost_by_a_killed_retrain_is_finished_by_its_resume(settings, dataset, tmp_path, monkeypatch):
    from curation.demo.corpus import CorpusSpec, write_corpus
    from curation.ingest.job import ingest_corpus
    from curation.retrain.job import RetrainConfig, run_retrain
    from curation.stage1.promotion import PromotionRule
    from curation.stage1.train import TrainConfig
    from curation.store import registry

    write_corpus(tmp_path / "corpus", CorpusSpec(n_natix_train=120, n_natix_test=6, n_roadwork=8, n_roboflow=4, n_queries=2, seed=5))
    ingest_corpus(dataset, tmp_path / "corpus", settings=settings, progress=False)
    config = RetrainConfig(
        head_train=TrainConfig(mode="head", epochs=2, batch_size=64, augmentations=1, lr=5e-3),
        promotion=PromotionRule(bootstrap=50, min_slice_n=5), export=False,
    )
    real = registry.set_champion

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed between registering and promoting")

    monkeypatch.setattr(registry, "set_champion", killed)
    with pytest.raises(KeyboardInterrupt):
        run_retrain(settings, config, run_name="r1")
    monkeypatch.setattr(registry, "set_champion", real)
    assert registry.list_versions(settings) == ["0.1.0"] and registry.champion_version(settings) is None

    resumed = run_retrain(settings, config, run_name="r1")  # was refused as "already registered"
    assert resumed.version == "0.1.0" and resumed.promoted
    assert registry.champion_version(settings) == "0.1.0"
    assert resumed.report_path is not None and resumed.report_path.is_file()
    assert [r["version"] for r in store_runs(dataset, "retrain")] == ["0.1.0"]


def store_runs(dataset, kind):
    from curation import store

    return store.list_runs(dataset, kind)


# Item 14: two first ingests at once -----------------------------------------------------------
def test_item14_second_first_ingest_into_a_new_dataset_does_not_crash(settings, tmp_path):
    """Both runs open the new (empty) dataset; the other one adds samples first; ours must add too."""
    import subprocess
    import sys

    import fiftyone as fo
    import numpy as np
    from PIL import Image

    from curation import store

    ours = store.open_dataset(settings)  # created empty, as the first of two concurrent ingests sees it
    try:
        other = tmp_path / "other.jpg"
        Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(other)
        code = (
            "import fiftyone as fo\n"
            f"ds = fo.load_dataset({settings.dataset_name!r})\n"
            f"ds.add_sample(fo.Sample(filepath={str(other)!r}))\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
        mine = tmp_path / "mine.jpg"
        Image.fromarray(np.full((64, 64, 3), 30, np.uint8)).save(mine)
        store.insert_states(ours, [{"filepath": str(mine), "content_hash": "ab" * 32}])
        assert len(ours) == 2 and ours.media_type == "image"
    finally:
        fo.delete_dataset(settings.dataset_name)


# Item 13: a killed ingest -----------------------------------------------------------------------
def test_item13_killed_ingest_leaves_no_trainable_leak(settings, dataset, tmp_path, monkeypatch):
    from curation import store
    from curation.demo.corpus import CorpusSpec, write_corpus
    from curation.ingest import job as ingest_mod

    write_corpus(tmp_path / "corpus", CorpusSpec(n_natix_train=60, n_natix_test=20, n_roadwork=40, n_roboflow=2, n_queries=2, seed=3))
    ingest_mod.ingest(dataset, ingest_mod.make_importer("natix", tmp_path / "corpus" / "natix"), settings=settings, progress=False)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed after the samples were written")

    monkeypatch.setattr(ingest_mod, "retag_leaks", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest_mod.ingest(dataset, ingest_mod.make_importer("roadwork", tmp_path / "corpus" / "roadwork"), settings=settings, progress=False)
    monkeypatch.undo()
    trainable_in_window = set(store.training_view(dataset).values("id"))

    ingest_mod.ingest(dataset, ingest_mod.make_importer("roadwork", tmp_path / "corpus" / "roadwork"), settings=settings, progress=False)
    leaks = set(dataset.match_tags("leak").values("id"))
    assert leaks, "the corpus must hold leaks for this test to mean anything"
    assert not leaks & trainable_in_window  # a retrain in the window would have trained on none of them
    assert not dataset.match_tags(schema.TAG_LEAK_UNCHECKED).count()  # a complete run checks everything


def test_item13_killed_ingest_tmp_files_are_swept(tmp_path):
    import os
    import socket
    import time

    from curation.media import MediaStore

    media = MediaStore(tmp_path / "media")
    folder = tmp_path / "media" / "ab"
    folder.mkdir(parents=True)
    old_style = folder / ".tmp-k2j4.jpg"  # a killed run's, named before runs wrote their pid
    old_style.write_bytes(b"x")
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    dead = folder / f".tmp-{socket.gethostname()}-{2**22 + 12345}-abcd.jpg"  # a pid that does not run
    dead.write_bytes(b"x")
    live = folder / f".tmp-{socket.gethostname()}-{os.getpid()}-efgh.jpg"  # a run writing right now
    live.write_bytes(b"x")
    assert media.sweep_stale() == 2
    assert not old_style.exists() and not dead.exists() and live.exists()


# Item 2: code execution from a weights file ------------------------------------------------------
class _Payload:
    """Unpickling this runs a shell command (what a crafted checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_item02_crafted_detector_weights_never_run_code(dataset, tmp_path):
    import fiftyone as fo
    import numpy as np
    import torch
    from PIL import Image

    from curation.errors import InputError
    from curation.label.detector import propose

    image = tmp_path / "street.jpg"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(image)
    dataset.add_sample(fo.Sample(filepath=str(image)))
    marker = tmp_path / "pwned"
    crafted = tmp_path / "detector.pt"
    torch.save({"model": _Payload(marker)}, crafted)
    with pytest.raises(InputError, match="safe format"):
        propose(dataset, crafted, config_root=tmp_path / "yolo_cfg")
    assert not marker.exists(), "loading the weights ran the file's command"


# Item 1: the wrong database ---------------------------------------------------------------------
def test_item01_status_refuses_another_homes_database_service(tmp_path):
    """FiftyOne attaches to any running database service of the user, whatever FIFTYONE_DATABASE_DIR says."""
    import os
    import subprocess
    import sys
    import uuid

    env = {k: v for k, v in os.environ.items() if k != "FIFTYONE_DATABASE_URI"}
    env["FIFTYONE_DATABASE_NAME"] = f"curation_item01_{uuid.uuid4().hex[:6]}"
    name = f"t_{uuid.uuid4().hex[:8]}"
    other = subprocess.Popen(  # another home's FiftyOne process, on its own embedded database
        [sys.executable, "-c", (
            "import sys, time, fiftyone as fo\n"
            f"fo.Dataset({name!r}).add_sample(fo.Sample(filepath='/x.jpg'))\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n"
        )],
        env={**env, "FIFTYONE_DATABASE_DIR": str(tmp_path / "other-home-db")},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "ready"
        ours = tmp_path / "our-home-db"
        result = subprocess.run(
            [sys.executable, "-c", "from curation.cli import main; main()", "status"],
            env={**env, "FIFTYONE_DATABASE_DIR": str(ours), "CURATION_HOME": str(tmp_path / "home"), "CURATION_DATASET_NAME": name},
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 2, result.stdout + result.stderr  # it read the other home's dataset
        assert str(ours) in result.stderr and "FIFTYONE_DATABASE_URI" in result.stderr
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait(timeout=120)


def test_item06_predict_killed_while_promoting_is_finished_by_the_next_run(dataset, tmp_path, monkeypatch):

    from curation import store
    from curation.predict import job as predict_mod
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model

    _add_random_jpegs(dataset, tmp_path, n=4, seed=1)
    backbone = tiny_random_backbone(seed=0)
    model = Stage1Model.build(Stage1Config(version="3.0.0"), backbone=backbone, seed=3)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed as promotion began")

    monkeypatch.setattr(store, "promote_staged", killed)
    monkeypatch.setattr(store.locks, "release_lock", lambda name, owner: None)  # kill -9: the lease stays, its holder dead
    with pytest.raises(KeyboardInterrupt):
        predict_mod.predict_collection(dataset, model, progress=False)
    monkeypatch.undo()
    import curation.store.locks as lk

    monkeypatch.setattr(lk, "pid_alive", lambda pid, started: False)  # the killed run's pid is gone
    nothing = dataset.select([])
    report = predict_mod.predict_collection(nothing, model, progress=False)
    dataset.reload()
    assert report.settled.finished == 4 and dataset.values("model_version") == ["3.0.0"] * 4


def test_item06_lease_of_a_run_killed_before_staging_is_removed(dataset, tmp_path):
    from datetime import timedelta

    import fiftyone as fo
    import numpy as np
    from PIL import Image

    from curation import store
    from curation.predict.job import predict_collection
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model
    from curation.store import locks as lk

    Image.fromarray(np.full((64, 64, 3), 50, np.uint8)).save(tmp_path / "a.jpg")
    dataset.add_sample(fo.Sample(filepath=str(tmp_path / "a.jpg")))
    now = lk.utcnow()
    dead = f"predict:{dataset.name}::killed-run"
    store._platform_collection(store.LOCKS_COLLECTION).insert_one(
        {"_id": dead, "owner": "x", "host": "elsewhere", "pid": 1, "heartbeat_at": now - timedelta(hours=1), "expires_at": now + timedelta(hours=1)}
    )
    predict_collection(dataset, Stage1Model.build(Stage1Config(), backbone=tiny_random_backbone(seed=0), seed=0), progress=False)
    assert dead not in [d["name"] for d in store.list_locks()]
