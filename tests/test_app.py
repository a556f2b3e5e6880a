"""The App server, the delegated-operation worker and the roadwork plugin, without a browser."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from curation.app import operators as cops
from curation.app.server import AppServer, app_version, child_env, port_is_free, worker_process
from curation.errors import ConfigError, CurationError


def _add_samples(dataset, tmp_path: Path) -> None:
    import fiftyone as fo

    rows = [
        ("roadwork", "train"),
        ("roadwork", "val"),
        ("no_roadwork", "train"),
        ("no_roadwork", "test"),
        ("roadwork", "train"),
    ]
    dataset.add_samples(
        [
            fo.Sample(
                filepath=str(tmp_path / f"{i}.jpg"),
                ground_truth=fo.Classification(label=label),
                split=split,
                tags=["x"] if i == 0 else [],
            )
            for i, (label, split) in enumerate(rows)
        ]
    )


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_fiftyone_yml_lists_exactly_the_registered_operators(settings):
    import fiftyone.operators as foo

    manifest = yaml.safe_load((settings.plugins_root / "roadwork" / "fiftyone.yml").read_text())
    assert manifest["name"] == cops.PLUGIN_NAME
    assert tuple(manifest["operators"]) == cops.operator_names()
    import importlib.util

    spec = importlib.util.spec_from_file_location("roadwork_plugin", settings.plugins_root / "roadwork" / "__init__.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    defined = [cls().config.name for cls in (plugin.DatasetStatus, *plugin._Operator.__subclasses__())]
    assert sorted(defined) == sorted(manifest["operators"])  # every class the plugin registers is listed, once
    cops.configure_plugins(settings)
    registered = {op.uri for op in foo.list_operators(builtin=False)}
    assert {cops.operator_uri(name) for name in cops.operator_names()} <= registered


def test_operator_uri_rejects_unknown_names_with_a_suggestion():
    with pytest.raises(ConfigError, match="Did you mean `dataset_status`"):
        cops.operator_uri("dataset_stats")


def test_dataset_status_operator_runs_immediately_on_dataset_and_view(settings, dataset, tmp_path):
    cops.configure_plugins(settings)
    _add_samples(dataset, tmp_path)

    status = cops.execute("dataset_status", dataset)
    assert status["total"] == 5
    assert status["by_label"] == {"no_roadwork": 2, "roadwork": 3}
    assert status["by_split"] == {"test": 1, "train": 3, "val": 1}
    assert status["by_tag"] == {"x": 1}
    assert "**Label**: no_roadwork 2, roadwork 3" in status["summary"]

    view = dataset.match({"split": "train"})  # ctx.target_view() follows the given view
    status = cops.execute("dataset_status", view)
    assert status["total"] == 3
    assert status["by_label"] == {"no_roadwork": 1, "roadwork": 2}


def test_dataset_status_delegated_run_is_executed_by_the_worker_process(settings, dataset, tmp_path):
    import fiftyone.operators.delegated as food

    cops.configure_plugins(settings)
    _add_samples(dataset, tmp_path)
    queued = cops.execute("dataset_status", dataset, delegate=True)
    assert queued["run_state"] == "queued"

    service = food.DelegatedOperationService()
    worker = worker_process(child_env(settings), log_path=tmp_path / "worker.log")
    with worker:
        op = _wait(
            lambda: (o := service.get(queued["id"])).run_state in ("completed", "failed") and o,
            timeout=90,
            what=f"the worker to run the queued operation (log: {worker.log_path})",
        )
        assert op.run_state == "completed", worker.log_tail()
        assert op.result.result["total"] == 5
        assert worker.running()
    assert worker.returncode() == 0, worker.log_tail()  # SIGTERM stops it cleanly
    assert "Worker stopped." in worker.log_tail()


def test_child_env_points_children_at_the_plugins_and_database(settings):
    env = child_env(settings.replace(database_uri="mongodb://db.example:27017"), base={"FIFTYONE_DATABASE_NAME": "x"})
    assert env["FIFTYONE_PLUGINS_DIR"] == str(settings.plugins_root.resolve())
    assert env["FIFTYONE_DATABASE_URI"] == "mongodb://db.example:27017"
    assert env["FIFTYONE_DATABASE_NAME"] == "x"
    assert "CURATION_SETTINGS" not in env
    # `curation app --settings FILE`: the server and worker load the same file when operators run.
    env = child_env(settings, base={"CURATION_SETTINGS": "/other.yaml"}, settings_file=Path("s.yaml"))
    assert env["CURATION_SETTINGS"] == str(Path("s.yaml").resolve())
    with pytest.raises(ConfigError, match="Plugins directory"):
        child_env(settings.replace(plugins_dir=Path("/nonexistent/plugins")))


def test_app_server_answers_health_check_and_stops(settings, tmp_path):
    import fiftyone as fo

    from curation.app.server import free_port

    server = AppServer("127.0.0.1", free_port(), child_env(settings), log_path=tmp_path / "server.log")
    with server:
        assert server.version == fo.constants.VERSION
        assert app_version("127.0.0.1", server.port) == fo.constants.VERSION
    assert not server.running()
    assert port_is_free("127.0.0.1", server.port)
    assert app_version("127.0.0.1", server.port, timeout=0.5) is None


def test_app_server_refuses_a_busy_port(settings):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CurationError, match=f"Port {port} .* already in use"):
            AppServer("127.0.0.1", port, child_env(settings)).start()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_curation_app_stops_server_and_worker_on_ctrl_c_or_sigterm(settings, dataset, tmp_path, stop_signal):
    """Ctrl-C and SIGTERM stop the App, its server and its worker, even when SIGINT was inherited
    ignored (a background job of a script): the child starts with SIGINT ignored on purpose."""
    from curation.app.server import free_port

    port = free_port()
    env = {**os.environ, "CURATION_DATASET_NAME": dataset.name, "CURATION_HOME": str(tmp_path / "home")}
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "curation.cli", "app", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        try:
            _wait(lambda: "Press Ctrl-C" in log.read_text(), timeout=120, what=f"`curation app` to start ({log})")
            text = log.read_text()
            assert f"http://127.0.0.1:{port}/datasets/{dataset.name}" in text
            assert app_version("127.0.0.1", port)
            worker_pid = int(re.search(r"worker running \(pid (\d+)\)", text).group(1))
            proc.send_signal(stop_signal)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"`curation app` did not stop within 60 s of {stop_signal.name}; its output:\n{log.read_text()}")
            assert code == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "Stopped." in log.read_text()
    assert port_is_free("127.0.0.1", port)
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only (prctl)")
def test_app_children_stop_when_the_app_is_killed_outright(settings, dataset, tmp_path):
    """SIGKILL (or the OOM killer) gives `curation app` no chance to clean up; its children must still go."""
    from curation.app.server import free_port

    port = free_port()
    env = {**os.environ, "CURATION_DATASET_NAME": dataset.name, "CURATION_HOME": str(tmp_path / "home")}
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "curation.cli", "app", "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            _wait(lambda: "Press Ctrl-C" in log.read_text(), timeout=120, what=f"`curation app` to start ({log})")
            worker_pid = int(re.search(r"worker running \(pid (\d+)\)", log.read_text()).group(1))
            proc.kill()
            proc.wait(timeout=10)
            _wait(lambda: port_is_free("127.0.0.1", port), timeout=30, what="the orphaned App server to stop")

            def worker_gone() -> bool:
                try:
                    os.kill(worker_pid, 0)
                except ProcessLookupError:
                    return True
                return False

            _wait(worker_gone, timeout=30, what="the worker to stop")
        finally:
            if proc.poll() is None:
                proc.kill()
