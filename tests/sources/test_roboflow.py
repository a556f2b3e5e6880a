"""Roboflow COCO, YOLO and classification exports, found by looking at the folder."""

from __future__ import annotations

import json

import pytest
import yaml
from _ingest_fixtures import image_bytes

from curation.errors import InputError
from curation.ingest.sources.common import (
    BAD_FILE,
    BAD_LABEL,
    BAD_RECORD,
    UNSAFE_PATH,
    Reject,
    SourceRecord,
    default_class_map_path,
    load_class_map,
)
from curation.ingest.sources.roboflow import RoboflowImporter, discover_exports, parse_yolo_lines
from curation.schema import Label


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


# Issue 24 hardening ---------------------------------------------------------------------------
def _yolo_export(root, train_value, *, extra=None, image_seed=50):
    """A one-split YOLO export at ``root`` whose data.yaml says ``train: train_value``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"train": train_value, "nc": 1, "names": ["cone"], **(extra or {})}))
    (root / "train" / "images").mkdir(parents=True, exist_ok=True)
    (root / "train" / "labels").mkdir(parents=True, exist_ok=True)
    (root / "train" / "images" / "own_jpg.rf.1.jpg").write_bytes(image_bytes(image_seed))
    return root / "data.yaml"


def _outside_images(folder, seed=60):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    (folder / "images" / "outside.jpg").write_bytes(image_bytes(seed))
    return folder / "images"


def _items(importer):
    importer.setup()
    items = list(importer)
    return [r for r in items if isinstance(r, SourceRecord)], [r for r in items if isinstance(r, Reject)]


@pytest.mark.parametrize("how", ["dotdot", "absolute", "path_key"])
def test_item03_yaml_path_outside_export_refused(tmp_path, how):
    elsewhere = _outside_images(tmp_path / "elsewhere")
    export = tmp_path / "a" / "b" / "export"
    if how == "dotdot":
        data_yaml = _yolo_export(export, "../../../elsewhere/images")
    elif how == "absolute":
        data_yaml = _yolo_export(export, str(elsewhere))
    else:
        data_yaml = _yolo_export(export, "images", extra={"path": str(elsewhere.parent)})
    records, rejects = _items(RoboflowImporter(data_yaml))
    assert all("outside" not in str(r.path) for r in records)
    (rej,) = [r for r in rejects if r.reason == UNSAFE_PATH]
    assert str(data_yaml) in rej.message and "outside the export" in rej.message


def test_item04_symlinks_not_followed_in_yolo_and_class_folders(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(image_bytes(77))
    secret = outside / "shadow"
    secret.write_bytes(b"x" * 1234)
    secret.chmod(0)
    # YOLO: a symlinked image and a symlinked "image" pointing at an unreadable file
    data_yaml = _yolo_export(tmp_path / "yolo", "../train/images")
    images = tmp_path / "yolo" / "train" / "images"
    (images / "link_jpg.rf.2.jpg").symlink_to(outside / "secret.jpg")
    (images / "shadow.jpg").symlink_to(secret)
    records, rejects = _items(RoboflowImporter(data_yaml))
    assert [r.path.name for r in records] == ["own_jpg.rf.1.jpg"]
    assert sorted(r.reason for r in rejects) == [UNSAFE_PATH, UNSAFE_PATH]
    assert all("1234" not in r.message and "symbolic link" in r.message for r in rejects)
    # classification: a class folder that is a symlink out, and a symlinked file in a real class folder
    cls = tmp_path / "cls" / "train"
    (cls / "roadwork").mkdir(parents=True)
    (cls / "roadwork" / "own.jpg").write_bytes(image_bytes(78))
    (cls / "roadwork" / "link.jpg").symlink_to(outside / "secret.jpg")
    (cls / "no_roadwork").symlink_to(outside, target_is_directory=True)
    records, rejects = _items(RoboflowImporter(tmp_path / "cls"))
    assert [r.path.name for r in records] == ["own.jpg"]
    assert len(rejects) == 2 and all(r.reason == UNSAFE_PATH and "symbolic link" in r.message for r in rejects)


def test_item05_standard_export_beside_sibling_reads_its_own_folder(tmp_path):
    _outside_images(tmp_path / "train", seed=61)  # an unrelated tmp/train/images next to the export
    data_yaml = _yolo_export(tmp_path / "export", "../train/images")
    records, rejects = _items(RoboflowImporter(data_yaml))
    assert [r.path.name for r in records] == ["own_jpg.rf.1.jpg"] and rejects == []
    assert records[0].path == (tmp_path / "export" / "train" / "images" / "own_jpg.rf.1.jpg").resolve()


def _coco_doc(n, *, bad_at=None, bad=None):
    images = [{"id": i, "file_name": f"i{i}.jpg", "width": 64, "height": 48} for i in range(n)]
    if bad_at is not None:
        images[bad_at] = bad
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 10, 10]} for i in range(n)]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cone", "supercategory": "p"}]}


def _write_coco_doc(root, doc, n):
    folder = root / "train"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"i{i}.jpg").write_bytes(b"jpeg")
    (folder / "_annotations.coco.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return folder / "_annotations.coco.json"


@pytest.mark.parametrize("bad", ["just a string", 17, None, ["a"], {"id": 600, "file_name": 5}, {"id": [1], "file_name": "i600.jpg"}])
def test_item10_malformed_coco_entry_rejected_rest_imported(tmp_path, bad):
    file = _write_coco_doc(tmp_path, _coco_doc(701, bad_at=600, bad=bad), 701)
    records, rejects = _items(RoboflowImporter(tmp_path))
    assert len(records) == 700
    (rej,) = rejects
    assert str(file) in rej.message and "600" in rej.message


def test_item10_malformed_coco_documents_do_not_crash(tmp_path):
    cases = {
        "list": json.dumps([1, 2, 3]),
        "deep": "[" * 100_000 + "]" * 100_000,
        "images_not_list": json.dumps({"images": "x", "annotations": [], "categories": []}),
    }
    for name, text in cases.items():
        root = tmp_path / name
        file = _write_coco_doc(root, text, 0)
        records, rejects = _items(RoboflowImporter(root))
        assert records == [] and len(rejects) == 1 and str(file) in rejects[0].message, name
    # a category without id and a string annotation: that entry is rejected by name, the rest imported
    doc = _coco_doc(3)
    doc["categories"].append({"name": "worker"})
    doc["annotations"].append("garbage")
    doc["annotations"].append({"id": 99, "image_id": 2, "category_id": "worker", "bbox": [1, 1, 5, 5]})
    _write_coco_doc(tmp_path / "cats", doc, 3)
    records, rejects = _items(RoboflowImporter(tmp_path / "cats"))
    assert len(records) == 2
    messages = " ".join(r.message for r in rejects)
    assert "categories[1]" in messages and "annotations[3]" in messages and "i2.jpg" in messages


@pytest.mark.parametrize("text", ["", "{broken", "\x00\x01"])
def test_item11_unreadable_coco_file_is_a_reject(tmp_path, text):
    file = _write_coco_doc(tmp_path, text, 0)
    _, rejects = _items(RoboflowImporter(tmp_path))
    (rej,) = rejects
    assert rej.reason == BAD_FILE and str(file) in rej.message


@pytest.mark.parametrize("line", ["0 nan nan nan nan", "0 0.5 0.5 inf 0.1", "0 0.5 nan 0.2 0.2", "0 nan 0.1 0.2 0.1 0.2 0.3"])
def test_item12_yolo_nan_or_infinite_box_rejected(line):
    with pytest.raises(ValueError, match="finite"):
        parse_yolo_lines(line, ["cone"], lambda n: (n, None))


@pytest.mark.parametrize("bbox", [[float("nan"), 1, 1e308, 2], [1, 1, 1e308, 2], [1, 1, float("inf"), 2], [200, 1, 5, 5],
                                  [1, 1, 5, 1e9]])
def test_item12_coco_nan_or_huge_box_rejected(tmp_path, bbox):
    doc = _coco_doc(2)
    doc["annotations"][1]["bbox"] = bbox
    _write_coco_doc(tmp_path, json.dumps(doc, allow_nan=True), 2)
    records, rejects = _items(RoboflowImporter(tmp_path))
    assert len(records) == 1 and records[0].path.name == "i0.jpg"
    (rej,) = rejects
    assert rej.reason == BAD_RECORD and "i1.jpg" in rej.message and "bbox" in rej.message
