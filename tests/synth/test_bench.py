from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "synth_gpu.py"


def test_gpu_benchmark_exits_cleanly_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would run for real")
    out = subprocess.run([sys.executable, str(BENCH)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "no CUDA GPU" in out.stdout
