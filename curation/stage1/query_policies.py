"""The StreetVision validator contract as versioned data, and a renderer that reproduces it.

The validator's input contract changed three times (models/streetvision/policies/README.md); a
model tuned on the wrong one is scored on queries it never saw. Each contract is a YAML file
loaded into a typed, frozen :class:`QueryPolicy`; :func:`render_query` turns an image into the
query that contract sends, deterministically from a seed.

Sampling and rendering are separate on purpose: :func:`sample_recipe` draws every random choice
into a :class:`RenderRecipe`, :func:`render_recipe` renders one, so a test can replay the exact
parameters the subnet's own code drew (tests/data/streetvision, scripts/streetvision_reference.py)
and demand the same pixels. The subnet computes in float32 torch, OpenCV and uint8 round trips;
the helpers below repeat those steps operation by operation (OpenCV's fixed-point resize and blur
and its FMA colour conversion are emulated in numpy) because a "close enough" re-implementation
drifts by whole grey levels. ``curation.stage1.validator_view`` stays the older approximate model.

Example:
    >>> from PIL import Image
    >>> from curation.stage1.query_policies import load_policy, render_query
    >>> render_query(Image.new("RGB", (640, 360), "orange"), load_policy("streetvision-2025-11"), seed=3).size
    (224, 224)
"""

from __future__ import annotations

import functools
import io
import math
import random
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from curation.assets import asset_dir
from curation.errors import ConfigError, suggest
from curation.settings import Settings
from curation.typed_config import from_mapping, read_yaml_mapping

DEFAULT_POLICY = Settings.query_policy  # the newest public contract: the platform default lives in settings
KINDS = ("augment", "native")
LEVEL0 = ("center_crop", "letterbox", "none")
AUGMENTED = ("rotate_then_crop", "letterbox_then_rotate", "none")


# -- the contract as data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Distortion:
    """One DeeperForensics distortion: ``params[s - 1]`` is its parameter at severity ``s``.

    ``max_severity[level]`` caps the severity drawn (uniformly in ``0..cap``) at each level.
    """

    subnet_code: str
    params: tuple[float, ...]
    max_severity: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(float(p) for p in self.params))
        object.__setattr__(self, "max_severity", tuple(int(m) for m in self.max_severity))
        if any(m < 0 or m > len(self.params) for m in self.max_severity):
            raise ConfigError(f"Distortion {self.subnet_code}: max_severity {self.max_severity} exceeds its {len(self.params)} params.")


@dataclass(frozen=True)
class Distortions:
    """The distortions in the order the subnet applies them (field order matters)."""

    color_saturation: Distortion | None = None  # CS: chroma scale in the subnet's YCbCr
    color_contrast: Distortion | None = None  # CC: pixel scale
    downsample: Distortion | None = None  # "JPEG": down-up sampling factor (OpenCV bilinear)
    color_noise: Distortion | None = None  # GNC: Gaussian noise variance in YCbCr
    blur: Distortion | None = None  # GB: Gaussian kernel side, sigma = side / 6

    def enabled(self) -> list[tuple[str, Distortion]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None]


@dataclass(frozen=True)
class Rendering:
    """How an image becomes a query. ``kind`` ``native`` sends the image itself (JPEG only)."""

    kind: str
    output_size: int | None = None
    level0: str = "none"
    augmented: str = "none"
    level_probs: tuple[float, ...] = ()
    rotation_degrees: float = 0.0
    rotation_interpolation: str = "nearest"
    rotation_fill: int = 0
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] | None = None
    flips_fire: bool = False
    distortions: Distortions = field(default_factory=Distortions)
    jpeg_quality: int = 75

    def __post_init__(self) -> None:
        object.__setattr__(self, "level_probs", tuple(float(p) for p in self.level_probs))
        for name in ("crop_scale", "crop_ratio"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        _check_choice("rendering.kind", self.kind, KINDS)
        _check_choice("rendering.level0", self.level0, LEVEL0)
        _check_choice("rendering.augmented", self.augmented, AUGMENTED)
        if self.kind == "augment":
            if not self.level_probs or not math.isclose(sum(self.level_probs), 1.0, rel_tol=1e-9):
                raise ConfigError(f"rendering.level_probs must sum to 1; got {self.level_probs}.")
            if self.output_size is None:
                raise ConfigError("rendering.output_size is required when kind is `augment`.")
            if self.augmented == "rotate_then_crop" and (self.crop_scale is None or self.crop_ratio is None):
                raise ConfigError("rendering.crop_scale and crop_ratio are required for `rotate_then_crop`.")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"rendering.jpeg_quality must be 1-100; got {self.jpeg_quality}.")


@dataclass(frozen=True)
class Sources:
    """Share of challenges drawn from each image source (sums to 1)."""

    natix_real: float
    synthetic: float
    natix_api: float = 0.0
    synthetic_models: tuple[str, ...] = ()
    label_positive_share: float = 0.5
    synthetic_positive_elements: tuple[str, ...] = ()  # a synthetic positive shows exactly one of these
    synthetic_positive_since: str | None = None  # when the one-element rule began (within or before the contract)

    def __post_init__(self) -> None:
        total = self.natix_real + self.synthetic + self.natix_api
        if not math.isclose(total, 1.0, rel_tol=1e-6):
            raise ConfigError(f"sources must sum to 1; got {total}.")


@dataclass(frozen=True)
class Reward:
    """``(mcc_weight * max(mcc_floor, MCC[mcc_window]) + accuracy_weight * acc[accuracy_window]) ** exponent``."""

    mcc_window: int
    accuracy_window: int
    mcc_weight: float
    accuracy_weight: float
    exponent: float
    rounding: str
    mcc_floor: float = 0.0
    zero_when: tuple[str, ...] = ()
    history_ignores: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueryPolicy:
    """One version of the validator contract: what miners are sent and how they are scored."""

    name: str
    title: str
    valid_from: str
    valid_until: str | None
    commits: tuple[str, ...]
    provenance: tuple[str, ...]
    changes: str
    rendering: Rendering
    sources: Sources
    consensus_share: float
    timeout_s: float
    reward: Reward

    def __post_init__(self) -> None:
        object.__setattr__(self, "commits", tuple(str(c) for c in self.commits))
        object.__setattr__(self, "provenance", tuple(str(p) for p in self.provenance))
        if not 0.0 <= self.consensus_share <= 1.0:
            raise ConfigError(f"consensus_share must be in [0, 1]; got {self.consensus_share}.")


def _check_choice(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{where} `{value}` is not one of {allowed}.{suggest(value, allowed)}")


def policy_dir() -> Path:
    """The folder holding the contract files (models/streetvision/policies)."""
    return asset_dir("models") / "streetvision" / "policies"


def available_policies() -> list[str]:
    """Names of the shipped contracts, oldest first (names sort by date)."""
    return sorted(p.stem for p in policy_dir().glob("*.yaml"))


def load_policy(name_or_path: str | Path = DEFAULT_POLICY) -> QueryPolicy:
    """A contract by name (``streetvision-2026-05``) or by path to a YAML file.

    Raises:
        ConfigError: unknown name (with the nearest valid one), or a missing/malformed file (named).
    """
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
    else:
        names = available_policies()
        if text not in names:
            raise ConfigError(f"Unknown query policy `{text}`.{suggest(text, names)} Available: {', '.join(names)}.")
        path = policy_dir() / f"{text}.yaml"
    values = read_yaml_mapping(path, what="Query policy file")
    try:
        return from_mapping(QueryPolicy, values, source=f"query policy file {path}")
    except ConfigError as e:
        message = str(e) if str(path) in str(e) else f"Query policy file {path}: {e}"
        raise ConfigError(message) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"Query policy file {path} is malformed: {e}") from None


# -- sampling -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderRecipe:
    """Every random choice behind one query, so it can be replayed or explained.

    ``crop`` is torchvision's ``(top, left, height, width)`` in the rotated frame; ``severities``
    follow :meth:`Distortions.enabled` order (0 = off); ``noise_seed`` seeds the colour noise
    (``np.random.RandomState(noise_seed).randn``). ``level`` is None for native queries.
    """

    level: int | None
    angle: float = 0.0
    crop: tuple[int, int, int, int] | None = None
    hflip: bool = False
    vflip: bool = False
    severities: tuple[int, ...] = ()
    noise_seed: int = 0


def sample_recipe(policy: QueryPolicy, seed: int, width: int, height: int, level: int | None = None) -> RenderRecipe:
    """Draw a recipe for a ``width x height`` image (pure; same seed, same recipe)."""
    spec = policy.rendering
    if spec.kind == "native":
        return RenderRecipe(level=None)
    rng = random.Random(seed)
    level = _sample_level(rng, spec.level_probs) if level is None else level
    if not 0 <= level < len(spec.level_probs):
        raise ConfigError(f"level must be in 0..{len(spec.level_probs) - 1}; got {level}.")
    severities = tuple(rng.randint(0, d.max_severity[level]) for _, d in spec.distortions.enabled())
    noise_seed = rng.getrandbits(32)
    if level == 0:
        return RenderRecipe(level=0, severities=severities, noise_seed=noise_seed)
    angle = rng.uniform(-spec.rotation_degrees, spec.rotation_degrees)
    crop = _sample_crop(rng, width, height, spec.crop_scale, spec.crop_ratio) if spec.augmented == "rotate_then_crop" else None
    flips = (rng.random() < 0.5, rng.random() < 0.5) if spec.flips_fire else (False, False)
    return RenderRecipe(level, angle, crop, flips[0], flips[1], severities, noise_seed)


def _sample_level(rng: random.Random, probs: tuple[float, ...]) -> int:
    r, total = rng.random(), 0.0
    for level, p in enumerate(probs):
        total += p
        if r < total:
            return level
    return len(probs) - 1


def _sample_crop(rng: random.Random, width: int, height: int, scale, ratio) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop's rule: 10 area/aspect draws, then a centred fallback."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


# -- rendering -----------------------------------------------------------------------------------------


def render_query(image: Image.Image, policy: QueryPolicy, seed: int, level: int | None = None) -> Image.Image:
    """The decoded JPEG a validator under ``policy`` would send for ``image`` (deterministic per seed)."""
    recipe = sample_recipe(policy, seed, image.width, image.height, level)
    return jpeg_roundtrip(render_recipe(image, policy, recipe), policy.rendering.jpeg_quality)


@functools.cache
def cached_policy(name: str) -> QueryPolicy:
    """:func:`load_policy` once per process (training renders a query per image and epoch)."""
    return load_policy(name)


def all_policies() -> list[QueryPolicy]:
    """Every shipped contract, oldest first, each parsed once per process."""
    return [cached_policy(name) for name in available_policies()]


def contract_query(image: Image.Image, seed: int, contract: str | None, level: int | None = None, *, quality: int = 75) -> Image.Image:
    """The query a validator sends for ``image``: under the named contract (pixel-exact), or, for
    None, the platform's own model of the 2025-11 contract (:func:`validator_view.validator_query`,
    what training used before contracts were data). The one place queries are made for training,
    caching, calibration, promotion and validator-view prediction."""
    if not contract:
        from curation.stage1.validator_view import validator_query

        return validator_query(image, seed, level, quality=quality)
    return render_query(image, cached_policy(contract), seed, level)


def render_recipe(image: Image.Image, policy: QueryPolicy, recipe: RenderRecipe) -> Image.Image:
    """The uint8 RGB image handed to the JPEG encoder (no randomness: everything is in ``recipe``)."""
    spec = policy.rendering
    image = image.convert("RGB")
    if spec.kind == "native":
        return image
    size = spec.output_size
    if recipe.level == 0:
        image = _center_crop_resize(image, size) if spec.level0 == "center_crop" else letterbox(image, size)
        return _from_tensor(_to_tensor(image))
    if spec.augmented == "letterbox_then_rotate":
        image = letterbox(image, size)
    tensor = TF.rotate(_to_tensor(image), recipe.angle, interpolation=InterpolationMode(spec.rotation_interpolation), fill=None)
    if spec.augmented == "rotate_then_crop":
        top, left, h, w = recipe.crop
        tensor = TF.resized_crop(tensor, top, left, h, w, [size, size], InterpolationMode.BILINEAR, antialias=True)
    tensor = TF.hflip(tensor) if recipe.hflip else tensor
    tensor = TF.vflip(tensor) if recipe.vflip else tensor
    for (name, spec_d), severity in zip(spec.distortions.enabled(), recipe.severities, strict=True):
        if severity:
            tensor = _distort(tensor, name, spec_d.params[severity - 1], recipe.noise_seed)
    return _from_tensor(tensor)


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """Encode as the validator does (Pillow JPEG, default 4:2:0 subsampling) and decode."""
    return Image.open(io.BytesIO(jpeg_bytes(image, quality))).convert("RGB")


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def letterbox_geometry(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(new_w, new_h, pad_left, pad_top) of the subnet's letterbox: sizes truncated, bars split low."""
    scale = min(size / width, size / height)
    new_w, new_h = int(width * scale), int(height * scale)
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def letterbox(image: Image.Image, size: int) -> Image.Image:
    """Fit inside ``size x size`` keeping the aspect (PIL bilinear), black bars around."""
    new_w, new_h, left, top = letterbox_geometry(image.width, image.height, size)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(image.resize((new_w, new_h), Image.Resampling.BILINEAR), (left, top))
    return canvas


def _center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """torchvision CenterCrop(short side) (offsets rounded half-to-even) then PIL bilinear resize."""
    side = min(image.size)
    left, top = round((image.width - side) / 2.0), round((image.height - side) / 2.0)
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """[3, H, W] float32 in [0, 1], as torchvision's ToTensor computes it (uint8 / 255)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous().to(torch.float32).div(255)


def _from_tensor(tensor: torch.Tensor) -> Image.Image:
    """ToPILImage: ``x * 255`` truncated to uint8 (not rounded) -- the subnet's wire quantisation."""
    return Image.fromarray(tensor.mul(255).byte().permute(1, 2, 0).numpy(), mode="RGB")


# -- the DeeperForensics distortions, on BGR uint8 as the subnet applies them ---------------------------


def _distort(tensor: torch.Tensor, name: str, param: float, noise_seed: int) -> torch.Tensor:
    """RGB float tensor -> BGR uint8 (truncated) -> distortion -> float tensor, like the subnet."""
    bgr = (tensor[[2, 1, 0]].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    out = _DISTORTIONS[name](bgr, param, noise_seed)
    return torch.from_numpy(out.astype(np.float32) / 255.0).permute(2, 0, 1)[[2, 1, 0]]


def _color_saturation(bgr: np.ndarray, param: float, _seed: int) -> np.ndarray:
    ycbcr = _bgr_to_ycbcr(bgr)
    ycbcr[:, :, 1:] = 0.5 + (ycbcr[:, :, 1:] - 0.5) * param
    with np.errstate(invalid="ignore", over="ignore"):
        return _ycbcr_to_bgr(ycbcr).astype(np.uint8)  # the subnet does not clip: keep its cast


def _color_contrast(bgr: np.ndarray, param: float, _seed: int) -> np.ndarray:
    return (bgr.astype(np.float32) * param).astype(np.uint8)


def _downsample(bgr: np.ndarray, param: float, _seed: int) -> np.ndarray:
    h, w = bgr.shape[:2]
    factor = int(param)
    return _cv_resize(_cv_resize(bgr, w // factor, h // factor), w, h)


def _color_noise(bgr: np.ndarray, param: float, noise_seed: int) -> np.ndarray:
    ycbcr = _bgr_to_ycbcr(bgr) / 255
    noise = np.random.RandomState(noise_seed).randn(*ycbcr.shape)
    noisy = _ycbcr_to_bgr((ycbcr + math.sqrt(param) * noise) * 255)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _blur(bgr: np.ndarray, param: float, _seed: int) -> np.ndarray:
    """OpenCV's bit-exact 8-bit GaussianBlur: 8-bit fixed-point taps, reflect-101 border, round half up."""
    k = int(param)
    taps = _gaussian_taps(k)
    pad = k // 2
    padded = np.pad(bgr.astype(np.int64), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    h, w = bgr.shape[:2]
    rows = sum(taps[i] * padded[:, i : i + w] for i in range(k))
    both = sum(taps[i] * rows[i : i + h] for i in range(k))
    return ((both + (1 << 15)) >> 16).astype(np.uint8)


def _gaussian_taps(k: int) -> np.ndarray:
    """Gaussian taps with sigma = k / 6 in units of 1/256 (sum 256 for the k = 7, 9 the subnet uses)."""
    x = np.arange(k) - (k - 1) / 2
    g = np.exp(-(x**2) / (2 * (k / 6.0) ** 2))
    taps = np.round(g / g.sum() * 256).astype(np.int64)
    taps[k // 2] += 256 - taps.sum()
    return taps


_DISTORTIONS = {
    "color_saturation": _color_saturation,
    "color_contrast": _color_contrast,
    "downsample": _downsample,
    "color_noise": _color_noise,
    "blur": _blur,
}


def _fma(a: np.ndarray, b: float, c) -> np.ndarray:
    """float32 fused multiply-add (OpenCV's AVX2 colour conversion): exact product, one rounding."""
    return (a.astype(np.float64) * np.float64(np.float32(b)) + np.asarray(c, dtype=np.float64)).astype(np.float32)


def _bgr_to_ycbcr(bgr: np.ndarray) -> np.ndarray:
    """The subnet's bgr2ycbcr: OpenCV float BGR->YCrCb on 0-255 values (delta 0.5), then its 16-235 scaling."""
    x = bgr.astype(np.float32)
    b, g, r = x[..., 0], x[..., 1], x[..., 2]
    y = _fma(b, 0.114, _fma(g, 0.587, r * np.float32(0.299)))
    cr, cb = _fma(r - y, 0.713, 0.5), _fma(b - y, 0.564, 0.5)
    out = np.stack([y, cb, cr], axis=-1)
    out[:, :, 0] = (out[:, :, 0] * (235 - 16) + 16) / 255.0
    out[:, :, 1:] = (out[:, :, 1:] * (240 - 16) + 16) / 255.0
    return out


def _ycbcr_to_bgr(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_bgr_to_ycbcr` (float32 in, float32 out; no clipping)."""
    x = ycbcr.astype(np.float32)
    y = (x[:, :, 0] * 255.0 - 16) / (235 - 16)
    cb = (x[:, :, 1] * 255.0 - 16) / (240 - 16) - np.float32(0.5)
    cr = (x[:, :, 2] * 255.0 - 16) / (240 - 16) - np.float32(0.5)
    b = _fma(cb, 1.773, y)
    g = _fma(cr, -0.714, _fma(cb, -0.344, y))
    r = _fma(cr, 1.403, y)
    return np.stack([b, g, r], axis=-1)


def _cv_resize(img: np.ndarray, dst_w: int, dst_h: int) -> np.ndarray:
    """OpenCV's uint8 INTER_LINEAR resize: exact 2x shrink = 2x2 mean, else 11-bit fixed-point bilinear."""
    h, w = img.shape[:2]
    if w == 2 * dst_w and h == 2 * dst_h:  # OpenCV switches to INTER_AREA here
        s = img.astype(np.int32)
        return ((s[0::2, 0::2] + s[1::2, 0::2] + s[0::2, 1::2] + s[1::2, 1::2] + 2) >> 2).astype(np.uint8)
    x0, x1, a0, a1 = _linear_taps(dst_w, w, clamp=True)
    y0, y1, b0, b1 = _linear_taps(dst_h, h, clamp=False)
    src = img.astype(np.int64)
    rows = src[:, x0] * a0[None, :, None] + src[:, x1] * a1[None, :, None]  # scaled by 2048
    top, bottom = rows[y0] >> 4, rows[y1] >> 4  # the SIMD path works on 16-bit lanes
    out = (((b0[:, None, None] * top) >> 16) + ((b1[:, None, None] * bottom) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def _linear_taps(dst: int, src: int, *, clamp: bool):
    """Source indices and 11-bit weights; x weights clamp at the borders, y weights do not."""
    f = ((np.arange(dst) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.int64)
    f = (f - i).astype(np.float32)
    if clamp:
        f[i < 0], i[i < 0] = 0, 0
        high = i >= src - 1
        f[high], i[high] = 0, src - 1
    w1 = np.round(f * 2048).astype(np.int64)
    w0 = np.round((np.float32(1) - f) * 2048).astype(np.int64)
    return np.clip(i, 0, src - 1), np.clip(i + 1, 0, src - 1), w0, w1
