"""Roboflow exports of one small roadwork project: COCO, YOLO and classification folders.

Roboflow names files ``<stem>_jpg.rf.<32 hex>.jpg``, sorts class names alphabetically, puts a
placeholder category 0 named after the project into COCO files, and writes a ``data.yaml`` whose
split paths are relative to its images folder (the test split it lists may be absent).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from curation.demo.sequences import Shot

PROJECT = "roadwork-demo"
WORKSPACE = "natix-demo"
UNIFIED_TO_ROBOFLOW: dict[str, str] = {
    "barricade": "barricade",
    "cone": "cone",
    "work_equipment": "excavator",
    "ttc_sign": "road-work-sign",
    "drum": "traffic-barrel",
    "worker": "worker",
}
NAMES: tuple[str, ...] = tuple(sorted(UNIFIED_TO_ROBOFLOW.values()))
"""Class names in Roboflow's (alphabetical) order."""


@dataclass(frozen=True)
class RoboflowImage:
    index: int
    shot: Shot

    @property
    def file_name(self) -> str:
        digest = hashlib.md5(f"{PROJECT}/{self.index}/{self.shot.sha256}".encode()).hexdigest()
        return f"img{self.index:04d}_jpg.rf.{digest}.jpg"


def _labelled(img: RoboflowImage):  # noqa: ANN202 - yields (class index, box)
    for box in img.shot.frame.boxes:
        if box.label in UNIFIED_TO_ROBOFLOW:
            yield NAMES.index(UNIFIED_TO_ROBOFLOW[box.label]), box


def coco_dict(images: list[RoboflowImage]) -> dict:
    cats = [{"id": 0, "name": PROJECT, "supercategory": "none"}]
    cats += [{"id": i + 1, "name": n, "supercategory": PROJECT} for i, n in enumerate(NAMES)]
    out_images, annotations = [], []
    for image_id, img in enumerate(images):
        w, h = img.shot.frame.image.size
        out_images.append({"id": image_id, "license": 1, "file_name": img.file_name, "height": h, "width": w, "date_captured": "2026-10-01T12:00:00+00:00"})
        for cls, box in _labelled(img):
            x, y, bw, bh = (round(v, 1) for v in box.xywh)
            annotations.append({"id": len(annotations), "image_id": image_id, "category_id": cls + 1, "bbox": [x, y, bw, bh], "area": round(bw * bh, 2), "segmentation": [], "iscrowd": 0})
    return {
        "info": {"year": "2026", "version": "1", "description": "Exported from roboflow.com", "contributor": "", "url": f"https://universe.roboflow.com/{WORKSPACE}/{PROJECT}/dataset/1", "date_created": "2026-10-01T12:00:00+00:00"},
        "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
        "categories": cats,
        "images": out_images,
        "annotations": annotations,
    }


def yolo_label(img: RoboflowImage) -> str:
    """YOLO lines ``class cx cy w h`` normalised to [0, 1]; empty for a negative image."""
    w, h = img.shot.frame.image.size
    lines = []
    for cls, b in _labelled(img):
        cx, cy = (b.x0 + b.x1) / 2 / w, (b.y0 + b.y1) / 2 / h
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {(b.x1 - b.x0) / w:.6f} {(b.y1 - b.y0) / h:.6f}")
    return "".join(line + "\n" for line in lines)


def data_yaml() -> str:
    names = ", ".join(f"'{n}'" for n in NAMES)
    return (
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
        f"nc: {len(NAMES)}\nnames: [{names}]\n\n"
        f"roboflow:\n  workspace: {WORKSPACE}\n  project: {PROJECT}\n  version: 1\n  license: CC BY 4.0\n"
        f"  url: https://universe.roboflow.com/{WORKSPACE}/{PROJECT}/dataset/1\n"
    )


def write_coco(root: Path, splits: dict[str, list[RoboflowImage]]) -> list[tuple[Path, RoboflowImage]]:
    """``{split}/_annotations.coco.json`` beside the images; returns every written image path."""
    written = []
    for split, images in splits.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for img in images:
            (folder / img.file_name).write_bytes(img.shot.jpeg)
            written.append((folder / img.file_name, img))
        (folder / "_annotations.coco.json").write_text(json.dumps(coco_dict(images)))
    return written


def write_yolo(root: Path, splits: dict[str, list[RoboflowImage]]) -> list[tuple[Path, RoboflowImage]]:
    """``data.yaml`` plus ``{split}/images`` and ``{split}/labels``; the listed test split is left out."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(data_yaml())
    written = []
    for split, images in splits.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for img in images:
            path = root / split / "images" / img.file_name
            path.write_bytes(img.shot.jpeg)
            (root / split / "labels" / (path.stem + ".txt")).write_text(yolo_label(img))
            written.append((path, img))
    return written


def write_cls(root: Path, splits: dict[str, list[RoboflowImage]]) -> list[tuple[Path, RoboflowImage]]:
    """Classification folders ``{split}/{roadwork,no_roadwork}/*.jpg``."""
    written = []
    for split, images in splits.items():
        for img in images:
            folder = root / split / ("roadwork" if img.shot.frame.is_roadwork else "no_roadwork")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / img.file_name).write_bytes(img.shot.jpeg)
            written.append((folder / img.file_name, img))
    return written
