"""Configuration of the StreetVision Stage-1 roadwork classifier (standalone, remote code).

This file is copied into every exported bundle and loaded by ``transformers`` (≥ 4.45) with
``trust_remote_code=True``; it imports only the standard library and ``transformers.PretrainedConfig``.

The model is a DINOv3 ViT backbone (or a timm CNN trunk) that scores a global view and ``view_grid × view_grid``
overlapping tiles of the whole image with one per-view head, then pools the view logits
(``max`` | ``topk_mean`` | ``mean`` | ``attention`` | ``learned_weights``). The image logit is
divided by ``calibration_temperature`` and shifted by ``−logit(threshold)``, so the calibrated decision
threshold lands exactly on 0.5 (validators round the returned probability at 0.5).
"""

from __future__ import annotations

import math

from transformers import AutoImageProcessor, PretrainedConfig, ViTImageProcessor
from transformers import __version__ as TRANSFORMERS_VERSION

BACKBONE_TYPES = ("dinov3", "timm")
AGGREGATORS = ("max", "topk_mean", "mean", "attention", "learned_weights")


class RoadworkConfig(PretrainedConfig):
    """Everything that rebuilds the Stage-1 model except its weights.

    Args:
        backbone_config: the architecture fields of a ``DINOv3ViTConfig`` (same names, read by
            ``dinov3_plain.DINOv3Spec``: no transformers DINOv3 class is needed); for a CNN
            (``backbone_type: timm``): ``timm_model``, ``mean``, ``std`` (the weights' input
            normalisation) and ``hidden_size``.
        backbone_type: ``dinov3`` (plain-torch ViT in ``dinov3_plain.py``) or ``timm`` (a timm CNN trunk; needs ``timm``).
        view_grid: tiles per side (0 keeps only the global view).
        view_overlap: fraction of a tile's side shared with its neighbour, in [0, 0.5).
        view_flip: also score horizontally flipped copies of every view.
        view_size: side of each square view fed to the backbone, in pixels.
        use_patch_mean: the head reads CLS ‖ mean patch token (else CLS only).
        head_hidden: hidden width of the head MLP; 0 for a linear head.
        aggregator: how view logits pool into the image logit (see ``AGGREGATORS``).
        aggregator_top_k: K of ``topk_mean`` (not ``top_k``, a generation parameter).
        attention_hidden: hidden width of the gated-attention aggregator.
        calibration_temperature: temperature scaling from calibration (raw logit / T). Named so it
            never collides with the generation parameter ``temperature``.
        threshold: calibrated decision threshold on p_roadwork; mapped to 0.5 in the output.
        max_views_per_forward: most views per backbone forward in eager mode (memory bound).
        model_version: semantic version X.Y.Z of the weights.
        trained: False for random (untrained) weights, whose predictions are meaningless.
        data_fingerprint: hash of the training data manifest.
    """

    model_type = "roadwork_stage1"

    def __init__(
        self,
        backbone_config: dict | None = None,
        backbone_type: str = "dinov3",
        view_grid: int = 3,
        view_overlap: float = 0.125,
        view_flip: bool = False,
        view_size: int = 224,
        use_patch_mean: bool = True,
        head_hidden: int = 0,
        aggregator: str = "topk_mean",
        aggregator_top_k: int = 2,
        attention_hidden: int = 64,
        calibration_temperature: float = 1.0,
        threshold: float = 0.5,
        max_views_per_forward: int = 64,
        model_version: str = "0.0.0",
        trained: bool = False,
        data_fingerprint: str = "",
        **kwargs,
    ):
        if aggregator not in AGGREGATORS:
            raise ValueError(f"`aggregator` must be one of {AGGREGATORS}; got {aggregator!r}.")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"`threshold` must be in (0, 1); got {threshold!r}.")
        if not (float(calibration_temperature) > 0 and math.isfinite(float(calibration_temperature))):
            raise ValueError(f"`calibration_temperature` must be a positive number; got {calibration_temperature!r}.")
        if not 0 <= int(view_grid) <= 8 or not 0.0 <= float(view_overlap) < 0.5:
            raise ValueError(
                f"`view_grid` must be in [0, 8] and `view_overlap` in [0, 0.5); got {view_grid}, {view_overlap}."
            )
        if backbone_type not in BACKBONE_TYPES:
            raise ValueError(f"`backbone_type` must be one of {BACKBONE_TYPES}; got {backbone_type!r}.")
        self.backbone_config = dict(backbone_config or {})
        self.backbone_type = backbone_type
        self.view_grid = int(view_grid)
        self.view_overlap = float(view_overlap)
        self.view_flip = bool(view_flip)
        self.view_size = int(view_size)
        self.use_patch_mean = bool(use_patch_mean)
        self.head_hidden = int(head_hidden)
        self.aggregator = aggregator
        self.aggregator_top_k = int(aggregator_top_k)
        self.attention_hidden = int(attention_hidden)
        self.calibration_temperature = float(calibration_temperature)
        self.threshold = float(threshold)
        self.max_views_per_forward = int(max_views_per_forward)
        self.model_version = str(model_version)
        self.trained = bool(trained)
        self.data_fingerprint = str(data_fingerprint)
        kwargs.setdefault("id2label", {0: "None", 1: "Roadwork"})
        kwargs.setdefault("label2id", {"None": 0, "Roadwork": 1})
        # No problem_type: the pipeline then softmaxes the two log-probabilities into [1 − p, p] in every
        # release, whereas transformers 4.45's image-classification pipeline applies a per-logit sigmoid
        # to "single_label_classification" (fixed later). The model's loss does not read it.
        kwargs["problem_type"] = None
        super().__init__(**kwargs)

    @property
    def num_views(self) -> int:
        return (1 + self.view_grid * self.view_grid) * (2 if self.view_flip else 1)

    @property
    def logit_shift(self) -> float:
        """−logit(threshold): added to the calibrated logit so ``p ≥ threshold`` ⇔ output ≥ 0.5."""
        return -math.log(self.threshold / (1.0 - self.threshold))


# transformers 4.x builds a pipeline's image processor only for config classes it knows, so
# `pipeline("image-classification", model=BUNDLE, trust_remote_code=True)` would get none (4.45:
# "'NoneType' object is not callable"). Registering the processor class named in the bundle's
# preprocessor_config.json fixes that. 5.x reads that file anyway (registering there only adds a
# backend warning), so it is left alone.
if int(TRANSFORMERS_VERSION.split(".")[0]) < 5:
    AutoImageProcessor.register(RoadworkConfig, slow_image_processor_class=ViTImageProcessor, exist_ok=True)
