"""Builders for hand-made source fixtures in the real formats (tiny images, tmp dirs)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def image_bytes(seed: int, size: tuple[int, int] = (64, 48), fmt: str = "JPEG", mode: str = "RGB", **save: Any) -> bytes:
    """A distinct, deterministic picture: blocky random pattern (distinct perceptual hashes)."""
    rng = np.random.default_rng(seed)
    w, h = size
    blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    arr = np.kron(blocks, np.ones((h // 4 + 1, w // 4 + 1, 1), dtype=np.uint8))[:h, :w]
    im = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save)
    return buf.getvalue()


def orange_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[...] = (255, 120, 0)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid tiny PNG whose header claims a huge size (never decode it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def exif_rotated_jpeg(seed: int = 5, size: tuple[int, int] = (64, 32)) -> bytes:
    """A landscape JPEG with EXIF orientation 6 (display rotated 90° clockwise → portrait)."""
    im = Image.open(io.BytesIO(image_bytes(seed, size)))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def natix_row(i: int, *, label: int = 1, vid: str = "v0", seq: str = "s0", frame: int | None = None,
              description: str | None = None, data: bytes | None = None, nested: bool = False) -> dict[str, Any]:
    desc = description if description is not None else ("Cones on the right lane" if label == 1 else "")
    row: dict[str, Any] = {
        "image": {"bytes": data if data is not None else image_bytes(1000 + i), "path": None},
        "id": i,
        "width": 64,
        "height": 48,
        "license": 1,
        "date_captured": "2024-05-01",
        "flickr_url": "",
        "coco_url": "",
        "gps": "[40.44, -79.99]",
        "city_name": "Pittsburgh",
        "scene_description": desc,
        "label": label,
    }
    video = {"frame_id": str(frame if frame is not None else i), "seq_id": seq, "vid_id": vid}
    tags = {"daytime": "['Light']", "scene_environment": "['Urban']", "travel_alteration": "['Lane Shift']", "weather": "['Sunny']"}
    if nested:
        row["video_info"] = video
        row["scene_level_tags"] = {k: [v.strip("[]'")] for k, v in tags.items()}
    else:
        row.update({f"video_info.{k}": v for k, v in video.items()})
        row.update({f"scene_level_tags.{k}": v for k, v in tags.items()})
    return row


def write_parquet(path: Path, rows: list[dict[str, Any]], row_group_size: int = 8) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


ROADWORK_CATEGORIES = [
    {"id": 7, "name": "Cone"},
    {"id": 3, "name": "Road"},
    {"id": 12, "name": "Temporary Traffic Control Sign: left chevron"},
    {"id": 1, "name": "Police Officer"},
    {"id": 5, "name": "Temporary Traffic Control Message Board"},
    {"id": 9, "name": "Other Roadwork Objects"},
]


def write_roadwork(root: Path, images: list[dict[str, Any]], annotations: list[dict[str, Any]],
                   split: str = "train", categories: list[dict[str, Any]] | None = None) -> Path:
    """images: dicts with id, file_name, seed (or data), optional video/tags; writes files + COCO."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    entries = []
    for im in images:
        data = im.pop("data", None)
        seed = im.pop("seed", None)
        if data is None and seed is not None:
            data = image_bytes(seed)
        if data is not None:
            (root / "images" / im["file_name"]).write_bytes(data)
        entry = {"width": 64, "height": 48, "gps": [40.44, -79.99], "city_name": "Pittsburgh",
                 "scene_description": "work zone", **im}
        entry.setdefault("scene_level_tags", {"daytime": "Dark", "weather": ["Rain"], "scene_environment": "Highway",
                                              "travel_alteration": ["Lane Closure"]})
        entries.append(entry)
    doc = {"images": entries, "annotations": annotations, "categories": categories or ROADWORK_CATEGORIES}
    path = root / "annotations" / f"instances_{split}_gps_split.json"
    path.write_text(json.dumps(doc))
    return path
