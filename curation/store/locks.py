"""Who holds a platform lock, and whether that holder is still alive.

A lock (a document in the ``curation_locks`` collection, see :func:`curation.store.acquire_lock`)
records its holder: host, process id and process start time, plus a heartbeat that a live run
refreshes every few seconds (:class:`Heartbeat`). A lock is free when its holder is gone:

* same host: the process id no longer runs (or now names another process, started later);
* another host: the heartbeat is older than :data:`STALE_AFTER_S`;
* either way: it expired (``expires_at``; the only rule for documents without holder details).

So a run killed with ``kill -9`` never blocks the next one for the hours of a time-to-live, and
``curation locks`` lists and clears locks by hand. The functions here are pure apart from
:func:`this_process` and :class:`Heartbeat`.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from curation.processes import pid_alive

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
