"""Demo corpus: real-format layouts, determinism, hidden truth and leakage fixtures."""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from curation.demo.corpus import CorpusSpec, Manifest, write_corpus
from curation.demo.roadwork_format import ROADWORK_CLASSES
from curation.errors import ConfigError, InputError

SPEC = CorpusSpec(n_natix_train=30, n_natix_test=12, n_roadwork=16, n_roboflow=10, n_queries=6, seed=1)
TRAIN_COLUMNS = [
    "image", "id", "width", "height", "license", "date_captured", "flickr_url", "coco_url", "gps", "city_name",
    "scene_description", "video_info.frame_id", "video_info.seq_id", "video_info.vid_id", "scene_level_tags.daytime",
    "scene_level_tags.scene_environment", "scene_level_tags.travel_alteration", "scene_level_tags.weather", "label",
]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return write_corpus(tmp_path_factory.mktemp("demo") / "out", SPEC)


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _truth(m: Manifest) -> list[dict]:
    with m.paths["truth"].open() as f:
        return list(csv.DictReader(f))


def _natix(m: Manifest, name: str) -> pa.Table:
    return pq.read_table(m.paths["natix"] / "data" / name)


def test_same_seed_same_bytes_other_seed_differs(corpus: Manifest, tmp_path: Path) -> None:
    again = write_corpus(tmp_path / "again", SPEC)
    assert _hashes(again.root) == _hashes(corpus.root)
    other = write_corpus(tmp_path / "other", CorpusSpec(n_natix_train=10, n_natix_test=4, n_roadwork=0, n_roboflow=0, n_queries=0, seed=2))
    first = lambda m: _natix(m, "train-00000-of-00002.parquet")["image"][0].as_py()["bytes"]  # noqa: E731
    assert first(other) != first(corpus)


def test_rewrite_replaces_a_corpus_but_refuses_other_folders(corpus: Manifest, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        write_corpus(tmp_path, SPEC)
    small = CorpusSpec(n_natix_train=10, n_natix_test=4, n_roadwork=0, n_roboflow=0, n_queries=0)
    write_corpus(tmp_path / "c", SPEC)
    again = write_corpus(tmp_path / "c", small)
    assert again.n_images == len(_truth(again)) == 14
    assert not list((tmp_path / "c" / "roadwork" / "images").glob("*.jpg"))


def test_manifest_paths_and_counts(corpus: Manifest) -> None:
    assert set(corpus.paths) == {"natix", "roadwork", "roboflow_coco", "roboflow_yolo", "roboflow_cls", "queries", "truth"}
    assert all(p.exists() for p in corpus.paths.values())
    on_disk = json.loads((corpus.root / "manifest.json").read_text())
    assert on_disk["n_images"] == corpus.n_images == len(_truth(corpus))
    assert on_disk["spec"]["seed"] == 1


def test_natix_train_is_flat_with_dotted_columns(corpus: Manifest) -> None:
    for name in ("train-00000-of-00002.parquet", "train-00001-of-00002.parquet"):
        table = _natix(corpus, name)
        assert table.column_names == TRAIN_COLUMNS
        assert table.schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        for col in ("id", "width", "height", "label"):
            assert table.schema.field(col).type == pa.int64()
        for col in TRAIN_COLUMNS[4:-1]:
            assert table.schema.field(col).type == pa.string()
        assert pq.ParquetFile(corpus.paths["natix"] / "data" / name).num_row_groups >= 2
        row = table.slice(0, 1).to_pylist()[0]
        assert ast.literal_eval(row["scene_level_tags.weather"])[0] in ("Sunny", "Cloudy", "Rain", "Snow", "Fog")
        assert row["scene_level_tags.travel_alteration"].startswith("['")
        assert len(ast.literal_eval(row["gps"])) == 2
        assert Image.open(io.BytesIO(row["image"]["bytes"])).size == (640, 360) == (row["width"], row["height"])


def test_natix_test_is_nested(corpus: Manifest) -> None:
    table = _natix(corpus, "test-00000-of-00001.parquet")
    assert table.column_names == TRAIN_COLUMNS[:11] + ["video_info", "scene_level_tags", "label"]
    assert table.schema.field("video_info").type == pa.struct([("frame_id", pa.string()), ("seq_id", pa.string()), ("vid_id", pa.string())])
    tags = table.schema.field("scene_level_tags").type
    assert tags.field("weather").type == pa.list_(pa.string()) and tags.field("travel_alteration").type == pa.list_(pa.string())
    assert len(table) == SPEC.n_natix_test


def test_natix_train_share_sequences_and_label_conflicts(corpus: Manifest) -> None:
    rows = pa.concat_tables([_natix(corpus, f"train-0000{i}-of-00002.parquet") for i in (0, 1)]).drop(["image"]).to_pylist()
    assert len(rows) == SPEC.n_natix_train
    assert abs(sum(r["label"] for r in rows) / len(rows) - 0.8) <= 0.1
    per_seq: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["video_info.vid_id"], r["video_info.seq_id"])
        per_seq[key] = per_seq.get(key, 0) + 1
    assert max(per_seq.values()) >= 3
    conflicts = [r["id"] for r in rows if (r["label"] == 1) != bool(r["scene_description"])]  # the validator's rule
    assert 2 <= len(conflicts) <= 3
    assert sorted(conflicts) == sorted(c["natix_id"] for c in corpus.fixtures["label_conflicts"])


def test_roadwork_coco_is_valid_with_shuffled_categories(corpus: Manifest) -> None:
    root = corpus.paths["roadwork"]
    names_in_id_order = []
    for split in ("train", "val"):
        doc = json.loads((root / "annotations" / f"instances_{split}_gps_split.json").read_text())
        cats = {c["id"]: c["name"] for c in doc["categories"]}
        names_in_id_order = [cats[i] for i in sorted(cats)]
        assert set(ROADWORK_CLASSES) <= set(cats.values())
        assert any(n.startswith("Temporary Traffic Control Sign: ") for n in cats.values())
        images = {im["id"]: im for im in doc["images"]}
        for im in images.values():
            assert (root / "images" / im["file_name"]).is_file()
            assert set(im["video_info"]) == {"vid_id", "seq_id", "frame_id"} and len(im["gps"]) == 2
            assert isinstance(im["scene_level_tags"]["travel_alteration"], list) and im["scene_level_tags"]["daytime"] in ("Light", "Dark", "Twilight")
        for a in doc["annotations"]:
            im = images[a["image_id"]]
            x, y, w, h = a["bbox"]
            assert a["category_id"] in cats and a["iscrowd"] == 0 and w > 0 and h > 0
            assert x >= 0 and y >= 0 and x + w <= im["width"] + 0.01 and y + h <= im["height"] + 0.01
        if split == "train":
            used = {cats[a["category_id"]] for a in doc["annotations"]}
            assert "Road" in used and used - {"Road", "Sidewalk"}
    assert names_in_id_order[: len(ROADWORK_CLASSES)] != list(ROADWORK_CLASSES)


def test_roboflow_coco_export(corpus: Manifest) -> None:
    names = set()
    for split in ("train", "valid", "test"):
        doc = json.loads((corpus.paths["roboflow_coco"] / split / "_annotations.coco.json").read_text())
        cats = {c["id"]: c for c in doc["categories"]}
        assert cats[0] == {"id": 0, "name": "roadwork-demo", "supercategory": "none"}
        assert all(a["category_id"] != 0 for a in doc["annotations"])
        names |= {c["name"] for i, c in cats.items() if i}
        for im in doc["images"]:
            assert re.fullmatch(r"img\d{4}_jpg\.rf\.[0-9a-f]{32}\.jpg", im["file_name"])
            assert (im["width"], im["height"]) == (416, 416)
            assert (corpus.paths["roboflow_coco"] / split / im["file_name"]).is_file()
    assert names == {"cone", "traffic-barrel", "barricade", "road-work-sign", "worker", "excavator"}


def test_roboflow_yolo_export(corpus: Manifest) -> None:
    root = corpus.paths["roboflow_yolo"]
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert (data["train"], data["val"], data["test"]) == ("../train/images", "../valid/images", "../test/images")
    assert data["nc"] == len(data["names"]) == 6 and "roadwork-demo" not in data["names"]
    assert set(data["roboflow"]) >= {"workspace", "project", "version", "license", "url"}
    assert not (root / "test").exists()
    for split in ("train", "valid"):
        for img in (root / split / "images").glob("*.jpg"):
            lines = (root / split / "labels" / f"{img.stem}.txt").read_text().splitlines()
            for line in lines:
                cls, *xywh = line.split()
                assert 0 <= int(cls) < data["nc"] and all(0.0 <= float(v) <= 1.0 for v in xywh)


def test_roboflow_cls_export(corpus: Manifest) -> None:
    root = corpus.paths["roboflow_cls"]
    assert {p.name for p in root.iterdir()} == {"train", "valid"}
    assert {p.name for p in (root / "train").iterdir()} == {"roadwork", "no_roadwork"}


def test_query_log(corpus: Manifest) -> None:
    root = corpus.paths["queries"]
    records = [json.loads(line) for line in (root / "log.jsonl").read_text().splitlines()]
    assert len(records) == SPEC.n_queries
    for rec in records:
        data = (root / rec["file"]).read_bytes()
        assert rec["file"] == f"images/{hashlib.sha256(data).hexdigest()}.jpg"
        assert Image.open(io.BytesIO(data)).size == (224, 224)
        assert len(rec["validator_hotkey"]) == 48 and 0 <= rec["response"] <= 1 and rec["model_version"] == "0.1.0"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rec["received_at"])
    feedback = [r["feedback"] for r in records if r["feedback"] is not None]
    assert feedback and all(set(f) == {"label", "source"} for f in feedback)


def test_truth_covers_every_image(corpus: Manifest) -> None:
    truth = _truth(corpus)
    files = {p.relative_to(corpus.root).as_posix() for p in corpus.root.rglob("*.jpg")}
    assert {t["path"] for t in truth if "#" not in t["path"]} == files
    n_natix = sum(pq.ParquetFile(p).metadata.num_rows for p in (corpus.paths["natix"] / "data").glob("*.parquet"))
    assert sum(t["source"] == "natix" for t in truth) == n_natix
    for t in truth:
        assert t["is_roadwork"] in ("0", "1") and t["kind"]
        if t["is_roadwork"] == "1":
            assert t["hn_category"] == ""
    assert any(t["hn_category"] for t in truth)
    for t in truth:
        if "#" not in t["path"]:
            assert hashlib.sha256((corpus.root / t["path"]).read_bytes()).hexdigest() == t["sha256"]


def test_leakage_fixtures(corpus: Manifest) -> None:
    fx = corpus.fixtures
    rw = corpus.paths["roadwork"] / "images"
    natix = {r["id"]: r for name in ("train-00000-of-00002.parquet", "train-00001-of-00002.parquet", "test-00000-of-00001.parquet") for r in _natix(corpus, name).to_pylist()}
    test_seqs = {(r["video_info"]["vid_id"], r["video_info"]["seq_id"]) for r in natix.values() if "video_info" in r}
    train_seqs = {(r["video_info.vid_id"], r["video_info.seq_id"]) for r in natix.values() if "video_info.vid_id" in r}
    shared = {s["natix_split"]: (s["vid_id"], s["seq_id"]) for s in fx["shared_sequences"]}
    assert shared["test"] in test_seqs and shared["train"] in train_seqs
    assert len(fx["byte_identical"]) == 2
    for pair in fx["byte_identical"]:
        assert (rw / pair["roadwork_file"]).read_bytes() == natix[pair["natix_id"]]["image"]["bytes"]
    assert 1 <= len(fx["near_duplicates"]) <= 2
    for pair in fx["near_duplicates"]:
        near, orig = (rw / pair["roadwork_file"]).read_bytes(), natix[pair["natix_id"]]["image"]["bytes"]
        assert near != orig and pair["natix_id"] in {r["id"] for r in natix.values() if "video_info" in r}
        a, b = (Image.open(io.BytesIO(x)).convert("L") for x in (near, orig))
        diff = np.abs(np.asarray(a.resize((32, 18)), float) - np.asarray(b.resize((32, 18)), float)).mean()
        assert diff < 6  # visually the same picture


def test_spec_validation_names_the_parameter() -> None:
    with pytest.raises(ConfigError, match="`n_roadwork`.*Got -1"):
        CorpusSpec(n_roadwork=-1)


@pytest.mark.parametrize(("look_alike", "allowed"), [(0.0, {"plain"}), (1.0, {"orange_billboard", "shop_sign", "foliage", "crane", "vest", "sunset", "orange_vehicle", "garden_fence"})])
def test_query_stream_mix_sets_the_share_of_roadwork_and_look_alikes(tmp_path: Path, look_alike: float, allowed: set[str]) -> None:
    from curation.demo.scene import POSITIVE_KINDS

    spec = CorpusSpec(n_natix_train=0, n_natix_test=0, n_roadwork=0, n_roboflow=0, n_queries=20, seed=3, query_positive=0.15, query_look_alike=look_alike)
    rows = _truth(write_corpus(tmp_path / "out", spec))
    kinds = [r["kind"] for r in rows]
    assert sum(k in POSITIVE_KINDS for k in kinds) == 3  # round(0.15 × 20) roadwork scenes
    assert {k for k in kinds if k not in POSITIVE_KINDS} <= allowed



def test_query_mix_is_validated() -> None:
    with pytest.raises(ConfigError, match="`query_look_alike`.*Got 1.5"):
        CorpusSpec(query_look_alike=1.5)
    with pytest.raises(ConfigError, match="`query_positive`.*Got -0.1"):
        CorpusSpec(query_positive=-0.1)
