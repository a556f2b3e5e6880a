"""NATIX-style Hugging Face parquet files: the dotted train layout and the nested test layout.

The public ``natix-network-org/roadwork`` train files flatten the ROADWork structs into dotted
column names with list values stored as strings ("['Sunny']"); some copies keep the structs. The
demo writes train the first way and test the second so importers must handle both.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curation.demo.sequences import Shot

LICENSE = "CC BY 4.0"

_STR = pa.string()
_INT = pa.int64()
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", _STR)])
_HEAD = [("image", IMAGE_TYPE), ("id", _INT), ("width", _INT), ("height", _INT), ("license", _STR), ("date_captured", _STR), ("flickr_url", _STR), ("coco_url", _STR), ("gps", _STR), ("city_name", _STR), ("scene_description", _STR)]

TRAIN_SCHEMA = pa.schema(
    _HEAD
    + [
        ("video_info.frame_id", _STR),
        ("video_info.seq_id", _STR),
        ("video_info.vid_id", _STR),
        ("scene_level_tags.daytime", _STR),
        ("scene_level_tags.scene_environment", _STR),
        ("scene_level_tags.travel_alteration", _STR),
        ("scene_level_tags.weather", _STR),
        ("label", _INT),
    ]
)
"""The flat layout: dotted column names, list tags as their Python string form."""

VIDEO_INFO = pa.struct([("frame_id", _STR), ("seq_id", _STR), ("vid_id", _STR)])
SCENE_TAGS = pa.struct([("daytime", _STR), ("scene_environment", _STR), ("travel_alteration", pa.list_(_STR)), ("weather", pa.list_(_STR))])
TEST_SCHEMA = pa.schema(_HEAD + [("video_info", VIDEO_INFO), ("scene_level_tags", SCENE_TAGS), ("label", _INT)])
"""The nested layout: the same fields as structs with real string lists."""


@dataclass(frozen=True)
class NatixRow:
    """One NATIX record; ``label`` and ``description`` may disagree on purpose (label conflicts)."""

    id: int
    shot: Shot
    label: int
    description: str
    travel_alteration: tuple[str, ...]

    @property
    def image_path(self) -> str:
        return f"{self.id:06d}.jpg"


def light_shot(shot: Shot) -> Shot:
    """``shot`` without its bitmap: the frame's image becomes a lazy view of the encoded JPEG.

    A NATIX row needs its JPEG bytes and the frame's boxes, spec and size after encoding, never its
    pixels; keeping the 640×360 bitmap of every row cost ~1 MB per row until the corpus was written.
    ``Image.open`` reads only the JPEG header, so ``.size`` is exact and no pixel is decoded (a
    caller that does touch the pixels gets the decoded JPEG).
    """
    return replace(shot, frame=replace(shot.frame, image=Image.open(io.BytesIO(shot.jpeg))))


def _common(row: NatixRow) -> dict:
    plan = row.shot.plan
    assert plan is not None, "NATIX rows are video frames"
    w, h = row.shot.frame.image.size
    return {
        "image": {"bytes": row.shot.jpeg, "path": row.image_path},
        "id": row.id,
        "width": w,
        "height": h,
        "license": LICENSE,
        "date_captured": plan.date(row.shot.k),
        "flickr_url": "",
        "coco_url": "",
        "gps": str(list(plan.gps)),
        "city_name": plan.city,
        "scene_description": row.description,
    }


def flat_record(row: NatixRow) -> dict:
    """The train-file record: dotted keys, lists written as strings like "['Sunny']"."""
    spec, plan = row.shot.frame.spec, row.shot.plan
    assert plan is not None
    return _common(row) | {
        "video_info.frame_id": row.shot.frame_id,
        "video_info.seq_id": plan.seq_id,
        "video_info.vid_id": plan.vid_id,
        "scene_level_tags.daytime": spec.daytime,
        "scene_level_tags.scene_environment": spec.environment,
        "scene_level_tags.travel_alteration": str(list(row.travel_alteration)),
        "scene_level_tags.weather": str(list(spec.weather)),
        "label": row.label,
    }


def nested_record(row: NatixRow) -> dict:
    """The test-file record: ``video_info`` and ``scene_level_tags`` as structs."""
    spec, plan = row.shot.frame.spec, row.shot.plan
    assert plan is not None
    return _common(row) | {
        "video_info": {"frame_id": row.shot.frame_id, "seq_id": plan.seq_id, "vid_id": plan.vid_id},
        "scene_level_tags": {
            "daytime": spec.daytime,
            "scene_environment": spec.environment,
            "travel_alteration": list(row.travel_alteration),
            "weather": list(spec.weather),
        },
        "label": row.label,
    }


def _hf_features(schema: pa.Schema) -> dict:
    """The ``huggingface`` schema metadata that lets ``datasets`` decode the image column."""

    def feature(t: pa.DataType) -> dict:
        if t == IMAGE_TYPE:
            return {"_type": "Image"}
        if pa.types.is_struct(t):
            return {f.name: feature(f.type) for f in t}
        if pa.types.is_list(t):
            return {"feature": feature(t.value_type), "_type": "List"}
        return {"dtype": "int64" if t == _INT else "string", "_type": "Value"}

    return {"info": {"features": {f.name: feature(f.type) for f in schema}}}


def _chunks(rows: Sequence[NatixRow], size: int) -> Iterator[Sequence[NatixRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def write_parquet(path: Path, rows: Sequence[NatixRow], *, nested: bool, row_groups: int = 3) -> None:
    """Write ``rows`` as one parquet file with about ``row_groups`` row groups.

    Streamed: each row group's records and Arrow table are built, written and dropped before the
    next, so memory holds one row group, not the file (the bytes equal one ``write_table`` call).
    """
    schema = TEST_SCHEMA if nested else TRAIN_SCHEMA
    schema = schema.with_metadata({b"huggingface": json.dumps(_hf_features(schema)).encode()})
    record = nested_record if nested else flat_record
    group = max(1, -(-len(rows) // row_groups))
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in _chunks(rows, group):
            writer.write_table(pa.Table.from_pylist([record(r) for r in chunk], schema=schema), row_group_size=group)
        if not rows:
            writer.write_table(schema.empty_table())


def write_natix(root: Path, train: list[NatixRow], test: list[NatixRow]) -> list[tuple[Path, list[NatixRow]]]:
    """Write the Hub layout ``data/{train-0000i-of-00002,test-00000-of-00001}.parquet``."""
    half = (len(train) + 1) // 2
    files = [
        (root / "data" / "train-00000-of-00002.parquet", train[:half], False),
        (root / "data" / "train-00001-of-00002.parquet", train[half:], False),
        (root / "data" / "test-00000-of-00001.parquet", test, True),
    ]
    for path, rows, nested in files:
        write_parquet(path, rows, nested=nested)
    return [(path, rows) for path, rows, _ in files]
