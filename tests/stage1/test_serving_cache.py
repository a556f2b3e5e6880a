"""The torch.compile artefact file keeps every compilation of the process that wrote it.

Found on an H200 (issue 18): a process that saved the file after each of several compilations (the
bench after each preset; ``ServingModel.setup`` after each model) wrote bytes that hold every
compilation, but torch's loader folds them into a dict keyed by artefact type, so only the last
save's new artefacts came back; a fresh process then recompiled all the others (3 of 4 setups
missed the FX graph cache). Each side runs in its own process with its own empty inductor cache,
as on a new machine; a one-line pointwise function keeps the CPU compiles to seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from curation.stage1.serving import load_compile_cache, save_compile_cache

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
import torch
from torch._dynamo.utils import counters
from curation.stage1.serving import load_compile_cache, save_compile_cache

path, mode = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
step = torch.compile(lambda x: torch.sin(x) * 2 + 1, dynamic=False)
if mode == "save":
    for n in (3, 5):  # two static shapes, saved after each, as the bench and setup() do
        step(torch.randn(n))
        assert save_compile_cache(path) > 0
else:
    assert load_compile_cache(path)
    for n in (3, 5):
        step(torch.randn(n))
    print("hits", counters["inductor"]["fxgraph_cache_hit"], "misses", counters["inductor"]["fxgraph_cache_miss"])
"""


def _run(tmp_path: Path, cache: Path, mode: str) -> str:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / f"inductor_{mode}"), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cache), mode], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_fresh_process_hits_every_compilation_saved_by_an_earlier_one(tmp_path):
    cache = tmp_path / "cache.bin"
    _run(tmp_path, cache, "save")
    assert "hits 2 misses 0" in _run(tmp_path, cache, "load")


def test_saving_keeps_what_the_file_held(tmp_path):
    """A process that loads the file, compiles one more shape and saves keeps the loaded artefacts
    (in one chunk per type, so torch's own loader reads them back too)."""
    from torch.compiler._cache import CacheArtifactManager, _deserialize_single_cache
    from torch.utils._appending_byte_serializer import AppendingByteSerializer

    cache = tmp_path / "cache.bin"
    _run(tmp_path, cache, "save")

    def kinds(data: bytes) -> list[str]:
        CacheArtifactManager._ensure_cache_artifacts_registered()
        return [kind for kind, _ in AppendingByteSerializer.to_list(data, deserialize_fn=_deserialize_single_cache)]

    saved = cache.read_bytes()
    assert len(kinds(saved)) == len(set(kinds(saved)))  # one chunk per artefact type
    before = len(saved)
    step = torch.compile(lambda x: torch.cos(x) - 1, dynamic=False)
    step(torch.randn(4))
    assert save_compile_cache(cache) > before  # the loaded-from-disk artefacts plus this process's
    assert load_compile_cache(cache)
