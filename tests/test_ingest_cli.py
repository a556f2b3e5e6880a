"""`curation ingest` through the CLI, and the demo corpus in all its formats (if present)."""

from __future__ import annotations

import importlib.util
import re

import pytest
from _ingest_fixtures import natix_row, write_parquet
from typer.testing import CliRunner

from curation import store
from curation.cli import app


def out(result) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_cli_ingest_natix_prints_summary(cli_env, tmp_path):
    rows = [natix_row(i, vid=f"v{i}") for i in range(6)]
    rows[2]["label"] = 7
    write_parquet(tmp_path / "n" / "train-00000-of-00001.parquet", rows)
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "natix", str(tmp_path / "n"), "--quiet"])
    assert result.exit_code == 0, out(result)
    assert "5 added" in out(result) and "bad_label" in out(result)
    assert "slices" in out(result) and "label_conflict" in out(result)
    strict = runner.invoke(app, ["ingest", "natix", str(tmp_path / "n"), "--quiet", "--strict"])
    assert strict.exit_code == 1 and "0 added" in out(strict) and "5 unchanged" in out(strict)


def test_cli_errors_are_one_line(cli_env, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "natixx", str(tmp_path)])
    assert result.exit_code == 2 and "Did you mean `natix`" in out(result) and "Traceback" not in out(result)
    result = runner.invoke(app, ["ingest", "roadwork", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in out(result)
    bad = tmp_path / "cfg.yaml"
    bad.write_text("split:\n  val_fractoin: 0.2\n")
    result = runner.invoke(app, ["ingest", "natix", str(tmp_path), "--config", str(bad)])
    assert result.exit_code == 2 and "val_fraction" in out(result)


@pytest.mark.skipif(importlib.util.find_spec("curation.demo.corpus") is None, reason="demo corpus generator not present")
def test_demo_corpus_all_formats(cli_env, tmp_path):
    from curation.demo.corpus import CorpusSpec, write_corpus

    manifest = write_corpus(tmp_path / "corpus", CorpusSpec(n_natix_train=40, n_natix_test=12, n_roadwork=16, n_roboflow=6, n_queries=6))
    result = CliRunner().invoke(app, ["ingest", "all", str(tmp_path / "corpus"), "--quiet"])
    assert result.exit_code == 0, out(result)
    dataset = store.open_dataset(cli_env, create=False)
    s = store.status(dataset)
    assert set(s.by_source) == {"natix", "roadwork", "roboflow", "queries"}
    assert {"train", "val", "calib", "test", "pool"} <= set(s.by_split)
    assert not re.search(r"[1-9][0-9]* rejected", out(result)), out(result)
    import fiftyone as fo
    F = fo.ViewField

    for fx in manifest.fixtures.get("byte_identical", []):
        sample = dataset.match(F("source_ids").contains(f"natix:train:{fx['natix_id']}")).first()
        assert "roadwork" in sample.sources
    leaked = set(dataset.match_tags("leak").values("source_ids", unwind=True))
    for fx in manifest.fixtures.get("near_duplicates", []):
        assert any(q.endswith(fx["roadwork_file"]) for q in leaked), fx
    for fx in manifest.fixtures.get("shared_sequences", []):
        if fx["natix_split"] == "test":
            assert all(any(q.endswith(name) for q in leaked) for name in fx["roadwork_files"]), fx
    conflicts = set(dataset.match_tags("label_conflict").values("source_ids", unwind=True))
    for fx in manifest.fixtures.get("label_conflicts", []):
        assert any(q.endswith(f":{fx['natix_id']}") for q in conflicts), fx
    again = CliRunner().invoke(app, ["ingest", "all", str(tmp_path / "corpus"), "--quiet"])
    assert again.exit_code == 0 and "0 added, 0 updated" in out(again)
