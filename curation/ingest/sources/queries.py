"""Miner query logs: the JPEGs validators sent, plus a JSONL log (format: datasets/queries/README.md).

Each log line::

    {"file": "images/<sha256>.jpg", "received_at": "2025-06-01T12:00:00Z",
     "validator_hotkey": "5F...", "response": 0.93, "model_version": "stage1-...",
     "feedback": null | {"label": 0|1, "source": "validator"}}

Queries go to the ``pool`` split; they are unlabeled unless ``feedback`` carries a label.

Example:
    >>> from pathlib import Path
    >>> from curation.ingest.sources.queries import parse_query_line
    >>> parse_query_line('{"file": "images/a.jpg", "received_at": "2025-06-01T12:00:00Z"}',
    ...                  root=Path("/q"), where="log.jsonl line 1").label is None
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from curation.errors import InputError
from curation.ingest.sources.common import BAD_LABEL, BAD_RECORD, UNSAFE_PATH, Reject, SourceRecord, parse_label_value, safe_join
from curation.schema import Source

LOG_NAME = "log.jsonl"
SPLIT = "pool"


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"`received_at` must be an ISO 8601 string; got {value!r}")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def parse_query_line(line: str, *, root: Path, where: str) -> SourceRecord | Reject | None:
    """One JSONL line → a record (None for blank lines); no file reads."""
    if not line.strip():
        return None
    try:
        entry = json.loads(line)
        if not isinstance(entry, dict):
            raise ValueError("a line must be a JSON object")
        file_name = entry.get("file")
        if not isinstance(file_name, str) or not file_name:
            raise ValueError("`file` is missing")
        received = _parse_time(entry.get("received_at"))
        response = entry.get("response")
        if response is not None:
            response = float(response)
            if not 0.0 <= response <= 1.0:
                raise ValueError(f"`response` must be in [0, 1]; got {response}")
    except ValueError as e:
        return Reject(Source.QUERIES, where, BAD_RECORD, f"{where}: {e}.")
    path = safe_join(root, file_name)
    if path is None:
        return Reject(Source.QUERIES, where, UNSAFE_PATH, f"{where}: file {file_name!r} escapes {root}.")
    feedback = entry.get("feedback")
    label = None
    if feedback is not None:
        try:
            if not isinstance(feedback, dict) or "label" not in feedback:
                raise ValueError(f"`feedback` must be null or {{label, source}}; got {feedback!r}")
            label = parse_label_value(feedback["label"])
        except ValueError as e:
            return Reject(Source.QUERIES, where, BAD_LABEL, f"{where}: {e}.")
    meta = {
        "received_at": received.isoformat(),
        "validator_hotkey": entry.get("validator_hotkey"),
        "response": response,
        "model_version": entry.get("model_version"),
        "feedback_source": feedback.get("source") if isinstance(feedback, dict) else None,
    }
    return SourceRecord(
        source=Source.QUERIES,
        source_split=SPLIT,
        source_id=f"{Path(file_name).stem}@{received.isoformat()}",
        name=str(path),
        path=path,
        label=label,
        extra={"query_meta": meta},
    )


class QueriesImporter:
    """Iterate query-log entries of a folder holding ``log.jsonl`` (or of a log file itself)."""

    source = Source.QUERIES

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.warnings: list[str] = []
        self._log: Path | None = None

    def setup(self) -> None:
        log = self.path if self.path.is_file() else self.path / LOG_NAME
        if not log.is_file():
            raise InputError(f"No query log at {log}: expected a folder with {LOG_NAME} and images/.")
        self._log = log

    def __len__(self) -> int:
        if self._log is None:
            return 0
        with self._log.open("rb") as f:
            return sum(1 for line in f if line.strip())

    def __iter__(self) -> Iterator[SourceRecord | Reject]:
        if self._log is None:
            self.setup()
        assert self._log is not None
        with self._log.open(encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                parsed = parse_query_line(line, root=self._log.parent, where=f"{self._log.name} line {number}")
                if parsed is not None:
                    yield parsed
