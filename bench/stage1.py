"""Benchmark: one batched multi-view backbone forward vs. a naive per-view loop (same model, same run).

Builds a preset's architecture with random weights (no download), cuts N images into views once,
then times backbone features both ways and checks they agree. Peak memory: on CUDA, the allocator's
peak per mode; on CPU, the growth of the process's peak RSS over the post-load baseline (the naive
loop runs first, so the batched number is the peak of the batched pass).

Usage:
    python bench/stage1.py                      # vits16 architecture, 4 images × 10 views, CPU
    python bench/stage1.py --images 2 --repeats 1  # the numbers in the issue note
    python bench/stage1.py --preset tiny-random --images 8 --threads 2
    python bench/stage1.py --preset vitl16 --device cuda --dtype bfloat16
    python bench/stage1.py --preset efficientnet-lite0 --images 1 --repeats 5   # the CPU miner's 10 views
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.stage1.backbone import load_preset, random_backbone  # noqa: E402
from curation.stage1.cnn_backbone import CnnPreset, build_cnn_backbone  # noqa: E402
from curation.stage1.model import Stage1Config, Stage1Model  # noqa: E402
from curation.stage1.views import ViewPolicy, build_views  # noqa: E402


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _timed(fn, device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    """Best-of-``repeats`` seconds for ``fn()`` after one warm-up, and its last output."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vits16", help="architecture to build with random weights")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--flip", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-batch", type=int, default=256)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    preset = load_preset(args.preset)
    if isinstance(preset, CnnPreset):  # timm CNNs load their registry weights (ImageNet Lite0)
        backbone = build_cnn_backbone(preset).to(device)
    else:
        backbone = random_backbone(preset, seed=0, dtype=args.dtype).to(device)
    policy = ViewPolicy(grid=args.grid, flip=args.flip)
    model = Stage1Model.build(
        Stage1Config(backbone=args.preset, views=policy, max_batch=args.max_batch, dtype=args.dtype),
        backbone=backbone,
        device=args.device,
    )
    generator = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (3, 1080, 1920), dtype=torch.uint8, generator=generator).to(device)
        for _ in range(args.images)
    ]
    views = build_views(images, policy)  # [N·V, 3, 224, 224]
    n_views = views.shape[0]

    with torch.inference_mode():
        base_rss = _peak_rss_mib()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        def naive_loop() -> torch.Tensor:
            return torch.cat([model.features(views[i : i + 1]) for i in range(n_views)])  # [N·V, 2D]

        naive_s, naive = _timed(naive_loop, device, args.repeats)
        naive_mem = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _peak_rss_mib() - base_rss
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        batched_s, batched = _timed(lambda: model.features(views), device, args.repeats)
        batched_mem = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _peak_rss_mib() - base_rss

    max_diff = (naive - batched).abs().max().item()
    params = sum(p.numel() for p in backbone.parameters()) / 1e6
    print(f"device={device} threads={args.threads} preset={args.preset} ({params:.1f}M params, {args.dtype})")
    print(f"images={args.images} views/image={policy.num_views} total views={n_views} at {policy.size}px")
    print(f"naive per-view loop : {1000 * naive_s / args.images:8.1f} ms/img  peak mem {naive_mem:8.1f} MiB")
    print(f"one batched forward : {1000 * batched_s / args.images:8.1f} ms/img  peak mem {batched_mem:8.1f} MiB")
    print(f"speed-up (naive / batched): {naive_s / batched_s:.2f}x   max |Δfeature| = {max_diff:.2e}")


if __name__ == "__main__":
    main()
