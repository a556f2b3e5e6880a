"""Stage-1 training: head (+ aggregator) on cached features, LoRA, or the last N blocks.

Three modes share one loop (:func:`_fit`):

- ``head``: :func:`train_head` on cached validator-view features [N, (M,) V, 2D]. A linear head
  uses the exact fp16 fast path of :mod:`curation.stage1.head_fast`; MLP heads and the attention
  aggregator take the generic autograd path. Seconds for 100k images (``bench/train_head.py``).
- ``lora`` / ``partial``: :func:`train_finetune` on images. Each epoch every image is turned into
  the validator query ``m = epoch mod M`` (seed from its content hash), then into views, then
  through the backbone; LoRA adapters (peft) on the attention projections, or the last N blocks
  with layer-wise learning-rate decay. Adapters are merged into the backbone when training ends.

Determinism: the batch order comes from ``(seed, epoch)`` and the global RNG is reseeded from
``(seed, step)`` before every step (dropout, LoRA init), inside ``fork_rng`` so the caller's RNG
is untouched; with RoPE coordinate augmentation off (``pos_embed_rescale`` & co. are set to None
on the backbone) the same seed gives identical weights, and a resumed run continues bit-for-bit.
Checkpoints (safetensors, with AdamW state) are written every ``checkpoint_every`` steps by rank 0.
A model is marked trained only when a run finishes and its data fingerprint is known.

Example:
    >>> import torch
    >>> from curation.stage1.model import Stage1Config, Stage1Model
    >>> from curation.stage1.train import TrainConfig, train_head
    >>> model = Stage1Model.build(Stage1Config(backbone="tiny-random"))
    >>> features, labels = torch.randn(8, 10, 64), torch.tensor([0, 1] * 4)
    >>> train_head(features, labels, TrainConfig(epochs=2, batch_size=4), model=model).steps
    4
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curation.errors import ConfigError, InputError, suggest
from curation.stage1 import distributed as dist_utils
from curation.stage1.backbone import backbone_blocks
from curation.stage1.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from curation.stage1.distributed import SINGLE, DistEnv
from curation.stage1.head_fast import FastLinearHead, supports_fast_head, view_stats
from curation.stage1.training_data import augmentation_seed, data_fingerprint, image_content_hash
from curation.typed_config import from_mapping

MODES = ("head", "lora", "partial")
LOSSES = ("bce", "focal")
CLASS_WEIGHTS = ("none", "balanced")
SCHEDULES = ("constant", "cosine")
_BLOCK = re.compile(r"\.layer\.(\d+)\.")


@dataclass(frozen=True)
class TrainConfig:
    """One training job (YAML ``train:`` section; unknown keys rejected).

    Attributes:
        mode: ``head`` (cached features), ``lora`` or ``partial`` (backbone blocks).
        epochs: passes over the data (each image once per epoch; M cached augmentations count as M).
        batch_size: images per optimizer step, global over all processes.
        lr: learning rate of the head and aggregator.
        backbone_lr: learning rate of the top backbone block (and LoRA adapters of the top block).
        weight_decay: AdamW decoupled weight decay.
        layer_decay: learning rate × ``layer_decay`` per block further from the top.
        last_n_blocks: blocks unfrozen in ``partial`` mode (the final norm is always trained).
        train_embeddings: ``partial`` with all blocks also trains the patch embedding (full fine-tune).
        lora_r, lora_alpha, lora_dropout: LoRA rank, scale and dropout.
        lora_targets: comma-separated module names (DINOv3 in transformers 5: q_proj,k_proj,v_proj,o_proj).
        loss: ``bce`` or ``focal``.
        focal_gamma: γ of the focal loss.
        class_weights: ``none`` or ``balanced`` (each class weighs half of the loss).
        schedule: ``constant`` or ``cosine`` (per step, after ``warmup_steps`` of linear warm-up).
        warmup_steps: linear warm-up steps.
        grad_clip: max global gradient norm; 0 disables.
        augmentations: M validator queries per image (``lora``/``partial`` use query ``epoch mod M``).
        validator_level: force augmentation level 0-3; None draws it like the validators.
        query_policy: the StreetVision contract training queries follow (a name in
            ``models/streetvision/policies``); None = the platform's own model of the 2025-11 contract.
        seed: fixes initialisation, order and augmentation; same seed ⇒ identical weights.
        bf16: bf16 autocast for the backbone forward on CUDA (ignored on CPU).
        checkpoint_every: steps between checkpoints (0: only at the end) when a directory is given.
        fast_head: use the fp16 fast path for linear heads in ``head`` mode.
        query_memory_mb: keep decoded validator queries (150 KB at 224², a native frame far more) in RAM up to this budget,
            so epochs after the first M skip the image decode and augmentation; 0 disables.
    """

    mode: str = "head"
    epochs: int = 5
    batch_size: int = 1024
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 0.01
    layer_decay: float = 0.75
    last_n_blocks: int = 2
    train_embeddings: bool = False
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"
    loss: str = "bce"
    focal_gamma: float = 2.0
    class_weights: str = "none"
    schedule: str = "cosine"
    warmup_steps: int = 0
    grad_clip: float = 1.0
    augmentations: int = 4
    validator_level: int | None = None
    query_policy: str | None = None
    seed: int = 0
    bf16: bool = True
    checkpoint_every: int = 0
    fast_head: bool = True
    query_memory_mb: int = 512

    def __post_init__(self) -> None:
        for key, allowed in (("mode", MODES), ("loss", LOSSES), ("class_weights", CLASS_WEIGHTS), ("schedule", SCHEDULES)):
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(f"`{key}` must be one of {', '.join(allowed)}; got {value!r}.{suggest(str(value), allowed)}")
        for key in ("epochs", "batch_size", "augmentations", "last_n_blocks", "lora_r"):
            if getattr(self, key) < 1:
                raise ConfigError(f"The `{key}` parameter must be an int in the range [1, inf). Got {getattr(self, key)} instead.")
        for key in ("warmup_steps", "checkpoint_every", "query_memory_mb", "weight_decay", "grad_clip", "focal_gamma", "lora_dropout"):
            if getattr(self, key) < 0:
                raise ConfigError(f"`{key}` must be ≥ 0; got {getattr(self, key)}.")
        if not (self.lr > 0 and self.backbone_lr > 0 and 0 < self.layer_decay <= 1):
            raise ConfigError(f"Need lr > 0, backbone_lr > 0, 0 < layer_decay ≤ 1; got {self.lr}, {self.backbone_lr}, {self.layer_decay}.")
        if self.validator_level is not None and self.validator_level not in (0, 1, 2, 3):
            raise ConfigError(f"`validator_level` must be 0-3 or null; got {self.validator_level!r}.")
        if self.query_policy:
            from curation.stage1.query_policies import cached_policy

            cached_policy(self.query_policy)  # an unknown contract fails here, naming the nearest one
        if not self.target_modules():
            raise ConfigError("`lora_targets` names no module; e.g. `q_proj,k_proj,v_proj,o_proj`.")

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str) -> TrainConfig:
        return from_mapping(cls, values, source=source)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def target_modules(self) -> list[str]:
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()]


@dataclass(frozen=True)
class TrainResult:
    """What a run did. ``step_losses`` covers the steps run by this call (not the resumed ones).

    Attributes:
        completed: all ``total_steps`` were taken (False when stopped by ``max_steps``).
        data_fingerprint: hash of (content_hash, label) pairs; empty when hashes were not given.
        fast_path: the fp16 linear-head path was used.
    """

    mode: str
    steps: int
    total_steps: int
    resumed_from: int
    step_losses: tuple[float, ...]
    epoch_losses: tuple[float, ...]
    seconds: float
    completed: bool
    data_fingerprint: str
    fast_path: bool = False


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, config: TrainConfig, class_weight: tuple[float, float]
) -> torch.Tensor:
    """Per-sample loss [B]: BCE or focal (−(1−p_t)^γ·log p_t), times the class weight."""
    labels = labels.float()
    bce = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")  # [B]
    loss = bce * (1.0 - torch.exp(-bce)).pow(config.focal_gamma) if config.loss == "focal" else bce
    return loss * torch.where(labels > 0.5, class_weight[1], class_weight[0])


def _class_weight(labels: torch.Tensor, config: TrainConfig) -> tuple[float, float]:
    if config.class_weights == "none":
        return 1.0, 1.0
    n, pos = labels.numel(), int(labels.sum())
    if pos in (0, n):
        raise InputError(f"`class_weights: balanced` needs both classes; got {pos} positives of {n}.")
    return n / (2.0 * (n - pos)), n / (2.0 * pos)


def _lr_factor(step: int, total: int, config: TrainConfig) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _check_labels(labels: torch.Tensor, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.numel() != n:
        raise InputError(f"Got {n} samples but {labels.numel()} labels.")
    if labels.numel() and not bool(((labels == 0) | (labels == 1)).all()):
        raise InputError("Labels must be 0 (no_roadwork) or 1 (roadwork).")
    return labels.long()


def _run_fingerprint(config: TrainConfig, data: str, names: list[str]) -> str:
    values = config.to_dict() | {"checkpoint_every": None, "data": data, "names": names}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


# The loop ------------------------------------------------------------------------------------------
def _fit(
    *,
    n: int,
    step_loss: Callable[[torch.Tensor, int, int], tuple[torch.Tensor, torch.Tensor]],
    groups: list[tuple[dict[str, nn.Parameter], float]],
    train_modules: list[nn.Module],
    config: TrainConfig,
    data_id: str,
    checkpoint_dir: str | Path | None,
    env: DistEnv,
    on_step: Callable[[int, float], None] | None,
    max_steps: int | None,
) -> tuple[int, int, int, list[float], list[float]]:
    """Run optimizer steps; ``step_loss(local indices, global batch size, step)`` returns (loss to
    backpropagate, detached local loss sum). Returns (start, end, total, step losses, epoch losses)."""
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = config.epochs * steps_per_epoch
    params = {name: p for named, _ in groups for name, p in named.items()}
    optimizer = torch.optim.AdamW(
        [{"params": list(named.values()), "lr": lr, "base_lr": lr} for named, lr in groups if named],
        weight_decay=config.weight_decay,
    )
    fingerprint = _run_fingerprint(config, data_id, list(params))
    start = 0
    if checkpoint_dir is not None and checkpoint_path(checkpoint_dir).is_file():
        start = load_checkpoint(checkpoint_path(checkpoint_dir), params, optimizer, fingerprint=fingerprint)
    end = total if max_steps is None else min(total, start + max_steps)
    step_losses: list[float] = []
    epoch_sums: dict[int, list[float]] = {}
    for module in train_modules:
        module.train()
    order: tuple[int, torch.Tensor] | None = None
    for step in range(start, end):
        epoch, i = divmod(step, steps_per_epoch)
        if order is None or order[0] != epoch:
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            order = (epoch, torch.randperm(n, generator=generator))
        batch = order[1][i * config.batch_size : (i + 1) * config.batch_size]
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * _lr_factor(step, total, config)
        torch.manual_seed(config.seed * 7_919 + step * 104_729 + env.rank)
        optimizer.zero_grad(set_to_none=True)
        loss, local_sum = step_loss(dist_utils.shard(batch, env), len(batch), step)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(params.values()), config.grad_clip)
        optimizer.step()
        value = float(dist_utils.all_reduce_sum(local_sum.detach().float().reshape(1).cpu(), env)) / len(batch)
        step_losses.append(value)
        epoch_sums.setdefault(epoch, []).append(value)
        if checkpoint_dir is not None and env.is_main and config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            save_checkpoint(checkpoint_dir, params, optimizer, step=step + 1, fingerprint=fingerprint)
        if on_step is not None:
            on_step(step + 1, value)
    if checkpoint_dir is not None and env.is_main and end > start:
        save_checkpoint(checkpoint_dir, params, optimizer, step=end, fingerprint=fingerprint)
    dist_utils.barrier(env)
    for module in train_modules:
        module.eval()
    epoch_losses = [sum(v) / len(v) for _, v in sorted(epoch_sums.items())]
    return start, end, total, step_losses, epoch_losses


def _finish(model, config: TrainConfig, start: int, end: int, total: int, losses, epoch_losses, began: float, fingerprint: str, version: str | None, fast: bool) -> TrainResult:
    completed = end == total
    if version is not None:
        if not fingerprint:
            raise InputError("Pass `content_hashes` to mark the model trained: its version must record the data.")
        if completed:
            model.mark_trained(version=version, data_fingerprint=fingerprint)
    return TrainResult(
        mode=config.mode,
        steps=end,
        total_steps=total,
        resumed_from=start,
        step_losses=tuple(losses),
        epoch_losses=tuple(epoch_losses),
        seconds=time.perf_counter() - began,
        completed=completed,
        data_fingerprint=fingerprint,
        fast_path=fast,
    )


# Head on cached features ---------------------------------------------------------------------------
class _HeadOnFeatures(nn.Module):
    """Generic path: the model's head + aggregator on float features (MLP heads, attention MIL)."""

    def __init__(self, model):
        super().__init__()
        self.head, self.aggregator = model.head, model.aggregator

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = features.float()
        return self.aggregator(self.head(features), features)


def train_head(
    features: torch.Tensor,
    labels,
    config: TrainConfig,
    *,
    model,
    stats: torch.Tensor | None = None,
    content_hashes: Sequence[str] | None = None,
    sample_weights: torch.Tensor | None = None,
    version: str | None = None,
    checkpoint_dir: str | Path | None = None,
    env: DistEnv = SINGLE,
    on_step: Callable[[int, float], None] | None = None,
    max_steps: int | None = None,
) -> TrainResult:
    """Train the model's head and aggregator in place on cached per-view features.

    Args:
        features: [N, V, 2D] or [N, M, V, 2D] (M augmentations, each a sample with the image's
            label), fp16/bf16/fp32, on the CPU or the training device; never copied whole.
        labels: [N] 0/1.
        config: the job; ``mode`` must be ``head``.
        model: a :class:`~curation.stage1.model.Stage1Model`; only head/aggregator weights change.
        stats: [..., 4] per-view statistics from the cache (:func:`view_stats`); computed if None.
        content_hashes: [N] image hashes: the data fingerprint recorded by ``version``.
        sample_weights: optional [N] per-image loss weights (e.g. up-weighted hard negatives).
        version: mark the model trained as this version when the run completes.
        checkpoint_dir: resume from / write ``last.safetensors`` here.
        env: this process's :class:`DistEnv` (rank 0 writes checkpoints).
        on_step: called with (steps done, loss) after every step.
        max_steps: stop after this many steps in this call (the run can be resumed).
    """
    began = time.perf_counter()
    if config.mode != "head":
        raise ConfigError(f"`train_head` trains mode `head`; got `{config.mode}`. Use `train_finetune` for backbones.")
    views = model.config.views.num_views
    if features.dim() not in (3, 4) or features.shape[-2] != views or features.shape[-1] != 2 * model.hidden_size:
        raise InputError(
            f"`features` must be [N, (M,) {views}, {2 * model.hidden_size}] for this model; got {tuple(features.shape)}."
        )
    n_images = features.shape[0]
    labels = _check_labels(labels, n_images)
    fingerprint = data_fingerprint(list(content_hashes), labels.tolist()) if content_hashes is not None else ""
    per_image = features.shape[1] if features.dim() == 4 else 1
    flat = features.reshape(-1, views, features.shape[-1])  # [N·M, V, 2D], a view when possible
    sample_labels = labels.repeat_interleave(per_image)
    weights = None if sample_weights is None else torch.as_tensor(sample_weights, dtype=torch.float32).repeat_interleave(per_image)
    fast = config.fast_head and supports_fast_head(model.head, model.aggregator)
    if fast and stats is None:
        stats = view_stats(flat, model.hidden_size)
    flat_stats = None if stats is None else stats.reshape(-1, views, stats.shape[-1])
    device = model.device
    class_weight = _class_weight(sample_labels, config)
    module = FastLinearHead(model.head, model.aggregator) if fast else _HeadOnFeatures(model)
    trained = dist_utils.wrap(module, env)
    buffer = torch.empty((0,), dtype=flat.dtype, device=flat.device)

    def step_loss(local: torch.Tensor, global_batch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal buffer
        index = local.to(flat.device)
        if buffer.shape[:1] != (len(index),):
            buffer = torch.empty((len(index), *flat.shape[1:]), dtype=flat.dtype, device=flat.device)
        batch = torch.index_select(flat, 0, index, out=buffer).to(device)  # [B, V, 2D], reused memory
        if fast:
            logits = trained(batch, flat_stats[local].to(device))[1]
        else:
            logits = trained(batch)
        loss = classification_loss(logits, sample_labels[local].to(device), config, class_weight)
        if weights is not None:
            loss = loss * weights[local].to(device)
        total = loss.sum()
        return total * (env.world_size / global_batch), total

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        named = {f"head.{k}": p for k, p in model.head.named_parameters()}
        named |= {f"aggregator.{k}": p for k, p in model.aggregator.named_parameters()}
        data_id = fingerprint or _tensor_identity(flat, sample_labels)
        start, end, total, losses, epoch_losses = _fit(
            n=flat.shape[0], step_loss=step_loss, groups=[(named, config.lr)], train_modules=[model.head, model.aggregator],
            config=config, data_id=data_id, checkpoint_dir=checkpoint_dir, env=env, on_step=on_step, max_steps=max_steps,
        )
    return _finish(model, config, start, end, total, losses, epoch_losses, began, fingerprint, version, fast)


def _tensor_identity(features: torch.Tensor, labels: torch.Tensor) -> str:
    """Cheap identity of in-memory training data (shape, labels, a strided sample of rows)."""
    digest = hashlib.sha256(f"{tuple(features.shape)}:{features.dtype}".encode())
    digest.update(labels.numpy().tobytes())
    rows = features[:: max(1, features.shape[0] // 64)].float().contiguous()
    digest.update(rows.cpu().numpy().tobytes())
    return digest.hexdigest()


# Backbone fine-tuning ------------------------------------------------------------------------------
class _FinetuneModule(nn.Module):
    """views [n·V, 3, S, S] → image logits [n], through the (partly trainable) backbone."""

    def __init__(self, model, autocast: bool):
        super().__init__()
        self.model = model
        self.autocast = autocast

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        n = views.shape[0] // self.model.config.views.num_views
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.autocast):
            feats = self.model.features(views).view(n, self.model.config.views.num_views, -1)  # [n, V, 2D]
            return self.model.head_forward(feats.float())[1].float()


def disable_rope_augmentation(backbone: nn.Module) -> list[str]:
    """Set DINOv3's train-mode RoPE jitter fields to None (random in train mode otherwise).

    Returns the names that were switched off, so a caller can say so.
    """
    changed = []
    configs = {id(m.config): m.config for m in backbone.modules() if hasattr(m, "config")}
    for config in configs.values():
        for key in ("pos_embed_rescale", "pos_embed_shift", "pos_embed_jitter"):
            if getattr(config, key, None) is not None:
                setattr(config, key, None)
                changed.append(key)
    return sorted(set(changed))


def _num_blocks(backbone: nn.Module) -> int:
    return int(backbone.config.num_hidden_layers)


def _backbone_lr(name: str, blocks: int, config: TrainConfig) -> float:
    """Layer-wise decay: the top block (and final norm) get ``backbone_lr``; each block below × decay."""
    match = _BLOCK.search(f".{name}")
    depth = blocks - 1 - int(match.group(1)) if match else (blocks if "embeddings" in name else 0)
    return config.backbone_lr * config.layer_decay**depth


def _prepare_backbone(model, config: TrainConfig) -> None:
    """Freeze, unfreeze or wrap the backbone for the mode (LoRA replaces ``model.backbone``)."""
    backbone = model.backbone
    backbone.requires_grad_(False)
    blocks = _num_blocks(backbone)
    if config.mode == "partial":
        if config.last_n_blocks > blocks:
            raise ConfigError(f"`last_n_blocks` is {config.last_n_blocks} but the backbone has {blocks} blocks.")
        for index in range(blocks - config.last_n_blocks, blocks):
            backbone_blocks(backbone)[index].requires_grad_(True)
        backbone.norm.requires_grad_(True)
        if config.train_embeddings and config.last_n_blocks == blocks:
            backbone.embeddings.requires_grad_(True)
        return
    from peft import LoraConfig, get_peft_model

    targets = config.target_modules()
    present = {name.rsplit(".", 1)[-1] for name, _ in backbone.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise ConfigError(f"`lora_targets` {missing} are not modules of this backbone.{suggest(missing[0], present)}")
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules=targets)
    model.backbone = get_peft_model(backbone, lora)


def load_training_image(item: Any) -> Any:
    """A PIL image as is, or a path opened upright RGB; an unreadable file is an error naming it."""
    from curation.media import open_rgb

    if isinstance(item, (str, Path)):
        try:
            return open_rgb(item)
        except OSError as e:
            raise InputError(f"Cannot read training image {item}: {e}.") from e
    return item


def train_finetune(
    images: Sequence,
    labels,
    config: TrainConfig,
    *,
    model,
    content_hashes: Sequence[str] | None = None,
    version: str | None = None,
    checkpoint_dir: str | Path | None = None,
    env: DistEnv = SINGLE,
    on_step: Callable[[int, float], None] | None = None,
    max_steps: int | None = None,
) -> TrainResult:
    """Fine-tune backbone (LoRA or last N blocks) + head + aggregator on validator views of images.

    Args:
        images: PIL images or paths (read when their batch comes up).
        labels: [N] 0/1.
        config: the job; ``mode`` ``lora`` or ``partial``.
        model: a :class:`~curation.stage1.model.Stage1Model`, changed in place (LoRA is merged at
            the end, so ``model.save(dir, include_backbone=True)`` writes a plain DINOv3 backbone).
        content_hashes: [N] hashes (seed the augmentations, fingerprint the data); computed from
            pixels when None.
        version, checkpoint_dir, env, on_step, max_steps: as in :func:`train_head`.
    """
    from curation.stage1.query_policies import contract_query
    from curation.stage1.views import build_views, pil_to_tensor

    began = time.perf_counter()
    if config.mode not in ("lora", "partial"):
        raise ConfigError(f"`train_finetune` trains modes `lora` and `partial`; got `{config.mode}`. Use `train_head`.")
    labels = _check_labels(labels, len(images))
    if content_hashes is None:
        content_hashes = [image_content_hash(load_training_image(im)) for im in images]
    if len(content_hashes) != len(images):
        raise InputError(f"{len(images)} images but {len(content_hashes)} content hashes.")
    fingerprint = data_fingerprint(list(content_hashes), labels.tolist())
    disable_rope_augmentation(model.backbone)
    device = model.device
    class_weight = _class_weight(labels, config)
    steps_per_epoch = math.ceil(len(images) / config.batch_size)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        _prepare_backbone(model, config)
        blocks = _num_blocks(model.backbone)
        named_backbone = {f"backbone.{k}": p for k, p in model.backbone.named_parameters() if p.requires_grad}
        groups: dict[float, dict[str, nn.Parameter]] = {}
        for name, param in named_backbone.items():
            groups.setdefault(_backbone_lr(name, blocks, config), {})[name] = param
        head = {f"head.{k}": p for k, p in model.head.named_parameters()}
        head |= {f"aggregator.{k}": p for k, p in model.aggregator.named_parameters()}
        ordered = [(head, config.lr)] + [(named, lr) for lr, named in sorted(groups.items(), reverse=True)]
        autocast = config.bf16 and device.type == "cuda"
        trained = dist_utils.wrap(_FinetuneModule(model, autocast), env)

        memo: dict[tuple[int, int], torch.Tensor] = {}
        memo_budget = [config.query_memory_mb * (1 << 20)]  # bytes left: native-resolution queries are far larger than 224²

        def query(i: int, m: int) -> torch.Tensor:
            if (i, m) in memo:
                return memo[(i, m)]
            seed = augmentation_seed(content_hashes[i], m, config.seed)
            image = load_training_image(images[i])
            tensor = pil_to_tensor(contract_query(image, seed, config.query_policy, config.validator_level))
            if tensor.numel() * tensor.element_size() <= memo_budget[0]:
                memo[(i, m)] = tensor
                memo_budget[0] -= tensor.numel() * tensor.element_size()
            return tensor

        def step_loss(local: torch.Tensor, global_batch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
            m = (step // steps_per_epoch) % config.augmentations
            tensors = [query(i, m).to(device) for i in local.tolist()]
            logits = trained(build_views(tensors, model.config.views))  # [n]
            total = classification_loss(logits, labels[local].to(device), config, class_weight).sum()
            return total * (env.world_size / global_batch), total

        try:
            start, end, total, losses, epoch_losses = _fit(
                n=len(images), step_loss=step_loss, groups=ordered, train_modules=[model],
                config=config, data_id=fingerprint, checkpoint_dir=checkpoint_dir, env=env, on_step=on_step, max_steps=max_steps,
            )
        finally:
            if config.mode == "lora":
                model.backbone = model.backbone.merge_and_unload()
            model.backbone.requires_grad_(False)
            model.eval()
    return _finish(model, config, start, end, total, losses, epoch_losses, began, fingerprint, version, False)
