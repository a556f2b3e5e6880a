"""ROADWork extended COCO: categories by id, sign subtypes, context classes, scene tags, paths."""

from __future__ import annotations

import json

import pytest
from _ingest_fixtures import ROADWORK_CATEGORIES, write_roadwork

from curation.errors import InputError
from curation.ingest.sources.common import (
    BAD_FILE,
    UNSAFE_PATH,
    Reject,
    SourceRecord,
    coco_categories,
    default_class_map_path,
    load_class_map,
)
from curation.ingest.sources.roadwork import RoadworkImporter, annotation_files, label_from_travel_alteration, parse_roadwork_image
from curation.schema import Label


@pytest.fixture(scope="module")
def class_map():
    return load_class_map(default_class_map_path("roadwork"))


def test_every_roadwork_class_is_mapped(class_map):
    names = ["Police Officer", "Police Vehicle", "Sidewalk", "Cone", "Fence", "Drum", "Barricade", "Barrier",
             "Work Vehicle", "Vertical Panel", "Tubular Marker", "Arrow Board",
             "Temporary Traffic Control Message Board", "Road", "Bike Lane", "Temporary Traffic Control Sign",
             "Work Equipment", "Worker", "Other Roadwork Objects", "Temporary Traffic Control Sign: left chevron"]
    assert class_map.unmapped(names) == []
    assert class_map.primitive("Temporary Traffic Control Sign: left chevron") == ("ttc_sign", "left chevron")
    assert class_map.primitive("Other Roadwork Objects")[0] == "other_roadwork"
    assert class_map.primitive("Police Officer")[0] == "police_officer"


def test_parse_image_boxes_by_category_id(class_map, tmp_path):
    doc = {"categories": ROADWORK_CATEGORIES, "annotations": [
        {"id": 1, "image_id": 1, "category_id": 12, "bbox": [32, 24, 16, 12]},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 24, 64, 24]},
        {"id": 3, "image_id": 1, "category_id": 5, "bbox": [0, 0, 6.4, 4.8]},
    ]}
    cats = coco_categories(doc, class_map, where="f")
    image = {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48, "video_info": {"vid_id": "v", "seq_id": "2", "frame_id": "9"},
             "scene_level_tags": {"daytime": "Dark", "weather": ["Rain"], "travel_alteration": ["None"], "scene_environment": "Urban"},
             "gps": [40.0, -80.0], "city_name": "Pittsburgh", "scene_description": "x"}
    rec = parse_roadwork_image(image, doc["annotations"], cats, split="train", root=tmp_path, images_dir=tmp_path / "images", where="f")
    assert isinstance(rec, SourceRecord)
    assert [p.label for p in rec.primitives] == ["ttc_sign", "road", "ttc_message_board"]
    assert rec.primitives[0].box == (0.5, 0.5, 0.25, 0.25) and rec.primitives[0].attrs["subtype"] == "left chevron"
    assert rec.label == Label.NO_ROADWORK  # travel_alteration ["None"]: the source says no work zone
    assert rec.sequence_group == "v/2" and rec.frame_key == "v/2/9"
    assert rec.scene["location"] == [-80.0, 40.0] and rec.scene["daytime"] == "Dark"


@pytest.mark.parametrize("name", ["../outside.jpg", "/etc/passwd", "../../x.jpg", ""])
def test_escaping_file_name_rejected(class_map, tmp_path, name):
    cats = coco_categories({"categories": ROADWORK_CATEGORIES}, class_map, where="f")
    (tmp_path / "images").mkdir()
    rec = parse_roadwork_image({"id": 1, "file_name": name}, [], cats, split="train", root=tmp_path,
                               images_dir=tmp_path / "images", where="f")
    assert isinstance(rec, Reject) and rec.reason == UNSAFE_PATH


def test_travel_alteration_labels():
    assert label_from_travel_alteration(["None"]) == Label.NO_ROADWORK
    assert label_from_travel_alteration("['Lane Shift']") == Label.ROADWORK
    assert label_from_travel_alteration(None) is None


def test_importer_reads_files_and_prefers_with_signs(tmp_path):
    write_roadwork(tmp_path, [{"id": 5, "file_name": "a.jpg", "seed": 1}],
                   [{"id": 1, "image_id": 5, "category_id": 7, "bbox": [1, 1, 10, 10]}])
    signs = tmp_path / "annotations" / "instances_train_gps_split_with_signs.json"
    signs.write_text((tmp_path / "annotations" / "instances_train_gps_split.json").read_text())
    assert [f.name for f in annotation_files(tmp_path)] == ["instances_train_gps_split_with_signs.json"]
    imp = RoadworkImporter(tmp_path)
    imp.setup()
    (rec,) = list(imp)
    assert rec.path == (tmp_path / "images" / "a.jpg").resolve() and rec.primitives[0].label == "cone"


def test_unmapped_category_lists_names_and_file(tmp_path):
    cats = [*ROADWORK_CATEGORIES, {"id": 44, "name": "Flying Saucer"}]
    write_roadwork(tmp_path, [{"id": 1, "file_name": "a.jpg", "seed": 1}],
                   [{"id": 1, "image_id": 1, "category_id": 44, "bbox": [1, 1, 5, 5]}], categories=cats)
    with pytest.raises(InputError) as info:
        RoadworkImporter(tmp_path).setup()
    assert "'Flying Saucer'" in str(info.value) and "class_map.yaml" in str(info.value)


def test_bad_annotation_and_unreadable_json(tmp_path):
    write_roadwork(tmp_path, [{"id": 1, "file_name": "a.jpg", "seed": 1}],
                   [{"id": 1, "image_id": 1, "category_id": 7, "bbox": "oops"}])
    (tmp_path / "annotations" / "instances_val_gps_split.json").write_text("{broken")
    imp = RoadworkImporter(tmp_path)
    imp.setup()
    unreadable, rej = list(imp)  # an unreadable file is a reject (so --strict fails), listed first
    assert isinstance(rej, Reject) and "malformed bbox" in rej.message
    assert unreadable.reason == BAD_FILE and "not valid JSON" in unreadable.message
    assert json.loads((tmp_path / "annotations" / "instances_train_gps_split.json").read_text())["images"]


# Issue 24 hardening ---------------------------------------------------------------------------
def _items(importer):
    importer.setup()
    items = list(importer)
    return [r for r in items if isinstance(r, SourceRecord)], [r for r in items if isinstance(r, Reject)]


def test_item10_roadwork_malformed_entries_rejected_by_name(tmp_path):
    images = [{"id": i, "file_name": f"f{i}.jpg", "seed": i} for i in range(5)]
    anns = [{"id": i, "image_id": i, "category_id": 7, "bbox": [1, 1, 10, 10]} for i in range(5)]
    file = write_roadwork(tmp_path, images, anns, categories=[*ROADWORK_CATEGORIES, {"name": "Drum"}])
    doc = json.loads(file.read_text())
    doc["images"][3] = "f3.jpg"
    doc["images"][4]["id"] = {"nested": 1}
    doc["annotations"].append(["not", "an", "annotation"])
    file.write_text(json.dumps(doc))
    records, rejects = _items(RoadworkImporter(tmp_path))
    assert sorted(r.source_id for r in records) == ["f0.jpg", "f1.jpg", "f2.jpg"]
    text = " | ".join(r.message for r in rejects)
    assert "images[3]" in text and "images[4]" in text and "categories[6]" in text and "annotations[5]" in text


@pytest.mark.parametrize("text", [json.dumps([{"images": []}]), "[" * 50_000 + "]" * 50_000, ""])
def test_item10_roadwork_malformed_document_is_a_reject_not_a_traceback(tmp_path, text):
    write_roadwork(tmp_path, [{"id": 1, "file_name": "a.jpg", "seed": 1}], [], split="train")
    bad = tmp_path / "annotations" / "instances_val_gps_split.json"
    bad.write_text(text)
    records, rejects = _items(RoadworkImporter(tmp_path))
    assert len(records) == 1
    (rej,) = rejects
    assert str(bad) in rej.message and "Traceback" not in rej.message


def test_item11_roadwork_zero_byte_file_is_a_reject(tmp_path):
    write_roadwork(tmp_path, [{"id": 1, "file_name": "a.jpg", "seed": 1}], [])
    (tmp_path / "annotations" / "instances_val_gps_split.json").write_bytes(b"")
    _, rejects = _items(RoadworkImporter(tmp_path))
    (rej,) = rejects
    assert rej.reason == BAD_FILE and "empty" in rej.message


def test_item12_roadwork_nan_or_huge_box_rejected(tmp_path):
    write_roadwork(tmp_path, [{"id": 1, "file_name": "a.jpg", "seed": 1}, {"id": 2, "file_name": "b.jpg", "seed": 2}],
                   [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [float("nan"), 1, 1e308, 2]},
                    {"id": 2, "image_id": 2, "category_id": 7, "bbox": [1, 1, 10, 10]}])
    records, rejects = _items(RoadworkImporter(tmp_path))
    assert [r.source_id for r in records] == ["b.jpg"]
    assert len(rejects) == 1 and "a.jpg" in rejects[0].message


def test_item15_escaping_symlink_is_named_as_such_not_file_not_found(tmp_path):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    root = tmp_path / "rw"
    write_roadwork(root, [{"id": 1, "file_name": "a.jpg"}], [])
    (root / "images" / "a.jpg").symlink_to(outside)
    records, rejects = _items(RoadworkImporter(root))
    assert records == []
    (rej,) = rejects
    assert rej.reason == UNSAFE_PATH and "symbolic link" in rej.message and "not found" not in rej.message


def test_item04_roadwork_images_folder_linked_outside_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    write_roadwork(elsewhere, [{"id": 1, "file_name": "a.jpg", "seed": 1}], [])
    root = tmp_path / "rw"
    write_roadwork(root, [{"id": 1, "file_name": "a.jpg"}], [])
    (root / "images").rmdir()
    (root / "images").symlink_to(elsewhere / "images", target_is_directory=True)
    records, rejects = _items(RoadworkImporter(root))
    assert records == [] and len(rejects) == 1 and "symbolic link" in rejects[0].message
