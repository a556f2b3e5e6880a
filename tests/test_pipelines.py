from __future__ import annotations

from pathlib import Path

import pytest

from curation.errors import ConfigError
from curation.pipelines import DailyMiningConfig, load_pipeline

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_daily_mining_yaml_parses_to_the_seeds_defaults():
    job, config = load_pipeline(ROOT / "pipelines" / "daily_mining.yaml")
    assert job == "daily_mining"
    assert isinstance(config, DailyMiningConfig)
    assert config.mining.quota == 200 and config.mining.min_hardness == 0.7
    assert config.predict_splits == ("train", "pool", "val", "calib")
    assert config.map_method == "umap" and config.mining.weights.uniqueness == 0.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("job: daily_minig\n", "Did you mean `daily_mining`"),
        ("job: daily_mining\nmining:\n  qouta: 5\n", "Did you mean `quota`"),
        ("job: daily_mining\nmining:\n  quota: 0\n", "quota"),
        ("mining: {}\n", "`job` key"),
        ("job: daily_mining\npredict_splits: [trian, pool]\n", r"unknown split 'trian'.*Did you mean `train`"),
        ("job: daily_mining\nmining:\n  diversity: 1.5\n", "diversity"),
        ("job: daily_mining\nmap_method: umpa\n", "Did you mean `umap`"),
    ],
)
def test_bad_pipeline_files_are_explained(tmp_path, text, match):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(Exception, match=match):
        load_pipeline(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline(tmp_path / "nope.yaml")


def test_malformed_pipeline_yaml_is_one_line_and_exit_code_2_from_the_cli(cli_env, tmp_path):
    from typer.testing import CliRunner

    from curation.cli import app

    path = tmp_path / "broken.yaml"
    path.write_text("job: daily_mining\nmining: {quota: 5\n")  # unclosed flow mapping
    result = CliRunner().invoke(app, ["run", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert f"Pipeline file {path} is not valid YAML at line 3" in lines[0]
