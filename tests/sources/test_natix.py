"""NATIX parquet rows: dotted and nested variants, tags as strings, label conflicts, bad rows."""

from __future__ import annotations

import pytest
from _ingest_fixtures import natix_row, write_parquet

from curation.errors import InputError
from curation.ingest.sources.common import BAD_FILE, BAD_LABEL, BAD_RECORD, Reject, SourceRecord, parse_gps, parse_list
from curation.ingest.sources.natix import NatixImporter, parse_natix_row, split_from_filename, validator_conflict
from curation.schema import TAG_LABEL_CONFLICT, Label


def test_dotted_row_parses_all_fields():
    rec = parse_natix_row(natix_row(3, vid="vA", seq="7", frame=42), split="train", where="r3")
    assert isinstance(rec, SourceRecord)
    assert (rec.source_id, rec.label, rec.tags) == ("3", Label.ROADWORK, ())
    assert (rec.video_id, rec.sequence_id, rec.frame_id, rec.sequence_group) == ("vA", "7", "42", "vA/7")
    assert rec.scene["weather"] == ["Sunny"] and rec.scene["daytime"] == "Light"
    assert rec.scene["travel_alteration"] == ["Lane Shift"] and rec.scene["location"] == [-79.99, 40.44]
    assert rec.scene["city"] == "Pittsburgh" and rec.primitives is None


def test_nested_variant_equals_dotted():
    a = parse_natix_row(natix_row(1), split="test", where="a")
    b = parse_natix_row(natix_row(1, nested=True), split="test", where="b")
    assert (a.video_id, a.sequence_id, a.frame_id, dict(a.scene)) == (b.video_id, b.sequence_id, b.frame_id, dict(b.scene))


@pytest.mark.parametrize(
    ("label", "description", "conflict"),
    [(1, "", True), (1, "No Description", False), (1, "cones", False), (0, "", False), (0, "no description", True),
     (0, "a barrier", True)],
)
def test_label_conflict_tagged_never_relabeled(label, description, conflict):
    rec = parse_natix_row(natix_row(0, label=label, description=description), split="train", where="r")
    assert rec.label == (Label.ROADWORK if label else Label.NO_ROADWORK)
    assert (TAG_LABEL_CONFLICT in rec.tags) is conflict


@pytest.mark.parametrize("bad", [2, -1, None, "maybe", 0.5])
def test_wrong_label_value_rejected(bad):
    row = natix_row(0)
    row["label"] = bad
    rej = parse_natix_row(row, split="train", where="f.parquet row 0")
    assert isinstance(rej, Reject) and rej.reason == BAD_LABEL and "f.parquet row 0" in rej.message


def test_missing_image_bytes_rejected():
    row = natix_row(0)
    row["image"] = {"bytes": None, "path": "x.jpg"}
    assert parse_natix_row(row, split="train", where="r").reason == BAD_RECORD


def test_value_parsers():
    assert parse_list("['Rain', 'Snow']") == ["Rain", "Snow"] and parse_list("[]") == [] and parse_list("Sunny") == ["Sunny"]
    assert parse_list(None) == [] and parse_list(["a", None]) == ["a"]
    assert parse_gps("[40.5, -80.1]") == [-80.1, 40.5] and parse_gps("[0, 0]") is None and parse_gps("garbage") is None
    assert parse_gps({"lat": 1, "lon": 2}) == [2.0, 1.0]


def test_split_from_filename(tmp_path):
    assert split_from_filename(tmp_path / "train-00000-of-00002.parquet") == "train"
    assert split_from_filename(tmp_path / "test" / "part.parquet") == "test"
    assert split_from_filename(tmp_path / "x.parquet") is None


def test_importer_streams_files_and_row_groups(tmp_path):
    write_parquet(tmp_path / "data" / "train-00000-of-00002.parquet", [natix_row(i) for i in range(5)], row_group_size=2)
    write_parquet(tmp_path / "data" / "train-00001-of-00002.parquet", [natix_row(i) for i in range(5, 9)])
    write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", [natix_row(i, nested=True) for i in range(20, 23)])
    imp = NatixImporter(tmp_path)
    imp.setup()
    records = list(imp)
    assert len(imp) == 12 and len(records) == 12
    assert sorted({r.source_split for r in records}) == ["test", "train"]
    scan = list(imp.scan_groups())
    assert len(scan) == 12 and scan[0][1] == "v0/s0"


def test_importer_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        NatixImporter(tmp_path / "nope").setup()
    with pytest.raises(InputError, match="No parquet files"):
        NatixImporter(tmp_path).setup()
    write_parquet(tmp_path / "mystery.parquet", [natix_row(0)])
    with pytest.raises(InputError, match="Cannot tell the split"):
        NatixImporter(tmp_path).setup()


def test_not_a_parquet_file_is_a_reject(tmp_path):
    write_parquet(tmp_path / "train-00000-of-00001.parquet", [natix_row(0)])
    (tmp_path / "test-00000-of-00001.parquet").write_bytes(b"not parquet")
    imp = NatixImporter(tmp_path)
    imp.setup()
    items = list(imp)
    assert len(items) == 2 and "not a readable parquet" in items[0].message and items[0].reason == BAD_FILE


def test_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [natix_row(i) for i in range(3)]
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:1])})
    dd.save_to_disk(str(tmp_path / "saved"))
    imp = NatixImporter(tmp_path / "saved")
    imp.setup()
    records = list(imp)
    assert len(records) == 4 and all(isinstance(r, SourceRecord) for r in records)
    assert {r.source_split for r in records} == {"train", "test"}
    assert len(list(imp.scan_groups())) == 4


# Issue 23 (importer parity) and issue 24 item 11 ------------------------------------------------
@pytest.mark.parametrize(
    ("label", "description", "conflict"),
    [
        (1, "No Description", False),  # the literal placeholder is truthy: the validator uses the row
        (0, "No Description", True),
        (1, "", True),
        (0, "", False),
        (1, None, True),
        (0, None, False),
        (1, "   ", False),  # whitespace-only is truthy in Python, so the validator keeps a label-1 row
        (0, " \t\n", True),
    ],
)
def test_issue23_label_conflict_is_validator_truthiness(label, description, conflict):
    row = natix_row(0, label=label)
    row["scene_description"] = description
    rec = parse_natix_row(row, split="train", where="r")
    assert isinstance(rec, SourceRecord)
    assert (TAG_LABEL_CONFLICT in rec.tags) is conflict
    assert validator_conflict(label, description) is conflict


@pytest.mark.parametrize("damage", ["zero_bytes", "truncated", "not_parquet", "no_image_column"])
def test_item11_unreadable_or_imageless_parquet_is_a_reject(tmp_path, damage):
    write_parquet(tmp_path / "train-00000-of-00001.parquet", [natix_row(0)])
    bad = tmp_path / "test-00000-of-00001.parquet"
    if damage == "zero_bytes":
        bad.write_bytes(b"")
    elif damage == "truncated":
        write_parquet(bad, [natix_row(i) for i in range(3)])
        bad.write_bytes(bad.read_bytes()[:-40])
    elif damage == "not_parquet":
        bad.write_bytes(b"not parquet")
    else:
        row = natix_row(1)
        row["img"] = row.pop("image")
        write_parquet(bad, [row])
    imp = NatixImporter(tmp_path)
    imp.setup()
    items = list(imp)
    assert sum(isinstance(r, SourceRecord) for r in items) == 1
    (rej,) = [r for r in items if isinstance(r, Reject)]
    assert rej.reason == BAD_FILE and bad.name in rej.message
    assert "pyarrow" not in rej.message.lower() and "magic bytes" not in rej.message.lower()
