"""Miner query logs (format in datasets/queries/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.errors import InputError
from curation.ingest.sources.common import BAD_LABEL, BAD_RECORD, UNSAFE_PATH, Reject, SourceRecord
from curation.ingest.sources.queries import QueriesImporter, parse_query_line
from curation.schema import Label

ROOT = Path("/q")


def line(**kw) -> str:
    entry = {"file": "images/abc.jpg", "received_at": "2025-06-01T12:00:00Z", "validator_hotkey": "5F",
             "response": 0.9, "model_version": "m1", "feedback": None}
    entry.update(kw)
    return json.dumps(entry)


def test_unlabeled_query():
    rec = parse_query_line(line(), root=ROOT, where="l1")
    assert isinstance(rec, SourceRecord) and rec.label is None and rec.source_split == "pool"
    assert rec.path == Path("/q/images/abc.jpg").resolve()
    assert rec.extra["query_meta"]["response"] == 0.9 and rec.extra["query_meta"]["validator_hotkey"] == "5F"


def test_feedback_labels():
    assert parse_query_line(line(feedback={"label": 1, "source": "validator"}), root=ROOT, where="l").label == Label.ROADWORK
    assert parse_query_line(line(feedback={"label": 0, "source": "human"}), root=ROOT, where="l").label == Label.NO_ROADWORK


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", BAD_RECORD),
        (line(received_at=12), BAD_RECORD),
        (line(response=3.0), BAD_RECORD),
        (line(file=None), BAD_RECORD),
        (line(feedback={"label": 7, "source": "x"}), BAD_LABEL),
        (line(feedback="yes"), BAD_LABEL),
        (line(file="../../etc/passwd"), UNSAFE_PATH),
        (line(file="/etc/passwd"), UNSAFE_PATH),
    ],
)
def test_bad_lines(text, reason):
    rej = parse_query_line(text, root=ROOT, where="log.jsonl line 4")
    assert isinstance(rej, Reject) and rej.reason == reason and "line 4" in rej.message


def test_blank_line_skipped_and_importer(tmp_path):
    assert parse_query_line("   \n", root=ROOT, where="l") is None
    (tmp_path / "log.jsonl").write_text(line() + "\n\n" + line(file="images/b.jpg") + "\n")
    imp = QueriesImporter(tmp_path)
    imp.setup()
    assert len(imp) == 2 and len(list(imp)) == 2
    with pytest.raises(InputError, match="No query log"):
        QueriesImporter(tmp_path / "none").setup()
