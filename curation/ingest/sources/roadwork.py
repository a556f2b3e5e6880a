"""ROADWork (CMU, ICCV 2025) extended-COCO annotations.

Reads ``annotations/instances_{train,val}_gps_split.json`` (and the ``_with_signs``,
``_pittsburgh_only``, ``geographic_da_*`` variants) with images under ``images/``. Category ids
are read from each file (they are not in a fixed order) and mapped by name through
``datasets/roadwork/class_map.yaml``; sign subtypes ("Temporary Traffic Control Sign: left
chevron") fold into ``ttc_sign`` and keep the subtype as a box attribute. Road, sidewalk, bike
lane and police classes are kept as context boxes outside the label rule. Images carry gps,
city_name, video_info, scene_description and scene_level_tags; ``travel_alteration ["None"]``
means the source says there is no work zone.

Example:
    >>> from curation.ingest.sources.roadwork import label_from_travel_alteration
    >>> label_from_travel_alteration(["None"])
    <Label.NO_ROADWORK: 'no_roadwork'>
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from curation.errors import InputError
from curation.ingest.sources.common import (
    BAD_FILE,
    BAD_RECORD,
    UNSAFE_PATH,
    ClassMap,
    CocoCategories,
    Reject,
    SourceRecord,
    coco_categories,
    coco_image_problem,
    default_class_map_path,
    escape_message,
    group_annotations,
    is_inside,
    link_escape_message,
    load_class_map,
    parse_coco_boxes,
    parse_list,
    read_coco,
    safe_join,
    scene_from_tags,
    text_or_none,
)
from curation.schema import Label, Source

_SPLIT_RE = re.compile(r"instances_([a-z]+)")


def label_from_travel_alteration(values: Any) -> Label | None:
    """``["None"]`` → no roadwork; any other alteration → roadwork; missing → the source says nothing."""
    items = [v.lower() for v in parse_list(values)]
    if not items:
        return None
    return Label.NO_ROADWORK if all(v in ("none", "no") for v in items) else Label.ROADWORK


def parse_roadwork_image(
    image: Mapping[str, Any],
    annotations: Sequence[Mapping[str, Any]],
    categories: CocoCategories,
    *,
    split: str,
    root: Path,
    images_dir: Path,
    where: str,
) -> SourceRecord | Reject:
    """One COCO image entry and its annotations → a record (no file reads)."""
    problem = coco_image_problem(image)
    if problem is not None:
        return Reject(Source.ROADWORK, where, BAD_RECORD, f"{where} {problem}; it is not imported.")
    file_name = image["file_name"]
    name = f"{where}: {file_name}"
    path = _resolve(root, images_dir, file_name)
    if path is None:
        return Reject(Source.ROADWORK, name, UNSAFE_PATH, escape_message(images_dir, file_name, name))
    try:
        boxes = parse_coco_boxes(image, annotations, categories)
    except ValueError as e:
        return Reject(Source.ROADWORK, name, BAD_RECORD, f"{name}: {e}.")
    video = image.get("video_info") if isinstance(image.get("video_info"), Mapping) else {}
    tags = image.get("scene_level_tags") if isinstance(image.get("scene_level_tags"), Mapping) else {}
    return SourceRecord(
        source=Source.ROADWORK,
        source_split=split,
        source_id=file_name,
        name=str(path),
        path=path,
        label=label_from_travel_alteration(tags.get("travel_alteration")),
        primitives=boxes,
        video_id=text_or_none(video.get("vid_id", image.get("video_info.vid_id"))),
        sequence_id=text_or_none(video.get("seq_id", image.get("video_info.seq_id"))),
        frame_id=text_or_none(video.get("frame_id", image.get("video_info.frame_id"))),
        scene=scene_from_tags(
            tags, city=image.get("city_name"), gps=image.get("gps"), scene_description=image.get("scene_description")
        ),
    )


def _resolve(root: Path, images_dir: Path, file_name: str) -> Path | None:
    """The image path for ``file_name`` under ``images/`` (or the dataset folder); None if it escapes.

    A name that exists under ``images/`` (a file or a symbolic link) is decided there: a link out
    of ``images/`` is refused, not looked up again in the dataset folder.
    """
    if not file_name:
        return None
    in_images, in_root = safe_join(images_dir, file_name), safe_join(root, file_name)
    if (images_dir / file_name).is_symlink() or in_images is not None and in_images.exists():
        return in_images
    if in_root is not None and in_root.exists():
        return in_root
    return in_images if in_images is not None else in_root


def annotation_files(root: Path) -> list[Path]:
    """The COCO files to read; a plain file is skipped when its ``_with_signs`` twin exists."""
    if root.is_file():
        return [root]
    folder = root / "annotations" if (root / "annotations").is_dir() else root
    files = sorted(folder.glob("instances_*.json"))
    names = {f.name for f in files}
    return [f for f in files if f.name.replace(".json", "_with_signs.json") not in names]


class RoadworkImporter:
    """Iterate ROADWork images with unified boxes and scene tags.

    Args:
        path: the dataset folder (with ``annotations/`` and ``images/``) or one annotation file.
        class_map: class-map YAML files (default ``datasets/roadwork/class_map.yaml``).
    """

    source = Source.ROADWORK

    def __init__(self, path: str | Path, *, class_map: Sequence[Path] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.class_map_paths = tuple(class_map) if class_map else None
        self.warnings: list[str] = []
        self._docs: list[tuple[Path, dict[str, Any], CocoCategories]] = []
        self._class_map: ClassMap | None = None
        self._rejects: list[Reject] = []

    def setup(self) -> None:
        if not self.path.exists():
            raise InputError(f"ROADWork input {self.path} does not exist.")
        files = annotation_files(self.path)
        if not files:
            raise InputError(f"No instances_*.json annotation files under {self.path}/annotations.")
        self._class_map = load_class_map(*(self.class_map_paths or (default_class_map_path("roadwork"),)))
        self._docs, self._rejects = [], []
        for file in files:
            try:
                doc = read_coco(file)
            except (OSError, ValueError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else e
                self._rejects.append(
                    Reject(Source.ROADWORK, str(file), BAD_FILE, f"{file}: cannot be imported: {reason}. No image of this file was imported.")
                )
                continue
            self._docs.append((file, doc, coco_categories(doc, self._class_map, where=str(file))))

    def __len__(self) -> int:
        return len(self._rejects) + sum(len(doc["images"]) for _, doc, _ in self._docs)

    def __iter__(self) -> Iterator[SourceRecord | Reject]:
        if self._class_map is None:
            self.setup()
        yield from self._rejects
        for file, doc, categories in self._docs:
            match = _SPLIT_RE.match(file.stem)
            split = match.group(1) if match else "train"
            root = file.parent.parent if file.parent.name == "annotations" else file.parent
            images_dir = root / "images" if (root / "images").is_dir() else root
            if not is_inside(root, images_dir):
                yield Reject(Source.ROADWORK, str(images_dir), UNSAFE_PATH, link_escape_message(images_dir, root))
                continue
            by_image, problems = group_annotations(doc, where=file.name)
            for message in (*categories.problems, *problems):
                yield Reject(Source.ROADWORK, message.split(";")[0], BAD_RECORD, message)
            for index, image in enumerate(doc["images"]):
                key = image.get("id") if isinstance(image, Mapping) else None
                yield parse_roadwork_image(
                    image,
                    by_image.get(key, []) if isinstance(key, (int, str)) else [],
                    categories,
                    split=split,
                    root=root,
                    images_dir=images_dir,
                    where=f"{file.name} images[{index}]",
                )
