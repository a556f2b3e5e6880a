from __future__ import annotations

import pytest
from typer.testing import CliRunner

from curation.cli import app
from curation.cli.synth import parse_categories
from curation.errors import ConfigError

runner = CliRunner()


@pytest.fixture
def env(settings, dataset):
    return {"CURATION_DATASET_NAME": settings.dataset_name, "CURATION_HOME": str(settings.home), "COLUMNS": "200"}


def test_synth_tiny_run_is_not_admitted(env, dataset):
    result = runner.invoke(app, ["synth", "--model", "tiny-random", "--count", "2", "--steps", "2", "--device", "cpu"], env=env)
    assert result.exit_code == 0, result.output
    assert "Added 2 of 2" in result.output and "not_admitted" in result.output
    assert dataset.count_values("split") == {None: 2}
    assert dataset.count_sample_tags() == {"not_admitted": 2}


def test_synth_dry_run_prints_the_plan(env, dataset):
    args = ["synth", "--model", "tiny-random", "--count", "3", "--category", "crane=2", "--category", "vest=1", "--dry-run"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "Plan: 3 images" in result.output and "crane" in result.output
    assert len(dataset) == 0


def test_synth_errors_are_one_line(env):
    result = runner.invoke(app, ["synth", "--mode", "img2imgg", "--dry-run"], env=env)
    assert result.exit_code == 2 and "Did you mean `img2img`" in result.output
    result = runner.invoke(app, ["synth", "--mode", "img2img", "--purpose", "val_synthetic", "--dry-run"], env=env)
    assert result.exit_code == 2 and "No parent qualifies" in result.output


def test_parse_categories():
    assert parse_categories(["crane=10", "ad=0"]) == {"crane": 10, "ad": 0}
    assert parse_categories(None) is None
    with pytest.raises(ConfigError, match="NAME=COUNT"):
        parse_categories(["crane"])
