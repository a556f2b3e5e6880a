"""StreetVision Stage-1 roadwork classifier as a standalone ``transformers`` model (remote code).

Copied into every exported bundle; imports only the standard library, ``torch`` and
``transformers`` (never the curation platform), plus ``timm`` for a CNN backbone
(``backbone_type: timm``). The DINOv3 backbone is the bundle's own plain-torch ``dinov3_plain.py``,
never transformers' DINOv3 classes (which exist only from 4.56), so the bundle loads with
transformers ≥ 4.45, the StreetVision miner's pin, through the newest release. A miner loads it with::

    from transformers import pipeline
    clf = pipeline("image-classification", model=BUNDLE_DIR, trust_remote_code=True)
    p_roadwork = {r["label"]: r["score"] for r in clf(image)}["Roadwork"]

Input: ``pixel_values`` [N, 3, H, W], RGB in [0, 1] at the image's own resolution (the bundle's
image processor only converts and rescales; it does not resize, crop or normalise). The model
builds its views itself: a global view plus ``g × g`` overlapping tiles (optional flips), each
cut from the full-resolution image, resized to ``view_size`` with bilinear interpolation
(antialiased when a side shrinks) and normalised with ImageNet statistics; all views of all
images go through the backbone in one batch. A DINOv3 view feature is CLS ‖ mean patch token; a
CNN's is average pool ‖ max pool of its last feature map.

Output logits are ``[log(1 − p), log p]`` with ``p = sigmoid(raw / temperature − logit(threshold))``,
so softmax (what the pipeline applies to two labels) gives ``[1 − p, p]`` and the calibrated
threshold sits exactly at p = 0.5, where validators round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_roadwork import RoadworkConfig
from .dinov3_plain import PlainDINOv3ViT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def view_pixel_boxes(grid: int, overlap: float, width: int, height: int, flip: bool = False) -> list[list[int]]:
    """Integer crop boxes ``[x0, y0, x1, y1]`` (end-exclusive): the global view, then tiles row-major.

    ``grid`` tiles of side ``w`` with stride ``w·(1 − overlap)`` exactly span the image; tile edges
    are floored/ceiled outwards so neighbours never leave a gap and every tile has ≥ 1 pixel.
    """
    boxes = [[0, 0, width, height]]
    if grid:
        side = 1.0 / (grid - (grid - 1) * overlap)
        stride = side * (1.0 - overlap)
        for r in range(grid):
            for c in range(grid):
                x0 = math.floor(c * stride * width + 1e-9)
                y0 = math.floor(r * stride * height + 1e-9)
                x1 = min(width, max(x0 + 1, math.ceil((c * stride + side) * width - 1e-9)))
                y1 = min(height, max(y0 + 1, math.ceil((r * stride + side) * height - 1e-9)))
                boxes.append([x0, y0, x1, y1])
    return boxes + boxes if flip else boxes


class RoadworkTimmTrunk(nn.Module):
    """A timm CNN trunk under the platform's names (``embeddings``, ``layer``, ``norm``), so its
    weights load as saved. Takes ImageNet-normalised views and converts them to the weights' own
    normalisation; returns average pool ‖ max pool of the last feature map."""

    def __init__(self, backbone_config: dict):
        super().__init__()
        import timm  # only CNN bundles need it (declared in the bundle's requirements)

        trunk = timm.create_model(backbone_config["timm_model"], pretrained=False, num_classes=0)
        self.embeddings = nn.Sequential(trunk.conv_stem, trunk.bn1)
        self.layer = nn.ModuleList(block for stage in trunk.blocks for block in stage)
        self.norm = nn.Sequential(trunk.conv_head, trunk.bn2)
        mean, std = backbone_config["mean"], backbone_config["std"]
        # Plain floats, not buffers: the model may be built on the meta device, and constants
        # are not restored by `from_pretrained`.
        self.scale = [s0 / s1 for s0, s1 in zip(IMAGENET_STD, std)]
        self.shift = [(m0 - m1) / s1 for m0, m1, s1 in zip(IMAGENET_MEAN, mean, std)]

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """Views [B, 3, S, S] → [B, 2D] float32."""
        scale = torch.tensor(self.scale, dtype=views.dtype, device=views.device).view(1, 3, 1, 1)
        shift = torch.tensor(self.shift, dtype=views.dtype, device=views.device).view(1, 3, 1, 1)
        x = self.embeddings((views * scale + shift).contiguous(memory_format=torch.channels_last))  # faster on CPUs
        for block in self.layer:
            x = block(x)
        x = self.norm(x)  # [B, D, h, w]
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=-1).float()


class RoadworkViewHead(nn.Module):
    """LayerNorm then a linear layer (or a one-hidden-layer MLP): per-view feature → logit."""

    def __init__(self, config: RoadworkConfig, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.use_patch_mean = config.use_patch_mean
        in_dim = hidden_size * (2 if config.use_patch_mean else 1)
        self.norm = nn.LayerNorm(in_dim)
        if config.head_hidden:
            self.mlp = nn.Sequential(
                nn.Linear(in_dim, config.head_hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(config.head_hidden, 1)
            )
        else:
            self.mlp = nn.Sequential(nn.Dropout(0.0), nn.Linear(in_dim, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [.., 2D] (CLS ‖ mean patch) → logits [..]."""
        x = features if self.use_patch_mean else features[..., : self.hidden_size]
        return self.mlp(self.norm(x)).squeeze(-1)


class RoadworkGatedAttention(nn.Module):
    """Gated attention MIL weights (Ilse et al. 2018): features [N, V, F] → weights [N, V]."""

    def __init__(self, feature_dim: int, hidden: int):
        super().__init__()
        self.tanh_branch = nn.Linear(feature_dim, hidden)
        self.gate_branch = nn.Linear(feature_dim, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        gated = torch.tanh(self.tanh_branch(features)) * torch.sigmoid(self.gate_branch(features))  # [N, V, H]
        return torch.softmax(self.score(gated).squeeze(-1), dim=-1)  # [N, V]


class RoadworkLearnedViewWeights(nn.Module):
    """One learned weight per view position: softmax of learned scores → [V]."""

    def __init__(self, num_views: int):
        super().__init__()
        self.scores = nn.Parameter(torch.zeros(num_views))

    def forward(self) -> torch.Tensor:
        return torch.softmax(self.scores, dim=0)


class RoadworkAggregator(nn.Module):
    """View logits [N, V] (and features [N, V, F]) → image logit [N]."""

    def __init__(self, config: RoadworkConfig, feature_dim: int):
        super().__init__()
        self.kind = config.aggregator
        self.top_k = config.aggregator_top_k
        self.attention = (
            RoadworkGatedAttention(feature_dim, config.attention_hidden) if self.kind == "attention" else None
        )
        self.view_weights = RoadworkLearnedViewWeights(config.num_views) if self.kind == "learned_weights" else None

    def forward(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return logits.max(dim=-1).values
        if self.kind == "topk_mean":
            return logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).values.mean(dim=-1)
        if self.kind == "mean":
            return logits.mean(dim=-1)
        weights = self.attention(features) if self.attention is not None else self.view_weights().expand_as(logits)
        return (logits * weights).sum(dim=-1)


@dataclass
class RoadworkClassifierOutput(ModelOutput):
    """Calibrated, threshold-shifted logits [N, 2] plus the evidence behind them.

    Attributes:
        loss: cross-entropy against ``labels`` when given.
        logits: ``[log(1 − p), log p]`` per image; softmax gives [P(None), P(Roadwork)].
        roadwork_logit: ``raw / temperature − logit(threshold)`` [N]; p = sigmoid of it.
        raw_logit: the aggregated image logit before temperature and shift [N].
        view_logits: per-view logits before temperature [N, V] (global, tiles row-major, flips).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    roadwork_logit: torch.Tensor | None = None
    raw_logit: torch.Tensor | None = None
    view_logits: torch.Tensor | None = None


class RoadworkPreTrainedModel(PreTrainedModel):
    config_class = RoadworkConfig
    base_model_prefix = "roadwork"
    main_input_name = "pixel_values"
    _no_split_modules: ClassVar[list[str]] = ["PlainDINOv3Embeddings", "PlainDINOv3Layer"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        # Only reached for weights missing from the checkpoint (a fresh, untrained model).
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, RoadworkLearnedViewWeights):
            nn.init.zeros_(module.scores)


class RoadworkForImageClassification(RoadworkPreTrainedModel):
    """DINOv3 backbone + per-view head + view aggregator, with the views built inside the model."""

    def __init__(self, config: RoadworkConfig):
        super().__init__(config)
        if getattr(config, "backbone_type", "dinov3") == "timm":
            self.backbone = RoadworkTimmTrunk(config.backbone_config)
            hidden = int(config.backbone_config["hidden_size"])
            self.num_prefix_tokens = 0
        else:
            self.backbone = PlainDINOv3ViT(config.backbone_config)
            hidden = self.backbone.spec.hidden_size
            self.num_prefix_tokens = self.backbone.num_prefix_tokens
        self.head = RoadworkViewHead(config, hidden)
        self.aggregator = RoadworkAggregator(config, 2 * hidden)
        self.post_init()

    def build_views(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] → normalised views [N, V, 3, S, S] (image-major, view order of the boxes)."""
        cfg = self.config
        height, width = int(pixel_values.shape[-2]), int(pixel_values.shape[-1])
        boxes = view_pixel_boxes(cfg.view_grid, cfg.view_overlap, width, height)
        size = cfg.view_size
        crops = [
            F.interpolate(
                pixel_values[:, :, y0:y1, x0:x1],
                size=(size, size),
                mode="bilinear",
                antialias=max(x1 - x0, y1 - y0) > size,  # antialias only where a side shrinks
                align_corners=False,
            )
            for x0, y0, x1, y1 in boxes
        ]
        views = torch.stack(crops, dim=1)  # [N, V', 3, S, S]
        if cfg.view_flip:
            views = torch.cat([views, views.flip(-1)], dim=1)  # [N, V, 3, S, S]
        # Constants, not buffers: non-persistent buffers are not restored by `from_pretrained`.
        mean = torch.tensor(IMAGENET_MEAN, dtype=views.dtype, device=views.device).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=views.dtype, device=views.device).view(1, 1, 3, 1, 1)
        return (views - mean) / std

    def view_features(self, views: torch.Tensor) -> torch.Tensor:
        """Views [B, 3, S, S] → [B, 2D] float32 (CLS ‖ mean patch, or avg ‖ max pool; chunked only in eager mode)."""
        chunk = self.config.max_views_per_forward
        if torch.compiler.is_compiling() or views.shape[0] <= chunk:
            chunks = [views]
        else:
            chunks = [views[i : i + chunk] for i in range(0, views.shape[0], chunk)]
        outs = []
        for part in chunks:
            if isinstance(self.backbone, RoadworkTimmTrunk):
                outs.append(self.backbone(part))
                continue
            tokens = self.backbone(part)  # [b, 1 + registers + patches, D]
            patch_mean = tokens[:, self.num_prefix_tokens :, :].mean(dim=1)  # [b, D]
            outs.append(torch.cat([tokens[:, 0], patch_mean], dim=-1).float())  # [b, 2D]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> RoadworkClassifierOutput | tuple:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3 or not pixel_values.is_floating_point():
            raise ValueError(
                "`pixel_values` must be a float tensor [N, 3, H, W], RGB in [0, 1] (the bundle's image processor "
                f"output); got {pixel_values.dtype} {tuple(pixel_values.shape)}."
            )
        n = pixel_values.shape[0]
        views = self.build_views(pixel_values.float())  # [N, V, 3, S, S]
        v = views.shape[1]
        dtype = next(self.backbone.parameters()).dtype
        feats = self.view_features(views.reshape(n * v, *views.shape[2:]).to(dtype)).reshape(n, v, -1)  # [N, V, 2D]
        feats = feats.to(self.head.norm.weight.dtype)  # a model loaded in bf16/fp16 keeps working
        view_logits = self.head(feats).float()  # [N, V]
        raw = self.aggregator(view_logits, feats).float()  # [N]
        z = raw / self.config.calibration_temperature + self.config.logit_shift  # [N]
        logits = torch.stack([F.logsigmoid(-z), F.logsigmoid(z)], dim=-1)  # [N, 2]
        loss = F.cross_entropy(logits, labels.long()) if labels is not None else None
        return_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        if not return_dict:
            out = (logits, z, raw, view_logits)
            return ((loss,) + out) if loss is not None else out
        return RoadworkClassifierOutput(
            loss=loss, logits=logits, roadwork_logit=z, raw_logit=raw, view_logits=view_logits
        )
