"""Turn an image into the query a StreetVision validator would send, reproducibly from a seed.

Validators pick an augmentation level 0-3 uniformly (DESIGN.md section 6):
    0: center-crop the largest square, resize to 224
    1: ±20° rotation, random square resized crop (scale 0.2-1) to 224, horizontal and vertical flips
    2: level 1 + mild saturation/contrast/JPEG-style (down-up sampling) distortions (severity 0-1)
    3: level 1 + saturation/contrast/JPEG (severity 0-2) + colour noise and Gaussian blur (0-2)
and send the result as a base64 JPEG. Distortion strengths follow the DeeperForensics levels the
subnet uses. Everything is drawn from ``seed``, so two models can be scored on identical queries;
the JPEG quality is not published, PIL's default (75) is assumed.

Example:
    >>> from PIL import Image
    >>> from curation.stage1.validator_view import validator_query
    >>> q = validator_query(Image.new("RGB", (640, 480), "orange"), seed=7, level=1)
    >>> q.size
    (224, 224)
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from curation.errors import ConfigError

QUERY_SIZE = 224
LEVELS = (0, 1, 2, 3)
# Severity 1, 2 of each distortion (severity 0 = off).
SATURATION = (0.4, 0.3)  # chroma scale in YCbCr
CONTRAST = (0.85, 0.725)  # pixel scale
DOWNSAMPLE = (2, 3)  # down-up sampling factor ("JPEG" in the subnet)
NOISE_VARIANCE = (0.001, 0.002)  # colour noise variance on [0, 1] YCbCr
BLUR_KERNEL = (7, 9)  # Gaussian kernel side; sigma = kernel / 6


@dataclass(frozen=True)
class QueryRecipe:
    """Every random choice behind one query, so a query can be explained and replayed.

    The crop is (left, top, side) in pixels of the rotated image; severities index the tables
    above (0 = distortion off).
    """

    level: int
    angle: float = 0.0
    crop: tuple[int, int, int] | None = None
    hflip: bool = False
    vflip: bool = False
    saturation: int = 0
    contrast: int = 0
    downsample: int = 0
    noise: int = 0
    blur: int = 0
    noise_seed: int = 0


def validator_seed(key: str, seed: int) -> int:
    """Deterministic per-image query seed, so two models are scored on identical queries.

    ``key`` is the image's content hash (:func:`query_key`): the same image gets the same query in
    any database, so evaluations repeat across re-imports and machines (sample ids do not)."""
    return int.from_bytes(hashlib.sha256(f"{key}:{seed}".encode()).digest()[:4], "big")


def query_key(sample_id: str, content_hash: str | None) -> str:
    """The :func:`validator_seed` key of a sample: its content hash, or its id when it has none."""
    return content_hash or sample_id


def query_recipe(seed: int, width: int, height: int, level: int | None = None) -> QueryRecipe:
    """Draw the augmentation parameters for an image of ``width × height`` (pure)."""
    if level is not None and level not in LEVELS:
        raise ConfigError(f"`level` must be one of {LEVELS} or None (uniform); got {level!r}.")
    rng = random.Random(seed)
    level = rng.randrange(4) if level is None else level
    if level == 0:
        return QueryRecipe(level=0)
    angle = rng.uniform(-20.0, 20.0)
    crop = _square_crop(rng, width, height)
    hflip, vflip = rng.random() < 0.5, rng.random() < 0.5
    top = 1 if level == 2 else 2 if level == 3 else 0
    severities = {name: rng.randint(0, top) for name in ("saturation", "contrast", "downsample")}
    if level == 3:
        severities |= {"noise": rng.randint(0, 2), "blur": rng.randint(0, 2)}
    return QueryRecipe(
        level=level, angle=angle, crop=crop, hflip=hflip, vflip=vflip, noise_seed=rng.getrandbits(32), **severities
    )


def _square_crop(rng: random.Random, width: int, height: int) -> tuple[int, int, int]:
    """A random square covering 20-100% of the image area; center square after 10 misses."""
    for _ in range(10):
        side = int(round(math.sqrt(rng.uniform(0.2, 1.0) * width * height)))
        if 0 < side <= min(width, height):
            return rng.randint(0, width - side), rng.randint(0, height - side), side
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def apply_recipe(image: Image.Image, recipe: QueryRecipe, *, quality: int = 75) -> Image.Image:
    """Apply a recipe and the validators' JPEG round trip; returns a 224×224 RGB image."""
    image = image.convert("RGB")
    if recipe.level:
        image = image.rotate(recipe.angle, resample=Image.BILINEAR, expand=False)  # same size
    left, top, side = crop_square(recipe, *image.size)
    image = image.crop((left, top, left + side, top + side)).resize((QUERY_SIZE, QUERY_SIZE), Image.BILINEAR)
    if recipe.level:
        if recipe.hflip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        if recipe.vflip:
            image = image.transpose(Image.FLIP_TOP_BOTTOM)
        image = _distort(image, recipe)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _distort(image: Image.Image, recipe: QueryRecipe) -> Image.Image:
    if recipe.saturation:
        ycbcr = np.asarray(image.convert("YCbCr"), dtype=np.float64)  # [H, W, 3]
        ycbcr[..., 1:] = 128.0 + (ycbcr[..., 1:] - 128.0) * SATURATION[recipe.saturation - 1]
        image = _from_ycbcr(ycbcr)
    if recipe.contrast:
        pixels = np.asarray(image, dtype=np.float64) * CONTRAST[recipe.contrast - 1]
        image = Image.fromarray(pixels.astype(np.uint8))
    if recipe.downsample:
        factor = DOWNSAMPLE[recipe.downsample - 1]
        small = image.resize((QUERY_SIZE // factor, QUERY_SIZE // factor), Image.BILINEAR)
        image = small.resize((QUERY_SIZE, QUERY_SIZE), Image.BILINEAR)
    if recipe.noise:
        rng = np.random.default_rng(recipe.noise_seed)
        ycbcr = np.asarray(image.convert("YCbCr"), dtype=np.float64) / 255.0
        ycbcr += math.sqrt(NOISE_VARIANCE[recipe.noise - 1]) * rng.standard_normal(ycbcr.shape)
        image = _from_ycbcr(ycbcr * 255.0)
    if recipe.blur:
        image = image.filter(ImageFilter.GaussianBlur(radius=BLUR_KERNEL[recipe.blur - 1] / 6.0))
    return image


def _from_ycbcr(ycbcr: np.ndarray) -> Image.Image:
    pixels = np.ascontiguousarray(np.clip(np.rint(ycbcr), 0, 255).astype(np.uint8))  # [H, W, 3]
    return Image.frombytes("YCbCr", (pixels.shape[1], pixels.shape[0]), pixels.tobytes()).convert("RGB")


def validator_query(image: Image.Image, seed: int, level: int | None = None, *, quality: int = 75) -> Image.Image:
    """The 224×224 JPEG-decoded query a validator would send for ``image``.

    Args:
        image: any PIL image (converted to RGB).
        seed: fixes the level (when ``level`` is None) and every augmentation parameter.
        level: force an augmentation level 0-3; None draws it uniformly like the validators.
        quality: JPEG quality of the round trip.

    Returns:
        A new RGB image; the same (image, seed, level) always gives identical pixels.
    """
    recipe = query_recipe(seed, image.width, image.height, level)
    return apply_recipe(image, recipe, quality=quality)


def crop_square(recipe: QueryRecipe, width: int, height: int) -> tuple[int, int, int]:
    """(left, top, side) of the square a query keeps, in pixels of the (rotated) image."""
    if recipe.level == 0:
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side
    return recipe.crop


def box_fraction_kept(recipe: QueryRecipe, box: tuple[float, float, float, float], width: int, height: int) -> float:
    """Share of a box's area that the query keeps (pure geometry; flips and distortions keep everything).

    ``box`` is relative ``[x0, y0, x1, y1]``. The rotation (PIL: counter-clockwise about the centre)
    moves the box's corners; their bounding box is intersected with the kept square.

    >>> box_fraction_kept(QueryRecipe(level=0), (0.0, 0.4, 0.1, 0.6), 640, 360)  # a cone at the left edge
    0.0
    >>> box_fraction_kept(QueryRecipe(level=0), (0.45, 0.4, 0.55, 0.6), 640, 360)
    1.0
    """
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    if recipe.level:
        cx, cy, a = width / 2.0, height / 2.0, math.radians(recipe.angle)
        cos, sin = math.cos(a), math.sin(a)
        xs, ys = [], []
        for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
            dx, dy = x - cx, y - cy
            xs.append(cx + dx * cos + dy * sin)
            ys.append(cy - dx * sin + dy * cos)
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    area = (x1 - x0) * (y1 - y0)
    if area <= 0:
        return 0.0
    left, top, side = crop_square(recipe, width, height)
    inter_w = max(0.0, min(x1, left + side) - max(x0, left))
    inter_h = max(0.0, min(y1, top + side) - max(y0, top))
    return inter_w * inter_h / area


def evidence_kept(recipe: QueryRecipe, boxes, width: int, height: int, *, min_fraction: float = 0.5) -> bool:
    """True when at least ``min_fraction`` of one roadwork box survives the query's crop.

    A positive image whose query keeps no roadwork is label noise no model can fix: the share of
    such queries bounds what any model can score on the validator view.
    """
    return any(box_fraction_kept(recipe, box, width, height) >= min_fraction for box in boxes)
