"""NATIX StreetVision roadwork data (``natix-network-org/roadwork``) as published.

Accepted inputs:
  * parquet files as on the hub (``data/train-00000-of-00002.parquet`` ...), a file or a folder;
    the split is read from the file name (``train-*``, ``test-*``) or the parent folder;
  * a folder written by ``datasets.Dataset.save_to_disk`` (a Dataset or a DatasetDict);
  * the hub id itself (``natix-network-org/roadwork``), streamed with Hugging Face ``datasets``
    when the machine is online.

Rows carry the image as a struct ``{bytes, path}``, dotted column names (``video_info.seq_id``)
or the nested variant (a ``video_info`` struct), list-valued tags stored as strings
(``"['Sunny']"``) and ``label`` 0 (None) / 1 (Roadwork). Validators skip rows whose label
disagrees with the Python truthiness of ``scene_description`` (:func:`validator_conflict`); such
rows are kept, tagged ``label_conflict``, never relabeled. A file that cannot be read, or has no
``image`` column, is one ``bad_file`` reject naming it. Parquet is read one record batch at a
time, so memory does not grow with the number of rows.

Example:
    >>> from curation.ingest.sources.natix import parse_natix_row
    >>> r = parse_natix_row({"id": 7, "label": 1, "scene_description": "", "image": {"bytes": b"x"}},
    ...                     split="train", where="row 0")
    >>> r.label, r.tags
    (<Label.ROADWORK: 'roadwork'>, ('label_conflict',))
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from curation.errors import InputError
from curation.ingest.sources.common import (
    BAD_FILE,
    BAD_LABEL,
    BAD_RECORD,
    Reject,
    SourceRecord,
    parse_label_value,
    scene_from_tags,
    text_or_none,
)
from curation.schema import TAG_LABEL_CONFLICT, Label, Source

HUB_ID = "natix-network-org/roadwork"
KNOWN_SPLITS = ("train", "test", "validation", "val")
EMPTY_DESCRIPTIONS = ("", "no description", "none", "n/a")
BATCH_ROWS = 32
_HUB_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+$")
_VIDEO_KEYS = ("vid_id", "seq_id", "frame_id")
_TAG_KEYS = ("daytime", "scene_environment", "travel_alteration", "weather")


def _nested(row: Mapping[str, Any], group: str, key: str) -> Any:
    """``row['group.key']`` (dotted columns) or ``row['group']['key']`` (nested struct)."""
    dotted = f"{group}.{key}"
    if dotted in row:
        return row[dotted]
    inner = row.get(group)
    return inner.get(key) if isinstance(inner, Mapping) else None


def description_is_empty(text: Any) -> bool:
    """Whether a description is a placeholder; decides only what is stored as ``scene_description``."""
    return text is None or str(text).strip().lower() in EMPTY_DESCRIPTIONS


def validator_conflict(label: Any, description: Any) -> bool:
    """The validator's own rule: a row is skipped when ``label == 1`` disagrees with ``bool(description)``.

    Plain Python truthiness, as the subnet's filter applies it to the raw value: the placeholder
    ``"No Description"`` and a whitespace-only string are truthy (a description), ``""`` and None
    are falsy. Nothing is stripped or lower-cased, so the platform excludes exactly the rows the
    validator skips.

    Example:
        >>> validator_conflict(1, "No Description"), validator_conflict(1, ""), validator_conflict(0, " ")
        (False, True, True)
    """
    return (label == 1 or label == Label.ROADWORK) != bool(description)


def parse_natix_row(row: Mapping[str, Any], *, split: str, where: str) -> SourceRecord | Reject:
    """Turn one NATIX row (flat dotted or nested) into a record; never touches the disk."""
    source_id = text_or_none(row.get("id")) or where
    try:
        label = parse_label_value(row.get("label"))
    except ValueError as e:
        return Reject(Source.NATIX, where, BAD_LABEL, f"{where} (id {source_id}): {e}.")
    image = row.get("image")
    data = image.get("bytes") if isinstance(image, Mapping) else image
    if not isinstance(data, (bytes, bytearray)):
        return Reject(Source.NATIX, where, BAD_RECORD, f"{where} (id {source_id}): no image bytes in column `image`.")
    description = row.get("scene_description")
    tags = ()
    if validator_conflict(label, description):
        tags = (TAG_LABEL_CONFLICT,)
    video = {k: text_or_none(_nested(row, "video_info", k)) for k in _VIDEO_KEYS}
    scene = scene_from_tags(
        {k: _nested(row, "scene_level_tags", k) for k in _TAG_KEYS},
        city=row.get("city_name"),
        gps=row.get("gps"),
        scene_description=None if description_is_empty(description) else description,
    )
    return SourceRecord(
        source=Source.NATIX,
        source_split=split,
        source_id=source_id,
        name=where,
        data=bytes(data),
        label=label,
        primitives=None,
        video_id=video["vid_id"],
        sequence_id=video["seq_id"],
        frame_id=video["frame_id"],
        scene=scene,
        tags=tags,
    )


def group_of(row: Mapping[str, Any]) -> str | None:
    vid, seq = text_or_none(_nested(row, "video_info", "vid_id")), text_or_none(_nested(row, "video_info", "seq_id"))
    return f"{vid}/{seq}" if vid is not None and seq is not None else None


def split_from_filename(path: Path) -> str | None:
    """``train-00000-of-00002.parquet`` → ``train``; falls back to the parent folder name."""
    for candidate in (path.stem.split("-")[0].split(".")[0].lower(), path.parent.name.lower()):
        if candidate in KNOWN_SPLITS:
            return "val" if candidate == "validation" else candidate
    return None


def _no_image_column(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:12]) + (", ..." if len(names) > 12 else "")
    return f"has no `image` column (its columns: {shown or 'none'}); NATIX rows carry the picture in `image`"


def _parquet_problem(file: Path) -> tuple[str | None, int]:
    """(why ``file`` cannot be imported, or None; its row count), read from the footer only."""
    import pyarrow.parquet as pq

    try:
        size = file.stat().st_size
    except OSError as e:
        return f"cannot be read ({e.strerror or 'unknown error'})", 0
    if size == 0:
        return "is not a readable parquet file: it is empty (0 bytes)", 0
    try:
        pf = pq.ParquetFile(file)
    except Exception:  # noqa: BLE001 - pyarrow raises several types for bad files
        return f"is not a readable parquet file: it is truncated or not parquet ({size:,} bytes)", 0
    names = pf.schema_arrow.names
    if "image" not in names:
        return _no_image_column(names), 0
    return None, pf.metadata.num_rows


class NatixImporter:
    """Iterate NATIX rows from parquet files, a saved datasets folder or the hub.

    Args:
        path: a parquet file, a folder of them, a ``save_to_disk`` folder, or a hub id.
        splits: restrict to these source splits (default: all found).
    """

    source = Source.NATIX

    def __init__(self, path: str | Path, *, splits: tuple[str, ...] | None = None) -> None:
        self.path = path
        self.splits = splits
        self.warnings: list[str] = []
        self._kind: str | None = None
        self._files: list[tuple[str, Path]] = []
        self._num_rows: int | None = None
        self._rejects: list[Reject] = []

    # setup -------------------------------------------------------------------------------------
    def setup(self) -> None:
        self._files, self._rejects = [], []
        path = Path(self.path).expanduser()
        if path.exists():
            if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
                self._kind = "saved"
                return
            files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
            if not files:
                raise InputError(
                    f"No parquet files under {path}. Expected NATIX files like data/train-00000-of-00002.parquet "
                    "or a folder written by datasets' save_to_disk."
                )
            for file in files:
                split = split_from_filename(file)
                if split is None:
                    raise InputError(
                        f"Cannot tell the split of {file}: name it train-*.parquet or test-*.parquet, "
                        "or put it in a train/ or test/ folder."
                    )
                if self.splits is None or split in self.splits:
                    self._files.append((split, file))
            self._kind = "parquet"

            total = 0
            readable = []
            for split, file in self._files:
                problem, rows = _parquet_problem(file)
                if problem is not None:
                    self._rejects.append(Reject(Source.NATIX, file.name, BAD_FILE, f"{file}: {problem}; no row of it was imported."))
                    continue
                readable.append((split, file))
                total += rows
            self._files = readable
            self._num_rows = total + len(self._rejects)
            return
        if isinstance(self.path, str) and _HUB_ID_RE.match(self.path):
            self._kind = "hub"
            return
        raise InputError(f"NATIX input {self.path} does not exist (and is not a hub id like `{HUB_ID}`).")

    def __len__(self) -> int:
        return self._num_rows or 0

    # iteration ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[SourceRecord | Reject]:
        if self._kind is None:
            self.setup()
        yield from self._rejects
        for item in self._rows(columns=None):
            yield item if isinstance(item, Reject) else parse_natix_row(item[2], split=item[0], where=item[1])

    def scan_groups(self) -> Iterator[tuple[str, str | None, str, Label | None]]:
        """(source split, sequence group, source id, label) per row, without reading images."""
        for item in self._rows(columns="meta"):
            if isinstance(item, Reject):
                continue
            split, where, row = item
            try:
                label: Label | None = parse_label_value(row.get("label"))
            except ValueError:
                label = None
            yield split, group_of(row), text_or_none(row.get("id")) or where, label

    def _rows(self, columns: str | None) -> Iterator[tuple[str, str, dict[str, Any]] | Reject]:
        if self._kind is None:
            self.setup()
        if self._kind == "parquet":
            yield from self._parquet_rows(columns)
        else:
            yield from self._hf_rows(columns)

    def _parquet_rows(self, columns: str | None) -> Iterator[tuple[str, str, dict[str, Any]] | Reject]:
        import pyarrow.parquet as pq

        for split, file in self._files:
            try:
                # pre_buffer=False: with pre-buffering, pyarrow keeps every row group it has read
                # cached until the file is closed, so memory grows with the rows (measured).
                pf = pq.ParquetFile(file, pre_buffer=False)
            except Exception:  # noqa: BLE001 - checked in setup(); a file changed since is skipped
                continue
            names = pf.schema_arrow.names
            cols = None
            if columns == "meta":
                cols = [n for n in names if n in ("id", "label", "video_info") or n.startswith("video_info.")]
            index = 0
            try:
                for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=cols):
                    for row in batch.to_pylist():
                        yield split, f"{file.name} row {index}", row
                        index += 1
            except Exception:  # noqa: BLE001 - a damaged row group must not stop other files
                where = f"{file.name} after row {index}"
                yield Reject(
                    Source.NATIX, where, BAD_FILE,
                    f"{file}: the data after row {index} cannot be read (the file is damaged or truncated); "
                    "the rest of this file was not imported. Download it again.",
                )

    def _hf_rows(self, columns: str | None) -> Iterator[tuple[str, str, dict[str, Any]] | Reject]:
        try:
            import datasets as hf
        except ImportError as e:  # pragma: no cover - datasets is a core dependency
            raise InputError(f"Reading {self.path} needs Hugging Face `datasets`: {e}") from None
        try:
            if self._kind == "saved":
                loaded = hf.load_from_disk(str(Path(self.path).expanduser()))
            else:
                loaded = hf.load_dataset(str(self.path), streaming=True)
        except Exception as e:  # noqa: BLE001 - offline, gated or missing: one clear line
            raise InputError(f"Cannot open NATIX dataset {self.path}: {e}") from None
        parts = loaded.items() if isinstance(loaded, Mapping) else [(Path(str(self.path)).name, loaded)]
        for split_name, ds in parts:
            split = "val" if split_name == "validation" else split_name
            if split not in KNOWN_SPLITS:
                split = "train"
            if self.splits is not None and split not in self.splits:
                continue
            if columns is None and "image" not in (ds.column_names or []):
                where = f"{self.path}[{split_name}]"
                yield Reject(Source.NATIX, where, BAD_FILE, f"{where}: {_no_image_column(ds.column_names or [])}; no row of it was imported.")
                continue
            if columns == "meta":
                keep = [n for n in ds.column_names if n in ("id", "label", "video_info") or n.startswith("video_info.")]
                ds = ds.select_columns(keep)
            elif "image" in (ds.column_names or []):
                ds = ds.cast_column("image", hf.Image(decode=False))
            for index, row in enumerate(ds):
                yield split, f"{self.path}[{split_name}] row {index}", dict(row)

