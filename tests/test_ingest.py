"""Ingest into a real (temporary) FiftyOne dataset: splits, identity, leaks, labels, safety."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from _ingest_fixtures import (
    bomb_png,
    exif_rotated_jpeg,
    image_bytes,
    natix_row,
    write_parquet,
    write_roadwork,
)

from curation import store
from curation.ingest.job import IngestConfig, ingest, make_importer
from curation.ingest.rules import SplitConfig
from curation.slices import SliceConfig
from curation.schema import TAG_LABEL_CONFLICT, TAG_LEAK

CONFIG = IngestConfig(split=SplitConfig(val_fraction=0.25, calib_fraction=0.25), batch_size=16)


def run(dataset, settings, source, path, config=CONFIG, **kw):
    return ingest(dataset, make_importer(source, path, **kw), settings=settings, config=config, progress=False)


@pytest.fixture
def natix_dir(tmp_path):
    """24 train groups of 3 frames (stratified labels) in two files, plus a nested test file."""
    rows = [natix_row(i, label=int(g % 3 != 0), vid=f"v{g}", seq="s1", frame=i) for g in range(24) for i in range(g * 3, g * 3 + 3)]
    rows[4]["scene_description"] = ""  # label 1 with an empty description: conflict ("No Description" is truthy: not one)
    write_parquet(tmp_path / "natix" / "data" / "train-00000-of-00002.parquet", rows[:40])
    write_parquet(tmp_path / "natix" / "data" / "train-00001-of-00002.parquet", rows[40:])
    test = [natix_row(500 + i, vid="t", seq=str(i), nested=True) for i in range(4)]
    write_parquet(tmp_path / "natix" / "data" / "test-00000-of-00001.parquet", test)
    return tmp_path / "natix"


def snapshot(dataset):
    return sorted(zip(*dataset.values(["content_hash", "split", "tags", "last_modified_at", "sources"]), strict=True),
                  key=lambda r: r[0])


def test_natix_splits_by_sequence_and_rerun_changes_nothing(dataset, settings, natix_dir):
    s = run(dataset, settings, "natix", natix_dir)
    assert (s.records, s.added, s.rejects) == (76, 76, [])
    splits_by_group = defaultdict(set)
    for group, split in zip(*dataset.values(["sequence_group", "split"]), strict=True):
        splits_by_group[group].add(split)
    assert all(len(v) == 1 for v in splits_by_group.values()), "a sequence straddles splits"
    counts = dataset.count_values("split")
    assert counts == {"train": 36, "val": 18, "calib": 18, "test": 4}
    # label-stratified: each stratum (8 negative groups, 16 positive) is cut 25/25/50
    neg = dataset.match_tags(TAG_LABEL_CONFLICT, bool=False).filter_labels("ground_truth", __import__("fiftyone").ViewField("label") == "no_roadwork")
    assert neg.count_values("split") == {"train": 12, "val": 6, "calib": 6}
    assert dataset.count_sample_tags() == {TAG_LABEL_CONFLICT: 1}
    conflicted = dataset.match_tags(TAG_LABEL_CONFLICT).first()
    assert conflicted.ground_truth.label == "roadwork"  # tagged, never relabeled
    media_files = sorted(settings.media_root.rglob("*.jpg"))
    assert len(media_files) == 76

    before = snapshot(dataset)
    again = run(dataset, settings, "natix", natix_dir)
    assert (again.added, again.updated, again.unchanged, again.changed) == (0, 0, 76, 0)
    assert snapshot(dataset) == before and sorted(settings.media_root.rglob("*.jpg")) == media_files


def test_rerun_restores_media_files_that_went_missing(dataset, settings, natix_dir):
    """A wiped media store (or a new machine with the old database) is repaired by re-importing."""
    run(dataset, settings, "natix", natix_dir)
    files = sorted(settings.media_root.rglob("*.jpg"))
    gone = files[:5]
    contents = {f: f.read_bytes() for f in gone}
    for f in gone:
        f.unlink()
    again = run(dataset, settings, "natix", natix_dir)
    assert (again.added, again.updated, again.restored) == (0, 0, 5)
    assert all(f.read_bytes() == contents[f] for f in gone)
    assert run(dataset, settings, "natix", natix_dir).restored == 0  # nothing missing any more

    # The old media store is gone and the settings name a new home: the samples point at the new copies.
    shutil.rmtree(settings.media_root)
    moved = settings.replace(home=settings.home.parent / "home_moved")
    third = run(dataset, moved, "natix", natix_dir)
    assert third.restored == len(files)
    assert all(p.startswith(str(moved.media_root)) for p in dataset.values("filepath"))
    assert all(Path(p).is_file() for p in dataset.values("filepath"))


def test_interrupted_import_resumes(dataset, settings, natix_dir, monkeypatch):
    real = store.insert_states
    calls = {"n": 0}

    def flaky(ds, states):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return real(ds, states)

    monkeypatch.setattr(store, "insert_states", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(dataset, settings, "natix", natix_dir)
    partial = len(dataset)
    assert 0 < partial < 76
    monkeypatch.setattr(store, "insert_states", real)
    s = run(dataset, settings, "natix", natix_dir)
    assert len(dataset) == 76 and s.added == 76 - partial and s.unchanged == partial
    assert dataset.count_values("split") == {"train": 36, "val": 18, "calib": 18, "test": 4}


def test_concurrent_import_cannot_duplicate(dataset, settings, natix_dir, monkeypatch):
    run(dataset, settings, "natix", natix_dir)
    from curation.ingest import job as ingest_module

    # A second importer that loaded its index before the first one wrote: it believes every
    # image is new; the unique index turns its inserts into merges.
    monkeypatch.setattr(ingest_module._Index, "load", classmethod(lambda cls, ds: cls()))
    s = run(dataset, settings, "natix", natix_dir)
    assert len(dataset) == 76 and s.added == 0
    assert len(set(dataset.values("content_hash"))) == 76
    with pytest.raises(store.DuplicateHashError):
        store.insert_states(dataset, [{"filepath": "/x.jpg", "content_hash": dataset.first().content_hash}])


def test_bad_inputs_are_rejected_and_good_ones_imported(dataset, settings, tmp_path):
    good = {"id": 1, "file_name": "good.jpg", "seed": 1}
    bad = {
        "corrupt.jpg": image_bytes(2, size=(128, 96))[:700] + b"\x00" * 50,
        "truncated.jpg": image_bytes(3, size=(128, 96))[:400],
        "zero.jpg": b"",
        "text.jpg": b"hello, I am a text file",
        "tiny.jpg": image_bytes(4, size=(1, 1)),
        "bomb.png": bomb_png(),
    }
    convert = {
        "cmyk.jpg": image_bytes(5, mode="CMYK"),
        "sixteen.png": __import__("io").BytesIO(),
        "rgba.png": image_bytes(6, fmt="PNG", mode="RGBA"),
        "rotated.jpg": exif_rotated_jpeg(7),
    }
    import numpy as np
    from PIL import Image

    Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 21).astype(np.uint16)).save(convert["sixteen.png"], format="PNG")
    convert["sixteen.png"] = convert["sixteen.png"].getvalue()
    images = [good]
    for i, (name, data) in enumerate({**bad, **convert}.items(), start=2):
        images.append({"id": i, "file_name": name, "data": data})
    images.append({"id": 50, "file_name": "../../escape.jpg"})
    images.append({"id": 51, "file_name": "missing.jpg"})
    write_roadwork(tmp_path / "rw", images, [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 10, 10]}])
    rows = [natix_row(0), natix_row(1)]
    rows[1]["label"] = 3
    write_parquet(tmp_path / "natix" / "train-00000-of-00001.parquet", rows)

    s = run(dataset, settings, "roadwork", tmp_path / "rw")
    n = run(dataset, settings, "natix", tmp_path / "natix")
    assert s.rejects_by_reason == {"corrupt": 1, "decompression_bomb": 1, "empty_file": 1, "missing_file": 1,
                                   "not_an_image": 1, "too_small": 1, "truncated": 1, "unsafe_path": 1} or \
        s.rejects_by_reason == {"decompression_bomb": 1, "empty_file": 1, "missing_file": 1, "not_an_image": 1,
                                "too_small": 1, "truncated": 2, "unsafe_path": 1}
    assert all(r.name and r.message for r in s.rejects)
    assert any("missing.jpg" in r.message for r in s.rejects)
    assert s.added == 5 and set(s.conversions) == {"cmyk_to_rgb", "16bit_to_8bit", "alpha_on_white", "exif_rotated"}
    rotated = dataset.match(__import__("fiftyone").ViewField("filepath").ends_with(".jpg")).values("metadata.height")
    assert 64 in rotated  # the EXIF-rotated 64×32 image is stored upright as 32×64
    assert [r.reason for r in n.rejects] == ["bad_label"] and n.added == 1
    assert len(dataset) == 6  # nothing lost, nothing half-written


def test_exact_duplicate_is_one_sample_and_frame_merge(dataset, settings, tmp_path):
    shared = image_bytes(77)
    test_rows = [natix_row(900, vid="vx", seq="1", frame=5, data=shared, nested=True),
                 natix_row(901, vid="vx", seq="2", frame=6, nested=True)]
    write_parquet(tmp_path / "natix" / "test-00000-of-00001.parquet", test_rows)
    run(dataset, settings, "natix", tmp_path / "natix")
    write_roadwork(tmp_path / "rw", [
        {"id": 1, "file_name": "same.jpg", "data": shared, "video_info": {"vid_id": "vx", "seq_id": "1", "frame_id": "5"}},
        # same NATIX frame, different encoding: merged by (vid, seq, frame)
        {"id": 2, "file_name": "reenc.jpg", "data": image_bytes(1901, quality=60), "video_info": {"vid_id": "vx", "seq_id": "2", "frame_id": "6"}},
    ], [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 10, 10]}])
    s = run(dataset, settings, "roadwork", tmp_path / "rw")
    assert len(dataset) == 2 and s.added == 0 and s.updated == 2
    for sample in dataset:
        assert sample.sources == ["natix", "roadwork"] and sample.split == "test"
    merged = dataset.match(__import__("fiftyone").ViewField("frame_id") == "6").first()
    assert len(merged.alt_hashes) == 1
    assert run(dataset, settings, "roadwork", tmp_path / "rw").changed == 0


def test_leak_tagging_and_training_view(dataset, settings, tmp_path, natix_dir):
    run(dataset, settings, "natix", natix_dir)
    F = __import__("fiftyone").ViewField
    val_group = dataset.match(F("split") == "val").first().sequence_group
    vid, seq = val_group.split("/")
    test_sample = dataset.match(F("split") == "test").first()
    test_row = int(test_sample.source_ids[0].rsplit(":", 1)[1])
    near = image_bytes(1000 + test_row, quality=50)  # the test image re-encoded: near duplicate
    write_roadwork(tmp_path / "rw", [
        {"id": 1, "file_name": "seq.jpg", "seed": 4242, "video_info": {"vid_id": vid, "seq_id": seq, "frame_id": "999"}},
        {"id": 2, "file_name": "near.jpg", "data": near},
        {"id": 3, "file_name": "clean.jpg", "seed": 4343},
    ], [])
    s = run(dataset, settings, "roadwork", tmp_path / "rw")
    leaked = dataset.match_tags(TAG_LEAK)
    assert sorted(leaked.values("source_ids")) == [["roadwork:train:near.jpg"], ["roadwork:train:seq.jpg"]]
    assert s.leaks == 2 and s.leaks_tagged == 2
    near_sample = leaked.match(F("source_ids").contains("roadwork:train:near.jpg")).first()
    assert near_sample.near_duplicate_of == [test_sample.content_hash]
    train = store.training_view(dataset)
    assert not set(train.values("id")) & set(leaked.values("id"))
    assert len(dataset.match_tags(TAG_LABEL_CONFLICT)) == 1 and TAG_LABEL_CONFLICT not in train.count_sample_tags()
    assert run(dataset, settings, "roadwork", tmp_path / "rw").changed == 0


def test_reimport_never_overwrites_human_label(dataset, settings, tmp_path):
    write_roadwork(tmp_path / "rw", [{"id": 1, "file_name": "a.jpg", "seed": 8}],
                   [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 10, 10]}])
    run(dataset, settings, "roadwork", tmp_path / "rw")
    sample = dataset.first()
    assert sample.ground_truth.label == "roadwork"
    import fiftyone as fo

    sample.ground_truth = fo.Classification(label="no_roadwork")
    sample.label_origin = "human"
    sample.save()
    s = run(dataset, settings, "roadwork", tmp_path / "rw")
    sample.reload()
    assert sample.ground_truth.label == "no_roadwork" and sample.label_origin == "human"
    (d,) = s.disagreements
    assert (d.sample_id, d.human, d.rule, d.sources) == (sample.id, "no_roadwork", "roadwork", ("roadwork",))


def test_queries_go_to_pool(dataset, settings, tmp_path):
    folder = tmp_path / "queries"
    (folder / "images").mkdir(parents=True)
    lines = []
    for i, feedback in enumerate([None, {"label": 1, "source": "validator"}, {"label": 9, "source": "x"}]):
        data = image_bytes(300 + i, size=(224, 224))
        name = f"images/{__import__('hashlib').sha256(data).hexdigest()}.jpg"
        (folder / name).write_bytes(data)
        lines.append(json.dumps({"file": name, "received_at": "2025-06-01T12:00:0%dZ" % i, "validator_hotkey": "5F",
                                 "response": 0.4, "model_version": "m", "feedback": feedback}))
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n")
    s = run(dataset, settings, "queries", folder)
    assert s.added == 2 and [r.reason for r in s.rejects] == ["bad_label"]
    assert dataset.count_values("split") == {"pool": 2}
    assert sorted(dataset.values("ground_truth.label"), key=str) == [None, "roadwork"]
    assert dataset.first().query_meta["validator_hotkey"] == "5F"


def test_roboflow_formats_merge_into_one_sample_each(dataset, settings, tmp_path):
    import yaml

    root = tmp_path / "roboflow"
    data = {f"p{i}_jpg.rf.{i:04x}.jpg": image_bytes(600 + i) for i in range(3)}
    coco = root / "coco" / "train"
    coco.mkdir(parents=True)
    images = [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(data)]
    anns = [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [8, 6, 16, 12]}]
    cats = [{"id": 0, "name": "rw", "supercategory": "none"}, {"id": 1, "name": "traffic-barrel", "supercategory": "rw"}]
    (coco / "_annotations.coco.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    for n, b in data.items():
        (coco / n).write_bytes(b)
    yolo = root / "yolo"
    (yolo / "train" / "images").mkdir(parents=True)
    (yolo / "train" / "labels").mkdir(parents=True)
    (yolo / "data.yaml").write_text(yaml.safe_dump({"train": "../train/images", "val": "../valid/images", "names": ["traffic-barrel"]}))
    for n, b in data.items():
        (yolo / "train" / "images" / n).write_bytes(b)
    (yolo / "train" / "labels" / f"{list(data)[0][:-4]}.txt").write_text("0 0.25 0.25 0.25 0.25\n")
    cls = root / "cls" / "train" / "no_roadwork"
    cls.mkdir(parents=True)
    (cls / list(data)[2]).write_bytes(data[list(data)[2]])
    s = run(dataset, settings, "roboflow", root)
    assert s.added == 3 and s.records == 7 and any("val" in w for w in s.warnings)
    first = dataset.match(__import__("fiftyone").ViewField("source_ids").contains("roboflow:train:coco/train/" + list(data)[0])).first()
    assert len(first.primitives.detections) == 1 and first.primitives.detections[0].label == "drum"
    assert first.primitives.detections[0].bounding_box == [0.125, 0.125, 0.25, 0.25]
    assert len(first.source_ids) == 2 and dataset.count_values("split") == {"train": 3}
    assert run(dataset, settings, "roboflow", root).changed == 0


def test_unmapped_class_stops_before_writing(dataset, settings, tmp_path):
    from curation.errors import InputError

    cats = [{"id": 1, "name": "Flying Saucer"}]
    write_roadwork(tmp_path / "rw", [{"id": 1, "file_name": "a.jpg", "seed": 1}],
                   [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}], categories=cats)
    with pytest.raises(InputError, match="Flying Saucer"):
        run(dataset, settings, "roadwork", tmp_path / "rw", config=IngestConfig(slices=SliceConfig(orange_share=0.5)))
    assert len(dataset) == 0
    dataset.reload()
    assert store.slice_config(dataset) == SliceConfig()  # a failed import changes no slice rules


def test_import_records_its_slice_rules_and_says_when_they_change(dataset, settings, natix_dir):
    assert store.slice_config(dataset) == SliceConfig()  # before any import: the defaults
    first = run(dataset, settings, "natix", natix_dir)
    assert store.slice_config(dataset) == SliceConfig() and not any("slice rules" in w for w in first.warnings)
    stricter = IngestConfig(split=CONFIG.split, batch_size=16, slices=SliceConfig(orange_share=0.2, night_daytime=("night",)))
    second = run(dataset, settings, "natix", natix_dir, config=stricter)
    dataset.reload()
    assert store.slice_config(dataset) == stricter.slices  # tuples survive the round trip through MongoDB
    assert any("slice rules differ" in w for w in second.warnings)
    third = run(dataset, settings, "natix", natix_dir, config=stricter)
    assert not any("slice rules" in w for w in third.warnings)
