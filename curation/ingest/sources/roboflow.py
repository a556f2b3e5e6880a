"""Roboflow exports: COCO, YOLO and classification, found by looking at the folder.

  * COCO: ``{train,valid,test}/_annotations.coco.json`` beside the images; the placeholder
    category 0 named after the project is dropped.
  * YOLO: ``data.yaml`` (``train: ../train/images`` style paths, ``names`` as list or dict) with
    ``{split}/images`` and ``{split}/labels``; a listed split whose folder is missing is a warning.
  * Classification: ``{split}/{class}/*.jpg`` folders or ``{split}/_classes.csv`` (one-hot).

Nothing outside the export folder is read: a data.yaml split outside it, or a symbolic link in an
image or class folder that leaves it, is rejected by name (the target is never opened).

Class names go through ``datasets/roboflow/class_map.yaml`` (extend it, or pass your own with
``--class-map``); an unmapped name stops the import with the list of names and the file to edit.
A folder may hold several exports (``coco/``, ``yolo/``, ``cls/``): each is imported.

Example:
    >>> from curation.ingest.sources.roboflow import parse_yolo_lines
    >>> parse_yolo_lines("0 0.5 0.5 0.2 0.1", ["cone"], lambda n: ("cone", None))[0].box
    (0.4, 0.45, 0.2, 0.1)
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from curation.errors import InputError
from curation.ingest.sources.common import (
    BAD_FILE,
    BAD_LABEL,
    BAD_RECORD,
    IMAGE_EXTENSIONS,
    UNSAFE_PATH,
    ClassMap,
    Primitive,
    Reject,
    SourceRecord,
    coco_categories,
    coco_image_problem,
    default_class_map_path,
    escape_message,
    group_annotations,
    is_inside,
    link_escape_message,
    list_images,
    load_class_map,
    parse_coco_boxes,
    read_coco,
    safe_join,
)
from curation.schema import Label, Source
from curation.typed_config import read_yaml_mapping

COCO_FILE = "_annotations.coco.json"
CLASSES_CSV = "_classes.csv"
YOLO_SPLIT_KEYS = {"train": "train", "val": "valid", "test": "test"}
SPLIT_NAMES = ("train", "valid", "val", "validation", "test")


def parse_yolo_lines(
    text: str, names: Sequence[str], mapper: Callable[[str], tuple[str | None, str | None]]
) -> tuple[Primitive, ...]:
    """YOLO label text (boxes ``c cx cy w h`` or polygons ``c x1 y1 x2 y2 ...``) → relative boxes.

    Raises:
        ValueError: a malformed line or a class index outside ``names``.
    """
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(parts[0])
            values = [float(v) for v in parts[1:]]
        except ValueError:
            raise ValueError(f"line {number}: not numbers: {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"line {number}: coordinates must be finite numbers: {line.strip()!r}")
        if not 0 <= cls < len(names):
            raise ValueError(f"line {number}: class index {cls} outside names[0..{len(names) - 1}]")
        if len(values) == 4:
            cx, cy, w, h = values
            x, y = cx - w / 2, cy - h / 2
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            x, y, w, h = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
        else:
            raise ValueError(f"line {number}: expected 4 box values or a polygon, got {len(values)} values")
        if any(v < -0.01 or v > 1.01 for v in (x, y, x + w, y + h)):
            raise ValueError(f"line {number}: coordinates outside [0, 1]: {line.strip()!r}")
        unified, subtype = mapper(names[cls])
        if unified is None or w <= 0 or h <= 0:
            continue
        attrs = {"source_class": names[cls], **({"subtype": subtype} if subtype else {})}
        out.append(Primitive(unified, (round(x, 6), round(y, 6), round(w, 6), round(h, 6)), attrs=attrs))
    return tuple(out)


def yolo_names(data: dict[str, Any]) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ValueError("`names` must be a list or a {index: name} mapping")


def resolve_yolo_split(export: Path, key: str, value: Any, base: Any) -> tuple[Path | None, list[Path], list[Path]]:
    """Find a data.yaml split folder inside the export folder ``export`` (the data.yaml's folder).

    Roboflow writes ``train: ../train/images`` although the folder is ``<export>/train/images``, so a
    leading ``../`` is read relative to the export itself, and the literal ``<export>/../train/images``
    (an unrelated sibling folder) is never read. ``path:`` (Ultralytics' dataset root) is honoured
    when it lies inside the export. When data.yaml names an existing folder outside the export
    (absolute, ``../..``, ``path:`` elsewhere, or a symbolic link out), the split is refused rather
    than guessed; ``<export>/<split>/images`` is the fallback only when data.yaml names nothing usable.

    Returns:
        (the folder or None, the candidates tried, the existing folders refused as outside).
    """
    export = export.resolve()
    preferred: list[Path] = []
    literal: list[Path] = []
    if isinstance(value, str) and value:
        stripped = value
        while stripped.startswith("../"):
            stripped = stripped[3:]
        if isinstance(base, str) and base:
            preferred.append((Path(base) if Path(base).is_absolute() else export / base) / value)
        preferred.append(export / stripped)
        if stripped != value or Path(value).is_absolute():
            literal.append(export / value)
    fallback = export / YOLO_SPLIT_KEYS.get(key, key) / "images"
    norm = lambda paths: list(dict.fromkeys(Path(os.path.normpath(p)) for p in paths))  # noqa: E731
    tried = norm([*preferred, fallback])  # the literal `<export>/../x` is never read, so not listed
    outside = []
    for candidate in norm(preferred):
        if candidate.is_dir():
            if is_inside(export, candidate):
                return candidate.resolve(), tried, []
            outside.append(candidate)
    outside += [c for c in norm(literal) if c.is_dir() and not is_inside(export, c)]
    if outside:
        return None, tried, outside
    if fallback.is_dir() and is_inside(export, fallback):
        return fallback.resolve(), tried, []
    return None, tried, []


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def discover_exports(path: Path) -> list[tuple[str, Path]]:
    """(format, location) of each export in ``path`` or its immediate subfolders."""

    def kinds(folder: Path) -> list[tuple[str, Path]]:
        if folder.is_file():
            if folder.suffix in (".yaml", ".yml"):
                return [("yolo", folder)]
            if folder.name.endswith(".json"):
                return [("coco", folder.parent.parent)]
            return []
        if (folder / "data.yaml").is_file():
            return [("yolo", folder / "data.yaml")]
        subdirs = [d for d in sorted(folder.iterdir()) if d.is_dir()]
        if (folder / COCO_FILE).is_file() or any((d / COCO_FILE).is_file() for d in subdirs):
            return [("coco", folder)]
        if any((d / CLASSES_CSV).is_file() for d in subdirs):
            return [("cls", folder)]
        splits = [d for d in subdirs if d.name.lower() in SPLIT_NAMES]
        if splits and any(_images_in(c) for d in splits for c in d.iterdir() if c.is_dir()):
            return [("cls", folder)]
        return []

    found = kinds(path)
    if not found and path.is_dir():
        for sub in sorted(d for d in path.iterdir() if d.is_dir()):
            found += kinds(sub)
    return found


class RoboflowImporter:
    """Iterate the images of every Roboflow export found under ``path``.

    Args:
        path: an export folder, a folder of exports, or a ``data.yaml``.
        class_map: class-map YAML files merged in order (default ``datasets/roboflow/class_map.yaml``).
    """

    source = Source.ROBOFLOW

    def __init__(self, path: str | Path, *, class_map: Sequence[Path] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.class_map_paths = tuple(class_map) if class_map else None
        self.warnings: list[str] = []
        self._plan: list[tuple[str, Any]] = []
        self._class_map: ClassMap | None = None
        self._count = 0

    # setup -------------------------------------------------------------------------------------
    def setup(self) -> None:
        if not self.path.exists():
            raise InputError(f"Roboflow input {self.path} does not exist.")
        exports = discover_exports(self.path)
        if not exports:
            raise InputError(
                f"No Roboflow export found in {self.path}: expected {{split}}/{COCO_FILE}, data.yaml, "
                f"{{split}}/{CLASSES_CSV} or {{split}}/{{class}}/ image folders."
            )
        self._class_map = load_class_map(*(self.class_map_paths or (default_class_map_path("roboflow"),)))
        for kind, location in exports:
            getattr(self, f"_setup_{kind}")(location)

    def _reject(self, name: str, reason: str, message: str) -> None:
        """A problem found while reading the export's structure: reported with the records."""
        self._plan.append(("rejects", ([Reject(Source.ROBOFLOW, name, reason, message)],)))

    def _setup_coco(self, folder: Path) -> None:
        assert self._class_map is not None
        files = [folder / COCO_FILE] if (folder / COCO_FILE).is_file() else sorted(folder.glob(f"*/{COCO_FILE}"))
        for file in files:
            if not is_inside(folder, file):
                self._reject(str(file), UNSAFE_PATH, link_escape_message(file, folder))
                continue
            try:
                doc = read_coco(file)
            except (OSError, ValueError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else e
                self._reject(str(file), BAD_FILE, f"{file}: cannot be imported: {reason}. No image of this file was imported.")
                continue
            cats = coco_categories(doc, self._class_map, where=str(file), drop_placeholder=True)
            self._plan.append(("coco", (file, doc, cats)))
            self._count += len(doc["images"])

    def _setup_yolo(self, data_yaml: Path) -> None:
        assert self._class_map is not None
        data = read_yaml_mapping(data_yaml, what="YOLO data.yaml", error=InputError)
        try:
            names = yolo_names(data)
        except ValueError as e:
            raise InputError(f"{data_yaml}: unreadable YOLO data.yaml ({e}).") from None
        self._class_map.check(names, where=str(data_yaml))
        export = data_yaml.parent
        for key in ("train", "val", "test"):
            if key not in data:
                continue
            images_dir, tried, outside = resolve_yolo_split(export, key, data[key], data.get("path"))
            if outside:
                base = f" (with `path: {data['path']}`)" if data.get("path") else ""
                self._reject(
                    f"{data_yaml}: {key}",
                    UNSAFE_PATH,
                    f"{data_yaml}: `{key}: {data[key]}`{base} is {outside[0]}, outside the export {export.resolve()}; "
                    "that split is not imported. Put the images under the export folder (e.g. "
                    f"{export / YOLO_SPLIT_KEYS.get(key, key) / 'images'}) and point data.yaml there.",
                )
                continue
            if images_dir is None:
                self.warnings.append(
                    f"{data_yaml}: `{key}: {data[key]}` names no existing folder (tried "
                    f"{', '.join(str(t) for t in tried[:3])}, ...); that split is skipped."
                )
                continue
            images, rejects = list_images(images_dir, export, Source.ROBOFLOW)
            if rejects:
                self._plan.append(("rejects", (rejects,)))
            self._plan.append(("yolo", (export, images_dir, images, names, images_dir.parent.name)))
            self._count += len(images) + len(rejects)

    def _setup_cls(self, folder: Path) -> None:
        assert self._class_map is not None
        for split_dir in sorted(d for d in folder.iterdir() if d.is_dir() and d.name.lower() in SPLIT_NAMES):
            if not is_inside(folder, split_dir):
                self._reject(str(split_dir), UNSAFE_PATH, link_escape_message(split_dir, folder))
                continue
            csv_file = split_dir / CLASSES_CSV
            if csv_file.is_file():
                if not is_inside(folder, csv_file):
                    self._reject(str(csv_file), UNSAFE_PATH, link_escape_message(csv_file, folder))
                    continue
                with csv_file.open(newline="") as f:
                    rows = list(csv.reader(f))
                if not rows:
                    continue
                header = [h.strip() for h in rows[0]]
                self._class_map.check(header[1:], images=True, where=str(csv_file))
                self._plan.append(("csv", (split_dir, header, rows[1:])))
                self._count += len(rows) - 1
                continue
            classes = []
            for class_dir in (d for d in sorted(split_dir.iterdir()) if d.is_dir()):
                if is_inside(folder, class_dir):
                    classes.append(class_dir)
                else:
                    self._reject(str(class_dir), UNSAFE_PATH, link_escape_message(class_dir, folder))
            self._class_map.check([c.name for c in classes], images=True, where=str(split_dir))
            for class_dir in classes:
                images, rejects = list_images(class_dir, folder, Source.ROBOFLOW)
                if rejects:
                    self._plan.append(("rejects", (rejects,)))
                self._plan.append(("folder", (split_dir.name, class_dir.name, images)))
                self._count += len(images) + len(rejects)

    def __len__(self) -> int:
        return self._count

    # iteration ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[SourceRecord | Reject]:
        if self._class_map is None:
            self.setup()
        for kind, payload in self._plan:
            yield from getattr(self, f"_iter_{kind}")(*payload)

    def _record(self, split: str, source_id: str, path: Path, **kw: Any) -> SourceRecord:
        return SourceRecord(Source.ROBOFLOW, split, source_id, str(path), path=path, **kw)

    def _iter_rejects(self, rejects: list[Reject]) -> Iterator[SourceRecord | Reject]:
        yield from rejects

    def _iter_coco(self, file: Path, doc: dict[str, Any], cats: Any) -> Iterator[SourceRecord | Reject]:
        split = file.parent.name
        by_image, problems = group_annotations(doc, where=str(file))
        for message in (*cats.problems, *problems):
            yield Reject(Source.ROBOFLOW, message.split(";")[0], BAD_RECORD, message)
        for index, image in enumerate(doc["images"]):
            problem = coco_image_problem(image)
            if problem is not None:
                name = f"{file}: images[{index}]"
                yield Reject(Source.ROBOFLOW, name, BAD_RECORD, f"{name} {problem}; it is not imported.")
                continue
            file_name = image["file_name"]
            name = f"{file}: {file_name}"
            path = safe_join(file.parent, file_name)
            if path is None:
                yield Reject(Source.ROBOFLOW, name, UNSAFE_PATH, escape_message(file.parent, file_name, name))
                continue
            try:
                boxes = parse_coco_boxes(image, by_image.get(image["id"], []), cats)
            except ValueError as e:
                yield Reject(Source.ROBOFLOW, name, BAD_RECORD, f"{name} (images[{index}]): {e}.")
                continue
            yield self._record(split, f"coco/{split}/{file_name}", path, primitives=boxes)

    def _iter_yolo(
        self, export: Path, images_dir: Path, images: list[Path], names: list[str], split: str
    ) -> Iterator[SourceRecord | Reject]:
        assert self._class_map is not None
        labels_dir = images_dir.parent / "labels"
        for image in images:
            label_file = labels_dir / f"{image.stem}.txt"
            if (label_file.exists() or label_file.is_symlink()) and not is_inside(export, label_file):
                yield Reject(Source.ROBOFLOW, str(label_file), UNSAFE_PATH, link_escape_message(label_file, export))
                continue
            try:
                text = label_file.read_text() if label_file.is_file() else ""
                boxes = parse_yolo_lines(text, names, self._class_map.primitive)
            except (OSError, UnicodeDecodeError, ValueError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else e
                yield Reject(Source.ROBOFLOW, str(label_file), BAD_LABEL, f"{label_file}: {reason}.")
                continue
            yield self._record(split, f"yolo/{split}/{image.name}", image, primitives=boxes)

    def _iter_folder(self, split: str, class_name: str, images: list[Path]) -> Iterator[SourceRecord | Reject]:
        assert self._class_map is not None
        label = self._class_map.image_label(class_name)
        for image in images:
            yield self._record(split, f"cls/{split}/{class_name}/{image.name}", image, label=label)

    def _iter_csv(self, split_dir: Path, header: list[str], rows: list[list[str]]) -> Iterator[SourceRecord | Reject]:
        assert self._class_map is not None
        for number, row in enumerate(rows, start=2):
            name = f"{split_dir / CLASSES_CSV} line {number}"
            if not row or not row[0].strip():
                continue
            path = safe_join(split_dir, row[0].strip())
            if path is None:
                yield Reject(Source.ROBOFLOW, name, UNSAFE_PATH, escape_message(split_dir, row[0].strip(), name, "filename"))
                continue
            try:
                flags = [int(float(v)) for v in row[1 : len(header)]]
                if any(v not in (0, 1) for v in flags):
                    raise ValueError(f"one-hot values must be 0 or 1, got {row[1:]}")
            except ValueError as e:
                yield Reject(Source.ROBOFLOW, name, BAD_LABEL, f"{name}: {e}.")
                continue
            labels = {self._class_map.image_label(h) for h, v in zip(header[1:], flags, strict=False) if v}
            label = Label.ROADWORK if Label.ROADWORK in labels else (Label.NO_ROADWORK if labels else None)
            yield self._record(split_dir.name, f"cls/{split_dir.name}/{path.name}", path, label=label)
