"""Bulk reads and writes: values by id, staged fields promoted at once (a killed run leaves no
half-written field), ingest's plain-state I/O, field dumps for restore, float writes by id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curation import schema
from curation.store.locks import LOCKS_COLLECTION, _platform_collection, list_locks

if TYPE_CHECKING:
    import fiftyone as fo


def set_values_by_id(dataset: fo.Dataset, field: str, values: Mapping[str, Any]) -> None:
    """Bulk-write ``{sample_id: value}`` for one field (one round trip per batch, not per sample)."""
    if values:
        dataset.set_values(field, dict(values), key_field="id")


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


def drop_staged_fields(dataset: fo.Dataset, fields: Sequence[str], extra: Sequence[str] = (), *, lease_prefix: str = "", own_lease: str = "") -> None:
    """Remove empty ``<field>_staged`` declarations so they do not clutter the App's sidebar.

    Left alone while another run holding a lease ``<lease_prefix>…`` is alive: it may still be
    writing its staged values (two prediction runs can overlap: the daily job and the App).
    """
    from curation.store import locks as lk

    if lease_prefix and any(d["name"] != own_lease and d["state"] == lk.ALIVE for d in list_locks() if d["name"].startswith(lease_prefix)):
        return
    schema_now = dataset.get_field_schema()
    names = [n for n in [*(f"{f}{STAGED_SUFFIX}" for f in fields), *extra] if n in schema_now]
    if names and not any(dataset.exists(name).count() for name in names):
        dataset.delete_sample_fields(names)


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
