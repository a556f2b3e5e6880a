"""Stage-1 on one GPU (issue 12): every serving path for vitl16 and vith16plus, in one run, one card.

Paths, per preset (random weights built from the preset's shape, no download; 10 views at 224):
    naive       per-view loop: one eager backbone forward per view (views already on the GPU)
    hf_eager    transformers eager, one batched backbone forward (SDPA), views on the GPU
    eager       ServingModel mode eager: the Stage-1 code (views built on the GPU, head, aggregator)
    compile     ServingModel mode compile (static shapes, ``--compile-scope``)
    cuda_graph  ServingModel mode cuda_graph (compile + one CUDA graph per static shape)
    bulk_files  cuda_graph on the bulk path fed by forward_files: JPEGs decoded and cut into views
                by DataLoader worker processes, pinned, copied on a side stream during compute
    fp8         cuda_graph with row-scaled FP8 linears (compute capability ≥ 9.0), run last
For each: latency of one image (p50/p99 ms; platform paths start from a 224×224 uint8 image in
host memory, the validator's query), throughput (img/s; static batches of ``--bulk-images``
images with views on the GPU, except bulk_files, which starts from files on disk), peak memory,
share of the bf16 peak (FLOPs from the shape over 989 TFLOP/s, the H100 datasheet, and over an
8192³ bf16 matmul measured at start), compile seconds, and error against an eager float32 model
of the same weights on the same views (feature ‖Δ‖/‖ref‖, max |Δp|; against eager bf16 in the
JSON's ``extra``). bulk_files also reports GPU utilisation (NVML samples
while it runs) and a profile of one compiled bulk step (share of GPU time in GEMMs, attention,
other kernels) says what is left when a goal is missed.

Budget: ``--budget-s`` covers everything after start-up; a path whose estimate does not fit is
printed as skipped. Order: vitl16 then vith16plus core paths (the issue's goals), then fp8 for each.
Compiles use ``--compile-scope blocks`` (one transformer block compiled and reused by every layer)
and the torch.compile artefact file ``--compile-cache`` (loaded at start, saved after each preset).

``--setup-only`` (scripts/gpu_check.sh runs it after the bench, in a fresh process with the saved
compile cache and an empty inductor cache) times only the cuda_graph and fp8 setups: the cached
compile time a new process pays.

Device run (a later session with a GPU; that machine has python3 with torch and transformers but
not this venv, and needs nothing installed: scripts/gpu_check.sh sets PYTHONPATH to the tree):
    run(command="SETUP_S=90 bash scripts/gpu_check.sh 240", timeout_s=430)
On an H200 (issue 18) the whole check took 180 s of command time plus ~30 s of machine start; the
measurements are in README ("Serving Stage-1") and bench/results/. It writes stage1_gpu.log/.json,
stage1_cached.log/.json and env.txt to $OUT (compile_cache.bin only when ≤ 16 MiB: it was 16.8 MiB
for both presets with fp8, so carry it from a run of fewer paths, or let the next run compile cold).

CPU smoke test (tiny-random, well under a minute): python bench/stage1_gpu.py --smoke
Without CUDA and without ``--smoke`` it prints a note and exits 0 (``make bench`` runs every script).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.stage1.backbone import BackbonePreset, load_preset, random_backbone  # noqa: E402
from curation.stage1.model import Stage1Config, Stage1Model, Stage1Output  # noqa: E402
from curation.stage1.serving import (  # noqa: E402
    ServingModel,
    fp8_support,
    load_compile_cache,
    save_compile_cache,
)
from curation.serving_config import ServingConfig  # noqa: E402
from curation.stage1.views import ViewPolicy, build_views  # noqa: E402

H100_BF16_DENSE_TFLOPS = 989.0
# Seconds a path needs on an H100, cold compile included (smoke: CPU, tiny model).
ESTIMATE_S = {"naive": 15, "hf_eager": 10, "eager": 10, "compile": 80, "cuda_graph": 30, "bulk_files": 30, "fp8": 60}


@dataclass
class Row:
    preset: str
    path: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    img_s: float | None = None
    peak_gib: float | None = None
    pct_datasheet: float | None = None
    pct_measured: float | None = None
    compile_s: float | None = None
    feat_rel_err: float | None = None
    max_dp: float | None = None
    gpu_util: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


@contextmanager
def tf32_off():
    """True fp32 matmuls and cuDNN convolutions inside the block, for the fp32 references.

    Only flags that are on are switched off and back: assigning allow_tf32 moves torch's
    fp32_precision from "none" to "ieee" for good, which is part of inductor's cache keys (the
    artefacts saved afterwards then missed in every later process).
    """
    switched = [flags for flags in (torch.backends.cuda.matmul, torch.backends.cudnn) if flags.allow_tf32]
    for flags in switched:
        flags.allow_tf32 = False
    try:
        yield
    finally:
        for flags in switched:
            flags.allow_tf32 = True


class Bench:
    """One run: device, budget, shared inputs and the rows printed as they complete."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.cuda = self.device.type == "cuda"
        self.start = time.perf_counter()
        self.rows: list[Row] = []
        self.env: dict = {}
        self.policy = ViewPolicy(grid=3)
        self.dtype = "bfloat16" if self.cuda else "float32"
        self.query_image: torch.Tensor | None = None  # set by make_inputs
        self.files: list[Path] = []
        self.last_cache_counters: dict[str, int] = {}  # set by served_pair

    # Bookkeeping ------------------------------------------------------------------------------
    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.start)

    def fits(self, preset: str, path: str) -> bool:
        need = ESTIMATE_S[path] * (0.2 if self.args.smoke else 1.0)
        if self.left() >= need:
            return True
        self.add(Row(preset, path, note=f"skipped: budget (needs ~{need:.0f} s, {self.left():.0f} s left)"))
        return False

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print("  " + _format(row), flush=True)
        if self.args.json:
            Path(self.args.json).write_text(json.dumps({"env": self.env, "rows": [asdict(r) for r in self.rows]}, indent=1))

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None

    # Measurements -----------------------------------------------------------------------------
    def latencies(self, fn) -> tuple[float, float]:
        """p50, p99 in ms of ``fn()`` run to completion, after a warm-up call."""
        fn()
        self.sync()
        times = []
        deadline = time.perf_counter() + self.args.latency_max_s
        while len(times) < self.args.latency_iters and (len(times) < 5 or time.perf_counter() < deadline):
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append(1000 * (time.perf_counter() - t0))
        return float(np.percentile(times, 50)), float(np.percentile(times, 99))

    def throughput(self, fn, images: int) -> float:
        """Images per second of back-to-back ``fn()`` calls (no host sync between them)."""
        fn()
        self.sync()
        reps = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            self.sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= self.args.throughput_min_s or reps >= 256:
                return reps * images / elapsed
            reps *= 2

    def shares(self, row: Row, flops: float) -> None:
        if row.img_s is None or not self.cuda:
            return
        achieved = row.img_s * flops / 1e12
        row.pct_datasheet = 100 * achieved / H100_BF16_DENSE_TFLOPS
        if self.env.get("matmul_tflops"):
            row.pct_measured = 100 * achieved / self.env["matmul_tflops"]

    def measure_matmul(self) -> None:
        if not self.cuda:
            return
        a, b = (torch.randn(8192, 8192, device=self.device, dtype=torch.bfloat16) for _ in range(2))
        for _ in range(3):
            a @ b
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            a @ b
        end.record()
        end.synchronize()
        self.env["matmul_tflops"] = 10 * 2 * 8192**3 / (start.elapsed_time(end) / 1000) / 1e12
        del a, b

    # Paths --------------------------------------------------------------------------------------
    def base_model(self, preset: BackbonePreset) -> Stage1Model:
        backbone = random_backbone(preset, seed=0, device=self.device, dtype=self.dtype)
        config = Stage1Config(
            backbone=preset.name, views=self.policy, dtype=self.dtype, max_batch=self.args.bulk_images * self.policy.num_views
        )
        return Stage1Model.build(config, backbone=backbone, device=str(self.device))

    def serving(self, mode: str, path: str, **changes) -> ServingConfig:
        return ServingConfig(
            mode=mode,
            path=path,
            dtype=self.dtype,
            device=str(self.device),
            batch_images=self.args.bulk_images,
            num_workers=self.args.workers,
            compile_scope=self.args.compile_scope,
            autotune=self.args.autotune,
            **changes,
        )

    def served_pair(self, base: Stage1Model, mode: str, **changes) -> tuple[ServingModel, ServingModel, float]:
        """Query- and bulk-path models of one mode over ``base``; returns them and the setup seconds."""
        query = ServingModel(base, self.serving(mode, "query", **changes))
        bulk = ServingModel(base, self.serving(mode, "bulk", **changes))
        before = _cache_counters()
        t0 = time.perf_counter()
        query.setup()
        bulk.setup()
        setup_s = time.perf_counter() - t0
        self.last_cache_counters = {k: v - before.get(k, 0) for k, v in _cache_counters().items() if v - before.get(k, 0)}
        return query, bulk, setup_s

    def fp32_reference(self, preset: BackbonePreset, views: torch.Tensor) -> Stage1Output:
        """Eager float32 outputs of the same weights (same seed, built in float32 and not rounded)
        on the same views (the bf16 views upcast), true fp32 matmuls (TF32 off): what the
        issue's |Δp| of bf16 and FP8 is measured against."""
        with tf32_off():
            backbone = random_backbone(preset, seed=0, device=self.device, dtype="float32")
            config = Stage1Config(
                backbone=preset.name, views=self.policy, dtype="float32", max_batch=self.args.bulk_images * self.policy.num_views
            )
            model = ServingModel(
                Stage1Model.build(config, backbone=backbone, device=str(self.device)),
                ServingConfig(mode="eager", path="bulk", dtype="float32", device=str(self.device)),
            )
            out = model.forward_views(views.float())
            self.sync()
            return out

    def measure_paths(self, row: Row, query, bulk, views: torch.Tensor) -> Stage1Output:
        """Fill ``row``'s latency (``query`` path, from the host image and from views on the GPU)
        and throughput (``bulk`` path); returns ``bulk``'s outputs on ``views`` for the error columns."""
        image = self.query_image
        row.p50_ms, row.p99_ms = self.latencies(lambda: query.forward_images([image]))
        # The same query from views already on the GPU: the step alone, without the image's
        # host→GPU copy and the eager view building.
        one = views[: self.policy.num_views]
        row.extra["p50_ms_views_on_gpu"], row.extra["p99_ms_views_on_gpu"] = self.latencies(lambda: query.forward_views(one))
        row.img_s = self.throughput(lambda: bulk.forward_views(views), self.args.bulk_images)
        return bulk.forward_views(views)

    def platform_row(
        self, name: str, preset: str, query, bulk, views, refs: dict[str, Stage1Output], flops: float
    ) -> tuple[Row, Stage1Output]:
        """Latency (query), throughput (bulk) and errors of ``bulk``'s outputs on ``views``: the
        row's columns against the fp32 reference, ``extra`` against every reference in ``refs``."""
        row = Row(preset, name)
        out = self.measure_paths(row, query, bulk, views)
        for label, ref in refs.items():
            feat_err, dp = errors(out, ref)
            row.extra[f"feat_rel_err_vs_{label}"], row.extra[f"max_dp_vs_{label}"] = feat_err, dp
            if label == "fp32":
                row.feat_rel_err, row.max_dp = feat_err, dp
        row.peak_gib = self.peak_gib()
        self.shares(row, flops)
        return row, out

    def run_preset(self, name: str) -> dict[str, Stage1Output]:
        """Every bf16 path of one preset; returns the references (fp32, and eager bf16 when run)."""
        preset = load_preset(name)
        flops = flops_per_image(preset, self.policy)
        print(f"\n== {name}: {flops / 1e9:.1f} GFLOP per image ({self.policy.num_views} views at {self.policy.size})", flush=True)
        torch._dynamo.reset()
        self.reset_peak()
        views = self.bulk_views()
        one_views = views[: self.policy.num_views]
        t0 = time.perf_counter()
        refs = {"fp32": self.fp32_reference(preset, views)}
        print(f"  fp32 reference: {time.perf_counter() - t0:.1f} s", flush=True)
        self.reset_peak()
        base = self.base_model(preset)
        if self.fits(name, "naive"):
            row = Row(name, "naive", note="img/s = 1000/p50")
            with torch.inference_mode():
                row.p50_ms, row.p99_ms = self.latencies(
                    lambda: [base.backbone(pixel_values=one_views[i : i + 1]) for i in range(self.policy.num_views)]
                )
            row.img_s = 1000 / row.p50_ms
            row.peak_gib = self.peak_gib()
            self.shares(row, flops)
            self.add(row)
        if self.fits(name, "hf_eager"):
            self.reset_peak()
            row = Row(name, "hf_eager", note="backbone only")
            with torch.inference_mode():
                row.p50_ms, row.p99_ms = self.latencies(lambda: base.backbone(pixel_values=one_views))
                row.img_s = self.throughput(lambda: base.backbone(pixel_values=views), self.args.bulk_images)
            row.peak_gib = self.peak_gib()
            self.shares(row, flops)
            self.add(row)
        if self.fits(name, "eager"):
            self.reset_peak()
            query, bulk, _ = self.served_pair(base, "eager")
            row, refs["eager_bf16"] = self.platform_row("eager", name, query, bulk, views, refs, flops)
            row.note = "errors: bf16 vs fp32"
            self.add(row)
        bulk_model = None
        for mode in ("compile", "cuda_graph"):
            if mode == "cuda_graph" and not self.cuda:
                self.add(Row(name, mode, note="skipped: needs a CUDA device"))
                continue
            if not self.fits(name, mode):
                continue
            self.reset_peak()
            query, bulk, setup_s = self.served_pair(base, mode)
            row, _ = self.platform_row(mode, name, query, bulk, views, refs, flops)
            row.compile_s = setup_s
            row.extra.update(
                {"query_setup": asdict(query.report), "bulk_setup": asdict(bulk.report), "cache": self.last_cache_counters}
            )
            self.add(row)
            bulk_model = bulk
            if mode == "compile" and self.cuda and self.args.profile:
                self.add(self.profile(name, bulk, views))
                self.add(self.profile(name, query, one_views, label="profile_q"))
        if bulk_model is not None and self.fits(name, "bulk_files"):
            self.add(self.bulk_files(name, bulk_model, flops))
        self.save_cache()
        del base, bulk_model
        return refs

    def run_fp8(self, name: str, refs: dict[str, Stage1Output]) -> None:
        reason = fp8_support(self.device)
        if reason:
            self.add(Row(name, "fp8", note=f"skipped: {reason}"))
            return
        if not self.fits(name, "fp8"):
            return
        preset = load_preset(name)
        torch._dynamo.reset()
        self.reset_peak()
        base = self.base_model(preset)  # same seed: the same weights as the bf16 reference
        query, bulk, setup_s = self.served_pair(base, "cuda_graph", fp8=True)
        row, _ = self.platform_row("fp8", name, query, bulk, self.bulk_views(), refs, flops_per_image(preset, self.policy))
        row.compile_s = setup_s
        row.extra.update(
            {"query_setup": asdict(query.report), "bulk_setup": asdict(bulk.report), "cache": self.last_cache_counters}
        )
        row.note = f"{bulk.report.fp8_linears} FP8 linears; errors vs fp32"
        self.add(row)
        self.save_cache()

    def save_cache(self) -> None:
        if self.args.compile_cache:
            t0 = time.perf_counter()
            size = save_compile_cache(self.args.compile_cache)
            print(f"  compile cache: {size / 2**20:.1f} MiB saved in {time.perf_counter() - t0:.1f} s", flush=True)

    def setup_only(self, name: str, fp8: bool) -> None:
        """Setup seconds of the query + bulk pair in this (fresh) process: with ``--compile-cache``
        loaded and an empty inductor cache, the cached compile time a new machine pays."""
        path = "setup_fp8" if fp8 else "setup"
        if fp8 and (reason := fp8_support(self.device)):
            self.add(Row(name, path, note=f"skipped: {reason}"))
            return
        if self.left() < 5:
            self.add(Row(name, path, note=f"skipped: budget ({self.left():.0f} s left)"))
            return
        torch._dynamo.reset()
        base = self.base_model(load_preset(name))
        mode = "cuda_graph" if self.cuda else "compile"
        query, bulk, setup_s = self.served_pair(base, mode, **({"fp8": True} if fp8 else {}))
        row = Row(name, path, compile_s=setup_s)
        cache = self.last_cache_counters
        row.extra = {"query_setup": asdict(query.report), "bulk_setup": asdict(bulk.report), "cache": cache}
        capture = query.report.capture_s + bulk.report.capture_s
        row.note = (
            f"{mode}{' fp8' if fp8 else ''} query+bulk setup in a fresh process (capture {capture:.1f} s); "
            f"FX graph cache hits {cache.get('inductor.fxgraph_cache_hit', 0)}, misses {cache.get('inductor.fxgraph_cache_miss', 0)}"
        )
        self.add(row)

    def profile(self, name: str, bulk: ServingModel, views: torch.Tensor, label: str = "profile") -> Row:
        """GPU time of three compiled steps (bulk, or query for ``profile_q``) split into GEMM,
        attention and other kernels."""
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                bulk.forward_views(views)
            self.sync()
        shares = {"gemm": 0.0, "attention": 0.0, "other": 0.0}
        kernels = []
        for event in prof.key_averages():
            us = getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)
            if us <= 0:
                continue
            kernel = event.key.lower()
            kind = (
                "attention" if any(k in kernel for k in ("flash", "fmha", "attention", "sdpa", "attn"))
                else "gemm" if any(k in kernel for k in ("gemm", "matmul", "cutlass", "xmma", "nvjet", "sm90", "mm_"))
                else "other"
            )
            shares[kind] += us
            kernels.append((us, event.key[:90]))
        total = sum(shares.values()) or 1.0
        for us, key in sorted(kernels, reverse=True)[:10]:
            print(f"    {100 * us / total:5.1f}%  {key}")
        step = "bulk" if label == "profile" else "query"
        note = f"compiled {step} step GPU time {total / 3 / 1000:.2f} ms: " + ", ".join(
            f"{k} {100 * v / total:.0f}%" for k, v in shares.items()
        )
        return Row(name, label, note=note, extra={"top_kernels": sorted(kernels, reverse=True)[:20], "shares_us": shares})

    def bulk_files(self, name: str, bulk: ServingModel, flops: float) -> Row:
        self.reset_peak()
        paths = self.files
        sampler = _UtilSampler(self.device) if self.cuda else None
        if sampler:
            sampler.start()
        t0 = time.perf_counter()
        first = None
        count = 0
        for batch in bulk.forward_files(paths):
            if first is None:
                first = time.perf_counter()
            else:
                count += len(batch.paths)
        end = time.perf_counter()
        row = Row(name, "bulk_files")
        row.img_s = count / (end - first) if count else None
        if sampler:
            sampler.stop_and_join()
            row.gpu_util = sampler.mean_after(first)
        row.peak_gib = self.peak_gib()
        self.shares(row, flops)
        row.note = (
            f"{len(paths)} JPEGs {self.args.file_size}, {self.args.workers} workers, steady state after the first "
            f"batch ({len(paths) / (end - t0):.0f} img/s incl. start-up)"
        )
        if sampler:
            row.extra = {"util_source": sampler.source, "util_samples": len(sampler.samples)}
        return row

    # Inputs -------------------------------------------------------------------------------------
    @torch.inference_mode()  # inference tensors, as the serving path makes them: no defensive copy per step
    def bulk_views(self) -> torch.Tensor:
        """Views [B·V, 3, 224, 224] of ``--bulk-images`` random 224×224 images, on the device."""
        generator = torch.Generator().manual_seed(1)
        images = [torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8, generator=generator) for _ in range(self.args.bulk_images)]
        return build_views([im.to(self.device) for im in images], self.policy).to(getattr(torch, self.dtype))

    def make_inputs(self, folder: Path) -> None:
        generator = torch.Generator().manual_seed(2)
        self.query_image = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8, generator=generator)
        self.files = make_jpegs(folder, self.args.files, self.args.file_size)


def _cache_counters() -> dict[str, int]:
    """Inductor's FX-graph and AOTAutograd cache hit/miss counters so far in this process."""
    from torch._dynamo.utils import counters

    return {f"{group}.{k}": v for group in ("inductor", "aot_autograd") for k, v in counters[group].items() if "cache" in k}


def errors(out: Stage1Output, ref: Stage1Output) -> tuple[float, float]:
    """Feature ‖Δ‖/‖ref‖ and max |Δp| (p = sigmoid of the image logit) of ``out`` against ``ref``."""
    features = out.features.float() - ref.features.float()
    feat_err = (features.norm() / ref.features.float().norm()).item()
    dp = (torch.sigmoid(out.image_logits.float()) - torch.sigmoid(ref.image_logits.float())).abs().max().item()
    return feat_err, dp


def flops_per_image(preset: BackbonePreset, policy: ViewPolicy) -> float:
    """Forward FLOPs (2 per multiply-add) of all views of one image: projections, attention, MLP, patch embed."""
    d, inner, p = preset.hidden_size, preset.intermediate_size, preset.patch_size
    patches = (policy.size // p) ** 2
    tokens = 1 + preset.num_register_tokens + patches
    mlp = (3 if preset.use_gated_mlp else 2) * tokens * d * inner
    per_layer = 4 * tokens * d * d + 2 * tokens * tokens * d + mlp
    macs = preset.num_hidden_layers * per_layer + patches * 3 * p * p * d
    return 2.0 * macs * policy.num_views


def make_jpegs(folder: Path, count: int, size: str) -> list[Path]:
    """``count`` JPEG files (16 distinct smooth images, linked under many names: decode cost is per file)."""
    from PIL import Image

    width, height = (int(v) for v in size.split("x"))
    rng = np.random.default_rng(0)
    distinct = []
    for i in range(min(16, count)):
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        noisy = np.clip(np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3)), 0, 255)
        path = folder / f"src{i}.jpg"
        Image.fromarray(noisy.astype(np.uint8)).save(path, quality=90)
        distinct.append(path)
    paths = []
    for i in range(count):
        path = folder / f"f{i:05d}.jpg"
        try:
            os.link(distinct[i % len(distinct)], path)
        except OSError:
            shutil.copyfile(distinct[i % len(distinct)], path)
        paths.append(path)
    return paths


class _UtilSampler(threading.Thread):
    """Samples GPU utilisation (NVML through torch, else nvidia-smi) with timestamps."""

    def __init__(self, device: torch.device, period_s: float = 0.05):
        super().__init__(daemon=True)
        self.device, self.period_s = device, period_s
        self.samples: list[tuple[float, float]] = []
        self.source: str | None = None
        self._stop_event = threading.Event()

    def _read(self) -> float | None:
        if self.source in (None, "nvml"):
            try:
                value = float(torch.cuda.utilization(self.device))
                self.source = "nvml"
                return value
            except Exception:  # pynvml missing or NVML refused: fall back to nvidia-smi
                self.source = "nvidia-smi"
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", f"--id={self.device.index or 0}"],
                capture_output=True, text=True, timeout=5, check=True,
            )
            return float(out.stdout.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            self.source = None
            return None

    def run(self) -> None:
        while not self._stop_event.is_set():
            value = self._read()
            if value is not None:
                self.samples.append((time.perf_counter(), value))
            self._stop_event.wait(self.period_s)

    def stop_and_join(self) -> None:
        self._stop_event.set()
        self.join()

    def mean_after(self, t: float | None) -> float | None:
        values = [v for ts, v in self.samples if t is None or ts >= t]
        return float(np.mean(values)) if values else None


def _fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "—".rjust(int(spec.split(".")[0]))


def _format(row: Row) -> str:
    return (
        f"{row.preset:<11} {row.path:<11} {_fmt(row.p50_ms, '8.2f')} {_fmt(row.p99_ms, '8.2f')} {_fmt(row.img_s, '8.1f')} "
        f"{_fmt(row.peak_gib, '6.2f')} {_fmt(row.pct_datasheet, '5.1f')} {_fmt(row.pct_measured, '5.1f')} "
        f"{_fmt(row.compile_s, '6.1f')} {_fmt(row.feat_rel_err, '8.1e')} {_fmt(row.max_dp, '7.1e')} "
        f"{_fmt(row.gpu_util, '5.0f')}  {row.note}"
    )


HEADER = (
    f"{'preset':<11} {'path':<11} {'p50 ms':>8} {'p99 ms':>8} {'img/s':>8} {'GiB':>6} {'%989':>5} {'%meas':>5} "
    f"{'comp s':>6} {'featerr':>8} {'max|Δp|':>7} {'util%':>5}  note"
)


def goals(rows: list[Row]) -> list[str]:
    """The issue's goals against the best measured path: latency on cuda_graph; throughput both
    compute-only (views on the GPU) and end-to-end from files (bulk_files)."""
    checks = [
        ("vitl16", "p50_ms", 4.0, ("cuda_graph", "fp8")),
        ("vitl16", "img_s", 400.0, ("compile", "cuda_graph", "fp8")),
        ("vitl16", "img_s", 400.0, ("bulk_files",)),
        ("vith16plus", "img_s", 150.0, ("compile", "cuda_graph", "fp8")),
        ("vith16plus", "img_s", 150.0, ("bulk_files",)),
    ]
    lines = []
    for preset, metric, target, paths in checks:
        found = [(getattr(r, metric), r.path) for r in rows if r.preset == preset and r.path in paths and getattr(r, metric) is not None]
        label = f"goal {preset} {metric} {'<=' if metric == 'p50_ms' else '>='} {target:g} over {'/'.join(paths)}"
        if not found:
            lines.append(f"{label}: not measured")
            continue
        value, path = min(found) if metric == "p50_ms" else max(found)
        met = value <= target if metric == "p50_ms" else value >= target
        lines.append(f"{label}: {value:.2f} ({path}) {'MET' if met else 'MISSED'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny-random on whatever device is there, tiny sizes")
    parser.add_argument("--presets", nargs="+", default=["vitl16", "vith16plus"])
    parser.add_argument("--budget-s", type=float, default=360.0, help="seconds for all measurements after start-up")
    parser.add_argument("--bulk-images", type=int, default=32, help="images per bulk step (×10 views)")
    parser.add_argument("--latency-iters", type=int, default=100)
    parser.add_argument("--latency-max-s", type=float, default=2.0)
    parser.add_argument("--throughput-min-s", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=1536, help="JPEG files for bulk_files")
    parser.add_argument("--file-size", default="1280x720")
    parser.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 3)))
    parser.add_argument("--compile-scope", choices=("blocks", "model"), default="blocks")
    parser.add_argument("--autotune", action="store_true", help="max-autotune-no-cudagraphs (minutes per shape, cold)")
    parser.add_argument("--compile-cache", type=Path, help="torch.compile artefact file to load and save")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--setup-only", action="store_true",
        help="only the setup (compile + capture) seconds of cuda_graph and fp8 per preset: run in a fresh process "
        "with --compile-cache from an earlier run and an empty TORCHINDUCTOR_CACHE_DIR for the cached compile time",
    )
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("stage1_gpu: no CUDA device; `--smoke` checks the script on this CPU (make bench runs every script).")
        return
    if args.smoke:
        args.presets, args.bulk_images, args.files, args.file_size = ["tiny-random"], 2, 6, "96x64"
        args.latency_iters, args.latency_max_s, args.throughput_min_s, args.workers = 5, 0.5, 0.1, 2
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)

    bench = Bench(args)
    bench.env = {
        "device": torch.cuda.get_device_name() if bench.cuda else "cpu",
        "capability": list(torch.cuda.get_device_capability()) if bench.cuda else None,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "cpus": os.cpu_count(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    if args.compile_cache:
        t0 = time.perf_counter()
        loaded = load_compile_cache(args.compile_cache)
        bench.env["compile_cache_loaded"] = loaded
        print(f"compile cache {args.compile_cache}: {'loaded' if loaded else 'absent'} ({time.perf_counter() - t0:.1f} s)")
    bench.measure_matmul()
    print(f"device {bench.env['device']} {bench.env['capability']}, torch {torch.__version__}, "
          f"transformers {bench.env['transformers']}, bf16 matmul {bench.env.get('matmul_tflops', 0):.0f} TFLOP/s, "
          f"budget {args.budget_s:.0f} s, dtype {bench.dtype}, compile scope {args.compile_scope}", flush=True)
    if args.setup_only:
        print(HEADER)
        for fp8 in (False, True):
            for name in args.presets:
                bench.setup_only(name, fp8)
        print(f"\nTotal {time.perf_counter() - bench.start:.0f} s (budget {args.budget_s:.0f} s).")
        return
    with tempfile.TemporaryDirectory(prefix="stage1_gpu_") as folder:
        bench.make_inputs(Path(folder))
        print(HEADER)
        refs = {name: bench.run_preset(name) for name in args.presets}
        for name in args.presets:
            bench.run_fp8(name, refs[name])
    print(f"\nTotal {time.perf_counter() - bench.start:.0f} s (budget {args.budget_s:.0f} s). Summary:")
    print(HEADER)
    for row in bench.rows:
        print(_format(row))
    for line in goals(bench.rows):
        print(line)


if __name__ == "__main__":
    main()
