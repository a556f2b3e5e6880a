"""What every importer shares: the record it yields, rejects, class maps, COCO parsing, safe paths.

An importer follows FiftyOne's importer contract: the constructor stores and validates arguments,
``setup()`` reads the disk (and raises :class:`~curation.errors.InputError` for problems that stop
the whole import, such as an unmapped class), and iteration yields :class:`SourceRecord` for
each usable record and :class:`Reject` for each bad one, so one bad file never stops the rest.
Per-record parsers are pure functions on plain dicts.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from curation.errors import InputError
from curation.schema import PRIMITIVE_CLASSES, Label
from curation.typed_config import read_yaml_mapping

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# Reject reasons produced by parsers (image reasons live in curation.media).
BAD_LABEL = "bad_label"
BAD_RECORD = "bad_record"
BAD_FILE = "bad_file"  # a whole input file that cannot be read (truncated, empty, wrong shape)
MISSING = "missing_file"
UNSAFE_PATH = "unsafe_path"

IGNORE = "ignore"


@dataclass(frozen=True)
class Primitive:
    """One box with its unified class; ``box`` is [x, y, w, h], relative unless ``relative`` is False."""

    label: str
    box: tuple[float, float, float, float]
    relative: bool = True
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceRecord:
    """One image as a source describes it, before decoding.

    Attributes:
        source: ``natix`` | ``roadwork`` | ``roboflow`` | ``queries``.
        source_split: the split name inside the source (``train``, ``valid``, ``test`` ...).
        source_id: stable id of the record within the source.
        name: human-readable location for messages (a path, or ``file.parquet row 7``).
        data / path: the encoded image inline, or the file to read it from.
        label: an explicit image-level label from the source; None when it says nothing.
        primitives: boxes in unified classes; None when the source has no box annotations.
        scene: daytime, weather, scene_environment, travel_alteration, city, location ([lon, lat]),
            scene_description — whatever the source provides.
        tags: tags the parser decided (``label_conflict``).
        extra: further sample fields (e.g. ``query_meta``).
    """

    source: str
    source_split: str
    source_id: str
    name: str
    data: bytes | None = None
    path: Path | None = None
    label: Label | None = None
    primitives: tuple[Primitive, ...] | None = None
    video_id: str | None = None
    sequence_id: str | None = None
    frame_id: str | None = None
    scene: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sequence_group(self) -> str | None:
        if self.video_id is None or self.sequence_id is None:
            return None
        return f"{self.video_id}/{self.sequence_id}"

    @property
    def frame_key(self) -> str | None:
        if self.sequence_group is None or self.frame_id is None:
            return None
        return f"{self.sequence_group}/{self.frame_id}"

    @property
    def qualified_id(self) -> str:
        return f"{self.source}:{self.source_split}:{self.source_id}"

    def read(self) -> bytes:
        """The encoded image; raises OSError when the file cannot be read."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise OSError("record has neither bytes nor a path")
        return Path(self.path).read_bytes()


@dataclass(frozen=True)
class Reject:
    """A record that cannot be imported, with a reason constant and a message naming it."""

    source: str
    name: str
    reason: str
    message: str


class Importer(Protocol):
    source: str
    warnings: list[str]

    def setup(self) -> None: ...

    def __iter__(self) -> Iterator[SourceRecord | Reject]: ...

    def __len__(self) -> int: ...


# Value parsing ------------------------------------------------------------------------------------
_NAME_NORMALIZE = re.compile(r"[\s_]+")


def normalize_name(name: str) -> str:
    """Class-name key used in class maps: lowercase, spaces/underscores as '-'."""
    return _NAME_NORMALIZE.sub("-", str(name).strip().lower())


def parse_list(value: Any) -> list[str]:
    """Tag lists arrive as lists, as strings like "['Sunny']", as plain strings, or missing."""
    if value is None:
        return []
    if isinstance(value, float) and math.isnan(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                parsed = [p.strip(" '\"") for p in text.strip("[]").split(",")]
            return [str(v).strip() for v in parsed if str(v).strip()]
        return [text]
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return [str(value)]


def parse_scalar_tag(value: Any) -> str | None:
    items = parse_list(value)
    return ", ".join(items) if items else None


def parse_gps(value: Any) -> list[float] | None:
    """GPS as "[lat, lon]", [lat, lon] or {lat, lon} → FiftyOne point [lon, lat]; None if unusable."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        lat, lon = value.get("lat", value.get("latitude")), value.get("lon", value.get("lng", value.get("longitude")))
    else:
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                return None
        try:
            lat, lon = list(value)[:2]
        except (TypeError, ValueError):
            return None
    try:
        lat, lon = float(lat), float(lon)
    except (TypeError, ValueError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0) or math.isnan(lat + lon):
        return None
    return [lon, lat]


def text_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def scene_from_tags(tags: Mapping[str, Any] | None, **extra: Any) -> dict[str, Any]:
    """Scene fields from a ``scene_level_tags`` mapping plus city/gps/description."""
    tags = tags or {}
    scene = {
        "daytime": parse_scalar_tag(tags.get("daytime")),
        "weather": parse_list(tags.get("weather")),
        "scene_environment": parse_scalar_tag(tags.get("scene_environment")),
        "travel_alteration": parse_list(tags.get("travel_alteration")),
        "city": text_or_none(extra.get("city")),
        "location": parse_gps(extra.get("gps")),
        "scene_description": text_or_none(extra.get("scene_description")),
    }
    return {k: v for k, v in scene.items() if v not in (None, [])}


# Paths ---------------------------------------------------------------------------------------------
def is_inside(root: Path, path: Path) -> bool:
    """Whether ``path``, symbolic links resolved, is ``root`` or lies under it (``root`` resolved too)."""
    root, target = Path(root).resolve(), Path(path).resolve()
    return target == root or root in target.parents


def safe_join(root: Path, relative: str) -> Path | None:
    """``root / relative`` if it stays inside ``root``; None for absolute paths or '..' escapes.

    Symbolic links are resolved first, so a link inside ``root`` that points out of it escapes too.
    """
    if not relative or Path(relative).is_absolute() or relative.startswith(("/", "\\")):
        return None
    root = root.resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        return None
    return candidate


def link_escape_message(path: Path, root: Path, *, name: str | None = None) -> str:
    """The reject text for a symbolic link out of ``root``; its target is never opened or stat'ed."""
    where = f"{name}: {path}" if name else str(path)
    return (
        f"{where} is a symbolic link to a location outside {root}; the platform reads only files inside the "
        "import folder. Copy the file into the folder instead of linking it."
    )


def escape_message(root: Path, relative: str, name: str, what: str = "file_name") -> str:
    """Why ``relative`` was refused under ``root``: an absolute/``..`` path, or a symbolic link out."""
    if relative and not Path(relative).is_absolute() and ".." not in Path(relative).parts:
        link = Path(root) / relative
        if any(p.is_symlink() for p in (link, *link.parents) if p != Path(root) and Path(root) in p.parents):
            return link_escape_message(link, root, name=name)
    return f"{name}: {what} {relative!r} is empty or escapes {root}; only files inside it are read."


def list_images(folder: Path, root: Path, source: str) -> tuple[list[Path], list[Reject]]:
    """Image files directly in ``folder`` (sorted) and a reject for each link that leaves ``root``.

    A symbolic link whose target stays inside ``root`` is read through its resolved path; one that
    points outside is rejected by name without opening the target (no size, no content in the
    message). A link whose target is missing is rejected as a broken link.
    """
    images: list[Path] = []
    rejects: list[Reject] = []
    for entry in sorted(folder.iterdir()):
        if entry.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if entry.is_symlink():
            if not is_inside(root, entry):
                rejects.append(Reject(source, str(entry), UNSAFE_PATH, link_escape_message(entry, root)))
                continue
            if not entry.exists():
                rejects.append(
                    Reject(source, str(entry), MISSING, f"{entry} is a symbolic link whose target does not exist.")
                )
                continue
            entry = entry.resolve()
        if entry.is_file():
            images.append(entry)
    return images, rejects


# Class maps ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassMap:
    """Source class names → unified primitive classes (or ``ignore``) and image-level labels.

    ``primitives`` keys are normalized names (:func:`normalize_name`); a name "Parent: subtype"
    that is not listed falls back to "Parent" and keeps the subtype as a box attribute.
    """

    path: Path
    primitives: Mapping[str, str]
    images: Mapping[str, Label]

    def primitive(self, name: str) -> tuple[str | None, str | None]:
        """(unified class or None when ignored, subtype) for a source class name; KeyError if unmapped."""
        key = normalize_name(name)
        subtype = None
        if key not in self.primitives and ":" in name:
            parent, subtype = (p.strip() for p in name.split(":", 1))
            key = normalize_name(parent)
        value = self.primitives[key]
        return (None if value == IGNORE else value), subtype

    def image_label(self, name: str) -> Label | None:
        """Label for a classification-folder name; a mapped primitive name means roadwork."""
        key = normalize_name(name)
        if key in self.images:
            return self.images[key]
        unified, _ = self.primitive(name)
        if unified is None:
            raise KeyError(name)
        from curation.schema import ROADWORK_PRIMITIVES

        return Label.ROADWORK if unified in ROADWORK_PRIMITIVES else Label.NO_ROADWORK

    def unmapped(self, names: Iterable[str], *, images: bool = False) -> list[str]:
        missing = []
        for name in names:
            try:
                self.image_label(name) if images else self.primitive(name)
            except KeyError:
                missing.append(name)
        return sorted(set(missing))

    def check(self, names: Iterable[str], *, images: bool = False, where: str) -> None:
        """Raise InputError listing every unmapped class name and the file to edit."""
        missing = self.unmapped(names, images=images)
        if missing:
            section = "images" if images else "primitives"
            raise InputError(
                f"{where}: {len(missing)} class name(s) not in the class map: {', '.join(map(repr, missing))}. "
                f"Add them under `{section}:` in {self.path} (values: one of {', '.join(PRIMITIVE_CLASSES)}, "
                f"or `{IGNORE}`{'; for images: roadwork or no_roadwork' if images else ''}), "
                "or pass your own map with --class-map."
            )


def load_class_map(*paths: Path) -> ClassMap:
    """Load and merge class-map YAML files (later files win); values are validated."""
    primitives: dict[str, str] = {}
    images: dict[str, Label] = {}
    allowed = set(PRIMITIVE_CLASSES) | {IGNORE}
    for path in paths:
        path = Path(path)
        doc = read_yaml_mapping(path, what="Class map", error=InputError)
        if set(doc) - {"primitives", "images"}:
            raise InputError(f"Class map {path} must be a mapping with keys `primitives` and `images`.")
        for name, value in (doc.get("primitives") or {}).items():
            value = IGNORE if value is None else str(value)
            if value not in allowed:
                raise InputError(
                    f"Class map {path}: `{name}` maps to {value!r}; allowed: {', '.join(sorted(allowed))}."
                )
            primitives[normalize_name(name)] = value
        for name, value in (doc.get("images") or {}).items():
            try:
                images[normalize_name(name)] = Label(str(value))
            except ValueError:
                raise InputError(
                    f"Class map {path}: image class `{name}` maps to {value!r}; allowed: roadwork, no_roadwork."
                ) from None
    return ClassMap(path=Path(paths[-1]), primitives=primitives, images=images)


def default_class_map_path(source: str) -> Path:
    from curation.assets import asset_dir

    return asset_dir("datasets") / source / "class_map.yaml"


# COCO ----------------------------------------------------------------------------------------------
BOX_TOLERANCE = 0.01
"""How far (a fraction of the image side) a box may reach past the image edge before it is refused."""


def read_coco(file: Path) -> dict[str, Any]:
    """Read one COCO JSON file and check its top-level shape.

    Raises:
        ValueError: the file is empty, not JSON, nested too deeply or not a COCO object with an
            ``images`` list; the message says which, in words, without Python internals.
    """
    data = file.read_bytes()
    if not data.strip():
        raise ValueError(f"the file is empty ({len(data)} bytes)")
    try:
        doc = json.loads(data)
    except UnicodeDecodeError:
        raise ValueError("not text (not UTF-8): is this really a COCO JSON file?") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg.lower()} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise ValueError("not a COCO file: its JSON is nested too deeply to read") from None
    if not isinstance(doc, Mapping):
        raise ValueError(f"not a COCO file: the top level is a JSON {_json_kind(doc)}, expected an object with `images`")
    if not isinstance(doc.get("images"), list):
        raise ValueError(f"not a COCO file: `images` must be a list, got {_json_kind(doc.get('images'))}")
    for key in ("annotations", "categories"):
        if doc.get(key) is not None and not isinstance(doc.get(key), list):
            raise ValueError(f"not a COCO file: `{key}` must be a list, got {_json_kind(doc.get(key))}")
    return dict(doc)


def _json_kind(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "missing value" if value is None else names.get(type(value), type(value).__name__)


def _entry_id(value: Any) -> bool:
    """COCO ids are integers or strings; anything else cannot key an image or category."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


@dataclass(frozen=True)
class CocoCategories:
    """Category id → (unified class or None, source name, subtype); ``problems`` names bad entries."""

    by_id: Mapping[Any, tuple[str | None, str, str | None]]
    problems: tuple[str, ...] = ()


def coco_categories(
    doc: Mapping[str, Any], class_map: ClassMap, *, where: str, drop_placeholder: bool = False
) -> CocoCategories:
    """Map a COCO file's categories (read by id, never by position) through ``class_map``.

    With ``drop_placeholder``, Roboflow's category 0 named after the project (the supercategory of
    the real classes, or ``supercategory: none``) is dropped when no annotation uses it. A category
    that is not an object or has no integer/string ``id`` is left out and named in ``problems``;
    annotations that use it are then rejected with their image.
    """
    problems = []
    cats = []
    for index, c in enumerate(doc.get("categories") or []):
        if not isinstance(c, Mapping) or not _entry_id(c.get("id")):
            got = "not an object" if not isinstance(c, Mapping) else f"no usable `id` (got {c.get('id')!r})"
            problems.append(f"{where}: categories[{index}] is {got}; it is ignored.")
            continue
        cats.append(c)
    used = {a.get("category_id") for a in doc.get("annotations") or [] if isinstance(a, Mapping) and _entry_id(a.get("category_id"))}
    if drop_placeholder:
        supers = {c.get("supercategory") for c in cats if c.get("id") != 0}
        cats = [
            c
            for c in cats
            if not (c.get("id") == 0 and 0 not in used and (c.get("supercategory") in ("none", None) or c.get("name") in supers))
        ]
    names = [str(c.get("name")) for c in cats if c.get("id") in used]
    class_map.check(names, where=where)
    by_id = {}
    for c in cats:
        name = str(c.get("name"))
        try:
            unified, subtype = class_map.primitive(name)
        except KeyError:
            unified, subtype = None, None  # unused and unmapped: never referenced
        by_id[c["id"]] = (unified, name, subtype)
    return CocoCategories(by_id, tuple(problems))


def _image_side(image: Mapping[str, Any], key: str) -> float | None:
    value = image.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"image `{key}` must be a positive number of pixels; got {value!r}")
    return float(value)


def parse_coco_boxes(
    image: Mapping[str, Any], annotations: Sequence[Mapping[str, Any]], categories: CocoCategories
) -> tuple[Primitive, ...]:
    """Boxes of one COCO image in unified classes; relative when the image size is known.

    A box must be four finite numbers; with the image size known it must also lie inside the image
    (up to :data:`BOX_TOLERANCE` of a side past an edge): a NaN or a 1e308-wide box is an error,
    not a roadwork box.

    Raises:
        ValueError: an annotation references an unknown category or has a malformed bbox.
    """
    width, height = _image_side(image, "width"), _image_side(image, "height")
    relative = width is not None and height is not None
    out = []
    for ann in annotations:
        cid = ann.get("category_id")
        if not _entry_id(cid) or cid not in categories.by_id:
            raise ValueError(f"annotation {ann.get('id')} has unknown category_id {cid!r}")
        unified, name, subtype = categories.by_id[cid]
        if unified is None:
            continue
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, (list, tuple))
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        ):
            raise ValueError(f"annotation {ann.get('id')} has malformed bbox {bbox!r}: expected [x, y, width, height] numbers")
        x, y, w, h = (float(v) for v in bbox)
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise ValueError(f"annotation {ann.get('id')} has a bbox that is not finite numbers: {bbox!r}")
        if w <= 0 or h <= 0:
            continue
        if relative:
            assert width is not None and height is not None
            x, y, w, h = x / width, y / height, w / width, h / height
            if x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > 1 + BOX_TOLERANCE or y + h > 1 + BOX_TOLERANCE:
                raise ValueError(
                    f"annotation {ann.get('id')} has bbox {bbox!r} outside the {width:g}×{height:g} image"
                )
        attrs = {"source_class": name}
        if subtype:
            attrs["subtype"] = subtype
        out.append(Primitive(unified, (x, y, w, h), relative=relative, attrs=attrs))
    return tuple(out)


def group_annotations(doc: Mapping[str, Any], *, where: str = "") -> tuple[dict[Any, list[Mapping[str, Any]]], list[str]]:
    """Annotations by ``image_id``, and a message for each entry that is not a usable annotation."""
    by_image: dict[Any, list[Mapping[str, Any]]] = {}
    problems = []
    for index, ann in enumerate(doc.get("annotations") or []):
        if not isinstance(ann, Mapping) or not _entry_id(ann.get("image_id")):
            got = "not an object" if not isinstance(ann, Mapping) else f"without a usable `image_id` (got {ann.get('image_id')!r})"
            problems.append(f"{where}: annotations[{index}] is {got}; it is ignored.")
            continue
        by_image.setdefault(ann["image_id"], []).append(ann)
    return by_image, problems


def coco_image_problem(image: Any) -> str | None:
    """Why one ``images`` entry cannot be imported, or None: it must be an object with a string
    ``file_name`` and an integer/string ``id``."""
    if not isinstance(image, Mapping):
        return f"is a JSON {_json_kind(image)}, not an image object"
    if not isinstance(image.get("file_name"), str):
        return f"has no usable `file_name` (got {image.get('file_name')!r})"
    if not _entry_id(image.get("id")):
        return f"has no usable `id` (got {image.get('id')!r})"
    return None


def parse_label_value(value: Any) -> Label:
    """0/1 (also bools, "0"/"1", "None"/"Roadwork", label names) → Label; ValueError otherwise."""
    if isinstance(value, bool):
        return Label.ROADWORK if value else Label.NO_ROADWORK
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 1:
            return Label.ROADWORK
        if value == 0:
            return Label.NO_ROADWORK
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "roadwork", "true"):
            return Label.ROADWORK
        if text in ("0", "none", "no_roadwork", "false"):
            return Label.NO_ROADWORK
    raise ValueError(f"label must be 0 (None) or 1 (Roadwork); got {value!r}")
