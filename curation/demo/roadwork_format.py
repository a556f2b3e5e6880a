"""ROADWork-style extended COCO (CMU, ICCV 2025): scene tags on images, 19 classes plus sign subtypes.

Category ids are shuffled on purpose: the real files do not list classes in a fixed order, so an
importer must read them instead of assuming positions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation.demo.sequences import Shot

ROADWORK_CLASSES: tuple[str, ...] = (
    "Police Officer", "Police Vehicle", "Sidewalk", "Cone", "Fence", "Drum", "Barricade", "Barrier", "Work Vehicle",
    "Vertical Panel", "Tubular Marker", "Arrow Board", "Temporary Traffic Control Message Board", "Road", "Bike Lane",
    "Temporary Traffic Control Sign", "Work Equipment", "Worker", "Other Roadwork Objects",
)  # fmt: skip
SIGN_SUBTYPES: tuple[str, ...] = ("left chevron", "right chevron", "road work ahead", "detour")
SIGN = "Temporary Traffic Control Sign"

UNIFIED_TO_ROADWORK: dict[str, str] = {
    "police_officer": "Police Officer", "police_vehicle": "Police Vehicle", "sidewalk": "Sidewalk", "cone": "Cone",
    "fence": "Fence", "drum": "Drum", "barricade": "Barricade", "barrier": "Barrier", "work_vehicle": "Work Vehicle",
    "vertical_panel": "Vertical Panel", "tubular_marker": "Tubular Marker", "arrow_board": "Arrow Board",
    "ttc_message_board": "Temporary Traffic Control Message Board", "road": "Road", "bike_lane": "Bike Lane",
    "ttc_sign": SIGN, "work_equipment": "Work Equipment", "worker": "Worker", "other_roadwork": "Other Roadwork Objects",
}  # fmt: skip


@dataclass(frozen=True)
class RoadworkImage:
    id: int
    file_name: str
    shot: Shot
    description: str
    travel_alteration: tuple[str, ...]


def categories(seed: int) -> list[dict]:
    """The 19 classes plus sign subtypes, with ids shuffled deterministically by ``seed``."""
    names = list(ROADWORK_CLASSES) + [f"{SIGN}: {s}" for s in SIGN_SUBTYPES]
    ids = np.random.default_rng([seed, 19]).permutation(len(names)) + 1
    return sorted(({"id": int(i), "name": n, "supercategory": "roadwork"} for i, n in zip(ids, names)), key=lambda c: c["id"])


def coco_dict(images: list[RoadworkImage], cats: list[dict]) -> dict:
    """The COCO document for ``images``; text-sign subtypes use the subtype category every other box."""
    cat_id = {c["name"]: c["id"] for c in cats}
    out_images, annotations = [], []
    for img in images:
        plan = img.shot.plan
        assert plan is not None, "ROADWork images are video frames"
        spec = img.shot.frame.spec
        w, h = img.shot.frame.image.size
        out_images.append({
            "id": img.id, "file_name": img.file_name, "width": w, "height": h, "gps": list(plan.gps),
            "city_name": plan.city,
            "video_info": {"vid_id": plan.vid_id, "seq_id": plan.seq_id, "frame_id": img.shot.frame_id},
            "scene_description": img.description,
            "scene_level_tags": {
                "travel_alteration": list(img.travel_alteration), "weather": list(spec.weather),
                "daytime": spec.daytime, "scene_environment": spec.environment,
            },
        })  # fmt: skip
        for box in img.shot.frame.boxes:
            name = UNIFIED_TO_ROADWORK[box.label]
            chevron = box.subtype.endswith("chevron")
            if box.subtype in SIGN_SUBTYPES and (chevron or len(annotations) % 2 == 0):
                name = f"{SIGN}: {box.subtype}"
            x, y, bw, bh = (round(v, 2) for v in box.xywh)
            annotations.append({"id": len(annotations) + 1, "image_id": img.id, "category_id": cat_id[name], "bbox": [x, y, bw, bh], "area": round(bw * bh, 2), "iscrowd": 0, "segmentation": []})
    return {"info": {"description": "ROADWork demo (synthetic)", "version": "1.0"}, "images": out_images, "annotations": annotations, "categories": cats}


def write_roadwork(root: Path, splits: dict[str, list[RoadworkImage]], seed: int) -> dict[str, Path]:
    """Write ``images/`` and ``annotations/instances_{split}_gps_split.json``; return the json paths."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    cats = categories(seed)
    paths = {}
    for split, images in splits.items():
        for img in images:
            (root / "images" / img.file_name).write_bytes(img.shot.jpeg)
        path = root / "annotations" / f"instances_{split}_gps_split.json"
        path.write_text(json.dumps(coco_dict(images, cats)))
        paths[split] = path
    return paths
