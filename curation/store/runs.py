"""Run records and locks, in MongoDB collections beside FiftyOne's so every worker sharing the
database sees them (files under one machine's home would not be shared)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from curation.errors import CurationError

if TYPE_CHECKING:
    import fiftyone as fo


# Run records and locks live in their own MongoDB collections beside FiftyOne's, so every
# worker sharing the database sees them (files under one machine's home would not be shared).
RUNS_COLLECTION = "curation_runs"


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


def mark_lock(name: str, owner: str, **fields: Any) -> None:
    """Record facts on a lock this owner holds (e.g. that a run has begun promoting)."""
    _platform_collection(LOCKS_COLLECTION).update_one({"_id": name, "owner": owner}, {"$set": fields})
