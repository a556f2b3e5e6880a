"""DINOv3 ViT in plain PyTorch (inference only), under ``transformers.DINOv3ViTModel``'s parameter names.

Why: transformers has DINOv3 classes only from 4.56 on, while the StreetVision miner environment pins
transformers ~4.45. This module needs nothing but ``torch`` (≥ 2.0 for ``scaled_dot_product_attention``),
so a bundle scores identically with any transformers version, and the weights the platform exports
from a ``DINOv3ViTModel`` load unchanged: ``embeddings.{cls_token, mask_token, register_tokens,
patch_embeddings}``, ``model.layer.<i>.{norm1, attention.{q,k,v,o}_proj, layer_scale1, norm2,
mlp.{gate,up,down}_proj, layer_scale2}``, ``norm`` (transformers 5.x names).

The math follows transformers' ``modeling_dinov3_vit.py``: tokens are ``[CLS, registers…, patches…]``;
every block is pre-norm attention and MLP, each scaled per channel (layer scale) and added back; the
2D rotary position embedding rotates the queries and keys of patch tokens only (CLS and registers
carry no position); a final LayerNorm. Training-only parts (masking, drop path, RoPE jitter) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# The activations DINOv3 checkpoints use ("gelu": ViT-S/B/L; "silu": the gated MLP of ViT-H+/7B), by
# their transformers names; "gelu" there is the exact erf GELU.
ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "relu": nn.ReLU,
}


@dataclass(frozen=True)
class DINOv3Spec:
    """The architecture fields of a ``DINOv3ViTConfig`` (same names and defaults); others are ignored."""

    patch_size: int = 16
    hidden_size: int = 384
    intermediate_size: int = 1536
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    rope_theta: float = 100.0
    num_channels: int = 3
    query_bias: bool = True
    key_bias: bool = False
    value_bias: bool = True
    proj_bias: bool = True
    mlp_bias: bool = True
    layerscale_value: float = 1.0
    use_gated_mlp: bool = False
    num_register_tokens: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DINOv3Spec:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known and v is not None}
        patch = values.get("patch_size", cls.patch_size)
        if isinstance(patch, (list, tuple)):  # a square [p, p] is what DINOv3 uses
            if len(set(patch)) != 1:
                raise ValueError(f"Only square patches are supported; got patch_size={patch!r}.")
            values["patch_size"] = int(patch[0])
        spec = cls(**values)
        if spec.hidden_act not in ACTIVATIONS:
            raise ValueError(f"Unsupported hidden_act {spec.hidden_act!r}; supported: {sorted(ACTIVATIONS)}.")
        return spec

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def rope_cos_sin(spec: DINOv3Spec, rows: int, cols: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [rows·cols, head_dim] of DINOv3's 2D RoPE for a rows × cols patch grid (float32).

    Patch centres are normalised to [-1, 1] per axis; a quarter of the head dim rotates with y, a
    quarter with x, at frequencies ``theta^(-4k/head_dim)``; the half is then tiled twice to pair
    with ``rotate_half``. Computed per call (cheap) instead of held in a buffer, because
    non-persistent buffers are not restored when transformers builds the model on the meta device.
    """
    inv_freq = 1.0 / spec.rope_theta ** torch.arange(0, 1, 4 / spec.head_dim, dtype=torch.float32, device=device)
    ys = torch.arange(0.5, rows, dtype=torch.float32, device=device) / rows
    xs = torch.arange(0.5, cols, dtype=torch.float32, device=device) / cols
    coords = 2.0 * torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).flatten(0, 1) - 1.0  # [HW, 2] (y, x)
    angles = (2 * math.pi * coords[:, :, None] * inv_freq[None, None, :]).flatten(1, 2).tile(2)  # [HW, head_dim]
    return torch.cos(angles), torch.sin(angles)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class PlainDINOv3Embeddings(nn.Module):
    """Patch embedding (a strided conv), preceded by the CLS token and the register tokens."""

    def __init__(self, spec: DINOv3Spec):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, spec.hidden_size))  # pre-training only; kept so names match
        self.register_tokens = nn.Parameter(torch.zeros(1, spec.num_register_tokens, spec.hidden_size))
        self.patch_embeddings = nn.Conv2d(spec.num_channels, spec.hidden_size, spec.patch_size, stride=spec.patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] → tokens [B, 1 + registers + patches, D]."""
        patches = self.patch_embeddings(pixel_values).flatten(2).transpose(1, 2)
        batch = pixel_values.shape[0]
        return torch.cat([self.cls_token.expand(batch, -1, -1), self.register_tokens.expand(batch, -1, -1), patches], dim=1)


class PlainDINOv3Attention(nn.Module):
    """Multi-head self-attention with RoPE on the patch tokens' queries and keys."""

    def __init__(self, spec: DINOv3Spec):
        super().__init__()
        d = spec.hidden_size
        self.num_heads, self.head_dim = spec.num_attention_heads, spec.head_dim
        self.q_proj = nn.Linear(d, d, bias=spec.query_bias)
        self.k_proj = nn.Linear(d, d, bias=spec.key_bias)
        self.v_proj = nn.Linear(d, d, bias=spec.value_bias)
        self.o_proj = nn.Linear(d, d, bias=spec.proj_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = (
            proj(x).view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )  # [B, heads, T, head_dim]
        prefix = tokens - cos.shape[0]  # CLS + registers: no rotation
        q = torch.cat([q[:, :, :prefix], q[:, :, prefix:] * cos + rotate_half(q[:, :, prefix:]) * sin], dim=2)
        k = torch.cat([k[:, :, :prefix], k[:, :, prefix:] * cos + rotate_half(k[:, :, prefix:]) * sin], dim=2)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head_dim), as transformers' sdpa path
        return self.o_proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class PlainDINOv3LayerScale(nn.Module):
    def __init__(self, spec: DINOv3Spec):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.full((spec.hidden_size,), float(spec.layerscale_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.lambda1


class PlainDINOv3MLP(nn.Module):
    """``down(act(up(x)))``, or the gated (SwiGLU-style) ``down(act(gate(x)) · up(x))`` when ``use_gated_mlp``."""

    def __init__(self, spec: DINOv3Spec):
        super().__init__()
        d, hidden, bias = spec.hidden_size, spec.intermediate_size, spec.mlp_bias
        self.gate_proj = nn.Linear(d, hidden, bias=bias) if spec.use_gated_mlp else None
        self.up_proj = nn.Linear(d, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, d, bias=bias)
        self.act_fn = ACTIVATIONS[spec.hidden_act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_proj is not None:
            return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(self.act_fn(self.up_proj(x)))


class PlainDINOv3Layer(nn.Module):
    """Pre-norm block: x + ls1·attn(norm1(x)), then x + ls2·mlp(norm2(x))."""

    def __init__(self, spec: DINOv3Spec):
        super().__init__()
        self.norm1 = nn.LayerNorm(spec.hidden_size, eps=spec.layer_norm_eps)
        self.attention = PlainDINOv3Attention(spec)
        self.layer_scale1 = PlainDINOv3LayerScale(spec)
        self.norm2 = nn.LayerNorm(spec.hidden_size, eps=spec.layer_norm_eps)
        self.mlp = PlainDINOv3MLP(spec)
        self.layer_scale2 = PlainDINOv3LayerScale(spec)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale1(self.attention(self.norm1(x), cos, sin))
        return x + self.layer_scale2(self.mlp(self.norm2(x)))


class PlainDINOv3Encoder(nn.Module):
    """Holds the blocks as ``layer`` so their names read ``model.layer.<i>`` as in ``DINOv3ViTModel``."""

    def __init__(self, spec: DINOv3Spec):
        super().__init__()
        self.layer = nn.ModuleList(PlainDINOv3Layer(spec) for _ in range(spec.num_hidden_layers))


class PlainDINOv3ViT(nn.Module):
    """DINOv3 ViT backbone: views [B, C, H, W] (normalised) → final-norm tokens [B, 1 + registers + patches, D]."""

    def __init__(self, backbone_config: Mapping[str, Any]):
        super().__init__()
        self.spec = DINOv3Spec.from_dict(backbone_config)
        self.num_prefix_tokens = 1 + self.spec.num_register_tokens
        self.embeddings = PlainDINOv3Embeddings(self.spec)
        self.model = PlainDINOv3Encoder(self.spec)
        self.norm = nn.LayerNorm(self.spec.hidden_size, eps=self.spec.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        weight = self.embeddings.patch_embeddings.weight
        pixel_values = pixel_values.to(weight.dtype)
        patch = self.spec.patch_size
        cos, sin = rope_cos_sin(self.spec, pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch, weight.device)
        cos, sin = cos.to(weight.dtype), sin.to(weight.dtype)
        x = self.embeddings(pixel_values)
        for block in self.model.layer:
            x = block(x, cos, sin)
        return self.norm(x)
