from __future__ import annotations

import fiftyone as fo
import numpy as np
import pytest

from curation import schema, store
from curation.errors import CurationError, SchemaError


def test_open_creates_persistent_dataset_with_schema(dataset, settings):
    assert dataset.persistent
    assert dataset.name == settings.dataset_name
    fields = dataset.get_field_schema()
    for spec in schema.FIELDS:
        assert spec.name in fields, spec.name
    assert dataset.info[store.SCHEMA_VERSION_KEY] == schema.SCHEMA_VERSION
    indexes = set(dataset.list_indexes())
    assert {"content_hash", "split", "ground_truth.label", "tags", "sources"} <= indexes


def test_reopen_is_idempotent(dataset, settings):
    before = (dataset.get_field_schema().keys(), sorted(dataset.list_indexes()))
    again = store.open_dataset(settings)
    assert (again.get_field_schema().keys(), sorted(again.list_indexes())) == before


def test_open_without_create_names_the_dataset(settings):
    with pytest.raises(SchemaError, match=settings.dataset_name):
        store.open_dataset(settings, create=False)


def test_newer_schema_is_refused(dataset, settings):
    dataset.info[store.SCHEMA_VERSION_KEY] = schema.SCHEMA_VERSION + 1
    dataset.save()
    with pytest.raises(SchemaError, match="newer than this code"):
        store.open_dataset(settings)


def test_unversioned_dataset_is_migrated(settings):
    store.connect(settings)
    raw = fo.Dataset(settings.dataset_name, persistent=True)
    try:
        raw.add_sample(fo.Sample(filepath="/tmp/x.jpg"))
        ds = store.open_dataset(settings)
        assert ds.info[store.SCHEMA_VERSION_KEY] == schema.SCHEMA_VERSION
        assert "ground_truth" in ds.get_field_schema()
        assert len(ds) == 1
    finally:
        raw.delete()


def test_bulk_write_and_status(dataset):
    samples = [
        fo.Sample(filepath=f"/tmp/img{i}.jpg", split=split, sources=srcs,
                  ground_truth=fo.Classification(label=label), slices=slices)
        for i, (split, srcs, label, slices) in enumerate([
            ("train", ["natix"], "roadwork", ["night"]),
            ("train", ["natix", "roadwork"], "no_roadwork", []),
            ("test", ["natix"], "roadwork", ["night", "urban"]),
        ])
    ]
    ids = dataset.add_samples(samples)
    store.set_values_by_id(dataset, "hn_category", {ids[1]: "ad"})
    assert dataset[ids[1]].hn_category == "ad"
    assert dataset[ids[0]].hn_category is None

    s = store.status(dataset)
    assert s.total == 3
    assert s.by_source == {"natix": 3, "roadwork": 1}
    assert s.by_split == {"test": 1, "train": 2}
    assert s.by_label == {"no_roadwork": 1, "roadwork": 2}
    assert s.by_slice["night"] == 2 and s.by_slice["urban"] == 1
    assert s.by_slice["synthetic"] == 0  # empty slices are reported as n=0


def test_run_records_newest_first(dataset):
    first = store.record_run(dataset, "evaluate", {"mcc": 0.5})
    second = store.record_run(dataset, "evaluate", {"mcc": 0.6})
    store.record_run(dataset, "predict", {"n": 3})
    runs = store.list_runs(dataset, "evaluate")
    assert [r["_id"] for r in runs] == [second, first]
    assert runs[0]["mcc"] == 0.6 and runs[0]["kind"] == "evaluate"
    assert len(store.list_runs(dataset)) == 3
    assert len(store.list_runs(dataset, limit=2)) == 2


def test_runs_are_fiftyone_runs_that_the_app_can_list_and_load(dataset):
    key = store.record_run(dataset, "mine", {"tag": "hard:2026-12-01", "scores": np.array([0.25, 0.5])}, tags=["hard:2026-12-01"])
    assert key.startswith("mine_") and key.isidentifier()
    assert key in dataset.list_runs()
    info = dataset.get_run_info(key)
    assert info.config.kind == "mine" and info.config.tags == ["hard:2026-12-01"] and info.config.method == "mine"
    dataset.reload()
    assert dataset.load_run_results(key, cache=False).summary == {"tag": "hard:2026-12-01", "scores": [0.25, 0.5]}
    assert dataset.list_runs(kind="mine") == [key]  # FiftyOne's own filter on the config


def test_deleting_a_run_removes_only_what_no_other_run_wrote(dataset, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(tmp_path / f"{i}.jpg")) for i in range(3)])
    ids = dataset.values("id")
    dataset.select(ids[:2]).tag_samples("similar:2026-12-01:abc")
    dataset.set_values("stage2_note", ["sign"] * len(dataset))
    dataset.set_values("stage1_score", [0.5] * len(dataset))  # a float field no schema declares
    old = store.record_run(dataset, "stage2", {"n": 1}, fields=["stage2_note", "stage1_score"])
    new = store.record_run(dataset, "predict", {"n": 2}, fields=["stage1_score"])
    batch = store.record_run(dataset, "similar", {"n": 2}, tags=["similar:2026-12-01:abc"])

    store.delete_run(dataset, old)
    assert not dataset.has_sample_field("stage2_note")  # only the deleted run wrote it
    assert dataset.has_sample_field("stage1_score")  # the newer predict run still names it
    store.delete_run(dataset, batch)
    assert dataset.count_sample_tags() == {}
    assert [r["_id"] for r in store.list_runs(dataset)] == [new]
    with pytest.raises(CurationError, match=f"no platform run `{old}`.*Newest runs: {new}"):
        store.delete_run(dataset, old)

    dataset.select(ids[:1]).tag_samples(schema.TAG_LEAK_EMBEDDING)
    store.delete_run(dataset, store.record_run(dataset, "leaks_embedding", {"tagged": 1}, tags=[schema.TAG_LEAK_EMBEDDING]))
    assert dataset.count_sample_tags() == {schema.TAG_LEAK_EMBEDDING: 1}  # a protected tag outlives any run


def test_lock_excludes_others_until_expiry(settings):
    import time
    import uuid

    store.connect(settings)
    name = f"lock-{uuid.uuid4().hex}"
    assert store.acquire_lock(name, "a", ttl_s=60)
    assert not store.acquire_lock(name, "b", ttl_s=60)
    assert store.acquire_lock(name, "a", ttl_s=60)  # re-entrant for its owner
    store.release_lock(name, "b")  # not b's lock: no effect
    assert not store.acquire_lock(name, "b", ttl_s=60)
    store.release_lock(name, "a")
    assert store.acquire_lock(name, "b", ttl_s=0.2)
    time.sleep(0.3)
    assert store.acquire_lock(name, "c", ttl_s=60)  # b's lock expired (holder killed)
    store.release_lock(name, "c")


def test_staged_declarations_stay_while_another_prediction_run_is_alive(dataset):
    dataset.add_sample_field("stage1_staged", fo.StringField)
    prefix = f"predict:{dataset.name}::"
    with store.exclusive(f"{prefix}other", 60.0, holder="prediction run holds"):
        store.drop_staged_fields(dataset, ["stage1"], lease_prefix=prefix, own_lease=f"{prefix}mine")
        assert dataset.has_sample_field("stage1_staged")  # the other run may still stage values there
    store.drop_staged_fields(dataset, ["stage1"], lease_prefix=prefix, own_lease=f"{prefix}mine")
    assert not dataset.has_sample_field("stage1_staged")
