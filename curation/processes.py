"""Whether a process that left a lock or a partial file behind still runs (ground floor)."""

from __future__ import annotations


def pid_alive(pid: int, started: float | None = None) -> bool:
    """Whether process ``pid`` runs on this host and, when ``started`` is given, is the one that
    started then (a recycled pid is another process)."""
    import psutil

    try:
        process = psutil.Process(int(pid))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - float(started)) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
