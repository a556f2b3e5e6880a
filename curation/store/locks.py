"""Platform locks: who holds one, and whether that holder is still alive.

A lock (a document in the ``curation_locks`` collection, beside FiftyOne's so every worker sharing
the database sees it; see :func:`acquire_lock` and :func:`exclusive`)
records its holder: host, process id and process start time, plus a heartbeat that a live run
refreshes every few seconds (:class:`Heartbeat`). A lock is free when its holder is gone:

* same host: the process id no longer runs (or now names another process, started later);
* another host: the heartbeat is older than :data:`STALE_AFTER_S`;
* either way: it expired (``expires_at``; the only rule for documents without holder details).

So a run killed with ``kill -9`` never blocks the next one for the hours of a time-to-live, and
``curation locks`` lists and clears locks by hand. The liveness rules (:func:`holder_state`) are
pure; the functions below them read and write the collection.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from curation.errors import CurationError
from curation.processes import pid_alive

LOCKS_COLLECTION = "curation_locks"

HEARTBEAT_S = 15.0
"""A live holder refreshes its heartbeat this often."""
STALE_AFTER_S = 120.0
"""A holder on another host whose heartbeat is older than this is taken for dead."""

ALIVE, DEAD, EXPIRED = "alive", "dead", "expired"


def this_process() -> dict[str, Any]:
    """Host, pid and process start time of the caller (what a lock records about its holder)."""
    import psutil

    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": psutil.Process().create_time()}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # MongoDB gives naive UTC back


def holder_state(
    doc: Mapping[str, Any],
    *,
    now: datetime,
    host: str,
    stale_after_s: float = STALE_AFTER_S,
    is_alive: Callable[[int, float | None], bool] | None = None,
) -> tuple[str, str]:
    """(``alive`` | ``dead`` | ``expired``, why) for one lock document (``is_alive`` defaults to :func:`pid_alive`)."""
    is_alive = is_alive or pid_alive
    expires = doc.get("expires_at")
    if expires is not None and _utc(expires) < now:
        return EXPIRED, f"expired at {_utc(expires):%Y-%m-%d %H:%M:%S} UTC"
    if doc.get("host") == host and doc.get("pid") is not None:
        if is_alive(int(doc["pid"]), doc.get("pid_started")):
            return ALIVE, f"pid {doc['pid']} runs on this host"
        return DEAD, f"pid {doc['pid']} no longer runs on this host"
    beat = doc.get("heartbeat_at")
    if beat is not None:
        age = (now - _utc(beat)).total_seconds()
        if age > stale_after_s:
            return DEAD, f"no heartbeat from {doc.get('host')} for {age:.0f} s (limit {stale_after_s:.0f} s)"
        return ALIVE, f"heartbeat from {doc.get('host')} {age:.0f} s ago"
    return ALIVE, "no holder details; frees itself when it expires"


def describe(doc: Mapping[str, Any]) -> str:
    """``owner on host (pid N)`` for messages."""
    where = f" on {doc['host']} (pid {doc['pid']})" if doc.get("host") else ""
    return f"{doc.get('owner')}{where}"


class Heartbeat:
    """Refresh a lock's heartbeat (and push its expiry) from a daemon thread while a run holds it.

    Example:
        >>> # with Heartbeat(lambda: refresh(name, owner), every_s=15): ...long run...
    """

    def __init__(self, beat: Callable[[], None], *, every_s: float = HEARTBEAT_S) -> None:
        self.beat = beat
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the run itself must go on
                pass

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name="curation-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def later(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


def _platform_collection(name: str) -> Any:
    import fiftyone.core.odm as foo

    return foo.get_db_conn()[name]


def acquire_lock(name: str, owner: str, ttl_s: float) -> bool:
    """Take a named lock unless a live holder of another owner has it (atomic in MongoDB).

    The lock records this process (host, pid, start time) and a heartbeat. A holder that died is
    taken over at once (see :mod:`curation.store.locks`: same host, its pid is gone; another host, its
    heartbeat stopped); ``ttl_s`` is the expiry of a lock whose holder stops refreshing it.
    """
    from pymongo.errors import DuplicateKeyError

    me = this_process()
    coll = _platform_collection(LOCKS_COLLECTION)
    for _attempt in range(3):
        now = utcnow()
        fields = {"owner": owner, **me, "heartbeat_at": now, "expires_at": later(now, ttl_s), "ttl_s": float(ttl_s)}
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
            state, _why = holder_state(current, now=now, host=me["host"])
            if state == ALIVE:
                return False
            taken = coll.find_one_and_update(
                {"_id": name, "owner": current["owner"]}, {"$set": {**fields, "acquired_at": now}}
            )
            return taken is not None  # None: a third run took it first
    return False


def refresh_lock(name: str, owner: str, ttl_s: float) -> bool:
    """The holder's heartbeat: push ``heartbeat_at`` and the expiry; False when the lock is no longer ours."""
    now = utcnow()
    result = _platform_collection(LOCKS_COLLECTION).update_one(
        {"_id": name, "owner": owner}, {"$set": {"heartbeat_at": now, "expires_at": later(now, ttl_s)}}
    )
    return result.matched_count == 1


def release_lock(name: str, owner: str) -> None:
    """Release a lock this owner holds; a lock taken over by someone else is left alone."""
    _platform_collection(LOCKS_COLLECTION).delete_one({"_id": name, "owner": owner})


def list_locks() -> list[dict[str, Any]]:
    """Every lock with its holder's state: ``state`` (alive | dead | expired) and ``why``."""
    now, host = utcnow(), this_process()["host"]
    out = []
    for doc in _platform_collection(LOCKS_COLLECTION).find({}).sort("_id", 1):
        state, why = holder_state(doc, now=now, host=host)
        out.append({**doc, "name": doc["_id"], "state": state, "why": why})
    return out


def clear_lock(name: str, *, force: bool = False) -> dict[str, Any]:
    """Remove lock ``name``; a live holder's lock only with ``force``. Returns the removed lock.

    Raises:
        CurationError: no such lock, or its holder is alive and ``force`` is not set.
    """
    found = next((d for d in list_locks() if d["name"] == name), None)
    if found is None:
        names = [d["name"] for d in list_locks()]
        raise CurationError(f"No lock named `{name}`. Locks now: {', '.join(names) or 'none'} (see `curation locks`).")
    if found["state"] == ALIVE and not force:
        raise CurationError(
            f"Lock `{name}` is held by a live run ({describe(found)}: {found['why']}). Stop that run, or pass "
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
    import uuid

    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not acquire_lock(name, owner, ttl_s):
        current = next((d for d in list_locks() if d["name"] == name), {})
        raise CurationError(
            f"Another {holder} `{name}` ({describe(current)}: {current.get('why', 'held')}). Wait for it; "
            f"if that run is gone, `curation locks --clear '{name}'` frees it."
        )
    try:
        with Heartbeat(lambda: refresh_lock(name, owner, ttl_s), every_s=min(HEARTBEAT_S, max(ttl_s / 3, 0.05))):
            yield owner
    finally:
        release_lock(name, owner)


def mark_lock(name: str, owner: str, **fields: Any) -> None:
    """Record facts on a lock this owner holds (e.g. that a run has begun promoting)."""
    _platform_collection(LOCKS_COLLECTION).update_one({"_id": name, "owner": owner}, {"$set": fields})
