"""The bundle's README.md model card (pure: config and dicts in, markdown out).

Example:
    >>> from datetime import datetime, timezone
    >>> from curation.stage1.model import Stage1Config
    >>> from curation.export.card import render_readme
    >>> text = render_readme(Stage1Config(), card={"model_name": "demo", "version": "0.0.0"},
    ...     metrics={"calib": {"mcc": 0.8}}, data_summary=None, gate=None,
    ...     calibration={"threshold": 0.5, "temperature": 1.0, "logit_shift": 0.0},
    ...     submitted_at=datetime(2025, 6, 1, tzinfo=timezone.utc))
    >>> "UNTRAINED" in text, "| calib.mcc | 0.8000 |" in text
    (True, True)
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any


def flatten(values: dict[str, Any] | None, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts → ``[("a.b", value), ...]`` in insertion order; lists stay values."""
    rows: list[tuple[str, Any]] = []
    for key, value in (values or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(flatten(value, prefix=f"{name}."))
        else:
            rows.append((name, value))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[tuple[str, Any]], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows]
    return "\n".join(lines)


def _cnn_preset(backbone: str):
    from curation.errors import CurationError
    from curation.stage1.backbone import load_preset
    from curation.stage1.cnn_backbone import CnnPreset

    try:
        preset = load_preset(backbone)
    except CurationError:  # a Hub id or a local folder: DINOv3
        return None
    return preset if isinstance(preset, CnnPreset) else None


def backbone_line(backbone: str) -> str:
    """The card's backbone line: what the network is, what its weights learned, what it needs."""
    preset = _cnn_preset(backbone)
    if preset is None:
        return (
            f"- Backbone: DINOv3 ViT (`{backbone}`); per-view feature = CLS token ‖ mean patch token. It runs as plain "
            "PyTorch (`dinov3_plain.py`, transformers' `DINOv3ViTModel` weight names), so no transformers DINOv3 class is needed."
        )
    return (
        f"- Backbone: {preset.label}, timm `{preset.timm_model}`; per-view feature = average pool ‖ max pool of the "
        "last feature map. The remote code needs `timm` beside transformers (see `requirements.txt`). "
        "For a real deployment a DINOv3 backbone is recommended."
    )


def licence_line(backbone: str) -> str:
    preset = _cnn_preset(backbone)
    if preset is None:
        return "- Pretrained DINOv3 weights are subject to Meta's DINOv3 licence."
    return f"- Pretrained weights: `{preset.weights}` ({preset.pretrained_on}); EfficientNet-Lite weights are Apache-2.0."


def render_readme(
    config,
    *,
    card: dict[str, Any],
    metrics: dict[str, Any] | None,
    data_summary: dict[str, Any] | None,
    gate: dict[str, Any] | None,
    calibration: dict[str, Any],
    submitted_at: datetime,
) -> str:
    """Markdown model card for a :class:`~curation.stage1.model.Stage1Config` and its numbers."""
    views = config.views
    n_views = views.num_views
    status = (
        f"Trained on data fingerprint `{config.data_fingerprint}`."
        if config.trained
        else "> **UNTRAINED**: the head has random weights; predictions are meaningless. Exported to test "
        "the pipeline only: do not mine with it."
    )
    sections = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-classification",
        "license: other",
        "tags: [roadwork, streetvision, natix, dinov3, multiple-instance-learning]",
        "---",
        "",
        f"# {card['model_name']} — Stage-1 roadwork classifier v{card['version']}",
        "",
        status,
        "",
        card.get("description", ""),
        "",
        "## Model",
        backbone_line(config.backbone),
        (
            f"- Views: global + {views.grid}×{views.grid} tiles with {views.overlap:.3f} overlap"
            f"{', plus horizontal flips' if views.flip else ''} = {n_views} views of {views.size}×{views.size}, "
            "cut from the full-resolution image inside the model (antialiased when shrinking, ImageNet normalisation)."
        ),
        f"- Head: {'MLP ' + str(config.head_hidden) if config.head_hidden else 'linear'} on each view; "
        f"aggregator `{config.aggregator}`" + (f" (K={config.top_k})" if config.aggregator == "topk_mean" else "") + ".",
        "",
        "## Output and calibration",
        "Labels: `{0: \"None\", 1: \"Roadwork\"}`. The logits are `[log(1 − p), log p]` with",
        "`p = sigmoid(raw / T + shift)`, so softmax gives P(Roadwork) = p and the calibrated threshold maps to",
        "exactly 0.5, where StreetVision validators round the answer.",
        "",
        _table(
            [
                ("threshold (on sigmoid(raw / T))", calibration["threshold"]),
                ("temperature T", calibration["temperature"]),
                ("logit shift = −logit(threshold)", calibration["logit_shift"]),
            ],
            ("parameter", "value"),
        ),
        "",
        "## Metrics",
        _table(flatten(metrics), ("metric", "value")) if metrics else "No metrics were recorded for this export.",
        "",
        "## Training data",
        _table(flatten(data_summary), ("item", "value")) if data_summary else "No data summary was recorded.",
        "",
        "## Failure gate",
        (
            "Gate parameters are in `calibration.json` (`gate`); the gate is not applied inside the model."
            if gate
            else "No failure gate was exported with this model."
        ),
        "",
        "## Use",
        "Requirements: see `requirements.txt`. The remote code supports transformers >= 4.45 (the StreetVision",
        "miner environment pins ~4.45) through the current release; it needs no transformers DINOv3 classes",
        "(those exist only from 4.56 on): the DINOv3 backbone is the bundle's own `dinov3_plain.py`.",
        "",
        "```python",
        "from transformers import pipeline",
        'clf = pipeline("image-classification", model="PATH_OR_REPO", trust_remote_code=True)',
        'p_roadwork = {r["label"]: r["score"] for r in clf(image)}["Roadwork"]',
        "```",
        "or `from roadwork_predict import predict; predict(pil_image)` in this folder. StreetVision miners:",
        "see `miner/README.md` (a detector class for the subnet's detector registry, with optional query logging).",
        "",
        "The image processor only converts to RGB in [0, 1]: it does not resize or crop, because the model",
        "builds its own views from the full image. Large frames therefore keep their detail in every tile, and",
        "a validator's 224×224 query is used as is. The pipeline applies EXIF orientation before the model;",
        "`roadwork_predict.predict` does not (like the training platform). Weights are float32.",
        "",
        "## Provenance",
        f"- Version {card['version']}, submitted by `{card['submitted_by']}` at {submitted_at.isoformat()}.",
        licence_line(config.backbone),
        "",
    ]
    return "\n".join(sections)
