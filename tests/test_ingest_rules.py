"""Pure ingest rules: split assignment, record merging, leak detection, slices (no database)."""

from __future__ import annotations

import numpy as np
import pytest
from _ingest_fixtures import image_bytes, orange_bytes

from curation.errors import ConfigError
from curation.ingest.rules import (
    Incoming,
    LeakRow,
    SplitConfig,
    assign_sequence_splits,
    find_leaks,
    merge,
    near_duplicates,
    record_split,
)
from curation.slices import SliceConfig, SliceInputs, compute_slices, orange_share, slice_counts
from curation.ingest.sources.common import Primitive, SourceRecord
from curation.schema import Label, Split
from curation.media import MediaLimits, decode_image

CFG = SliceConfig()
IMG = decode_image(image_bytes(1), name="x", limits=MediaLimits())


def rec(source="natix", split="train", sid="1", **kw) -> SourceRecord:
    return SourceRecord(source=source, source_split=split, source_id=sid, name=sid, data=b"x", **kw)


def test_assign_splits_deterministic_stratified_and_order_free():
    groups = {f"v{i}/s": ["roadwork"] * 3 for i in range(80)} | {f"n{i}/s": ["no_roadwork"] for i in range(20)}
    cfg = SplitConfig(val_fraction=0.1, calib_fraction=0.2)
    a = assign_sequence_splits(groups, cfg)
    b = assign_sequence_splits(dict(reversed(list(groups.items()))), cfg)
    assert a == b
    pos = [a[k] for k in groups if k.startswith("v")]
    neg = [a[k] for k in groups if k.startswith("n")]
    assert (pos.count(Split.VAL), pos.count(Split.CALIB)) == (8, 16)
    assert (neg.count(Split.VAL), neg.count(Split.CALIB)) == (2, 4)
    assert assign_sequence_splits(groups, SplitConfig(salt="other")) != a
    assert assign_sequence_splits({}, cfg) == {}


def test_split_config_validation():
    with pytest.raises(ConfigError, match="val_fraction"):
        SplitConfig(val_fraction=-0.1)
    with pytest.raises(ConfigError, match="below 1"):
        SplitConfig(val_fraction=0.6, calib_fraction=0.5)


def test_record_split_rules():
    groups = {"v/1": Split.CALIB}
    assert record_split(rec(video_id="v", sequence_id="1"), groups) == Split.CALIB
    assert record_split(rec(split="test"), groups) == Split.TEST
    assert record_split(rec(source="roadwork", video_id="v", sequence_id="1"), groups) == Split.TRAIN
    assert record_split(rec(source="queries", split="pool"), groups) == Split.POOL


def test_merge_union_precedence_and_idempotence():
    first = merge(None, [Incoming(rec(source="roadwork", split="train", sid="a.jpg",
                                      primitives=(Primitive("cone", (0.1, 0.1, 0.2, 0.2)),)), Split.TRAIN, IMG)], slice_config=CFG)
    state = {**first.state, "content_hash": IMG.sha256}
    second = merge(state, [Incoming(rec(split="test", sid="9", label=Label.ROADWORK), Split.TEST, IMG)], slice_config=CFG)
    s = second.state
    assert s["sources"] == ["roadwork", "natix"] and s["split"] == "test"
    assert s["source_ids"] == ["roadwork:train:a.jpg", "natix:test:9"]
    assert s["ground_truth"] == "roadwork" and s["label_origin"] == "rule"
    again = merge({**s, "content_hash": IMG.sha256}, [Incoming(rec(split="test", sid="9", label=Label.ROADWORK), Split.TEST, IMG)], slice_config=CFG)
    assert again.changes == {}


def test_merge_conflict_between_boxes_and_source():
    r = rec(source="roadwork", label=Label.NO_ROADWORK, primitives=(Primitive("cone", (0.1, 0.1, 0.2, 0.2)),))
    out = merge(None, [Incoming(r, Split.TRAIN, IMG)], slice_config=CFG)
    assert out.state["ground_truth"] == "roadwork" and "label_conflict" in out.state["tags"]
    # context classes alone are not roadwork
    r2 = rec(source="roadwork", primitives=(Primitive("police_officer", (0.1, 0.1, 0.2, 0.2)),))
    assert merge(None, [Incoming(r2, Split.TRAIN, IMG)], slice_config=CFG).state["ground_truth"] == "no_roadwork"


def test_merge_never_overwrites_human_label():
    human = {"ground_truth": "no_roadwork", "label_origin": "human", "sources": ["natix"], "source_label": {"natix": "no_roadwork"}}
    out = merge(human, [Incoming(rec(source="roboflow", primitives=(Primitive("cone", (0, 0, 0.5, 0.5)),)), Split.TRAIN, IMG)], slice_config=CFG)
    assert out.state["ground_truth"] == "no_roadwork" and out.state["label_origin"] == "human"
    assert out.disagreement == ("no_roadwork", "roadwork") and "ground_truth" not in out.changes


def test_merge_unlabeled_query_stays_unlabeled():
    out = merge(None, [Incoming(rec(source="queries", split="pool"), Split.POOL, IMG)], slice_config=CFG)
    assert out.state["ground_truth"] is None and out.state["split"] == "pool"


def test_merge_equal_boxes_within_tolerance_do_not_churn():
    a = rec(source="roboflow", sid="coco/a", primitives=(Primitive("cone", (10.0, 10.0, 20.0, 20.0), relative=False),))
    b = rec(source="roboflow", sid="yolo/a", primitives=(Primitive("cone", (0.15625, 0.20833, 0.3125, 0.41666)),))
    s1 = merge(None, [Incoming(a, Split.TRAIN, IMG), Incoming(b, Split.TRAIN, IMG)], slice_config=CFG).state
    again = merge(s1, [Incoming(a, Split.TRAIN, IMG), Incoming(b, Split.TRAIN, IMG)], slice_config=CFG)
    assert len(s1["primitives"]) == 1 and again.changes == {}


def test_find_leaks_by_group_and_phash():
    rows = [
        LeakRow("e1", "val", "v/1", "ffff000000000000", "h1"),
        LeakRow("e2", "test", "t/1", "00000000ffffffff", "h2"),
        LeakRow("a", "train", "v/1", "1234123412341234", "ha"),  # same sequence as a val image
        LeakRow("b", "train", "x/1", "00000000ffffff0f", "hb"),  # 4 bits from a test image
        LeakRow("c", "pool", None, "00000000fffff000", "hc"),  # 12 bits: not a near duplicate at 6
        LeakRow("d", "train", "y/1", None, "hd"),
    ]
    leaks = find_leaks(rows, max_distance=6)
    assert leaks == {"a": ["group:v/1"], "b": ["h2"]}
    assert find_leaks(rows, max_distance=12).keys() == {"a", "b", "c"}


def test_near_duplicates_chunking_matches_bruteforce():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 2**63, size=50, dtype=np.uint64)
    r = np.concatenate([q[:10] ^ np.uint64(1), rng.integers(0, 2**63, size=30, dtype=np.uint64)])
    assert near_duplicates(q, r, 2, chunk_pairs=64) == near_duplicates(q, r, 2)
    assert all(i in found for i, found in enumerate(near_duplicates(q, r, 2)[:10]))


def test_slices_rules():
    assert compute_slices(SliceInputs(daytime="Dark", weather=["Snow"], scene_environment="Highway"), CFG) == ["night", "rain_snow", "highway"]
    assert compute_slices(SliceInputs(daytime="Light", brightness=0.01), CFG) == []  # tag wins over brightness
    assert compute_slices(SliceInputs(brightness=0.05), CFG) == ["night"]
    assert compute_slices(SliceInputs(scene_environment="Suburban"), CFG) == []
    assert compute_slices(SliceInputs(scene_environment="Urban"), CFG) == ["urban"]
    small = SliceInputs(boxes=[("cone", [0, 0, 0.05, 0.05]), ("road", [0, 0, 1, 1])])
    assert compute_slices(small, CFG) == ["small_evidence"]
    assert compute_slices(SliceInputs(boxes=[("cone", [0, 0, 0.5, 0.5])]), CFG) == []
    assert compute_slices(SliceInputs(label="no_roadwork", orange_share=0.3, sources=["synthetic"]), CFG) == ["orange_distractor", "synthetic"]
    assert compute_slices(SliceInputs(label="roadwork", orange_share=0.3), CFG) == []
    assert slice_counts([["night"], None, []])["urban"] == 0


def test_orange_share_detects_orange():
    orange = decode_image(orange_bytes(), name="o", limits=MediaLimits()).thumb
    assert orange_share(orange, CFG) > 0.9
    gray = np.full((10, 10, 3), 128, dtype=np.uint8)
    assert orange_share(gray, CFG) == 0.0
    with pytest.raises(ConfigError, match="orange_share"):
        SliceConfig(orange_share=2)


def test_shipped_ingest_yaml_is_the_defaults():
    from curation.assets import asset_dir
    from curation.ingest.job import IngestConfig

    assert IngestConfig.load(asset_dir("datasets") / "ingest.yaml") == IngestConfig()
