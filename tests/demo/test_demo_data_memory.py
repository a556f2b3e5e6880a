"""Issue 24 item 16: `curation demo-data` streams NATIX rows instead of holding every bitmap."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import resource, sys
from curation.demo.corpus import CorpusSpec, write_corpus
n = int(sys.argv[2])
write_corpus(sys.argv[1], CorpusSpec(n_natix_train=n, n_natix_test=10, n_roadwork=6, n_roboflow=2, n_queries=2))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_kib(tmp_path, n: int) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / f"c{n}"), str(n)], capture_output=True, text=True,
                         check=True, timeout=300)
    return int(out.stdout.split()[-1])


def test_item16_demo_data_peak_memory_does_not_grow_per_natix_row(tmp_path):
    small, large = 40, 440
    growth = (_peak_kib(tmp_path, large) - _peak_kib(tmp_path, small)) / (large - small)
    # Before: ~1,050 KiB per row (every 640×360 bitmap kept until the end). A streamed row costs
    # its JPEG at most while its row group is written.
    assert growth < 250, f"peak RSS grows {growth:.0f} KiB per NATIX row"
    manifest = json.loads((tmp_path / f"c{large}" / "manifest.json").read_text())
    assert manifest["counts"]["natix"] == large + 10
