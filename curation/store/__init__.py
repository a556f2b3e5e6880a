"""FiftyOne/MongoDB access: the only module that knows the database.

FiftyOne is imported lazily so ``curation --help`` stays fast and so the database URI from the
settings is in place before FiftyOne reads its configuration.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curation import schema
from curation.errors import CurationError, SchemaError
from curation.settings import Settings
from curation.slices import SliceConfig
from curation.typed_config import from_mapping

if TYPE_CHECKING:
    import fiftyone as fo
    import fiftyone.core.collections as foc

SCHEMA_VERSION_KEY = "curation_schema_version"
SLICE_CONFIG_KEY = "curation_slice_config"


def connect(settings: Settings) -> None:
    """Point FiftyOne at the configured database (embedded mongod when no URI is set)."""
    if settings.database_uri:
        os.environ["FIFTYONE_DATABASE_URI"] = settings.database_uri
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone as fo

    if settings.database_uri and fo.config.database_uri != settings.database_uri:
        fo.config.database_uri = settings.database_uri
    if not fo.config.database_uri:
        check_embedded_database()


def served_database_dir() -> str | None:
    """The data folder of the mongod FiftyOne is connected to (None when the server does not say)."""
    import fiftyone.core.odm as foo

    try:
        opts = foo.get_db_client().admin.command("getCmdLineOpts")
    except Exception:  # noqa: BLE001 - an external server may refuse the command: nothing to compare
        return None
    return (opts.get("parsed") or {}).get("storage", {}).get("dbPath")


def check_embedded_database() -> None:
    """Refuse to work on another home's embedded database.

    FiftyOne 1.22 attaches to any running FiftyOne database service of the user, whatever
    ``FIFTYONE_DATABASE_DIR`` says, so a second home would silently read and write the first
    home's datasets. The served folder is compared with the configured one.

    Raises:
        CurationError: the running service keeps its data elsewhere; the message says what to do.
    """
    import fiftyone as fo

    served = served_database_dir()
    configured = os.path.realpath(os.path.expanduser(fo.config.database_dir))
    if served is not None and os.path.realpath(served) != configured:
        raise CurationError(
            f"The running FiftyOne database service keeps its data in {served}, not in this home's {configured} "
            "(FIFTYONE_DATABASE_DIR); FiftyOne attaches to whichever service runs, so this command would read and "
            "write the other home's datasets. Stop that home's FiftyOne processes (App, worker, notebooks) first, "
            f"or give this home its own MongoDB: start `mongod --dbpath {configured} --port 27018` and set "
            "FIFTYONE_DATABASE_URI=mongodb://127.0.0.1:27018 (or `database_uri` in the settings)."
        )


def database_location() -> str:
    """Human-readable description of where the data lives: the database actually in use."""
    import fiftyone as fo

    if fo.config.database_uri:
        served = served_database_dir()
        return fo.config.database_uri + (f" (data in {served})" if served else "")
    return f"embedded mongod, data in {served_database_dir() or fo.config.database_dir}"


def _fo_field(spec: schema.FieldSpec) -> tuple[Any, dict[str, Any]]:
    import fiftyone as fo

    scalar = {
        "string": fo.StringField,
        "int": fo.IntField,
        "float": fo.FloatField,
        "bool": fo.BooleanField,
        "datetime": fo.DateTimeField,
        "dict": fo.DictField,
    }
    if spec.kind in scalar:
        return scalar[spec.kind], {}
    if spec.kind == "list":
        element = {"string": fo.StringField(), "dict": fo.DictField(), "float": fo.FloatField()}[spec.element or "string"]
        return fo.ListField, {"subfield": element}
    if spec.kind == "geo":
        return fo.EmbeddedDocumentField, {"embedded_doc_type": fo.GeoLocation}
    if spec.kind == "classification":
        return fo.EmbeddedDocumentField, {"embedded_doc_type": fo.Classification}
    if spec.kind == "detections":
        return fo.EmbeddedDocumentField, {"embedded_doc_type": fo.Detections}
    raise ValueError(f"unknown field kind {spec.kind!r} for {spec.name}")


def declare_schema(dataset: fo.Dataset, fields: Sequence[schema.FieldSpec] = schema.FIELDS) -> None:
    """Add every missing field and index; existing fields are left untouched."""
    existing = dataset.get_field_schema()
    for spec in fields:
        if spec.name not in existing:
            ftype, kwargs = _fo_field(spec)
            dataset.add_sample_field(spec.name, ftype, description=spec.doc, **kwargs)
    indexes = set(dataset.list_indexes())
    for spec in fields:
        path = f"{spec.name}.label" if spec.kind == "classification" else spec.name
        if spec.indexed and path not in indexes:
            dataset.create_index(path)
    if "tags" not in indexes:
        dataset.create_index("tags")


# Migrations from version N to N+1, applied in order on open. Each takes the dataset.
MIGRATIONS: dict[int, Any] = {}


def migrate(dataset: fo.Dataset) -> int:
    """Bring an older dataset to :data:`schema.SCHEMA_VERSION`; returns the version it had."""
    found = int(dataset.info.get(SCHEMA_VERSION_KEY, 0))
    if found > schema.SCHEMA_VERSION:
        raise SchemaError(
            f"Dataset `{dataset.name}` has schema version {found}, newer than this code's "
            f"{schema.SCHEMA_VERSION}. Upgrade roadwork-curation before opening it."
        )
    for version in range(max(found, 1), schema.SCHEMA_VERSION):
        if version not in MIGRATIONS:
            raise SchemaError(f"No migration from schema version {version} to {version + 1}.")
        MIGRATIONS[version](dataset)
    declare_schema(dataset)
    if found != schema.SCHEMA_VERSION:
        dataset.info[SCHEMA_VERSION_KEY] = schema.SCHEMA_VERSION
        dataset.save()
    return found


def slice_config(dataset: fo.Dataset) -> SliceConfig:
    """The slice rules the dataset's last import used (defaults before any import).

    Labeling and synthesis recompute slices with these, so a sample's slices never follow two rule
    sets depending on which command touched it last.
    """
    stored = dataset.info.get(SLICE_CONFIG_KEY)
    if not stored:
        return SliceConfig()
    return from_mapping(SliceConfig, stored, source=f"dataset `{dataset.name}` info.{SLICE_CONFIG_KEY}")


def record_slice_config(dataset: fo.Dataset, config: SliceConfig) -> bool:
    """Store the slice rules an import uses; returns whether they differ from the ones stored."""
    import dataclasses

    from curation.store.registry import jsonable

    before = dataset.info.get(SLICE_CONFIG_KEY)
    after = jsonable(dataclasses.asdict(config))  # tuples as lists, as MongoDB gives them back
    if before == after:
        return False
    dataset.info[SLICE_CONFIG_KEY] = after
    dataset.save()
    return before is not None


def root_dataset(collection: foc.SampleCollection) -> fo.Dataset:
    """The dataset a view (or the dataset itself) belongs to: where fields, runs and saved views live.

    The one place the platform reaches FiftyOne's private ``_root_dataset`` (a patches or clips
    view's own ``_dataset`` is a generated collection, not the platform dataset).
    """
    return collection._root_dataset


def open_dataset(settings: Settings, *, create: bool = True) -> fo.Dataset:
    """Open (or create) the persistent platform dataset, migrated to the current schema."""
    connect(settings)
    import fiftyone as fo

    name = settings.dataset_name
    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
    elif create:
        try:
            dataset = fo.Dataset(name, persistent=True)
        except ValueError:  # another run created it between the check and here
            if not fo.dataset_exists(name):
                raise
            dataset = fo.load_dataset(name)
    else:
        raise SchemaError(f"Dataset `{name}` does not exist. Create it with `curation ingest` or `curation demo`.")
    _declare_image_media(dataset)
    migrate(dataset)
    return dataset


def _declare_image_media(dataset: fo.Dataset) -> None:
    """Fix the media type of a new dataset before any sample arrives.

    FiftyOne sets it on the first ``add_samples``; two first imports into one new dataset each
    held it unset, and the second failed with "Cannot set media type of a non-empty dataset".
    """
    if dataset.media_type is not None:
        return
    try:
        dataset.media_type = "image"
    except ValueError:  # another run added samples meanwhile, which set it
        dataset.reload()


def set_values_by_id(dataset: fo.Dataset, field: str, values: Mapping[str, Any]) -> None:
    """Bulk-write ``{sample_id: value}`` for one field (one round trip per batch, not per sample)."""
    if values:
        dataset.set_values(field, dict(values), key_field="id")


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    location: str
    total: int
    by_source: dict[str, int]
    by_split: dict[str, int]
    by_label: dict[str, int]
    by_slice: dict[str, int]
    by_tag: dict[str, int]


def status(dataset: fo.Dataset) -> DatasetStatus:
    """Counts by source, split, label, slice and tag, computed in the database."""
    by_slice = {name: 0 for name in schema.SLICES}
    by_slice.update(dataset.count_values("slices"))
    return DatasetStatus(
        name=dataset.name,
        location=database_location(),
        total=len(dataset),
        by_source=_clean(dataset.count_values("sources")),
        by_split=_clean(dataset.count_values("split")),
        by_label=_clean(dataset.count_values("ground_truth.label")),
        by_slice=_clean(by_slice),
        by_tag=_clean(dataset.count_sample_tags()),
    )


def _clean(counts: Mapping[Any, int]) -> dict[str, int]:
    return dict(sorted(Counter({("(none)" if k is None else str(k)): v for k, v in counts.items()}).items()))


# Run records and locks live in their own MongoDB collections beside FiftyOne's, so every
# worker sharing the database sees them (files under one machine's home would not be shared).
RUNS_COLLECTION = "curation_runs"
LOCKS_COLLECTION = "curation_locks"


def _platform_collection(name: str) -> Any:
    import fiftyone.core.odm as foo

    return foo.get_db_conn()[name]


def record_run(dataset: fo.Dataset, kind: str, payload: Mapping[str, Any]) -> str:
    """Store a run record (prediction, evaluation, mining, retrain...) and return its id."""
    from datetime import datetime, timezone

    doc = {"dataset": dataset.name, "kind": kind, "created_at": datetime.now(timezone.utc), **payload}
    return str(_platform_collection(RUNS_COLLECTION).insert_one(doc).inserted_id)


def list_runs(dataset: fo.Dataset, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Most recent run records first."""
    query: dict[str, Any] = {"dataset": dataset.name}
    if kind:
        query["kind"] = kind
    # Dates are stored to the millisecond, so two runs can tie; the ObjectId breaks the tie in insert order.
    cursor = _platform_collection(RUNS_COLLECTION).find(query).sort([("created_at", -1), ("_id", -1)]).limit(limit)
    return [{**doc, "_id": str(doc["_id"])} for doc in cursor]


def acquire_lock(name: str, owner: str, ttl_s: float) -> bool:
    """Take a named lock unless a live holder of another owner has it (atomic in MongoDB).

    The lock records this process (host, pid, start time) and a heartbeat. A holder that died is
    taken over at once (see :mod:`curation.store.locks`: same host, its pid is gone; another host, its
    heartbeat stopped); ``ttl_s`` is the expiry of a lock whose holder stops refreshing it.
    """
    from pymongo.errors import DuplicateKeyError

    from curation.store import locks as lk

    me = lk.this_process()
    coll = _platform_collection(LOCKS_COLLECTION)
    for _attempt in range(3):
        now = lk.utcnow()
        fields = {"owner": owner, **me, "heartbeat_at": now, "expires_at": lk.later(now, ttl_s), "ttl_s": float(ttl_s)}
        try:
            coll.find_one_and_update(
                {"_id": name, "$or": [{"expires_at": {"$lt": now}}, {"owner": owner}]},
                {"$set": fields, "$setOnInsert": {"acquired_at": now}},
                upsert=True,
            )
            return True
        except DuplicateKeyError:  # another owner's lock is there: take it only if its holder is gone
            current = coll.find_one({"_id": name})
            if current is None:
                continue  # released meanwhile: try again
            state, _why = lk.holder_state(current, now=now, host=me["host"])
            if state == lk.ALIVE:
                return False
            taken = coll.find_one_and_update(
                {"_id": name, "owner": current["owner"]}, {"$set": {**fields, "acquired_at": now}}
            )
            return taken is not None  # None: a third run took it first
    return False


def refresh_lock(name: str, owner: str, ttl_s: float) -> bool:
    """The holder's heartbeat: push ``heartbeat_at`` and the expiry; False when the lock is no longer ours."""
    from curation.store import locks as lk

    now = lk.utcnow()
    result = _platform_collection(LOCKS_COLLECTION).update_one(
        {"_id": name, "owner": owner}, {"$set": {"heartbeat_at": now, "expires_at": lk.later(now, ttl_s)}}
    )
    return result.matched_count == 1


def release_lock(name: str, owner: str) -> None:
    """Release a lock this owner holds; a lock taken over by someone else is left alone."""
    _platform_collection(LOCKS_COLLECTION).delete_one({"_id": name, "owner": owner})


def list_locks() -> list[dict[str, Any]]:
    """Every lock with its holder's state: ``state`` (alive | dead | expired) and ``why``."""
    from curation.store import locks as lk

    now, host = lk.utcnow(), lk.this_process()["host"]
    out = []
    for doc in _platform_collection(LOCKS_COLLECTION).find({}).sort("_id", 1):
        state, why = lk.holder_state(doc, now=now, host=host)
        out.append({**doc, "name": doc["_id"], "state": state, "why": why})
    return out


def clear_lock(name: str, *, force: bool = False) -> dict[str, Any]:
    """Remove lock ``name``; a live holder's lock only with ``force``. Returns the removed lock.

    Raises:
        CurationError: no such lock, or its holder is alive and ``force`` is not set.
    """
    from curation.store import locks as lk

    found = next((d for d in list_locks() if d["name"] == name), None)
    if found is None:
        names = [d["name"] for d in list_locks()]
        raise CurationError(f"No lock named `{name}`. Locks now: {', '.join(names) or 'none'} (see `curation locks`).")
    if found["state"] == lk.ALIVE and not force:
        raise CurationError(
            f"Lock `{name}` is held by a live run ({lk.describe(found)}: {found['why']}). Stop that run, or pass "
            "`--force` if you are sure it is gone (two runs would then work at once)."
        )
    _platform_collection(LOCKS_COLLECTION).delete_one({"_id": name, "owner": found["owner"]})
    return found


@contextmanager
def exclusive(name: str, ttl_s: float, *, holder: str, owner: str | None = None) -> Iterator[str]:
    """Hold lock ``name`` for the block (owner unique per call, not per process) or refuse.

    While the block runs, a heartbeat thread keeps the lock fresh, so a live run of any length
    keeps it and a dead one loses it within :data:`curation.store.locks.STALE_AFTER_S`.

    Raises:
        CurationError: a live holder has it; the message says ``Another <holder> ...`` and how to clear it.
    """
    import socket
    import uuid

    from curation.store import locks as lk

    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not acquire_lock(name, owner, ttl_s):
        current = next((d for d in list_locks() if d["name"] == name), {})
        raise CurationError(
            f"Another {holder} `{name}` ({lk.describe(current)}: {current.get('why', 'held')}). Wait for it; "
            f"if that run is gone, `curation locks --clear '{name}'` frees it."
        )
    try:
        with lk.Heartbeat(lambda: refresh_lock(name, owner, ttl_s), every_s=min(lk.HEARTBEAT_S, max(ttl_s / 3, 0.05))):
            yield owner
    finally:
        release_lock(name, owner)


STAGED_SUFFIX = "_staged"


def declare_like(dataset: fo.Dataset, name: str, like: str) -> None:
    """Declare field ``name`` with the same type as existing field ``like`` (if missing)."""
    fields = dataset.get_field_schema()
    if name not in fields:
        field = fields[like]
        kwargs = {"embedded_doc_type": field.document_type} if hasattr(field, "document_type") else {}
        dataset.add_sample_field(name, type(field), **kwargs)


def promote_staged(dataset: fo.Dataset, fields: Sequence[str], *, run_field: str | None = None, run_id: str | None = None) -> int:
    """Move ``<field>_staged`` values into ``<field>`` for the samples a run staged.

    A prediction run writes only staged fields while it runs, each sample tagged with the run's
    id in ``run_field``, and promotes at the end. The promotion is one ``$rename`` per document,
    which MongoDB applies atomically to a document, so no sample ever shows fields from two
    models; only documents staged by ``run_id`` move, so a killed run's leftovers never ride on
    another run (see :func:`settle_staged`). Without ``run_field`` every staged document moves.
    Returns the number of samples promoted.
    """
    staged = {f"{f}{STAGED_SUFFIX}": f for f in fields}
    for name in fields:
        declare_like(dataset, name, f"{name}{STAGED_SUFFIX}")
    first = next(iter(staged))
    if run_field:
        query: dict[str, Any] = {run_field: run_id}
        update: dict[str, Any] = {"$rename": staged, "$unset": {run_field: ""}}
    else:
        query, update = {first: {"$exists": True}}, {"$rename": staged}
    result = dataset._sample_collection.update_many(query, update)
    dataset.reload()
    return int(result.modified_count)


@dataclass(frozen=True)
class Settled:
    """What :func:`settle_staged` did with staged values that no live run owns."""

    finished: int = 0  # samples promoted for a run killed while it promoted
    discarded: int = 0  # samples whose staged values of a killed run were removed
    runs: tuple[str, ...] = ()


def settle_staged(dataset: fo.Dataset, fields: Sequence[str], *, run_field: str, lease_prefix: str) -> Settled:
    """Finish or discard staged values whose run is no longer alive.

    Each run holds the lock ``<lease_prefix><run id>`` while it works. A run whose lock is gone
    or whose holder is dead was killed: if it had begun promoting (its lock says ``promoting``)
    its predictions were complete and the promotion is finished; otherwise its staged values are
    removed. Staged values of live runs (other shards) are left alone, and dead runs' leases are
    removed (also those of runs killed before they staged anything).
    """
    from curation.store import locks as lk

    names = [f"{f}{STAGED_SUFFIX}" for f in fields]
    coll = dataset._sample_collection
    staging = any(n in dataset.get_field_schema() for n in names)
    # Run ids first, leases second: a run takes its lease before it stages anything, so every
    # run id seen here has its lease in `held` if that run is alive.
    run_ids = coll.distinct(run_field) if staging else []
    held = {d["name"]: d for d in list_locks() if d["name"].startswith(lease_prefix)}
    unset = {n: "" for n in [*names, run_field]}
    finished = discarded = 0
    runs = []
    for run_id in run_ids:
        lease = held.get(f"{lease_prefix}{run_id}")
        if lease is not None and lease["state"] == lk.ALIVE:
            continue
        if lease is not None and lease.get("promoting"):
            finished += promote_staged(dataset, fields, run_field=run_field, run_id=run_id)
        else:
            discarded += coll.update_many({run_field: run_id}, {"$unset": unset}).modified_count
        runs.append(str(run_id))
    if staging:  # staged values without a run id come from a version that did not record one: nobody owns them
        discarded += coll.update_many({names[0]: {"$exists": True}, run_field: {"$exists": False}}, {"$unset": unset}).modified_count
        dataset.reload()
    for lease in held.values():
        if lease["state"] != lk.ALIVE:
            _platform_collection(LOCKS_COLLECTION).delete_one({"_id": lease["name"], "owner": lease["owner"]})
    return Settled(finished, discarded, tuple(runs))


def mark_lock(name: str, owner: str, **fields: Any) -> None:
    """Record facts on a lock this owner holds (e.g. that a run has begun promoting)."""
    _platform_collection(LOCKS_COLLECTION).update_one({"_id": name, "owner": owner}, {"$set": fields})


def drop_staged_fields(dataset: fo.Dataset, fields: Sequence[str], extra: Sequence[str] = ()) -> None:
    """Remove empty ``<field>_staged`` declarations so they do not clutter the App's sidebar.

    Only for a run that owns the whole collection: a concurrent shard worker may still be writing.
    """
    schema_now = dataset.get_field_schema()
    names = [n for n in [*(f"{f}{STAGED_SUFFIX}" for f in fields), *extra] if n in schema_now]
    if names and not any(dataset.exists(name).count() for name in names):
        dataset.delete_sample_fields(names)


# Ingest support: identity index, plain-state reads and bulk writes ------------------------------
# Importers work on plain dicts (see curation.ingest.rules); these functions are the only place
# that turns them into FiftyOne values and back.

IDENTITY_FIELDS = ("content_hash", "alt_hashes", "video_id", "sequence_id", "frame_id", "sequence_group", "split", "source_ids")
_DETECTION_RESERVED = {"id", "tags", "label", "bounding_box", "mask", "mask_path", "confidence", "index", "attributes"}


class DuplicateHashError(Exception):
    """Another writer inserted a sample with the same content hash first (unique index)."""


def ensure_identity_index(dataset: fo.Dataset) -> None:
    """A unique index on ``content_hash`` (for samples that have one), so two imports running at
    once cannot create two samples for the same image."""
    info = dataset.get_index_information().get("content_hash")
    if info and info.get("unique") and info.get("partialFilterExpression"):
        return
    if info:
        dataset.drop_index("content_hash")
    dataset.create_index(
        "content_hash", unique=True, partialFilterExpression={"content_hash": {"$type": "string"}}
    )


def identity_rows(dataset: fo.Dataset) -> list[dict[str, Any]]:
    """id plus the identity fields of every sample (one query; ~200 bytes per sample)."""
    fields = ["id", *IDENTITY_FIELDS]
    columns = dataset.values(fields)
    return [dict(zip(fields, row, strict=True)) for row in zip(*columns, strict=True)]


def find_ids_by_hash(dataset: fo.Dataset, hashes: Sequence[str]) -> dict[str, str]:
    """``{content_hash: sample_id}`` for the given hashes that exist now."""
    from fiftyone import ViewField as F

    if not hashes:
        return {}
    view = dataset.match(F("content_hash").is_in(list(hashes)))
    return dict(zip(*view.values(["content_hash", "id"]), strict=True))


def _from_fo(name: str, value: Any) -> Any:
    import fiftyone as fo

    if value is None:
        return None
    if isinstance(value, fo.Classification):
        return value.label
    if isinstance(value, fo.GeoLocation):
        return list(value.point) if value.point else None
    if isinstance(value, fo.Detections):
        out = []
        for d in value.detections:
            item = {"label": d.label, "box": [float(v) for v in d.bounding_box or []]}
            for key in d.field_names:
                if key not in _DETECTION_RESERVED and d[key] is not None:
                    item[key] = d[key]
            out.append(item)
        return out
    return value


def _to_fo(name: str, value: Any) -> Any:
    import fiftyone as fo

    if value is None:
        return None
    spec = _FIELD_KINDS.get(name)
    if spec == "classification":
        return fo.Classification(label=value)
    if spec == "geo":
        return fo.GeoLocation(point=list(value))
    if spec == "detections":
        return fo.Detections(
            detections=[
                fo.Detection(label=d["label"], bounding_box=list(d["box"]), **{k: v for k, v in d.items() if k not in ("label", "box")})
                for d in value
            ]
        )
    return value


_FIELD_KINDS = {spec.name: spec.kind for spec in schema.FIELDS}


def read_states(dataset: fo.Dataset, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{id: {field: plain value}}`` for the given samples, in one query."""
    if not ids:
        return {}
    names = ["id", "content_hash", *[f for f in fields if f != "content_hash"]]
    columns = dataset.select(list(ids)).values(names)
    out = {}
    for row in zip(*columns, strict=True):
        out[row[0]] = {name: _from_fo(name, value) for name, value in zip(names[1:], row[1:], strict=True)}
    return out


def insert_states(dataset: fo.Dataset, states: Sequence[Mapping[str, Any]]) -> list[str]:
    """Add one sample per state dict (``filepath``, ``metadata`` dict and field values) in one batch.

    Raises:
        DuplicateHashError: a sample with one of these content hashes already exists (samples
            before it in the batch may have been inserted).
    """
    import fiftyone as fo

    samples = []
    for state in states:
        fields = {k: _to_fo(k, v) for k, v in state.items() if k not in ("filepath", "metadata") and v is not None}
        meta = state.get("metadata")
        samples.append(
            fo.Sample(filepath=str(state["filepath"]), metadata=fo.ImageMetadata(**meta) if meta else None, **fields)
        )
    try:
        return dataset.add_samples(samples, progress=False)
    except ValueError as e:
        if "E11000" in str(e):
            raise DuplicateHashError(str(e)) from None
        raise


def write_changes(dataset: fo.Dataset, changes: Mapping[str, Mapping[str, Any]]) -> int:
    """Bulk-write ``{sample_id: {field: plain value}}``: one ``set_values`` per field, not per sample."""
    by_field: dict[str, dict[str, Any]] = {}
    for sample_id, fields in changes.items():
        for name, value in fields.items():
            by_field.setdefault(name, {})[sample_id] = _to_fo(name, value)
    for name, values in by_field.items():
        set_values_by_id(dataset, name, values)
    return len(changes)


def leak_inputs(dataset: fo.Dataset) -> list[tuple[str, Any, Any, Any, Any, list[str]]]:
    """(id, split, sequence_group, phash, content_hash, tags) of every sample."""
    fields = ["id", "split", "sequence_group", "phash", "content_hash", "tags"]
    return list(zip(*dataset.values(fields), strict=True))


TAG_LEAK_UNCHECKED = schema.TAG_LEAK_UNCHECKED
"""On a sample an import added before its leak check ran: never trained on until the check clears it."""
LEAK_CHECK_KEY = "curation_leak_check"
"""Dataset info ``{"pending": bool, "max_distance": int}``: an import began and its leak check has not finished."""


def training_view(collection: Any) -> Any:
    """The one definition of what a model may train on.

    Split train, plus pool samples a human labeled (mined hard cases); labeled; never ``leak``,
    ``leak_unchecked`` (added by an import whose leak check has not run yet, e.g. a killed one),
    ``label_conflict`` or ``not_admitted``; never an image from a random-weight generator.
    """
    from fiftyone import ViewField as F

    trainable = (F("split") == schema.Split.TRAIN) | (
        (F("split") == schema.Split.POOL) & (F("label_origin") == schema.LABEL_ORIGIN_HUMAN)
    )
    return (
        collection.match(trainable)
        .exists("ground_truth")
        .match_tags([schema.TAG_LEAK, schema.TAG_LEAK_UNCHECKED, schema.TAG_LEAK_EMBEDDING, schema.TAG_LABEL_CONFLICT, schema.TAG_NOT_ADMITTED], bool=False)
        .match(F("generator_random_weights") != True)  # noqa: E712 - a MongoDB expression, not a Python test
    )


def source_split_label_counts(dataset: fo.Dataset) -> dict[tuple[str, str, str], int]:
    """Samples per (source, split, label); a sample with two sources counts under each."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for sources, split, label in zip(*dataset.values(["sources", "split", "ground_truth.label"]), strict=True):
        for source in sources or ["(none)"]:
            counts[(source, split or "(none)", label or "unlabeled")] += 1
    return dict(sorted(counts.items()))


def dump_fields(dataset: fo.Dataset, fields: Sequence[str], path: Any) -> int:
    """Write the raw MongoDB values of ``fields`` for every sample as extended-JSON lines.

    Extended JSON keeps ObjectIds and dates exact, so :func:`restore_fields` puts back the very
    documents (label ids included) that were there.
    """
    from bson import json_util

    projection = {name: True for name in fields}
    n = 0
    with open(path, "w") as handle:
        for doc in dataset._sample_collection.find({}, projection):
            handle.write(json_util.dumps(doc) + "\n")
            n += 1
    return n


def restore_fields(dataset: fo.Dataset, path: Any) -> int:
    """Put back every field saved by :func:`dump_fields` (missing ones are unset)."""
    from bson import json_util
    from pymongo import UpdateOne

    ops = []
    with open(path) as handle:
        for line in handle:
            if line.strip():
                doc = json_util.loads(line)
                ops.append(UpdateOne({"_id": doc.pop("_id")}, {"$set": doc}))
    for start in range(0, len(ops), 1000):
        dataset._sample_collection.bulk_write(ops[start : start + 1000], ordered=False)
    dataset.reload()
    return len(ops)


def project_columns(collection: Any, columns: Mapping[str, str]) -> tuple[list[Any], list[list[Any]]]:
    """Sample ``_id`` ObjectIds and one list per requested field path, read with one ``$project``.

    Same values as ``collection.values([...])`` (None where missing), in the collection's order, but
    each document arrives as one small dict: ``values()`` of five fields cost ~3× the Python time
    on a million samples, and bulk writes by id want the ObjectIds anyway.
    """
    project = {"$project": {key: f"${path}" for key, path in columns.items()}}
    rows = list(collection._aggregate(post_pipeline=[project]))
    return [row["_id"] for row in rows], [[row.get(key) for row in rows] for key in columns]


# Ids per update command in :func:`write_floats_by_oid`: each document finds its value with a linear
# ``$indexOfArray`` over the chunk, so the chunk stays small; 128 measured fastest (64-512 tried).
_WRITE_CHUNK = 128


def write_floats_by_oid(dataset: fo.Dataset, field: str, oids: list[Any], values: Any) -> None:
    """Write one float per sample ``_id``: what ``set_values(..., key_field="id")`` does, faster.

    ``set_values`` sends one ``UpdateOne`` per sample (and validates each value in Python); for the
    ~750k mining candidates of a million-sample dataset that was ~75% of the pass. Here one
    ``update_many`` per chunk of 128 ids sets each document's value from an array in the update
    pipeline, stamps ``last_modified_at`` with one naive UTC time (as FiftyOne does) and reloads
    in-memory samples.
    """
    from datetime import datetime, timezone

    import fiftyone as fo
    import fiftyone.core.sample as fos

    if field not in dataset.get_field_schema():
        dataset.add_sample_field(field, fo.FloatField)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    values = [float(v) for v in values]
    for lo in range(0, len(oids), _WRITE_CHUNK):
        chunk = oids[lo : lo + _WRITE_CHUNK]
        value = {"$arrayElemAt": [values[lo : lo + _WRITE_CHUNK], {"$indexOfArray": [chunk, "$_id"]}]}
        dataset._sample_collection.update_many({"_id": {"$in": chunk}}, [{"$set": {field: value, "last_modified_at": now}}])
    fos.Sample._reload_docs(dataset._sample_collection_name, sample_ids=oids)
