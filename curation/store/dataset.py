"""Connecting to MongoDB, opening the platform dataset, its schema and migrations, status counts."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
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
