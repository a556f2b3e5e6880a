"""A miner's query log: the 224x224 JPEGs validators sent and what the miner answered.

Validators centre-crop and resize a scene to 224 (augmentation level 0) or take a random resized
crop and maybe flip it (level 1). Crops of positives always keep part of the roadwork evidence so
the hidden truth stays right.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from curation.demo.scene import Box, Frame
from curation.demo.sequences import Shot, encode_jpeg
from curation.schema import ROADWORK_PRIMITIVES

QUERY_SIZE = 224
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_START = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class QueryRecord:
    shot: Shot
    received_at: str
    validator_hotkey: str
    response: float
    feedback: dict | None

    @property
    def file(self) -> str:
        return f"images/{self.shot.sha256}.jpg"

    def to_json(self) -> str:
        return json.dumps({"file": self.file, "received_at": self.received_at, "validator_hotkey": self.validator_hotkey, "response": self.response, "model_version": "0.1.0", "feedback": self.feedback})


def validator_crop(frame: Frame, rng: np.random.Generator) -> Frame:
    """A 224x224 query made from ``frame`` the way validators augment it."""
    w, h = frame.image.size
    evidence = [b for b in frame.boxes if b.label in ROADWORK_PRIMITIVES]
    if rng.random() < 0.5:
        side = min(w, h)
        x0, y0 = (w - side) // 2, (h - side) // 2
        if evidence:  # keep the evidence in view: slide the centre crop towards it
            b = evidence[0]
            x0 = int(np.clip((b.x0 + b.x1) / 2 - side / 2, 0, w - side))
    else:
        side = int(min(w, h) * np.sqrt(rng.uniform(0.35, 1.0)))
        if evidence:
            b = evidence[0]
            cx, cy = (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2
            x0 = int(np.clip(cx - rng.uniform(0.2, 0.8) * side, 0, w - side))
            y0 = int(np.clip(cy - rng.uniform(0.2, 0.8) * side, 0, h - side))
        else:
            x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    flip = rng.random() < 0.3
    s = QUERY_SIZE / side
    image = frame.image.crop((x0, y0, x0 + side, y0 + side)).resize((QUERY_SIZE, QUERY_SIZE), Image.Resampling.BILINEAR)
    boxes = []
    for b in frame.boxes:
        bx0, by0 = max(b.x0 - x0, 0) * s, max(b.y0 - y0, 0) * s
        bx1, by1 = min(b.x1 - x0, side) * s, min(b.y1 - y0, side) * s
        if bx1 - bx0 >= 2 and by1 - by0 >= 2:
            if flip:
                bx0, bx1 = QUERY_SIZE - bx1, QUERY_SIZE - bx0
            boxes.append(Box(b.label, bx0, by0, bx1, by1, b.subtype))
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return Frame(frame.spec, image, tuple(boxes), frame.texts)


def make_records(frames: list[Frame], rng: np.random.Generator) -> list[QueryRecord]:
    """Crop, encode and log ``frames`` as queries; a few carry validator feedback."""
    hotkeys = ["5F" + "".join(_B58[int(i)] for i in rng.integers(0, len(_B58), 46)) for _ in range(3)]
    with_feedback = set(rng.permutation(len(frames))[: max(1, len(frames) // 7)].tolist()) if frames else set()
    records, t = [], _START
    for i, frame in enumerate(frames):
        query = validator_crop(frame, rng)
        truth = int(query.is_roadwork)
        response = float(np.clip((0.72 if truth else 0.3) + rng.normal(0, 0.18), 0.01, 0.99))
        feedback = {"label": truth, "source": "validator"} if i in with_feedback else None
        records.append(QueryRecord(Shot(encode_jpeg(query.image, 85), query), t.strftime("%Y-%m-%dT%H:%M:%SZ"), hotkeys[int(rng.integers(3))], round(response, 4), feedback))
        t += timedelta(seconds=int(rng.integers(20, 400)))
    return records


def write_queries(root: Path, records: list[QueryRecord]) -> list[tuple[Path, QueryRecord]]:
    (root / "images").mkdir(parents=True, exist_ok=True)
    written = []
    for rec in records:
        path = root / rec.file
        path.write_bytes(rec.shot.jpeg)
        written.append((path, rec))
    (root / "log.jsonl").write_text("".join(rec.to_json() + "\n" for rec in records))
    return written
