"""The Stage-1 model: DINOv3 backbone + per-view head + MIL aggregator, with versions on disk.

Inference is one batched backbone forward over every view of every image (chunked only by
``max_batch``), then the head and the aggregator on the features. Training code uses the tensor
level (:meth:`Stage1Model.features` to fill a feature cache, :meth:`Stage1Model.head_forward` to
train heads on it in seconds); plugins use :meth:`Stage1Model.predict` on PIL images.

A saved model is a directory:
    stage1.json        format tag, :class:`Stage1Config`, backbone width, number of views
    head.safetensors   head and aggregator weights
    backbone/          ``save_pretrained`` copy of the backbone, when it is not a published
                       checkpoint (random presets, fine-tuned backbones); loads offline

Example:
    >>> from PIL import Image
    >>> from curation.stage1.model import Stage1Config, Stage1Model
    >>> model = Stage1Model.build(Stage1Config(backbone="tiny-random"))
    >>> pred = model.predict([Image.new("RGB", (320, 240), "gray")])[0]
    >>> pred.label in ("roadwork", "no_roadwork"), len(pred.view_probs), pred.trained
    (True, 10, False)
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from curation.errors import ConfigError, InputError
from curation.schema import Label
from curation.stage1.aggregate import Aggregator, check_aggregator
from curation.stage1.backbone import (
    ATTN_IMPLEMENTATIONS,
    DTYPES,
    TINY_RANDOM,
    backbone_features,
    backbone_label,
    hidden_size_of,
    load_backbone,
)
from curation.stage1.features import gate_feature_dict, gate_features
from curation.stage1.head import ViewHead
from curation.stage1.views import ViewPolicy, build_views, pil_to_tensor, view_boxes
from curation.typed_config import from_mapping

FORMAT = "curation.stage1/1"
CONFIG_FILE = "stage1.json"
WEIGHTS_FILE = "head.safetensors"
BACKBONE_DIR = "backbone"
_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@dataclass(frozen=True)
class Stage1Config:
    """Everything that defines a Stage-1 model except its weights.

    Attributes:
        backbone: preset name (``models/presets``), Hub id, local directory or ``tiny-random``.
        views: the view policy; a trained head is only valid for the policy it was trained on.
        use_patch_mean: the head reads CLS ‖ mean patch token instead of CLS alone.
        head_hidden: MLP hidden width of the head; 0 for a linear probe.
        head_dropout: dropout in the head (training only).
        aggregator: ``max`` | ``topk_mean`` | ``mean`` | ``attention`` | ``learned_weights``.
        top_k: K of ``topk_mean`` and the number of evidence views reported.
        attention_hidden: hidden width of the gated-attention aggregator.
        threshold: decision threshold on the calibrated p_roadwork.
        temperature: logit temperature from calibration (1 = uncalibrated).
        version: semantic version ``X.Y.Z`` of this model.
        trained: True only for weights produced by training; random weights are never trained.
        data_fingerprint: hash of the training data (split manifest); empty when untrained.
        max_batch: most views per backbone forward (memory bound, not a per-image loop).
        dtype: backbone weights dtype (``float32``, ``bfloat16``, ``float16``).
        attn_implementation: transformers attention backend (``sdpa``, ``eager``, ...).
    """

    backbone: str = TINY_RANDOM
    views: ViewPolicy = field(default_factory=ViewPolicy)
    use_patch_mean: bool = True
    head_hidden: int = 0
    head_dropout: float = 0.0
    aggregator: str = "topk_mean"
    top_k: int = 2
    attention_hidden: int = 64
    threshold: float = 0.5
    temperature: float = 1.0
    version: str = "0.0.0"
    trained: bool = False
    data_fingerprint: str = ""
    max_batch: int = 64
    dtype: str = "float32"
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        check_aggregator(self.aggregator)
        if not _VERSION.match(str(self.version)):
            raise ConfigError(f"`version` must be semantic X.Y.Z (e.g. 1.2.0); got {self.version!r}.")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"`threshold` must be in (0, 1); got {self.threshold}.")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"`temperature` must be a positive number; got {self.temperature}.")
        for key in ("top_k", "max_batch", "attention_hidden"):
            if getattr(self, key) < 1:
                raise ConfigError(f"`{key}` must be ≥ 1; got {getattr(self, key)}.")
        if self.dtype not in DTYPES:
            raise ConfigError(f"`dtype` must be one of {sorted(DTYPES)}; got {self.dtype!r}.")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ConfigError(
                f"`attn_implementation` must be one of {ATTN_IMPLEMENTATIONS}; got {self.attn_implementation!r}."
            )
        if self.trained and not self.data_fingerprint:
            raise ConfigError("A trained model needs its `data_fingerprint` (which data it was trained on).")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str) -> Stage1Config:
        """Parse a mapping (JSON/YAML); unknown keys are rejected with the nearest valid key."""
        values = dict(values)
        if isinstance(values.get("views"), dict):
            values["views"] = from_mapping(ViewPolicy, values["views"], source=f"{source}: `views`")
        return from_mapping(cls, values, source=source)

    def replace(self, **changes: Any) -> Stage1Config:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Stage1Output:
    """Tensor-level result for N images with V views each (raw logits, before temperature)."""

    view_logits: torch.Tensor  # [N, V]
    image_logits: torch.Tensor  # [N]
    features: torch.Tensor  # [N, V, 2D]


@dataclass(frozen=True)
class Stage1Prediction:
    """What Stage-1 says about one image; the dataset's ``stage1*`` fields are built from this.

    ``confidence`` is the probability of the predicted label (what FiftyOne's PR curves read);
    ``logits`` is [log(1−p), log p] (two logits, so Brain hardness is non-zero).
    """

    p_roadwork: float
    threshold: float  # the decision threshold ``label`` was taken at (mining centres uncertainty on it)
    label: str
    confidence: float
    logits: tuple[float, float]
    view_probs: np.ndarray  # [V] after temperature
    view_logits: np.ndarray  # [V] before temperature: recalibrating needs no new forward
    view_boxes: np.ndarray  # [V, 4] relative [x, y, w, h]
    evidence_views: tuple[int, ...]
    gate_features: dict[str, float]
    embedding: np.ndarray  # [D] global-view CLS token
    model_version: str
    trained: bool


class Stage1Model(nn.Module):
    """Backbone + per-view head + aggregator. Build with :meth:`build` or :meth:`load`."""

    def __init__(self, config: Stage1Config, backbone: nn.Module):
        super().__init__()
        self.config = config
        self.backbone = backbone
        hidden = hidden_size_of(backbone)
        self.head = ViewHead(
            hidden, use_patch_mean=config.use_patch_mean, mlp_hidden=config.head_hidden, dropout=config.head_dropout
        )
        self.aggregator = Aggregator(
            config.aggregator,
            num_views=config.views.num_views,
            feature_dim=2 * hidden,
            top_k=config.top_k,
            attention_hidden=config.attention_hidden,
        )

    # Construction --------------------------------------------------------------------------------
    @classmethod
    def build(
        cls, config: Stage1Config, *, backbone: nn.Module | None = None, device: str = "cpu", seed: int = 0
    ) -> Stage1Model:
        """A model with a freshly initialised (untrained) head on the configured backbone.

        Raises:
            ConfigError: ``config.trained`` is True; fresh weights are never trained, use :meth:`load`.
        """
        if config.trained:
            raise ConfigError("`trained=True` with freshly initialised head weights; load a saved model instead.")
        backbone = backbone or load_backbone(
            config.backbone, dtype=config.dtype, attn_implementation=config.attn_implementation, device=device
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config, backbone)
        return model.to(device).eval()

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

    @property
    def hidden_size(self) -> int:
        return hidden_size_of(self.backbone)

    def mark_trained(self, *, version: str, data_fingerprint: str) -> None:
        """Record that the current weights came from training on ``data_fingerprint``."""
        self.config = self.config.replace(trained=True, version=version, data_fingerprint=data_fingerprint)

    def set_calibration(self, *, threshold: float, temperature: float) -> None:
        self.config = self.config.replace(threshold=threshold, temperature=temperature)

    def __repr__(self) -> str:
        status = "trained" if self.config.trained else "UNTRAINED: random head, predictions are meaningless"
        return (
            f"Stage1Model(backbone={backbone_label(self.backbone, self.config.backbone)!r}, views={self.config.views.num_views}, "
            f"aggregator={self.config.aggregator!r}, version={self.config.version}, {status})"
        )

    # Tensor level ------------------------------------------------------------------------------------
    def features(self, views: torch.Tensor) -> torch.Tensor:
        """Normalised views [B, 3, S, S] → per-view features [B, 2D] (CLS ‖ mean patch), float32."""
        return backbone_features(self.backbone, views, max_batch=self.config.max_batch)

    def head_forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-view features [N, V, 2D] → (view logits [N, V], image logits [N]), before temperature."""
        if features.dim() != 3 or features.shape[1] != self.config.views.num_views:
            raise InputError(
                f"`features` must be [N, {self.config.views.num_views}, 2D] for this view policy; "
                f"got {tuple(features.shape)}."
            )
        view_logits = self.head(features)  # [N, V]
        return view_logits, self.aggregator(view_logits, features)

    def forward_images(self, images: list[torch.Tensor]) -> Stage1Output:
        """uint8 images [3, H, W] → logits, with ONE batched backbone pass over all their views."""
        views = build_views([im.to(self.device) for im in images], self.config.views)  # [N·V, 3, S, S]
        feats = self.features(views).view(len(images), self.config.views.num_views, -1)  # [N, V, 2D]
        view_logits, image_logits = self.head_forward(feats)
        return Stage1Output(view_logits=view_logits, image_logits=image_logits, features=feats)

    # Image level -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, images: list) -> list[Stage1Prediction]:
        """Predict PIL images (any size); returns one :class:`Stage1Prediction` per image."""
        if not images:
            return []
        was_training = self.training
        self.eval()
        try:
            out = self.forward_images([pil_to_tensor(im) for im in images])
        finally:
            self.train(was_training)
        return self.predictions(out, [(im.width, im.height) for im in images])

    def predictions(self, out: Stage1Output, sizes: Sequence[tuple[int, int]]) -> list[Stage1Prediction]:
        """Calibrated predictions from a forward's logits; ``sizes`` are the images' (width, height).

        Shared by :meth:`predict` and the bulk loader of :mod:`curation.stage1.serving`, which
        forwards decoded files without ever holding PIL images.
        """
        if len(sizes) != out.image_logits.shape[0]:
            raise InputError(f"{len(sizes)} image sizes for {out.image_logits.shape[0]} forwarded images.")
        cfg = self.config
        raw_view_logits = out.view_logits.double().cpu().numpy()  # [N, V]
        view_probs = torch.sigmoid(out.view_logits / cfg.temperature).double().cpu().numpy()  # [N, V]
        z = (out.image_logits / cfg.temperature).double().cpu()  # [N]
        p = torch.sigmoid(z).numpy()
        log_neg, log_pos = F.logsigmoid(-z).numpy(), F.logsigmoid(z).numpy()
        gates = gate_features(view_probs, p, threshold=cfg.threshold, top_k=cfg.top_k, flip=cfg.views.flip)
        embeddings = out.features[:, 0, : self.hidden_size].cpu().numpy()  # [N, D] global CLS
        evidence = 1 if cfg.aggregator == "max" else cfg.top_k
        predictions = []
        for i, (width, height) in enumerate(sizes):
            positive = bool(p[i] >= cfg.threshold)
            predictions.append(
                Stage1Prediction(
                    p_roadwork=float(p[i]),
                    threshold=float(cfg.threshold),
                    label=str(Label.ROADWORK if positive else Label.NO_ROADWORK),
                    confidence=float(p[i] if positive else 1.0 - p[i]),
                    logits=(float(log_neg[i]), float(log_pos[i])),
                    view_probs=view_probs[i],
                    view_logits=raw_view_logits[i],
                    view_boxes=view_boxes(cfg.views, width, height),
                    evidence_views=tuple(int(v) for v in np.argsort(-view_probs[i], kind="stable")[:evidence]),
                    gate_features=gate_feature_dict(gates[i], cfg.views.flip),
                    embedding=embeddings[i],
                    model_version=cfg.version,
                    trained=cfg.trained,
                )
            )
        return predictions

    # Versions on disk -------------------------------------------------------------------------------
    def save(self, directory: str | Path, *, include_backbone: bool | None = None) -> Path:
        """Write the model directory (see module docstring).

        Args:
            include_backbone: copy the backbone weights; default only for ``tiny-random`` (random
                weights cannot be re-downloaded). Pass True after fine-tuning the backbone.
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        include_backbone = self.config.backbone == TINY_RANDOM if include_backbone is None else include_backbone
        if include_backbone:
            self.backbone.save_pretrained(directory / BACKBONE_DIR)
        state = {k: v.detach().cpu().contiguous() for k, v in self._head_state().items()}
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT, "version": self.config.version})
        record = {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "hidden_size": self.hidden_size,
            "num_views": self.config.views.num_views,
            "backbone_saved": include_backbone,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
        return directory

    def _head_state(self) -> dict[str, torch.Tensor]:
        return {f"head.{k}": v for k, v in self.head.state_dict().items()} | {
            f"aggregator.{k}": v for k, v in self.aggregator.state_dict().items()
        }

    @classmethod
    def load(cls, directory: str | Path, *, backbone: nn.Module | None = None, device: str = "cpu") -> Stage1Model:
        """Load a saved model, checking that config, backbone and weights agree.

        Args:
            backbone: reuse an already loaded backbone (must have the saved width).

        Raises:
            ConfigError: the directory, its config or its weights do not match; the message lists
                every mismatch.
        """
        from safetensors import safe_open
        from safetensors.torch import load_file

        directory = Path(directory)
        record_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        missing_files = [p.name for p in (record_path, weights_path) if not p.is_file()]
        if missing_files:
            raise ConfigError(f"{directory} is not a Stage-1 model directory: missing {', '.join(missing_files)}.")
        record = json.loads(record_path.read_text())
        if record.get("format") != FORMAT:
            raise ConfigError(f"{record_path}: format {record.get('format')!r} is not {FORMAT!r}.")
        config = Stage1Config.from_dict(record.get("config", {}), source=str(record_path))
        if backbone is None:
            saved = directory / BACKBONE_DIR
            source = saved if record.get("backbone_saved") and saved.is_dir() else config.backbone
            backbone = load_backbone(
                source, dtype=config.dtype, attn_implementation=config.attn_implementation, device=device
            )
        problems = []
        if hidden_size_of(backbone) != record.get("hidden_size"):
            problems.append(
                f"backbone width {hidden_size_of(backbone)} ≠ saved head width {record.get('hidden_size')} "
                f"(config.backbone = {config.backbone!r})"
            )
        if config.views.num_views != record.get("num_views"):
            problems.append(f"view policy has {config.views.num_views} views, saved {record.get('num_views')}")
        if problems:
            raise ConfigError(f"Cannot load {directory}: " + "; ".join(problems) + ".")
        model = cls(config, backbone)
        state = load_file(str(weights_path))
        with safe_open(str(weights_path), framework="pt") as handle:
            weights_version = (handle.metadata() or {}).get("version")
        problems = _state_mismatches(model._head_state(), state)
        if weights_version != config.version:
            problems.append(f"weights are version {weights_version!r} but the config says {config.version!r}")
        if problems:
            raise ConfigError(f"Weights in {weights_path} do not match the config: " + "; ".join(problems) + ".")
        model.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        model.aggregator.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("aggregator.")})
        return model.to(device).eval()


def _state_mismatches(expected: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> list[str]:
    problems = []
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing:
        problems.append(f"missing weights {missing}")
    if unexpected:
        problems.append(f"unexpected weights {unexpected}")
    for key in sorted(set(expected) & set(saved)):
        if tuple(expected[key].shape) != tuple(saved[key].shape):
            problems.append(f"`{key}` has shape {tuple(saved[key].shape)}, expected {tuple(expected[key].shape)}")
    return problems
