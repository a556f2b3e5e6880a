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


def test_predict_serves_the_model_as_the_settings_say(dataset, settings, tmp_path, monkeypatch):
    """`curation predict` with a compiled bulk `stage1_serving` from the environment: files go through the
    loader, the compiled step gives the eager probabilities, its artefacts land in the platform's cache
    and the run record says how the model was served."""
    import fiftyone as fo
    import numpy as np
    import pytest
    from PIL import Image

    from curation import store
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model
    from curation.stage1.serving import ServingModel

    model = Stage1Model.build(Stage1Config(), backbone=tiny_random_backbone(seed=0))
    model.save(tmp_path / "m")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.jpg")
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(paths[-1])
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in paths])
    monkeypatch.setenv("CURATION_DATASET_NAME", settings.dataset_name)
    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    monkeypatch.setenv("CURATION_STAGE1_SERVING", "{mode: compile, path: bulk, dtype: float32, batch_images: 2, num_workers: 1}")
    streamed = []
    real_forward_files = ServingModel.forward_files
    monkeypatch.setattr(ServingModel, "forward_files", lambda self, p, **kw: streamed.append(len(p)) or real_forward_files(self, p, **kw))
    result = runner.invoke(app, ["predict", "--model", str(tmp_path / "m"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Predicted 3 samples" in result.output
    assert streamed == [3]  # through the bulk loader: steps of 2 images, the second padded
    by_path = dict(zip(*dataset.values(["filepath", "stage1.p_roadwork"])))
    eager = model.predict([Image.open(p).convert("RGB") for p in paths])
    assert [by_path[str(p)] for p in paths] == pytest.approx([e.p_roadwork for e in eager], abs=1e-5)
    cache = settings.home / "cache" / "torch_compile" / "tiny-random-2x10x224-compile-blocks-float32.bin"
    assert cache.stat().st_size > 0
    (run,) = store.list_runs(dataset, "predict")
    assert run["serving"]["mode"] == "compile" and run["serving"]["device"] == "cpu"
    assert run["serving"]["compile_cache"] == str(cache)
