"""Accelerated Stage-1 forwards behind the Stage-1 API: compiled and CUDA-graph steps, a bulk loader.

Why: on an H100 the eager multi-view forward of one image is launch-bound (DESIGN.md section 9:
vitl16 16.5-19.9 ms eager, 3.7 ms with compile + CUDA-graph replay, ~2 ms compute), and bulk
prediction needs JPEG decoding and view building off the GPU's critical path.

:class:`ServingModel` *is* a :class:`~curation.stage1.model.Stage1Model` (same ``predict``,
``forward_images``, ``features``, ``head_forward``, ``save``) that shares the wrapped model's
modules and runs the whole multi-view forward (backbone → CLS ‖ patch-mean features → head →
aggregator) as one static-shape *step*. :class:`ServingConfig` chooses:

- ``mode``: ``eager`` (the Stage-1 code as is), ``compile`` (torch.compile with static shapes) or
  ``cuda_graph`` (compile, then one CUDA graph of the whole step, replayed; CUDA only).
- ``path``: ``query`` runs one image per step (a miner answering validators, latency);
  ``bulk`` runs ``batch_images`` per step, and :meth:`ServingModel.forward_files` feeds it from a
  DataLoader whose worker processes decode JPEGs and build views into pinned memory; each batch
  is copied ``non_blocking`` on a side stream while the previous step computes.
- ``dtype`` (bf16/fp32 backbone), ``fp8`` (row-scaled FP8 linears, Hopper only) and the
  torch.compile artefact file ``compile_cache`` (compile once, reload in later processes).

The platform chooses it in one place: ``Settings.stage1_serving`` (a :class:`ServingConfig`),
applied by :func:`curation.store.registry.resolve_model`; :func:`curation.predict.job.predict_collection`
streams files through :meth:`ServingModel.forward_files` when the path is ``bulk``.

Attention is the backbone's SDPA (flash / memory-efficient kernels on CUDA); a backbone built with
``attn_implementation="eager"`` is refused rather than served slowly.

Example:
    >>> from PIL import Image
    >>> from curation.stage1.model import Stage1Config
    >>> from curation.stage1.serving import ServingModel
    >>> from curation.serving_config import ServingConfig
    >>> served = ServingModel.build(Stage1Config(), serving=ServingConfig(dtype="float32", device="cpu"))
    >>> len(served.predict([Image.new("RGB", (224, 224), "gray")])[0].view_probs)
    10
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from curation.errors import ConfigError, InputError
from curation.media import OPEN_ERRORS, open_rgb
from curation.serving_config import ServingConfig
from curation.stage1.backbone import DTYPES, backbone_features
from curation.stage1.cnn_backbone import CnnBackbone
from curation.stage1.model import Stage1Config, Stage1Model, Stage1Output
from curation.stage1.query_policies import contract_query
from curation.stage1.views import ViewPolicy, build_views, pil_to_tensor

log = logging.getLogger(__name__)

E4M3_MAX = float(torch.finfo(torch.float8_e4m3fn).max)  # 448
FP8_MIN_CAPABILITY = (9, 0)  # row-wise scaled FP8 matmuls (torch._scaled_mm) need Hopper


@dataclass(frozen=True)
class SetupReport:
    """What :meth:`ServingModel.setup` did; compile and capture times are wall seconds."""

    device: str
    mode: str
    compile_s: float
    capture_s: float
    cache_loaded: bool
    fp8_linears: int


@dataclass(frozen=True)
class FileBatch:
    """One bulk step's result: the files in input order, their upright sizes and CPU outputs.

    ``output`` is None when no file of the step could be decoded (every one is in ``skipped``).
    """

    indices: tuple[int, ...]  # positions in the input, so repeated paths stay distinct
    paths: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]  # (width, height) per forwarded image, for view_boxes
    output: Stage1Output | None  # view_logits [n, V], image_logits [n], features [n, V, 2D], on CPU
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason) of files that could not be decoded


class Fp8Linear(nn.Module):
    """``nn.Linear`` with e4m3 weights scaled per output channel and activations scaled per row.

    Why row-wise: one outlier token would otherwise set the scale for the whole batch and flush the
    other tokens' small values. Under torch.compile the activation amax/scale/cast fuse into one
    kernel; the matmul is ``torch._scaled_mm`` (the only FP8 GEMM in torch itself), bf16 out.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()  # [N, K]
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / E4M3_MAX  # [N, 1]
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", _to_e4m3(weight / scale))  # [N, K]
        self.register_buffer("weight_scale", scale.t().contiguous())  # [1, N]
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()  # [M, K]
        scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / E4M3_MAX  # [M, 1]
        out = torch._scaled_mm(
            _to_e4m3(rows / scale),
            self.weight.t(),  # [K, N], column-major as _scaled_mm requires
            scale_a=scale,
            scale_b=self.weight_scale,
            out_dtype=torch.bfloat16,
            use_fast_accum=True,
        )  # [M, N]
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)


def _to_e4m3(x: torch.Tensor) -> torch.Tensor:
    # e4m3fn has no infinity: a value rounding past 448 would become NaN, so clamp first.
    return x.clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


def quantize_fp8(backbone: nn.Module) -> int:
    """Swap every transformer-block ``nn.Linear`` whose sides are multiples of 16 for :class:`Fp8Linear`.

    In place and idempotent; returns how many block linears run in FP8. The patch embedding and
    the head keep their dtype.
    """
    blocks = transformer_blocks(backbone)
    for block in blocks:
        for name, child in list(block.named_modules()):
            if isinstance(child, nn.Linear) and child.in_features % 16 == 0 and child.out_features % 16 == 0:
                parent_name, _, attr = name.rpartition(".")
                setattr(block.get_submodule(parent_name) if parent_name else block, attr, Fp8Linear(child))
    return sum(isinstance(m, Fp8Linear) for block in blocks for m in block.modules())


def transformer_blocks(backbone: nn.Module) -> list[nn.Module]:
    """The DINOv3 transformer blocks, found by class so it works across transformers versions."""
    from transformers.models.dinov3_vit.modeling_dinov3_vit import DINOv3ViTLayer

    return [m for m in backbone.modules() if isinstance(m, DINOv3ViTLayer)]


def fp8_support(device: torch.device) -> str | None:
    """None when ``device`` runs row-scaled FP8 matmuls, else why not (for the error message)."""
    if device.type != "cuda":
        return f"`fp8` needs a CUDA GPU of compute capability ≥ {FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]}; the device is {device}."
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return (
            f"`fp8` needs compute capability ≥ {FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]} (Hopper: H100/H200) for "
            f"row-scaled FP8 matmuls; {name} is {capability[0]}.{capability[1]}. Serve in bfloat16 instead."
        )
    return None


def load_compile_cache(path: str | Path) -> bool:
    """Hot-load torch.compile artefacts saved by :func:`save_compile_cache`.

    Every artefact in the file is loaded: torch's own loader keeps, per artefact type, only the
    last of the chunks that successive saves in one process append (measured on an H200: three of
    four compiled setups missed the cache), so the chunks are merged here first.

    Returns False when the file is absent or cannot be read (corrupt, another torch version);
    compilation then runs cold and :func:`save_compile_cache` rewrites the file.
    """
    path = Path(path)
    if not path.is_file():
        return False
    data = path.read_bytes()
    try:
        artifacts = _read_artifacts(data)
    except ImportError:  # torch moved its private cache helpers: its loader, last chunks only
        return torch.compiler.load_cache_artifacts(data) is not None
    except Exception as e:  # noqa: BLE001 (any parse failure means: no usable cache)
        log.warning("compile cache %s is unreadable, compiling cold: %s: %s", path, type(e).__name__, e)
        return False
    from torch.compiler._cache import CacheArtifactManager

    CacheArtifactManager.populate_caches(artifacts)
    return True


def compile_cache_file(cache_root: Path, config: Stage1Config, serving: ServingConfig) -> Path:
    """Where the platform keeps the torch.compile artefacts of one backbone and static step shape.

    Compiled code depends on shapes and dtypes, not on weights, so every model version on the same
    backbone and serving configuration shares the file (max-autotune took 323 s on an H100: once).
    """
    backbone = "".join(c if c.isalnum() or c in "-_." else "_" for c in config.backbone)
    shape = f"{serving.step_images}x{config.views.num_views}x{config.views.size}"
    variant = f"{serving.mode}-{serving.compile_scope}-{serving.dtype or config.dtype}{'-fp8' if serving.fp8 else ''}{'-autotune' if serving.autotune else ''}"
    return cache_root / "torch_compile" / f"{backbone}-{shape}-{variant}.bin"


def save_compile_cache(path: str | Path) -> int:
    """Write this process's torch.compile artefacts, merged with those the file already holds
    (atomically, one chunk per artefact type, which torch's own loader also reads in full);
    returns the bytes written (0: nothing compiled, the file is left as it is)."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return 0
    path = Path(path)
    data = saved[0]
    try:
        earlier = _read_artifacts(path.read_bytes()) if path.is_file() else {}
        data = _write_artifacts(_merge_artifacts(earlier, _read_artifacts(data)))
    except ImportError:  # torch moved its private cache helpers: its bytes as they are
        pass
    except Exception as e:  # noqa: BLE001 (an unreadable old file is replaced, not merged)
        log.warning("compile cache %s: merging failed, writing this process's artefacts only: %s", path, e)
        data = _write_artifacts(_read_artifacts(saved[0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, path)
    return len(data)


def _read_artifacts(data: bytes) -> dict[str, list]:
    """Serialized artefacts → {type: [artefacts]}, every chunk of every save kept (by key, last wins)."""
    from torch.compiler._cache import CacheArtifactManager, _deserialize_single_cache
    from torch.utils._appending_byte_serializer import AppendingByteSerializer

    CacheArtifactManager._ensure_cache_artifacts_registered()
    merged: dict[str, dict[str, object]] = {}
    for kind, artifacts in AppendingByteSerializer.to_list(data, deserialize_fn=_deserialize_single_cache):
        merged.setdefault(kind, {}).update((artifact.key, artifact) for artifact in artifacts)
    return {kind: list(by_key.values()) for kind, by_key in merged.items()}


def _merge_artifacts(earlier: dict[str, list], later: dict[str, list]) -> dict[str, list]:
    merged = {kind: {a.key: a for a in artifacts} for kind, artifacts in earlier.items()}
    for kind, artifacts in later.items():
        merged.setdefault(kind, {}).update((a.key, a) for a in artifacts)
    return {kind: list(by_key.values()) for kind, by_key in merged.items()}


def _write_artifacts(artifacts: dict[str, list]) -> bytes:
    from torch.compiler._cache import _serialize_single_cache
    from torch.utils._appending_byte_serializer import AppendingByteSerializer

    serializer = AppendingByteSerializer(serialize_fn=_serialize_single_cache)
    serializer.extend(artifacts.items())
    return serializer.to_bytes()


class ServingModel(Stage1Model):
    """A Stage-1 model served by :class:`ServingConfig`; a drop-in :class:`Stage1Model`.

    The wrapped model's backbone, head and aggregator are shared, not copied (an 841M backbone
    twice would double GPU memory), and :meth:`setup` prepares them in place: it moves them to the
    device, casts the backbone, swaps FP8 linears and, with ``compile_scope: blocks``, compiles the
    backbone's blocks, so the wrapped model runs that way afterwards too.

    Args:
        model: the Stage-1 model to serve.
        serving: how to serve it (default: eager, bf16, auto device).
    """

    def __init__(self, model: Stage1Model, serving: ServingConfig | None = None):
        nn.Module.__init__(self)  # not Stage1Model.__init__: that would build a fresh, random head
        self.config = model.config
        self.backbone, self.head, self.aggregator = model.backbone, model.head, model.aggregator
        self.serving = serving or ServingConfig()
        self.report: SetupReport | None = None
        self._run: Callable[[torch.Tensor], tuple[torch.Tensor, ...]] | None = None
        self._copy_stream: torch.cuda.Stream | None = None

    @classmethod
    def build(
        cls,
        config: Stage1Config,
        *,
        backbone: nn.Module | None = None,
        device: str = "cpu",
        seed: int = 0,
        serving: ServingConfig | None = None,
    ) -> ServingModel:
        """:meth:`Stage1Model.build`, served by ``serving``."""
        return cls(Stage1Model.build(config, backbone=backbone, device=device, seed=seed), serving)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        backbone: nn.Module | None = None,
        device: str = "cpu",
        serving: ServingConfig | None = None,
    ) -> ServingModel:
        """:meth:`Stage1Model.load` (a saved model directory), served by ``serving``."""
        return cls(Stage1Model.load(directory, backbone=backbone, device=device), serving)

    @property
    def serving_dtype(self) -> torch.dtype:
        """The backbone's serving dtype: the serving config's, else the model's own."""
        return DTYPES[self.serving.dtype or self.config.dtype]

    # Preparation ---------------------------------------------------------------------------------
    def setup(self) -> SetupReport:
        """Place, cast, quantise, compile and capture; the first prediction calls it when not yet done.

        Compilation runs on a random input of the static shape (``step_images`` images), so the
        first real query is not the one that pays for it.

        Raises:
            ConfigError: the device cannot run the configuration (no CUDA for ``cuda_graph``, a GPU
                without FP8 for ``fp8``), or the backbone does not use SDPA attention.
        """
        cfg = self.serving
        device = self._resolve_device()
        # A CNN trunk (CnnBackbone) has no attention to check.
        attention = getattr(self.backbone.config, "_attn_implementation", None)
        if not isinstance(self.backbone, CnnBackbone) and attention not in ("sdpa", "flash_attention_2"):
            raise ConfigError(
                f"Serving needs SDPA (or flash) attention; this backbone uses {attention!r}. "
                "Build or load it with `attn_implementation: sdpa` in the Stage-1 config."
            )
        if cfg.fp8 and (reason := fp8_support(device)):
            raise ConfigError(reason)
        self.eval()
        self.to(device)
        backbone_dtype = next(self.backbone.parameters()).dtype  # CnnBackbone has no `.dtype`
        if backbone_dtype != self.serving_dtype:  # skipped when prepared before: would upcast FP8 buffers
            self.backbone.to(self.serving_dtype)
        fp8_linears = quantize_fp8(self.backbone) if cfg.fp8 else 0
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        compile_s = capture_s = 0.0
        cache_loaded = False
        if cfg.mode == "eager":
            self._run = self._step
        else:
            cache_loaded = cfg.compile_cache is not None and load_compile_cache(cfg.compile_cache)
            compiled = self._compiled_step()
            with torch.inference_mode():  # real steps get inference tensors; dynamo guards on that
                example = self._example_views(device)
                start = time.perf_counter()
                compiled(example)  # compiles for the static shape
            _sync(device)
            compile_s = time.perf_counter() - start
            if cfg.mode == "cuda_graph":
                start = time.perf_counter()
                self._run = _capture(compiled, example)
                capture_s = time.perf_counter() - start
            else:
                self._run = compiled
            if cfg.compile_cache is not None:
                save_compile_cache(cfg.compile_cache)
        self.report = SetupReport(str(device), cfg.mode, compile_s, capture_s, cache_loaded, fp8_linears)
        return self.report

    def _resolve_device(self) -> torch.device:
        requested = self.serving.device
        if requested == "auto":
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(requested)
        needs_cuda = device.type == "cuda" or self.serving.mode == "cuda_graph"
        if needs_cuda and not torch.cuda.is_available():
            what = "`mode: cuda_graph`" if self.serving.mode == "cuda_graph" else f"`device: {self.serving.device}`"
            raise ConfigError(
                f"{what} needs a CUDA device, and none is available (torch.cuda.is_available() is False). "
                "Use `mode: compile` or `mode: eager` on a CPU."
            )
        return device

    def _compiled_step(self) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
        options = dict(dynamic=False, fullgraph=True, mode="max-autotune-no-cudagraphs" if self.serving.autotune else None)
        if self.serving.compile_scope == "model":
            return torch.compile(self._step, **options)
        blocks = transformer_blocks(self.backbone)
        if not blocks:
            raise ConfigError("`compile_scope: blocks` found no DINOv3 transformer blocks; use `compile_scope: model`.")
        for block in blocks:
            block.compile(**options)  # one compiled code object, reused by every layer
        return self._step

    def _example_views(self, device: torch.device) -> torch.Tensor:
        """Random views of the static shape (random, not zeros: zeros can take faster paths)."""
        policy = self.config.views
        n = self.serving.step_images * policy.num_views
        generator = torch.Generator(device=device).manual_seed(0)
        shape = (n, 3, policy.size, policy.size)
        return torch.randn(shape, generator=generator, device=device, dtype=self.serving_dtype)

    # The step ----------------------------------------------------------------------------------------
    def _step(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views [n·V, 3, S, S] → (view logits [n, V], image logits [n], features [n, V, 2D])."""
        n = views.shape[0] // self.config.views.num_views
        batch = views.shape[0] if self.serving.mode != "eager" else self.config.max_batch  # one forward when static
        feats = backbone_features(self.backbone, views, max_batch=batch).view(n, self.config.views.num_views, -1)
        view_logits, image_logits = self.head_forward(feats)
        return view_logits, image_logits, feats

    @torch.inference_mode()
    def forward_views(self, views: torch.Tensor) -> Stage1Output:
        """Normalised views [N·V, 3, S, S] (image-major) → :class:`Stage1Output` on the serving device.

        Eager mode runs any N in one pass (chunked by ``max_batch``, as :class:`Stage1Model` does);
        compiled modes run static steps of ``step_images`` images and pad the last one.
        """
        if self._run is None:
            self.setup()
        num_views = self.config.views.num_views
        if views.dim() != 4 or views.shape[0] % num_views:
            raise InputError(f"`views` must be [N·{num_views}, 3, S, S] for this view policy; got {tuple(views.shape)}.")
        # The backbone casts its input to its dtype first, so casting here changes no value; it
        # keeps one dtype (one compiled graph) whatever the caller passes.
        views = views.to(self.device, self.serving_dtype, non_blocking=True)
        if self.serving.mode == "eager":
            return Stage1Output(*self._run(views))
        step = self.serving.step_images * num_views
        parts = []
        for start in range(0, views.shape[0], step):
            chunk = views[start : start + step]
            real = chunk.shape[0] // num_views
            if chunk.shape[0] < step:
                pad = chunk.new_zeros((step - chunk.shape[0], *chunk.shape[1:]))
                chunk = torch.cat([chunk, pad])  # static shape; padded images are dropped below
            elif self.serving.mode == "compile" and not chunk.is_inference():
                chunk = chunk.clone()  # a caller's ordinary tensor would fail dynamo's guard: a recompile
            parts.append([t[:real] for t in self._run(chunk)])
        view_logits, image_logits, feats = (torch.cat(ts) for ts in zip(*parts))
        return Stage1Output(view_logits=view_logits, image_logits=image_logits, features=feats)

    def forward_images(self, images: list[torch.Tensor]) -> Stage1Output:
        """uint8 images [3, H, W] → :class:`Stage1Output`; views are built on the serving device."""
        if self._run is None:
            self.setup()
        views = build_views([im.to(self.device) for im in images], self.config.views)  # [N·V, 3, S, S]
        return self.forward_views(views)

    # Bulk path -----------------------------------------------------------------------------------------
    def forward_files(
        self,
        paths: Sequence[str | Path],
        *,
        validator_seeds: Sequence[int] | None = None,
        skip_unreadable: bool = False,
        query_policy: str | None = None,
    ) -> Iterator[FileBatch]:
        """Stream image files through the model, ``step_images`` per step, in input order.

        Worker processes decode and build views (in the serving dtype, which the backbone would
        cast to anyway) into pinned memory; while step k computes, batch k+1 is copied to the GPU
        on a side stream and step k−1's outputs come back to the host.

        Args:
            validator_seeds: one seed per path: forward the validator query built from the image
                (:func:`curation.stage1.query_policies.contract_query`), not the image itself.
            skip_unreadable: report undecodable files in :attr:`FileBatch.skipped` and go on.
            query_policy: the contract those queries follow; None = the platform's 2025-11 model.

        Raises:
            InputError: a file cannot be decoded (without ``skip_unreadable``); the message names
                it. Batches before it are yielded first.
        """
        if validator_seeds is not None and len(validator_seeds) != len(paths):
            raise InputError(f"{len(validator_seeds)} validator seeds for {len(paths)} files.")
        if self._run is None:
            self.setup()
        workers = self.serving.num_workers
        dataset = _ViewDataset([str(p) for p in paths], validator_seeds, self.config.views, self.serving_dtype, query_policy)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=self.serving.step_images,
            shuffle=False,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=self.serving.pin_memory and self.device.type == "cuda",
            prefetch_factor=self.serving.prefetch_factor if workers else None,
        )
        pending: tuple[_ViewBatch, Stage1Output | None] | None = None
        for batch in loader:
            if batch.skipped and not skip_unreadable:
                if pending is not None:
                    yield _to_host(*pending)
                path, reason = batch.skipped[0]
                raise InputError(f"{path}: cannot decode image ({reason}).")
            output = None if batch.views is None else self.forward_views(self._upload(batch.views))  # launched, not waited for
            if pending is not None:
                yield _to_host(*pending)  # waits for step k−1 only; step k keeps the GPU busy
            pending = (batch, output)
        if pending is not None:
            yield _to_host(*pending)

    def _upload(self, views: torch.Tensor) -> torch.Tensor:
        """Host views → device, on the copy stream so the copy overlaps the step in flight."""
        if self._copy_stream is None:
            return views
        with torch.cuda.stream(self._copy_stream):
            on_device = views.to(self.device, non_blocking=True)
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self._copy_stream)
        on_device.record_stream(current)  # the allocator must not reuse it before the step reads it
        return on_device


def _capture(compiled: Callable, example: torch.Tensor) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """Capture ``compiled`` on a static input buffer; the returned function copies in, replays, clones out."""
    with torch.inference_mode():
        static_in = example.clone()
        side = torch.cuda.Stream(example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))  # static_in is written before side reads it
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up: lazy initialisation and autotuning may not run inside a capture
                compiled(static_in)
        torch.cuda.current_stream(example.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = compiled(static_in)

    def replay(views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        static_in.copy_(views)
        graph.replay()
        return tuple(t.clone() for t in static_out)  # the next replay overwrites static_out

    return replay


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class _ViewItem:
    index: int
    path: str
    views: torch.Tensor | None  # [V, 3, S, S]; None when the file cannot be decoded
    size: tuple[int, int]
    error: str | None


@dataclass(frozen=True)
class _ViewBatch:
    indices: tuple[int, ...]
    paths: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]
    views: torch.Tensor | None  # [n·V, 3, S, S] of the decoded files; None when there are none
    skipped: tuple[tuple[str, str], ...]

    def pin_memory(self) -> _ViewBatch:
        """Called by the DataLoader's pinning thread (``pin_memory=True``)."""
        return self if self.views is None else dataclasses.replace(self, views=self.views.pin_memory())


class _ViewDataset(torch.utils.data.Dataset):
    """File → views [V, 3, S, S]; a file that cannot be decoded becomes an error item, not a worker crash."""

    def __init__(
        self, paths: list[str], validator_seeds: Sequence[int] | None, policy: ViewPolicy, dtype: torch.dtype, contract: str | None = None
    ):
        self.paths, self.seeds, self.policy, self.dtype, self.contract = paths, validator_seeds, policy, dtype, contract

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _ViewItem:
        path = self.paths[index]
        try:
            image = open_rgb(path)
        except OPEN_ERRORS as e:
            return _ViewItem(index, path, None, (0, 0), f"{type(e).__name__}: {e}")
        if self.seeds is not None:
            image = contract_query(image, self.seeds[index], self.contract)
        tensor = pil_to_tensor(image)  # [3, H, W] uint8
        views = build_views([tensor], self.policy).to(self.dtype)
        return _ViewItem(index, path, views, (int(tensor.shape[2]), int(tensor.shape[1])), None)


def _collate(items: list[_ViewItem]) -> _ViewBatch:
    good = [it for it in items if it.error is None]
    return _ViewBatch(
        indices=tuple(it.index for it in good),
        paths=tuple(it.path for it in good),
        sizes=tuple(it.size for it in good),
        views=torch.cat([it.views for it in good]) if good else None,
        skipped=tuple((it.path, it.error) for it in items if it.error is not None),
    )


def _to_host(batch: _ViewBatch, output: Stage1Output | None) -> FileBatch:
    host = None if output is None else Stage1Output(*(t.cpu() for t in (output.view_logits, output.image_logits, output.features)))
    return FileBatch(indices=batch.indices, paths=batch.paths, sizes=batch.sizes, output=host, skipped=batch.skipped)
