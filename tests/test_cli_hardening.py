"""Issue 24 items 11 and 15 through the command line: --strict and skipped files, messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _ingest_fixtures import natix_row, write_parquet
from typer.testing import CliRunner

from curation.cli import app

REPO = Path(__file__).resolve().parent.parent


def out(result) -> str:
    return " ".join(result.output.split())


def _truncated(path: Path) -> None:
    write_parquet(path, [natix_row(i, vid=f"t{i}") for i in range(4)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", ["zero_bytes", "truncated", "no_image_column"])
def test_item11_strict_fails_on_skipped_or_empty_natix_file(cli_env, tmp_path, damage):
    folder = tmp_path / "n"
    write_parquet(folder / "train-00000-of-00001.parquet", [natix_row(i, vid=f"v{i}") for i in range(3)])
    bad = folder / "test-00000-of-00001.parquet"
    if damage == "zero_bytes":
        bad.write_bytes(b"")
    elif damage == "truncated":
        _truncated(bad)
    else:
        rows = [natix_row(i, vid=f"w{i}") for i in range(3)]
        for row in rows:
            row.pop("image")
        write_parquet(bad, rows)
    result = CliRunner().invoke(app, ["ingest", "natix", str(folder), "--quiet", "--strict"])
    assert result.exit_code == 1, out(result)
    assert "3 added" in out(result) and "bad_file" in out(result) and bad.name in out(result)


def test_item11_strict_fails_when_a_parquet_has_no_image_column_and_nothing_else(cli_env, tmp_path):
    rows = [natix_row(i, vid=f"v{i}") for i in range(3)]
    for row in rows:
        row["picture"] = row.pop("image")
    write_parquet(tmp_path / "n" / "train-00000-of-00001.parquet", rows)
    result = CliRunner().invoke(app, ["ingest", "natix", str(tmp_path / "n"), "--quiet", "--strict"])
    assert result.exit_code == 1 and "no `image` column" in out(result) and "picture" in out(result), out(result)


def test_item11_strict_fails_on_empty_coco_file(cli_env, tmp_path):
    (tmp_path / "rf" / "train").mkdir(parents=True)
    (tmp_path / "rf" / "train" / "_annotations.coco.json").write_bytes(b"")
    result = CliRunner().invoke(app, ["ingest", "roboflow", str(tmp_path / "rf"), "--quiet", "--strict"])
    assert result.exit_code == 1 and "bad_file" in out(result), out(result)


def test_item15_console_does_not_wrap_at_80_columns_when_not_a_tty(tmp_path):
    missing = tmp_path / ("a-rather-long-folder-name-" * 6) / "export"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["CURATION_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-c", "from curation.cli import main; main()", "ingest", "roboflow", str(missing)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(missing) in proc.stderr, proc.stderr  # one line, the path unbroken
    from curation.console import RULE_WIDTH, make_console

    console = make_console()
    console.file = open(tmp_path / "log.txt", "w")  # noqa: SIM115 - closed below
    console.rule("step")
    console.print("x" * 300)
    console.file.close()
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert len(lines[0]) == RULE_WIDTH and lines[1] == "x" * 300


def test_item15_retrain_default_pipeline_found_outside_the_checkout(tmp_path, monkeypatch):
    import inspect

    from curation.cli.loop import retrain_command
    from curation.pipelines import load_pipeline

    monkeypatch.chdir(tmp_path)
    default = inspect.signature(retrain_command).parameters["pipeline"].default
    job, _ = load_pipeline(Path(default))
    assert job == "retrain_export"
    assert load_pipeline(Path("pipelines/daily_mining.yaml"))[0] == "daily_mining"
    from curation.errors import ConfigError

    with pytest.raises(ConfigError, match="looked in"):
        load_pipeline(Path("pipelines/nope.yaml"))


def test_item15_messages_in_words_not_python_error_text(tmp_path):
    import json

    from curation.ingest.sources.common import Reject, default_class_map_path, load_class_map
    from curation.ingest.sources.roboflow import RoboflowImporter

    load_class_map(default_class_map_path("roboflow"))
    folder = tmp_path / "rf" / "train"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"x")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": "abc", "height": 48}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}],
           "categories": [{"id": 1, "name": "cone"}]}
    (folder / "_annotations.coco.json").write_text(json.dumps(doc))
    (tmp_path / "rf" / "valid").mkdir()
    (tmp_path / "rf" / "valid" / "_annotations.coco.json").write_text('{"images": [1,]}')
    imp = RoboflowImporter(tmp_path / "rf")
    imp.setup()
    texts = [r.message for r in imp if isinstance(r, Reject)] + imp.warnings
    joined = " | ".join(texts)
    assert "width` must be a positive number" in joined and "not valid JSON" in joined, joined
    for python_text in ("unsupported operand", "(char ", "Expecting value", "NoneType", "Traceback"):
        assert python_text not in joined, joined
