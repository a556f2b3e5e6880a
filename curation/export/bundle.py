"""The deployable Stage-1 bundle: a Hugging Face model directory that runs without this platform.

A bundle loads with ``transformers.pipeline("image-classification", model=DIR, trust_remote_code=True)``
or ``AutoModelForImageClassification.from_pretrained(DIR, trust_remote_code=True)``; the model code
(``hf_template/``) is copied into it and never imports ``curation``. Layout::

    config.json                 RoadworkConfig: backbone, views, head, aggregator, calibration, auto_map,
                                id2label {0: "None", 1: "Roadwork"}
    configuration_roadwork.py   remote code (config)
    modeling_roadwork.py        remote code (model: views → DINOv3 or timm CNN → head → aggregator → shifted logits)
    dinov3_plain.py             remote code (the DINOv3 ViT in plain torch, under transformers' parameter names)
    requirements.txt            what the remote code imports (timm only for a CNN backbone)
    model.safetensors           backbone + head + aggregator weights, float32
    preprocessor_config.json    ViTImageProcessor that only converts to RGB [0, 1] (no resize/crop/normalise)
    calibration.json            threshold, temperature, logit shift, gate parameters, decision rule
    model_card.json             what the subnet reads: model_name, description, version, submitted_by,
                                submission_time (Unix seconds)
    README.md                   model card: metrics, data summary, calibration, usage
    roadwork_predict.py         ``predict(PIL.Image) -> float`` for any miner
    miner/                      StreetVision detector class, its YAML config, install notes
    manifest.json               format tag, file sizes and sha256, source model config
    onnx/model.onnx             optional (``onnx=True``): dynamic batch, fixed input size

Why a processor without resizing: the model cuts its tiles from the full-resolution image, exactly
as the platform does, so a 1920×1080 frame keeps its detail and a validator's 224×224 query is
passed through untouched. The bundle's probabilities equal the platform's up to float rounding
(the processor multiplies by 1/255 where the platform divides by 255: ~1e-7).

Writes are atomic: everything goes into a hidden temp folder beside ``out_dir`` that replaces it
only when complete, so a killed export never leaves a half bundle at ``out_dir``.

Example:
    >>> from curation.stage1.model import Stage1Config, Stage1Model
    >>> from curation.export.bundle import export_bundle
    >>> model = Stage1Model.build(Stage1Config())
    >>> path = export_bundle(model, "/tmp/bundle", model_card={"model_name": "demo", "submitted_by": "me"})
    >>> sorted(p.name for p in path.iterdir())[:3]
    ['README.md', 'calibration.json', 'config.json']
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from curation.errors import ConfigError, InputError, suggest
from curation.export import miner as miner_adapter
from curation.processes import pid_alive
from curation.stage1.backbone import backbone_label
from curation.stage1.calibrate import threshold_logit_offset
from curation.stage1.views import IMAGENET_MEAN, IMAGENET_STD

BUNDLE_FORMAT = "curation.bundle/1"
TEMPLATE_DIR = Path(__file__).resolve().parent / "hf_template"
REMOTE_CODE_FILES = ("configuration_roadwork.py", "modeling_roadwork.py", "dinov3_plain.py")
PREDICT_FILE = "roadwork_predict.py"
WEIGHTS_FILE = "model.safetensors"
CALIBRATION_FILE = "calibration.json"
MODEL_CARD_FILE = "model_card.json"
MANIFEST_FILE = "manifest.json"
REQUIREMENTS_FILE = "requirements.txt"
AUTO_MAP = {
    "AutoConfig": "configuration_roadwork.RoadworkConfig",
    "AutoModelForImageClassification": "modeling_roadwork.RoadworkForImageClassification",
}
ID2LABEL = {0: "None", 1: "Roadwork"}
MIN_TRANSFORMERS = "4.45"  # oldest transformers the remote code supports (the subnet's miner pins ~4.45)
# DINOv3ViTConfig fields that define the architecture (dinov3_plain.DINOv3Spec reads the ones inference
# needs); everything else (labels, stage names, the transformers version) stays out of the bundle.
BACKBONE_KEYS = (
    "patch_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "hidden_act",
    "attention_dropout", "initializer_range", "layer_norm_eps", "rope_theta", "image_size", "num_channels",
    "query_bias", "key_bias", "value_bias", "proj_bias", "mlp_bias", "layerscale_value", "drop_path_rate",
    "use_gated_mlp", "num_register_tokens", "pos_embed_shift", "pos_embed_jitter", "pos_embed_rescale",
)  # fmt: skip
CARD_KEYS = ("model_name", "description", "submitted_by", "version", "architecture", "notes")
_PARTIAL = ".partial-"


def export_bundle(
    model,
    out_dir: str | Path,
    *,
    model_card: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    data_summary: dict[str, Any] | None = None,
    gate: dict[str, Any] | None = None,
    onnx: bool = False,
    hf_repo: str | None = None,
) -> Path:
    """Write ``model`` as a self-contained Hugging Face bundle at ``out_dir``, atomically.

    Args:
        model: a :class:`~curation.stage1.model.Stage1Model`; its config supplies the version,
            threshold and temperature (set with ``set_calibration``) and whether it is trained.
        out_dir: bundle directory; an existing bundle there is replaced only once the new one is complete.
        model_card: ``model_name`` and ``submitted_by`` (the miner's hotkey: validators check it),
            optionally ``description``, ``architecture``, ``notes``; ``version`` must match the model's.
        metrics: evaluation numbers for the card (nested dicts are flattened), e.g. calib MCC.
        data_summary: training-data counts for the card, e.g. per source and slice.
        gate: failure-gate parameters (JSON-serialisable), stored in ``calibration.json``.
        onnx: also export ``onnx/model.onnx`` (224×224 input, dynamic batch) and check it.
        hf_repo: the Hugging Face repo the bundle will live in, written into the miner config.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ConfigError: a bad ``model_card`` or a non-JSON ``metrics``/``data_summary``/``gate``.
    """
    out_dir = Path(out_dir).expanduser()
    now = datetime.now(UTC)
    card = model_card_record(model, model_card, now=now)
    extras = {"metrics": metrics, "data_summary": data_summary, "gate": gate}
    for name, value in extras.items():
        _check_json(name, value)
    with atomic_directory(out_dir) as tmp:
        write_remote_code(tmp)
        write_requirements(model, tmp)
        write_config(model, tmp)
        write_weights(model, tmp)
        write_processor(tmp)
        write_calibration(model, tmp, gate=gate)
        write_model_card(card, tmp)
        write_readme(model, tmp, card=card, metrics=metrics, data_summary=data_summary, gate=gate, now=now)
        miner_adapter.write_miner_adapter(tmp, model_version=model.config.version, hf_repo=hf_repo)
        if onnx:
            from curation.export.onnx import export_onnx

            export_onnx(tmp, tmp / "onnx" / "model.onnx")
        write_manifest(model, tmp, now=now)
    return out_dir


# Atomic directory replacement ----------------------------------------------------------------------
@contextmanager
def atomic_directory(out_dir: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``out_dir`` that becomes ``out_dir`` on success.

    On any exception (including KeyboardInterrupt) the temp folder is removed and ``out_dir`` is
    untouched. An existing ``out_dir`` is swapped out by two renames and deleted afterwards; a
    crash between them leaves the old bundle under a hidden name, never a half-written one at
    ``out_dir``. Temp folders left by killed processes (their pid is gone) are cleaned on the next run.
    """
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(parent, out_dir.name)
    tmp = parent / f".{out_dir.name}{_PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if out_dir.exists():
            old = parent / f".{out_dir.name}{_PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}-old"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale_partials(parent: Path, name: str) -> None:
    for path in parent.glob(f".{name}{_PARTIAL}*"):
        try:
            pid = int(path.name[len(f".{name}{_PARTIAL}") :].split("-")[0])
        except ValueError:
            continue
        if not pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


# Individual writers (each takes the folder to write into) -----------------------------------------
def write_remote_code(folder: Path) -> None:
    for name in (*REMOTE_CODE_FILES, PREDICT_FILE):
        shutil.copyfile(TEMPLATE_DIR / name, folder / name)


def hf_config(model):
    """The bundle's ``RoadworkConfig`` for a Stage-1 model (labels, auto_map and calibration included)."""
    from curation.export.hf_template.configuration_roadwork import RoadworkConfig

    cfg = model.config
    config = RoadworkConfig(
        **backbone_fields(model.backbone),
        view_grid=cfg.views.grid,
        view_overlap=cfg.views.overlap,
        view_flip=cfg.views.flip,
        view_size=cfg.views.size,
        use_patch_mean=cfg.use_patch_mean,
        head_hidden=cfg.head_hidden,
        aggregator=cfg.aggregator,
        aggregator_top_k=cfg.top_k,
        attention_hidden=cfg.attention_hidden,
        calibration_temperature=cfg.temperature,
        threshold=cfg.threshold,
        max_views_per_forward=cfg.max_batch,
        model_version=cfg.version,
        trained=cfg.trained,
        data_fingerprint=cfg.data_fingerprint,
        id2label=dict(ID2LABEL),
        label2id={v: k for k, v in ID2LABEL.items()},
    )
    config.architectures = ["RoadworkForImageClassification"]
    config.auto_map = dict(AUTO_MAP)
    config.dtype = torch.float32
    return config


def backbone_fields(backbone) -> dict[str, Any]:
    """``backbone_type`` and ``backbone_config`` of the bundle config for a DINOv3 or timm backbone."""
    from curation.stage1.cnn_backbone import CnnBackbone

    if isinstance(backbone, CnnBackbone):
        preset = backbone.config.preset
        values = {"timm_model": preset.timm_model, "mean": list(preset.mean), "std": list(preset.std)}
        return {"backbone_type": "timm", "backbone_config": values | {"hidden_size": backbone.config.hidden_size}}
    config = backbone.config
    return {"backbone_type": "dinov3", "backbone_config": {key: _plain(getattr(config, key)) for key in BACKBONE_KEYS if hasattr(config, key)}}


def bundle_requirements(backbone) -> list[str]:
    """What the bundle imports (``requirements.txt``): timm only for a CNN backbone.

    transformers from :data:`MIN_TRANSFORMERS` (the StreetVision miner's pin; tested against 4.45.2 and
    the platform's own release): the DINOv3 backbone is the bundle's plain-torch code, so no
    transformers DINOv3 class is needed. torch ≥ 2.3 for ``torch.compiler.is_compiling``.
    """
    import timm

    from curation.stage1.cnn_backbone import CnnBackbone

    needs = ["torch>=2.3", f"transformers>={MIN_TRANSFORMERS}", "safetensors", "pillow"]
    return needs + ([f"timm>={timm.__version__}"] if isinstance(backbone, CnnBackbone) else [])


def write_requirements(model, folder: Path) -> None:
    (folder / REQUIREMENTS_FILE).write_text("\n".join(bundle_requirements(model.backbone)) + "\n")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def write_config(model, folder: Path) -> None:
    hf_config(model).save_pretrained(folder)


def bundle_state_dict(model) -> dict[str, torch.Tensor]:
    """Weights under the bundle model's names: ``backbone.*``, ``head.*``, ``aggregator.*`` (float32)."""
    state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    state |= model._head_state()
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}


def expected_weight_shapes(model) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the bundle model class, built on the meta device (no memory)."""
    from curation.export.hf_template.modeling_roadwork import RoadworkForImageClassification

    with torch.device("meta"):
        hf_model = RoadworkForImageClassification(hf_config(model))
    return {k: tuple(v.shape) for k, v in hf_model.state_dict().items()}


def write_weights(model, folder: Path) -> None:
    """Write ``model.safetensors``, checking first that every name and shape matches the bundle class."""
    from safetensors.torch import save_file

    state = bundle_state_dict(model)
    expected = expected_weight_shapes(model)
    problems = [f"missing `{k}`" for k in sorted(set(expected) - set(state))]
    problems += [f"unexpected `{k}`" for k in sorted(set(state) - set(expected))]
    problems += [
        f"`{k}` is {tuple(state[k].shape)}, the bundle model expects {expected[k]}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != expected[k]
    ]
    if problems:
        raise ConfigError("The Stage-1 weights do not fit the bundle model: " + "; ".join(problems[:10]) + ".")
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "version": model.config.version})


def write_processor(folder: Path) -> None:
    """An image processor that keeps the whole image: RGB, ×1/255, no resize, crop or normalisation.

    The stock ``ViTImageProcessor`` is used (no extra remote code); the model builds, resizes and
    normalises its views itself. The mean/std recorded here are the ones the model applies inside.
    """
    from transformers import ViTImageProcessor

    ViTImageProcessor(
        do_resize=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=False,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    ).save_pretrained(folder)


def calibration_record(model, gate: dict[str, Any] | None) -> dict[str, Any]:
    cfg = model.config
    return {
        "threshold": cfg.threshold,
        "temperature": cfg.temperature,
        "logit_shift": threshold_logit_offset(cfg.threshold),
        "decision": (
            "p = sigmoid(raw_logit / temperature + logit_shift); roadwork iff p >= 0.5, which is "
            "p_platform = sigmoid(raw_logit / temperature) >= threshold"
        ),
        "gate": gate,
    }


def write_calibration(model, folder: Path, *, gate: dict[str, Any] | None) -> None:
    _write_json(folder / CALIBRATION_FILE, calibration_record(model, gate))


def model_card_record(model, card: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """The subnet's ``model_card.json``: model_name, description, version, submitted_by, submission_time.

    ``submission_time`` is Unix seconds: the subnet's validator parses it with ``int(...)`` and
    checks it is a plausible timestamp, so an ISO string would be rejected.
    """
    if not isinstance(card, dict):
        raise ConfigError(f"`model_card` must be a mapping; got {type(card).__name__}.")
    unknown = [k for k in card if k not in CARD_KEYS]
    if unknown:
        raise ConfigError(
            f"Unknown key `{unknown[0]}` in `model_card`.{suggest(unknown[0], CARD_KEYS)} Allowed: {', '.join(CARD_KEYS)}."
        )
    for key in ("model_name", "submitted_by"):
        if not str(card.get(key) or "").strip():
            raise ConfigError(f"`model_card` needs a non-empty `{key}`; got {card.get(key)!r}.")
    version = model.config.version
    if "version" in card and str(card["version"]) != version:
        raise ConfigError(f"`model_card.version` {card['version']!r} differs from the model's version {version!r}.")
    trained = model.config.trained
    default = (
        f"Stage-1 roadwork classifier: {backbone_label(model.backbone, model.config.backbone)} over a global view and "
        f"{model.config.views.grid}×{model.config.views.grid} tiles, {model.config.aggregator} pooling."
    )
    description = str(card.get("description") or default)
    if not trained:
        description = "UNTRAINED (random head, predictions are meaningless). " + description
    record = {
        "model_name": str(card["model_name"]),
        "description": description,
        "version": version,
        "submitted_by": str(card["submitted_by"]),
        "submission_time": int(now.timestamp()),
    }
    for key in ("architecture", "notes"):
        if card.get(key):
            record[key] = str(card[key])
    if not trained and "notes" not in record:
        record["notes"] = "UNTRAINED: random weights, exported for testing the pipeline only."
    return record


def write_model_card(card: dict[str, Any], folder: Path) -> None:
    _write_json(folder / MODEL_CARD_FILE, card)


def write_readme(
    model,
    folder: Path,
    *,
    card: dict[str, Any],
    metrics: dict[str, Any] | None,
    data_summary: dict[str, Any] | None,
    gate: dict[str, Any] | None,
    now: datetime,
) -> None:
    from curation.export.card import render_readme

    text = render_readme(
        model.config,
        card=card,
        metrics=metrics,
        data_summary=data_summary,
        gate=gate,
        calibration=calibration_record(model, None),
        submitted_at=now,
    )
    (folder / "README.md").write_text(text, encoding="utf-8")


def write_manifest(model, folder: Path, *, now: datetime) -> None:
    files = {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    _write_json(
        folder / MANIFEST_FILE,
        {
            "format": BUNDLE_FORMAT,
            "created_at": now.isoformat(),
            "model_version": model.config.version,
            "trained": model.config.trained,
            "source_config": model.config.to_dict(),
            "files": files,
        },
    )


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """The manifest of a bundle, checking it is one.

    Raises:
        InputError: ``bundle_dir`` has no readable manifest of this format.
    """
    path = Path(bundle_dir) / MANIFEST_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{bundle_dir} is not a Stage-1 bundle: cannot read {MANIFEST_FILE} ({e}).") from e
    if record.get("format") != BUNDLE_FORMAT:
        raise InputError(f"{path}: format {record.get('format')!r} is not {BUNDLE_FORMAT!r}.")
    return record


def _check_json(name: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"`{name}` must be JSON-serialisable (numbers, strings, lists, dicts): {e}.") from None


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Registered versions -----------------------------------------------------------------------------
VERSION_EXTRAS = {"metrics": "metrics.json", "data_summary": "data_summary.json", "gate": "gate.json"}
DEFAULT_MODEL_NAME = "streetvision-roadwork-stage1"


def export_registered(
    settings,
    version: str,
    out_dir: str | Path,
    *,
    model_name: str | None = None,
    submitted_by: str | None = None,
    description: str | None = None,
    onnx: bool = False,
    hf_repo: str | None = None,
) -> Path:
    """Re-export a registered version (``settings.registry_root/<version>/``) as a bundle.

    ``metrics.json``, ``data_summary.json`` and ``gate.json`` beside the saved model, when present,
    go into the card and ``calibration.json``. ``model_name`` defaults to the one the version was
    exported under by retrain (its ``bundle/model_card.json``), else :data:`DEFAULT_MODEL_NAME`;
    ``submitted_by`` defaults to ``settings.user_name``.

    Raises:
        ConfigError: the version is not registered (the registered ones are listed).
    """
    from curation.stage1.model import Stage1Model
    from curation.store import registry

    folder = registry.version_dir(settings, version)
    if not (folder / "stage1.json").is_file():
        known = registry.list_versions(settings)
        raise ConfigError(
            f"Version `{version}` is not registered under {settings.registry_root}.{suggest(version, known)} "
            f"Registered: {', '.join(known) or 'none'}."
        )
    model = Stage1Model.load(folder)
    extras = {}
    for key, name in VERSION_EXTRAS.items():
        path = folder / name
        if path.is_file():
            try:
                extras[key] = json.loads(path.read_text())
            except ValueError as e:
                raise InputError(f"{path} is not valid JSON: {e}.") from e
    card = {"model_name": model_name or _registered_model_name(folder), "submitted_by": submitted_by or settings.user_name}
    if description:
        card["description"] = description
    return export_bundle(model, out_dir, model_card=card, onnx=onnx, hf_repo=hf_repo, **extras)


def _registered_model_name(folder: Path) -> str:
    card = folder / "bundle" / "model_card.json"
    try:
        return json.loads(card.read_text())["model_name"]
    except (OSError, ValueError, KeyError):
        return DEFAULT_MODEL_NAME
