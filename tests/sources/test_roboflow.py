"""Roboflow COCO, YOLO and classification exports, found by looking at the folder."""

from __future__ import annotations

import json

import pytest
import yaml
from _ingest_fixtures import image_bytes

from curation.errors import InputError
from curation.schema import Label
from curation.sources.common import BAD_LABEL, Reject, SourceRecord, default_class_map_path, load_class_map
from curation.sources.roboflow import RoboflowImporter, discover_exports, parse_yolo_lines


@pytest.fixture(scope="module")
def class_map():
    return load_class_map(default_class_map_path("roboflow"))


def test_required_names_mapped(class_map):
    expect = {"cone": "cone", "traffic-barrel": "drum", "barricade": "barricade", "road-work-sign": "ttc_sign",
              "worker": "worker", "excavator": "work_equipment", "Traffic Cone": "cone", "traffic_cone": "cone"}
    for name, unified in expect.items():
        assert class_map.primitive(name)[0] == unified
    assert class_map.primitive("car")[0] is None  # ignored
    assert class_map.image_label("no_roadwork") == Label.NO_ROADWORK and class_map.image_label("cone") == Label.ROADWORK


def write_coco(root, split, files, categories, annotations):
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i, (name, seed) in enumerate(files):
        (folder / name).write_bytes(image_bytes(seed))
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
    (folder / "_annotations.coco.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def test_coco_export_drops_placeholder(tmp_path):
    cats = [{"id": 0, "name": "roadwork-xyz", "supercategory": "none"},
            {"id": 1, "name": "cone", "supercategory": "roadwork-xyz"},
            {"id": 2, "name": "worker", "supercategory": "roadwork-xyz"}]
    anns = [{"id": 1, "image_id": 0, "category_id": 2, "bbox": [0, 0, 32, 24]}]
    write_coco(tmp_path, "train", [("a_jpg.rf.0123abcd.jpg", 1), ("b_jpg.rf.99.jpg", 2)], cats, anns)
    write_coco(tmp_path, "valid", [("c_jpg.rf.77.jpg", 3)], cats, [])
    assert discover_exports(tmp_path) == [("coco", tmp_path)]
    imp = RoboflowImporter(tmp_path)
    imp.setup()
    records = list(imp)
    assert len(imp) == 3 and len(records) == 3
    assert records[0].primitives[0].label == "worker" and records[0].primitives[0].box == (0.0, 0.0, 0.5, 0.5)
    assert records[1].primitives == () and {r.source_split for r in records} == {"train", "valid"}


def test_unmapped_class_error_lists_names_and_file(tmp_path):
    cats = [{"id": 0, "name": "proj", "supercategory": "none"}, {"id": 1, "name": "zebra", "supercategory": "proj"},
            {"id": 2, "name": "unicorn", "supercategory": "proj"}]
    anns = [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [0, 0, 5, 5]}, {"id": 2, "image_id": 0, "category_id": 2, "bbox": [0, 0, 5, 5]}]
    write_coco(tmp_path, "train", [("a.jpg", 1)], cats, anns)
    with pytest.raises(InputError) as info:
        RoboflowImporter(tmp_path).setup()
    text = str(info.value)
    assert "'unicorn'" in text and "'zebra'" in text and "datasets/roboflow/class_map.yaml" in text


def test_user_class_map_extends_default(tmp_path):
    cats = [{"id": 1, "name": "zebra", "supercategory": "p"}]
    write_coco(tmp_path, "train", [("a.jpg", 1)], cats, [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [0, 0, 5, 5]}])
    extra = tmp_path / "mine.yaml"
    extra.write_text("primitives:\n  zebra: barrier\n")
    imp = RoboflowImporter(tmp_path, class_map=[default_class_map_path("roboflow"), extra])
    imp.setup()
    assert list(imp)[0].primitives[0].label == "barrier"


def write_yolo(root, names, splits=("train", "valid")):
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(yaml.safe_dump({
        "train": "../train/images", "val": "../valid/images", "test": "../test/images", "nc": len(names), "names": names,
        "roboflow": {"workspace": "w", "project": "p", "version": 1}}))
    for k, split in enumerate(splits):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        (root / split / "images" / f"x{k}_jpg.rf.abc.jpg").write_bytes(image_bytes(40 + k))


def test_yolo_export_odd_paths_missing_split(tmp_path):
    write_yolo(tmp_path / "yolo", ["traffic-barrel", "car"])
    (tmp_path / "yolo" / "train" / "labels" / "x0_jpg.rf.abc.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1\n")
    imp = RoboflowImporter(tmp_path)
    imp.setup()
    records = list(imp)
    assert len(records) == 2
    assert [p.label for p in records[0].primitives] == ["drum"]  # "car" is ignored
    assert records[1].primitives == () and records[1].source_split == "valid"
    assert any("test" in w and "skipped" in w for w in imp.warnings)


def test_yolo_bad_label_file_rejected(tmp_path):
    write_yolo(tmp_path, {0: "cone"}, splits=("train",))
    (tmp_path / "train" / "labels" / "x0_jpg.rf.abc.txt").write_text("5 0.5 0.5 0.2 0.2\n")
    imp = RoboflowImporter(tmp_path / "data.yaml")
    imp.setup()
    (rej,) = list(imp)
    assert isinstance(rej, Reject) and rej.reason == BAD_LABEL and "class index 5" in rej.message


def test_parse_yolo_polygon_and_errors():
    mapper = lambda n: (n, None)  # noqa: E731
    (p,) = parse_yolo_lines("0 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6", ["cone"], mapper)
    assert p.box == (0.1, 0.2, 0.4, 0.4)
    for bad in ("0 0.5 0.5", "x 1 2 3 4", "0 1.5 1.5 0.9 0.9"):
        with pytest.raises(ValueError):
            parse_yolo_lines(bad, ["cone"], mapper)


def test_classification_folders_and_csv(tmp_path):
    for split in ("train", "valid"):
        for cls, seed in (("roadwork", 1), ("no_roadwork", 2)):
            folder = tmp_path / "cls" / split / cls
            folder.mkdir(parents=True)
            (folder / f"{cls}_jpg.rf.1.jpg").write_bytes(image_bytes(seed + (10 if split == "valid" else 0)))
    csv_dir = tmp_path / "csvexp" / "train"
    csv_dir.mkdir(parents=True)
    (csv_dir / "a.jpg").write_bytes(image_bytes(70))
    (csv_dir / "b.jpg").write_bytes(image_bytes(71))
    (csv_dir / "_classes.csv").write_text("filename, roadwork, no-roadwork\na.jpg,1,0\nb.jpg,0,1\n../x.jpg,1,0\nc.jpg,2,0\n")
    assert sorted(k for k, _ in discover_exports(tmp_path)) == ["cls", "cls"]
    imp = RoboflowImporter(tmp_path)
    imp.setup()
    items = list(imp)
    records = [r for r in items if isinstance(r, SourceRecord)]
    rejects = [r for r in items if isinstance(r, Reject)]
    assert sorted(r.label for r in records).count(Label.ROADWORK) == 3 and len(records) == 6
    assert sorted(r.reason for r in rejects) == ["bad_label", "unsafe_path"]


def test_no_export_found(tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(InputError, match="No Roboflow export"):
        RoboflowImporter(tmp_path).setup()
