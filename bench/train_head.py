"""Benchmark: Stage-1 head (+ aggregator) training on cached features vs. recomputing them.

Default workload (issue 5): 100,000 images × 10 views × fp16 features of the vitl16 shape, 5 epochs,
linear head + top-K aggregator. The head reads CLS ‖ mean patch (``use_patch_mean``, the model's
default), so each cached view is 2 × 1,024 = 2,048 fp16 values: 4.1 GB in one contiguous tensor.
Features are random (a 4,096-image block tiled, labels carried by a shifted direction), so the
numbers are about time, not accuracy. Also measured, each on a subset and extrapolated:

- the autograd path (what an MLP head takes), to show what the fp16 fast path saves;
- gated-attention MIL (``aggregator: attention``), which must read every feature in autograd;
- the per-view LayerNorm statistics the cache stores at fill time (one pass over the features);
- recomputing the features: validator query + views + one batched forward of a random-weight
  vitl16 on this CPU, for ``--recompute-images`` images.

Usage:
    python bench/train_head.py                        # the issue's workload (needs ~5 GB RAM)
    python bench/train_head.py --images 20000 --recompute-images 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.stage1.head_fast import view_stats  # noqa: E402
from curation.stage1.model import Stage1Config, Stage1Model  # noqa: E402
from curation.stage1.train import TrainConfig, train_head  # noqa: E402

BLOCK = 4096


class _WidthOnly(nn.Module):
    """Stands in for the backbone: head training only needs its width."""

    def __init__(self, hidden: int):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden, num_register_tokens=4)


def _features(images: int, views: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    block_labels = torch.randint(0, 2, (BLOCK,), generator=g)
    block = torch.randn(BLOCK, views, 2 * hidden, generator=g)
    block[block_labels == 1, 0, :64] += 1.0
    block = block.half()
    features = torch.empty(images, views, 2 * hidden, dtype=torch.float16)
    for start in range(0, images, BLOCK):
        n = min(BLOCK, images - start)
        features[start : start + n] = block[:n]
    labels = block_labels.repeat(images // BLOCK + 1)[:images]
    stats = view_stats(block, hidden).repeat(images // BLOCK + 1, 1, 1)[:images]
    return features, labels, stats


def _model(hidden: int, views_grid: int, aggregator: str) -> Stage1Model:
    from curation.stage1.views import ViewPolicy

    config = Stage1Config(views=ViewPolicy(grid=views_grid), aggregator=aggregator)
    return Stage1Model.build(config, backbone=_WidthOnly(hidden))


def _train(features, labels, stats, *, hidden, aggregator, epochs, batch, fast=True) -> tuple[float, object]:
    model = _model(hidden, 3, aggregator)
    config = TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3, fast_head=fast)
    start = time.perf_counter()
    result = train_head(features, labels, config, model=model, stats=stats)
    return time.perf_counter() - start, result


def _recompute(images: int) -> float:
    """Seconds per image: validator query + views + batched vitl16 (random weights) forward."""
    from PIL import Image

    from curation.stage1.backbone import load_preset, random_backbone
    from curation.stage1.validator_view import validator_query
    from curation.stage1.views import ViewPolicy, build_views, pil_to_tensor

    backbone = random_backbone(load_preset("vitl16"), seed=0)
    model = Stage1Model.build(Stage1Config(backbone="vitl16", max_batch=10 * images), backbone=backbone)
    frames = [Image.new("RGB", (1920, 1080), (90 + i, 90, 90)) for i in range(images)]
    with torch.inference_mode():
        start = time.perf_counter()
        queries = [pil_to_tensor(validator_query(f, seed=i)) for i, f in enumerate(frames)]
        views = build_views(queries, ViewPolicy())
        model.features(views)
        return (time.perf_counter() - start) / images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--hidden", type=int, default=1024, help="backbone width D (vitl16: 1024); features are 2·D")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--subset", type=int, default=8192, help="images for the extrapolated measurements")
    parser.add_argument("--recompute-images", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    views = 10
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}")
    t = time.perf_counter()
    features, labels, stats = _features(args.images, views, args.hidden)
    gb = features.numel() * 2 / 1e9
    print(f"features {tuple(features.shape)} fp16 = {gb:.2f} GB (CLS ‖ mean patch, what the head reads); built in {time.perf_counter() - t:.1f} s")

    seconds, result = _train(features, labels, stats, hidden=args.hidden, aggregator="topk_mean", epochs=args.epochs, batch=args.batch_size)
    print(
        f"linear head + top-K (K=2), fp16 fast path: {args.images:,} images × {args.epochs} epochs in {seconds:.1f} s "
        f"({result.total_steps} steps, loss {result.epoch_losses[0]:.3f} → {result.epoch_losses[-1]:.3f}, goal ≤ 30 s)"
    )
    sub = slice(0, args.subset)
    scale = args.images / args.subset * args.epochs
    seconds, _ = _train(features[sub], labels[sub], stats[sub], hidden=args.hidden, aggregator="topk_mean", epochs=1, batch=args.batch_size, fast=False)
    print(f"linear head + top-K, autograd path (fp32 copy per batch): {seconds:.1f} s per {args.subset:,}-image epoch → ~{seconds * scale:.0f} s extrapolated")
    seconds, _ = _train(features[sub], labels[sub], stats[sub], hidden=args.hidden, aggregator="attention", epochs=1, batch=args.batch_size)
    print(f"linear head + gated-attention MIL: {seconds:.1f} s per {args.subset:,}-image epoch → ~{seconds * scale:.0f} s extrapolated")
    start = time.perf_counter()
    view_stats(features[sub], args.hidden)
    seconds = time.perf_counter() - start
    print(f"per-view LayerNorm stats (stored by the cache at fill time): {seconds:.1f} s per {args.subset:,} images → ~{seconds * args.images / args.subset:.0f} s for all")
    if args.recompute_images:
        per_image = _recompute(args.recompute_images)
        total = per_image * args.images * args.epochs
        print(
            f"recompute instead: validator query + 10 views + vitl16 forward (random weights, CPU fp32) = {per_image:.1f} s/image "
            f"(measured on {args.recompute_images}) → ~{per_image * args.images / 3600:.0f} h per epoch, ~{total / 3600:.0f} h for {args.epochs} epochs"
        )


if __name__ == "__main__":
    main()
