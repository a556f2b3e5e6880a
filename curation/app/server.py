"""Run the FiftyOne App with the project's plugins, and the delegated-operation worker.

``curation app`` starts two child processes and supervises them:

* the FiftyOne App server (``python -m fiftyone.server.main``, the process ``fo.launch_app``
  starts), bound to ``settings.app_host`` (127.0.0.1 by default) and checked through
  ``GET /fiftyone``, which answers ``{"version": ...}``;
* a delegated-operation worker (``python -m curation.cli worker``), which executes operations
  queued from the App. The App stops immediate runs after 600 s, so long operators delegate.

Both children get ``FIFTYONE_PLUGINS_DIR`` pointing at the project's ``plugins/`` and the same
database settings as this process. Ctrl-C stops the worker, then the server.

``curation worker`` runs the worker loop alone (for example on a GPU machine sharing the
database); it is the same loop FiftyOne's ``fiftyone delegated launch`` runs, plus a clean
stop on SIGTERM and when its parent ``curation app`` goes away.

Example:
    >>> from curation.app.server import AppServer
    >>> with AppServer("127.0.0.1", 5152) as server:  # doctest: +SKIP
    ...     print(server.dataset_url("roadwork"))
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from curation.errors import ConfigError, CurationError
from curation.settings import SETTINGS_FILE_ENV, Settings

PARENT_PID_ENV = "CURATION_WORKER_PARENT_PID"
"""Set by :func:`serve` so its worker exits if ``curation app`` dies without stopping it."""


# Environment shared by the App server and the worker ------------------------------------------
def child_env(
    settings: Settings, base: Mapping[str, str] | None = None, *, settings_file: Path | None = None
) -> dict[str, str]:
    """Environment for the App server and worker: plugins dir and database of ``settings``.

    ``FIFTYONE_DATABASE_NAME`` and friends are inherited from ``base`` (``os.environ``), so a
    child sees the same datasets as this process. ``settings_file`` (``--settings``) becomes the
    children's ``CURATION_SETTINGS``: operators load their settings there (``stage1_serving``...).
    """
    plugins = settings.plugins_root
    if not plugins.is_dir():
        raise ConfigError(f"Plugins directory {plugins} does not exist; set `plugins_dir` in the settings.")
    env = dict(os.environ if base is None else base)
    env["FIFTYONE_PLUGINS_DIR"] = str(plugins.resolve())
    env["CURATION_PLUGINS_DIR"] = str(plugins.resolve())
    if settings.database_uri:
        env["FIFTYONE_DATABASE_URI"] = settings.database_uri
    if settings_file is not None:
        env[SETTINGS_FILE_ENV] = str(Path(settings_file).resolve())
    env.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    env.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    return env


def app_version(host: str, port: int, *, timeout: float = 2.0) -> str | None:
    """The FiftyOne version the App server at ``host:port`` reports, or None if none answers."""
    url = f"http://{_connect_host(host)}:{port}/fiftyone"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read().decode())["version"]
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (so our server, not someone else's, answers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((_connect_host(host), port)) != 0


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host`` (tests start Apps side by side)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _ignore_sigint() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Ctrl-C goes to the whole foreground process group; the parent stops its children in
    # order instead. Python keeps an inherited "ignore" for SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _terminate_with_parent()


def _terminate_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM this child when the parent dies, even by SIGKILL or the OOM killer, which no
    handler in the parent can catch; otherwise the App server would be orphaned, holding its port."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


# Child processes ------------------------------------------------------------------------------
class ManagedProcess:
    """A child process started on :meth:`start` and stopped (TERM, then KILL) on :meth:`stop`.

    Args:
        name: shown in messages.
        command: argv of the child.
        env: its environment.
        log_path: where its stdout/stderr go; None inherits this process's terminal.
        detach_sigint: ignore Ctrl-C in the child (the parent stops it).
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        *,
        log_path: Path | None = None,
        detach_sigint: bool = False,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.env = dict(env)
        self.log_path = Path(log_path) if log_path else None
        self.detach_sigint = detach_sigint
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        if self.running():
            return
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log else None,
            preexec_fn=_ignore_sigint if self.detach_sigint else None,
        )

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM) without waiting; :meth:`stop` waits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def stop(self, timeout: float = 10.0) -> int | None:
        """Ask the child to stop (SIGTERM), kill it after ``timeout`` seconds; returns its exit code."""
        if self._proc is None:
            return None
        self.terminate()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._log:
            self._log.close()
            self._log = None
        return self._proc.returncode

    def log_tail(self, n_chars: int = 3000) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(output went to the terminal)"
        return self.log_path.read_bytes()[-n_chars:].decode(errors="replace")

    def __enter__(self) -> ManagedProcess:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class AppServer(ManagedProcess):
    """The FiftyOne App server in a child process; :meth:`start` returns once it answers.

    Args:
        host: bind address (keep 127.0.0.1 unless you mean to expose the App).
        port: TCP port; must be free, or another App would silently answer in its place.
        env: environment (see :func:`child_env`); defaults to this process's.
        log_path: server output; None inherits the terminal.
        startup_timeout: seconds to wait for ``GET /fiftyone``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        env: Mapping[str, str] | None = None,
        *,
        log_path: Path | None = None,
        startup_timeout: float = 120.0,
        detach_sigint: bool = False,
    ) -> None:
        command = [sys.executable, "-m", "fiftyone.server.main", "--address", host, "--port", str(port)]
        super().__init__(
            "FiftyOne App server",
            command,
            os.environ if env is None else env,
            log_path=log_path,
            detach_sigint=detach_sigint,
        )
        self.host = host
        self.port = int(port)
        self.startup_timeout = startup_timeout
        self.version: str | None = None

    @property
    def url(self) -> str:
        return f"http://{_connect_host(self.host)}:{self.port}"

    def dataset_url(self, dataset_name: str) -> str:
        return f"{self.url}/datasets/{dataset_name}"

    def start(self) -> None:
        if self.running():
            return
        if not port_is_free(self.host, self.port):
            raise CurationError(
                f"Port {self.port} on {self.host} is already in use (another App?). "
                "Stop it or pick another port with `--port`."
            )
        super().start()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise CurationError(
                    f"The FiftyOne App server exited with code {self.returncode()} before answering "
                    f"on {self.url}. Its output:\n{self.log_tail()}"
                )
            self.version = app_version(self.host, self.port, timeout=1.0)
            if self.version:
                return
            time.sleep(0.25)
        self.stop()
        raise CurationError(
            f"The FiftyOne App server did not answer on {self.url}/fiftyone within "
            f"{self.startup_timeout:.0f} s. Its output:\n{self.log_tail()}"
        )


def worker_process(
    env: Mapping[str, str], *, log_path: Path | None = None, detach_sigint: bool = False
) -> ManagedProcess:
    """The delegated-operation worker (``curation worker``) as a child process."""
    env = {**env, PARENT_PID_ENV: str(os.getpid())}
    command = [sys.executable, "-m", "curation.cli", "worker"]
    return ManagedProcess(
        "delegated-operation worker", command, env, log_path=log_path, detach_sigint=detach_sigint
    )


# Commands -------------------------------------------------------------------------------------
def serve(
    settings: Settings, with_worker: bool = True, console: Console | None = None, *, settings_file: Path | None = None
) -> None:
    """Launch the App on the platform dataset (and a worker), wait, stop both on Ctrl-C.

    Args:
        settings: dataset name, bind address and port, plugins directory, database.
        with_worker: also start a delegated-operation worker.
        console: where messages go.
        settings_file: the ``--settings`` file ``settings`` came from, handed to the children.
    """
    from curation import store
    from curation.app.operators import configure_plugins

    console = console or Console()
    store.connect(settings)  # before FiftyOne is imported, so its env defaults apply
    configure_plugins(settings)
    env = child_env(settings, settings_file=settings_file)
    dataset = store.open_dataset(settings)
    server = AppServer(settings.app_host, settings.app_port, env, detach_sigint=True)
    worker = worker_process(env, detach_sigint=True) if with_worker else None

    if settings.app_host not in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"[yellow]warning:[/] the App binds to {settings.app_host}: anyone who can reach this "
            "machine can browse and edit the dataset (FiftyOne has no login)."
        )
    console.print(f"Starting the FiftyOne App on {server.url} (plugins: {env['FIFTYONE_PLUGINS_DIR']}) ...")
    previous = _stop_on_signals()
    try:
        server.start()
        if worker:
            worker.start()
        console.print(f"[bold green]FiftyOne App {server.version}[/] is ready: {server.dataset_url(dataset.name)}")
        if worker:
            console.print(f"Delegated-operation worker running (pid {worker.pid}).")
        else:
            console.print("No worker: delegated operations stay queued until `curation worker` runs.")
        console.print("Press Ctrl-C to stop.")
        while True:
            if not server.running():
                raise CurationError(f"The FiftyOne App server exited with code {server.returncode()}.")
            if worker and not worker.running():
                console.print(
                    f"[yellow]warning:[/] the worker exited with code {worker.returncode()}; "
                    "queued operations will wait. Start one with `curation worker`."
                )
                worker = None
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("Stopping ...")
    finally:
        stop_all([p for p in (worker, server) if p is not None])
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    console.print("Stopped.")


def _raise_interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def _stop_on_signals() -> dict[int, Any]:
    """Ctrl-C and SIGTERM both stop the App and its children; returns the handlers replaced.

    SIGINT is re-armed explicitly: a process started from a script's background job inherits
    SIGINT ignored, and "Press Ctrl-C to stop" would then be a lie. SIGTERM (systemd, docker stop)
    would otherwise kill this process alone and orphan the server child.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_interrupt),
    }


def stop_all(processes: Sequence[ManagedProcess], timeout: float = 10.0) -> None:
    """SIGTERM every child at once, then wait (killing after ``timeout``): stopping costs the
    slowest child's shutdown, not the sum, so Ctrl-C returns promptly on a loaded machine."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.stop(timeout=timeout)


def run_queued(*, limit: int | None = None, log: bool = True) -> list[Any]:
    """Execute delegated operations that are queued now; returns their results."""
    import fiftyone.operators.delegated as food

    return food.DelegatedOperationService().execute_queued_operations(limit=limit, log=log)


def run_worker(
    settings: Settings,
    console: Console | None = None,
    *,
    stop: threading.Event | None = None,
    poll_s: float = 1.0,
) -> None:
    """Execute queued delegated operations one at a time until stopped.

    Stops on Ctrl-C, SIGTERM (after the operation in progress), when ``stop`` is set, or when
    the ``curation app`` that started it is gone.
    """
    from curation import store
    from curation.app.operators import configure_plugins

    console = console or Console()
    store.connect(settings)
    plugins = configure_plugins(settings)
    stop = stop or threading.Event()
    parent = os.environ.get(PARENT_PID_ENV)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"Delegated-operation worker running on {store.database_location()} (plugins: {plugins}).")
    console.print("Press Ctrl-C to stop.")
    try:
        while not stop.is_set():
            if parent and os.getppid() != int(parent):
                console.print("The `curation app` that started this worker is gone; stopping.")
                break
            if not run_queued(limit=1):
                stop.wait(poll_s)
    except KeyboardInterrupt:
        pass
    console.print("Worker stopped.")
