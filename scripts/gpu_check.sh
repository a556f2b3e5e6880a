#!/usr/bin/env bash
# Issue 12 device check: bench/stage1_gpu.py on the lent GPU inside a time limit; results to $OUT.
#
# Nothing is installed: the device image's python3 already holds torch (2.11, CUDA 13),
# transformers (5.17), numpy, pillow, pyyaml and nvidia-ml-py, which is all that Stage-1 serving
# imports, while this checkout's venv (torch 2.14.1 from this machine's disk, gigabytes) could not
# travel in the 64 MiB a device call carries. The tree runs in place through PYTHONPATH.
# Wheels in .whl/ (device README: pip download for cp312 manylinux), when carried, are installed
# into /tmp/site first and take precedence.
# A compile cache from an earlier run (compile_cache.bin from $OUT) placed at
# .cache/issue12/compile_cache.bin, after `echo /.cache/ >> .git/info/exclude` and with
# carry=[".cache/issue12"], skips most compilation.
#
# Usage, from the repo root on the device machine:
#   bash scripts/gpu_check.sh [BUDGET_S=360] [extra bench/stage1_gpu.py arguments...]
# The bench stops starting paths when BUDGET_S is spent; `timeout` kills it 60 s after that.
# Then, when a compile cache exists, a fresh process (`--setup-only`, at most SETUP_S=100 s) with an
# empty inductor cache and the artefact file loaded times the cached cuda_graph/fp8 setups
# (stage1_cached.json/.log). Worst case: BUDGET_S + 60 + SETUP_S + ~15 s of start-up.
set -uo pipefail
budget="${1:-360}"
shift || true
out="${OUT:-/tmp/issue12_out}"
mkdir -p "$out"
cd "$(dirname "$0")/.." || exit 1

if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# Inductor's own cache: kept by a rerun on the same warm machine.
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/issue12_inductor}"
cache=/tmp/issue12_compile_cache.bin
if [ -f .cache/issue12/compile_cache.bin ] && [ ! -f "$cache" ]; then cp .cache/issue12/compile_cache.bin "$cache"; fi

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
  python3 -c 'import sys, torch, transformers, PIL, numpy; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "pillow", PIL.__version__, "numpy", numpy.__version__)'
  echo "cpus $(nproc)"
} 2>&1 | tee "$out/env.txt"

timeout --kill-after=15 "$((${budget%.*} + 60))" \
  python3 bench/stage1_gpu.py --budget-s "$budget" --json "$out/stage1_gpu.json" --compile-cache "$cache" "$@" 2>&1 \
  | tee "$out/stage1_gpu.log"
status=${PIPESTATUS[0]}
setup_s="${SETUP_S:-100}"
if [ -f "$cache" ] && [ "$setup_s" -gt 20 ]; then
  TORCHINDUCTOR_CACHE_DIR="$(mktemp -d /tmp/issue12_inductor_fresh.XXXX)" timeout --kill-after=10 "$setup_s" \
    python3 bench/stage1_gpu.py --setup-only --budget-s "$((setup_s - 25))" --json "$out/stage1_cached.json" \
    --compile-cache "$cache" "$@" 2>&1 | tee "$out/stage1_cached.log"
  echo "gpu_check: setup-only exit status ${PIPESTATUS[0]}"
fi
if [ -f "$cache" ] && [ "$(stat -c %s "$cache")" -le $((16 * 1024 * 1024)) ]; then cp "$cache" "$out/compile_cache.bin"; fi
echo "gpu_check: bench exit status $status (124: stopped by the time limit; stage1_gpu.json holds the rows done)"
exit "$status"
