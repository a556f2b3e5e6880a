from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from curation.cli import app

runner = CliRunner()


def test_help_lists_commands_and_is_fast():
    # A fresh interpreter: --help must not import FiftyOne or torch.
    code = (
        "import sys; from typer.testing import CliRunner; from curation.cli import app\n"
        "r = CliRunner().invoke(app, ['--help']); print(r.output)\n"
        "print('HEAVY', sorted(m for m in ('fiftyone', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("status", "demo-data", "app", "worker"):
        assert name in out
    assert "HEAVY []" in out


def test_every_command_has_help():
    for command in app.registered_commands:
        result = runner.invoke(app, [command.name, "--help"])
        assert result.exit_code == 0, (command.name, result.output)
        assert "Usage" in result.output


def test_status_on_missing_dataset_is_a_clear_error(settings, monkeypatch):
    monkeypatch.setenv("CURATION_DATASET_NAME", settings.dataset_name)
    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert settings.dataset_name in result.output and "does not exist" in result.output


def test_status_counts(dataset, settings, monkeypatch):
    import fiftyone as fo

    dataset.add_samples([
        fo.Sample(filepath="/tmp/a.jpg", split="train", sources=["natix"]),
        fo.Sample(filepath="/tmp/b.jpg", split="val", sources=["roboflow"]),
    ])
    monkeypatch.setenv("CURATION_DATASET_NAME", settings.dataset_name)
    result = runner.invoke(app, ["status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "2 samples" in result.output
    assert "roboflow" in result.output and "val" in result.output


def test_bad_settings_file_exit_code(tmp_path: Path):
    bad = tmp_path / "s.yaml"
    bad.write_text("app_prot: 1\n")
    result = runner.invoke(app, ["status", "--settings", str(bad)])
    assert result.exit_code == 2
    assert "app_port" in result.output
