"""FiftyOne/MongoDB access: the only module that knows the database.

FiftyOne is imported lazily so ``curation --help`` stays fast and so the database URI from the
settings is in place before FiftyOne reads its configuration.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curation import schema
from curation.config import Settings
from curation.errors import SchemaError

if TYPE_CHECKING:
    import fiftyone as fo

SCHEMA_VERSION_KEY = "curation_schema_version"


def connect(settings: Settings) -> None:
    """Point FiftyOne at the configured database (embedded mongod when no URI is set)."""
    if settings.database_uri:
        os.environ["FIFTYONE_DATABASE_URI"] = settings.database_uri
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone as fo

    if settings.database_uri and fo.config.database_uri != settings.database_uri:
        fo.config.database_uri = settings.database_uri


def database_location() -> str:
    """Human-readable description of where the data lives."""
    import fiftyone as fo

    if fo.config.database_uri:
        return fo.config.database_uri
    return f"embedded mongod, data in {fo.config.database_dir}"


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


def open_dataset(settings: Settings, *, create: bool = True) -> fo.Dataset:
    """Open (or create) the persistent platform dataset, migrated to the current schema."""
    connect(settings)
    import fiftyone as fo

    name = settings.dataset_name
    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
    elif create:
        dataset = fo.Dataset(name, persistent=True)
    else:
        raise SchemaError(f"Dataset `{name}` does not exist. Create it with `curation ingest` or `curation demo`.")
    migrate(dataset)
    return dataset


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
    cursor = _platform_collection(RUNS_COLLECTION).find(query).sort("created_at", -1).limit(limit)
    return [{**doc, "_id": str(doc["_id"])} for doc in cursor]


def acquire_lock(name: str, owner: str, ttl_s: float) -> bool:
    """Take a named lock unless another owner holds an unexpired one (atomic in MongoDB).

    A killed holder cannot block forever: the lock expires after ``ttl_s`` seconds.
    """
    from datetime import datetime, timedelta, timezone

    from pymongo.errors import DuplicateKeyError

    now = datetime.now(timezone.utc)
    locks = _platform_collection(LOCKS_COLLECTION)
    try:
        locks.find_one_and_update(
            {"_id": name, "$or": [{"expires_at": {"$lt": now}}, {"owner": owner}]},
            {"$set": {"owner": owner, "expires_at": now + timedelta(seconds=ttl_s)}},
            upsert=True,
        )
    except DuplicateKeyError:  # someone else holds it: the filter missed, the upsert collided
        return False
    return True


def release_lock(name: str, owner: str) -> None:
    """Release a lock this owner holds; a lock taken over by someone else is left alone."""
    _platform_collection(LOCKS_COLLECTION).delete_one({"_id": name, "owner": owner})
