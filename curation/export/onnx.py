"""Optional ONNX export of a bundle (dynamo exporter), checked against PyTorch under onnxruntime.

The graph takes ``pixel_values`` [N, 3, S, S] (RGB in [0, 1], the bundle processor's output) with a
dynamic batch N and a fixed input size S (224: what validators send; the view boxes depend on the
size, so one graph serves one size) and returns ``logits`` [N, 2] = [log(1 − p), log p] with the
calibrated threshold at p = 0.5. The views, backbone, head and aggregator all run inside the graph.
The legacy TorchScript exporter cannot export antialiased resizing; the dynamo exporter can.

Example:
    >>> from curation.export.onnx import export_onnx
    >>> report = export_onnx("models/registry/1.0.0", "/tmp/roadwork.onnx")  # doctest: +SKIP
    >>> report.max_abs_diff < 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from curation.errors import ConfigError, InputError

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class OnnxExport:
    """Where the graph went and how closely onnxruntime reproduces PyTorch."""

    path: Path
    image_size: int
    opset: int
    batch_sizes_checked: tuple[int, ...]
    max_abs_diff: float  # over logits, all checked batches
    atol: float


class _LogitsOnly(nn.Module):
    """The bundle model with a tensor-only signature: pixel_values → logits [N, 2]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).logits


def load_bundle_model(bundle_dir: str | Path) -> nn.Module:
    """The bundle's model through the platform's copy of its code (same files the bundle carries)."""
    from curation.export.hf_template.modeling_roadwork import RoadworkForImageClassification

    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / "config.json").is_file():
        raise InputError(f"{bundle_dir} is not a bundle: no config.json.")
    return RoadworkForImageClassification.from_pretrained(str(bundle_dir)).eval()


def export_onnx(
    bundle_dir: str | Path,
    out_path: str | Path,
    *,
    image_size: int = 224,
    opset: int = 18,
    check: bool = True,
    check_batch_sizes: tuple[int, ...] = (1, 3),
    atol: float = 1e-4,
    seed: int = 0,
) -> OnnxExport:
    """Export a bundle's model to ONNX with a dynamic batch and check it under onnxruntime.

    Args:
        bundle_dir: an exported bundle.
        out_path: the ``.onnx`` file to write (weights inline below 1.5 GB, else in ``<name>.data``
            beside it; parent folders created).
        image_size: the fixed input side S.
        opset: ONNX opset.
        check: run onnxruntime on random inputs of ``check_batch_sizes`` and compare logits.
        atol: largest allowed |ONNX − PyTorch| over the logits.

    Raises:
        ConfigError: onnxruntime disagrees with PyTorch by more than ``atol`` (the file is removed).
    """
    if image_size < 16:
        raise ConfigError(f"`image_size` must be ≥ 16 pixels; got {image_size}.")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _LogitsOnly(load_bundle_model(bundle_dir)).eval()
    example = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"pixel_values": {0: batch}},
            opset_version=opset,
            verbose=False,
        )
    # Protobuf caps a file at 2 GB: large backbones (ViT-H+) keep their weights in model.onnx.data.
    weight_bytes = sum(p.numel() * p.element_size() for p in wrapper.parameters())
    program.save(str(out_path), external_data=weight_bytes > 1_500_000_000)
    worst, checked = 0.0, ()
    if check:
        worst, checked = _check(wrapper, out_path, image_size, check_batch_sizes, seed)
        if not worst <= atol:
            out_path.unlink(missing_ok=True)
            raise ConfigError(
                f"ONNX logits differ from PyTorch by {worst:.2e} (> atol {atol:.0e}); {out_path} was not kept."
            )
    return OnnxExport(
        path=out_path, image_size=image_size, opset=opset, batch_sizes_checked=checked, max_abs_diff=worst, atol=atol
    )


def _check(wrapper: nn.Module, path: Path, size: int, batch_sizes: tuple[int, ...], seed: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = min(2, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed + 1)
    worst = 0.0
    for n in batch_sizes:
        x = torch.rand(n, 3, size, size, generator=generator)
        with torch.inference_mode():
            expected = wrapper(x).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst, tuple(batch_sizes)


class _quiet_exporter:
    """Silence the exporter's progress logging (it prints several lines per export)."""

    def __enter__(self):
        self._logger = logging.getLogger("torch.onnx")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)
        return False
