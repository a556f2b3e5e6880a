"""Ingest: run an importer into the platform dataset, safely and repeatably.

For each batch of records: read and validate the images (a thread pool; bad files become
rejects with a reason), find the sample each image belongs to (content hash, other encodings of
the same NATIX/ROADWork frame), fold the records into it with the pure rules of
:mod:`curation.ingest.rules`, write new images once to the content-addressed media store and
write the dataset in bulk (``add_samples`` for new samples, one ``set_values`` per changed
field). Then leaks are re-tagged over the whole dataset and a summary is returned.

Safety: the upsert is keyed by ``content_hash`` under a unique index, so a second run changes
nothing, an interrupted run resumes where it stopped, and two concurrent runs cannot create two
samples for one image. Human labels are never overwritten; disagreements are reported.

Example:
    >>> from curation import store
    >>> from curation.settings import Settings
    >>> from curation.ingest.job import ingest, make_importer
    >>> settings = Settings.load()
    >>> summary = ingest(store.open_dataset(settings), make_importer("natix", "natix/data"),
    ...                  settings=settings)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation import schema, store
from curation.errors import ConfigError, InputError, suggest
from curation.ingest.rules import (
    MANAGED_FIELDS,
    Incoming,
    LeakRow,
    SplitConfig,
    assign_sequence_splits,
    find_leaks,
    merge,
    record_split,
)
from curation.ingest.sources.common import Importer, Reject, SourceRecord
from curation.media import MISSING, UNREADABLE, DecodedImage, ImageRejected, MediaLimits, MediaStore, decode_image
from curation.schema import TAG_LABEL_CONFLICT, TAG_LEAK, Source, Split
from curation.settings import Settings
from curation.slices import SliceConfig, slice_counts
from curation.typed_config import from_mapping, read_yaml_mapping

if TYPE_CHECKING:
    import fiftyone as fo
    from rich.console import Console

SOURCES = (Source.NATIX, Source.ROADWORK, Source.ROBOFLOW, Source.QUERIES)
CORPUS_ORDER = ("natix", "roadwork", "roboflow", "queries")


# Config -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestConfig:
    """Everything an import decides that is not in the data.

    Attributes:
        split: NATIX train → val/calib/train fractions and salt.
        media: image limits (min side, decompression-bomb pixel count, re-encode quality).
        slices: slice thresholds.
        leak_hamming: a trainable image within this many perceptual-hash bits of an evaluation
            image is tagged ``leak``.
        batch_size: records per database round trip.
        workers: threads reading and decoding images.
    """

    split: SplitConfig = field(default_factory=SplitConfig)
    media: MediaLimits = field(default_factory=MediaLimits)
    slices: SliceConfig = field(default_factory=SliceConfig)
    leak_hamming: int = 6
    batch_size: int = 256
    workers: int = 2

    def __post_init__(self) -> None:
        if not 0 <= int(self.leak_hamming) <= 64:
            raise ConfigError(f"The `leak_hamming` parameter must be an int in [0, 64]. Got {self.leak_hamming} instead.")
        if int(self.batch_size) < 1 or int(self.workers) < 1:
            raise ConfigError(f"`batch_size` and `workers` must be >= 1; got {self.batch_size}, {self.workers}.")

    @classmethod
    def load(cls, path: str | Path | None) -> IngestConfig:
        """Read a YAML file (keys as the attributes; nested mappings for split/media/slices)."""
        if path is None:
            return cls()
        return ingest_config_from_mapping(read_yaml_mapping(path, what="Ingest config"), source=str(path))


def ingest_config_from_mapping(doc: dict[str, Any], *, source: str) -> IngestConfig:
    nested = {"split": SplitConfig, "media": MediaLimits, "slices": SliceConfig}
    values = dict(doc)
    for key, kind in nested.items():
        if key in values:
            if not isinstance(values[key], dict):
                raise ConfigError(f"{source}: `{key}` must be a mapping.")
            values[key] = from_mapping(kind, values[key], source=f"{source}: {key}")
    flat = {k: v for k, v in values.items() if k not in nested}
    built = from_mapping(IngestConfig, flat, source=source)
    return dataclasses.replace(built, **{k: v for k, v in values.items() if k in nested})


# Importers ----------------------------------------------------------------------------------------
def make_importer(source: str, path: str | Path, *, class_map: Sequence[Path] | None = None) -> Importer:
    """The importer for ``source`` (natix, roadwork, roboflow, queries) reading ``path``."""
    name = str(source).lower()
    if name == Source.NATIX:
        from curation.ingest.sources.natix import NatixImporter

        return NatixImporter(path)
    if name == Source.ROADWORK:
        from curation.ingest.sources.roadwork import RoadworkImporter

        return RoadworkImporter(path, class_map=class_map)
    if name == Source.ROBOFLOW:
        from curation.ingest.sources.roboflow import RoboflowImporter

        return RoboflowImporter(path, class_map=class_map)
    if name == Source.QUERIES:
        from curation.ingest.sources.queries import QueriesImporter

        return QueriesImporter(path)
    allowed = [str(s) for s in SOURCES]
    raise InputError(f"Unknown source `{source}`.{suggest(name, allowed)} Allowed: {', '.join(allowed)}, all.")


# Summary ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Disagreement:
    """A re-import whose label rule disagrees with a human label (the human label is kept)."""

    sample_id: str
    filepath: str | None
    human: str
    rule: str
    sources: tuple[str, ...]


@dataclass
class IngestSummary:
    """What one import did, plus dataset-wide counts after it."""

    source: str
    path: str
    records: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    restored: int = 0  # existing samples whose media file was missing and was written again
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    conversions: Counter[str] = field(default_factory=Counter)
    leaks_tagged: int = 0
    leaks_cleared: int = 0
    table: dict[tuple[str, str, str], int] = field(default_factory=dict)
    slices: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    leaks: int = 0
    total: int = 0

    @property
    def rejects_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r.reason for r in self.rejects).items()))

    @property
    def changed(self) -> int:
        return self.added + self.updated + self.leaks_tagged + self.leaks_cleared


# Identity index -----------------------------------------------------------------------------------
class _Index:
    """Where existing images live: by content hash (and other encodings) and by NATIX frame."""

    def __init__(self) -> None:
        self.by_hash: dict[str, str] = {}
        self.by_frame: dict[str, str] = {}
        self.natix_train_groups: dict[str, Split] = {}

    @classmethod
    def load(cls, dataset: fo.Dataset) -> _Index:
        index = cls()
        for row in store.identity_rows(dataset):
            index.add(row["id"], row)
            for qid in row.get("source_ids") or []:
                if qid.startswith("natix:train:") and row.get("split") in (Split.VAL, Split.CALIB, Split.TRAIN):
                    key = row.get("sequence_group") or f"id:{qid.split(':', 2)[2]}"
                    index.natix_train_groups.setdefault(key, Split(row["split"]))
        return index

    def add(self, sample_id: str, row: dict[str, Any]) -> None:
        for h in [row.get("content_hash"), *(row.get("alt_hashes") or [])]:
            if h:
                self.by_hash[h] = sample_id
        if row.get("video_id") is not None and row.get("sequence_id") is not None and row.get("frame_id") is not None:
            self.by_frame[f"{row['video_id']}/{row['sequence_id']}/{row['frame_id']}"] = sample_id

    def find(self, image: DecodedImage, record: SourceRecord) -> str | None:
        found = self.by_hash.get(image.sha256)
        if found is None and record.frame_key is not None:
            found = self.by_frame.get(record.frame_key)
        return found


# The run ------------------------------------------------------------------------------------------
def natix_group_splits(importer: Any, index: _Index, config: SplitConfig) -> dict[str, Split]:
    """Split of every NATIX-train sequence group: existing groups keep theirs, the rest are
    assigned from a metadata-only pre-scan (no image bytes are read)."""
    groups: dict[str, list[str | None]] = {}
    for split, group, source_id, label in importer.scan_groups():
        if split != "test":
            groups.setdefault(group or f"id:{source_id}", []).append(label)
    assigned = assign_sequence_splits(groups, config)
    assigned.update({k: v for k, v in index.natix_train_groups.items()})
    return assigned


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _decode(record: SourceRecord, limits: MediaLimits) -> DecodedImage | Reject:
    try:
        data = record.read()
    except FileNotFoundError:
        return Reject(record.source, record.name, MISSING, f"{record.name}: file not found.")
    except OSError as e:
        return Reject(record.source, record.name, UNREADABLE, f"{record.name}: cannot read ({e.strerror or e}).")
    try:
        return decode_image(data, name=record.name, limits=limits)
    except ImageRejected as e:
        return Reject(record.source, record.name, e.reason, str(e))


def ingest(
    dataset: fo.Dataset,
    importer: Importer,
    *,
    settings: Settings,
    config: IngestConfig | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> IngestSummary:
    """Import every record of ``importer`` into ``dataset``; returns the summary.

    Raises:
        InputError: the input as a whole is unusable (missing path, unmapped class names);
            individual bad records are rejects in the summary instead.
    """
    config = config or IngestConfig()
    importer.setup()
    summary = IngestSummary(source=str(importer.source), path=str(getattr(importer, "path", "")))
    store.ensure_identity_index(dataset)
    media = MediaStore(settings.media_root)
    media.sweep_stale()  # temporary files of killed imports
    # Until this import's leak check has run, a retrain first runs it (complete_leak_check) and
    # every sample it adds carries `leak_unchecked`, which training never takes.
    dataset.info[store.LEAK_CHECK_KEY] = {"pending": True, "max_distance": int(config.leak_hamming)}
    dataset.save()
    index = _Index.load(dataset)
    group_splits = natix_group_splits(importer, index, config.split) if importer.source == Source.NATIX else {}

    with ThreadPoolExecutor(max_workers=int(config.workers)) as pool, _progress(console, progress) as bar:
        task = bar.add_task(f"ingest {importer.source}", total=len(importer) or None)

        def submit(batch: list[Any]) -> tuple[list[Any], list[Future[DecodedImage | Reject]]]:
            records = [r for r in batch if isinstance(r, SourceRecord)]
            return batch, [pool.submit(_decode, r, config.media) for r in records]

        # Decode batch k+1 in the pool while batch k is written: at most two batches in memory.
        batches = _batched(importer, int(config.batch_size))
        pending = submit(first) if (first := next(batches, None)) is not None else None
        while pending is not None:
            batch, futures = pending
            pending = submit(following) if (following := next(batches, None)) is not None else None
            summary.records += len(batch)
            records = [r for r in batch if isinstance(r, SourceRecord)]
            summary.rejects.extend(r for r in batch if isinstance(r, Reject))
            incoming = []
            for record, future in zip(records, futures, strict=True):
                result = future.result()
                if isinstance(result, Reject):
                    summary.rejects.append(result)
                    continue
                summary.conversions.update(result.notes)
                incoming.append(Incoming(record, record_split(record, group_splits), result))
            _write_batch(dataset, incoming, index, media, config, summary)
            bar.advance(task, len(batch))

    summary.warnings.extend(importer.warnings)
    if store.record_slice_config(dataset, config.slices):  # after the import: a failed one changes no rules
        summary.warnings.append(
            "The slice rules differ from the previous import's: samples this import does not touch keep slices "
            "computed by the old rules until their source is imported again; labeling and synthesis now use the new rules."
        )
    summary.leaks_tagged, summary.leaks_cleared = retag_leaks(dataset, max_distance=int(config.leak_hamming))
    dataset.info[store.LEAK_CHECK_KEY] = {"pending": False, "max_distance": int(config.leak_hamming)}
    dataset.save()
    _finish(dataset, summary)
    return summary


def _write_batch(
    dataset: fo.Dataset,
    incoming: list[Incoming],
    index: _Index,
    media: MediaStore,
    config: IngestConfig,
    summary: IngestSummary,
) -> None:
    existing: dict[str, list[Incoming]] = {}
    new: dict[str, list[Incoming]] = {}
    new_frames: dict[str, str] = {}
    for item in incoming:
        target = index.find(item.image, item.record)
        if target is not None:
            existing.setdefault(target, []).append(item)
            continue
        key = item.image.sha256
        frame = item.record.frame_key
        if key not in new and frame is not None and frame in new_frames:
            key = new_frames[frame]
        new.setdefault(key, []).append(item)
        if frame is not None:
            new_frames.setdefault(frame, key)

    for _attempt in range(3):
        if not new:
            break
        try:
            _insert_new(dataset, new, index, media, config, summary)
            new = {}
        except store.DuplicateHashError:
            # Another import added some of these images meanwhile: merge into its samples instead.
            found = store.find_ids_by_hash(dataset, list(new))
            for h, sample_id in found.items():
                existing.setdefault(sample_id, []).extend(new.pop(h))
                index.by_hash[h] = sample_id
    if new:
        raise InputError("Could not insert images after 3 attempts: another import keeps writing the same images.")
    _update_existing(dataset, existing, media, config, summary)


def _insert_new(
    dataset: fo.Dataset,
    new: dict[str, list[Incoming]],
    index: _Index,
    media: MediaStore,
    config: IngestConfig,
    summary: IngestSummary,
) -> None:
    states = []
    for sha, items in new.items():
        image = items[0].image
        path = media.put(image)
        result = merge({"content_hash": sha}, items, slice_config=config.slices)
        state = {k: v for k, v in result.state.items() if v not in (None, [], {})}
        state["tags"] = [*(state.get("tags") or []), schema.TAG_LEAK_UNCHECKED]  # until retag_leaks checks it
        state.update(
            filepath=str(path),
            content_hash=sha,
            phash=image.phash,
            metadata={
                "size_bytes": len(image.data),
                "mime_type": image.mime_type,
                "width": image.width,
                "height": image.height,
                "num_channels": 3 if image.thumb.ndim == 3 else 1,
            },
        )
        states.append(state)
    ids = store.insert_states(dataset, states)
    for sample_id, state in zip(ids, states, strict=True):
        index.add(sample_id, state)
    summary.added += len(ids)


def _update_existing(
    dataset: fo.Dataset, existing: dict[str, list[Incoming]], media: MediaStore, config: IngestConfig, summary: IngestSummary
) -> None:
    if not existing:
        return
    current = store.read_states(dataset, list(existing), [*MANAGED_FIELDS, "filepath", "content_hash"])
    changes: dict[str, dict[str, Any]] = {}
    for sample_id, items in existing.items():
        state = current.get(sample_id)
        if state is None:  # deleted meanwhile; the next run adds it again
            continue
        restored = _restore_media(state, items, media)
        if restored is not None:
            summary.restored += 1
            if restored != state.get("filepath"):
                changes.setdefault(sample_id, {})["filepath"] = restored
        result = merge(state, items, slice_config=config.slices)
        if result.disagreement:
            human, rule = result.disagreement
            summary.disagreements.append(
                Disagreement(sample_id, state.get("filepath"), human, rule, tuple(result.state["sources"]))
            )
        if result.changes:
            changes.setdefault(sample_id, {}).update(result.changes)
            summary.updated += 1
        else:
            summary.unchanged += 1
    store.write_changes(dataset, changes)


def _restore_media(state: dict[str, Any], items: list[Incoming], media: MediaStore) -> str | None:
    """Write a known sample's image again when its file is gone (a wiped or moved media store).

    Only from the same bytes (the incoming image's hash equals the sample's ``content_hash``); returns
    the file's path, or None when nothing was missing or no incoming copy is byte-identical.
    """
    filepath = state.get("filepath")
    if filepath and Path(filepath).is_file():
        return None
    same = next((item.image for item in items if item.image.sha256 == state.get("content_hash")), None)
    return None if same is None else str(media.put(same))


def retag_leaks(dataset: fo.Dataset, *, max_distance: int) -> tuple[int, int]:
    """Tag exactly the trainable samples that leak (sequence or near-duplicate of an evaluation
    image) with ``leak`` and record the evidence in ``near_duplicate_of``; every sample checked
    loses ``leak_unchecked``. Returns (tagged, cleared)."""
    rows = store.leak_inputs(dataset)
    leaks = find_leaks([LeakRow(*row[:5]) for row in rows], max_distance=max_distance)
    tag_changes: dict[str, list[str]] = {}
    evidence: dict[str, list[str]] = {}
    tagged = cleared = 0
    for sample_id, _split, _group, _phash, _hash, tags in rows:
        tags = list(tags or [])
        new = [t for t in tags if t != schema.TAG_LEAK_UNCHECKED]
        if sample_id in leaks and TAG_LEAK not in tags:
            new.append(TAG_LEAK)
            evidence[sample_id] = [e for e in leaks[sample_id] if not e.startswith("group:")]
            tagged += 1
        elif sample_id not in leaks and TAG_LEAK in tags:
            new = [t for t in new if t != TAG_LEAK]
            cleared += 1
        if new != tags:
            tag_changes[sample_id] = new
    store.set_values_by_id(dataset, "tags", tag_changes)
    store.set_values_by_id(dataset, "near_duplicate_of", {k: v for k, v in evidence.items() if v})
    return tagged, cleared


def complete_leak_check(dataset: fo.Dataset) -> bool:
    """Run the leak check an interrupted import left pending (before anything trains); returns whether it ran.

    An import marks the check pending before it writes and done after :func:`retag_leaks`, so a
    killed import's new evaluation images cannot leave a near-duplicate train image untagged.
    """
    state = dataset.info.get(store.LEAK_CHECK_KEY) or {}
    unchecked = dataset.match_tags(schema.TAG_LEAK_UNCHECKED).count()
    if not state.get("pending") and not unchecked:
        return False
    retag_leaks(dataset, max_distance=int(state.get("max_distance", IngestConfig.leak_hamming)))
    dataset.info[store.LEAK_CHECK_KEY] = {**state, "pending": False}
    dataset.save()
    return True


def _finish(dataset: fo.Dataset, summary: IngestSummary) -> None:
    summary.table = store.source_split_label_counts(dataset)
    summary.slices = slice_counts(dataset.values("slices"))
    tags = dataset.count_sample_tags()
    summary.conflicts = tags.get(TAG_LABEL_CONFLICT, 0)
    summary.leaks = tags.get(TAG_LEAK, 0)
    summary.total = len(dataset)


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def advance(self, *args: Any, **kwargs: Any) -> None:
        return None


def _progress(console: Console | None, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)


# Whole corpus -------------------------------------------------------------------------------------
def ingest_corpus(
    dataset: fo.Dataset,
    root: str | Path,
    *,
    settings: Settings,
    config: IngestConfig | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> list[IngestSummary]:
    """Import ``root/{natix,roadwork,roboflow,queries}`` (each that exists), in that order."""
    root = Path(root)
    parts = [name for name in CORPUS_ORDER if (root / name).exists()]
    if not parts:
        raise InputError(f"{root} holds none of {', '.join(CORPUS_ORDER)}/: not a corpus folder.")
    return [
        ingest(dataset, make_importer(name, root / name), settings=settings, config=config, console=console, progress=progress)
        for name in parts
    ]
