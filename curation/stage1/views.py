"""Multi-view geometry and tensor construction: one global view plus g×g overlapping tiles.

Roadwork evidence is often a single cone in a corner; at 224 px a whole 1920×1080 frame shrinks it
to a few pixels, so each tile is classified at full resolution and the views are aggregated (MIL).
Geometry is pure numpy (testable by hand); :func:`build_views` does the pixel work on the images'
own device so a GPU batch never round-trips through the host.

Example:
    >>> import torch
    >>> from curation.stage1.views import ViewPolicy, build_views, view_boxes
    >>> policy = ViewPolicy(grid=3, overlap=0.125)
    >>> view_boxes(policy, 640, 480).shape
    (10, 4)
    >>> build_views([torch.zeros(3, 480, 640, dtype=torch.uint8)], policy).shape
    torch.Size([10, 3, 224, 224])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from curation.errors import ConfigError, InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViewPolicy:
    """Which views an image is cut into.

    Attributes:
        grid: tiles per side (0 keeps only the global view).
        overlap: fraction of a tile's width (height) shared with its neighbour, in [0, 0.5).
        flip: also append horizontally flipped copies of every view (doubles the views).
        size: side of each square view fed to the backbone, in pixels.
    """

    grid: int = 3
    overlap: float = 0.125
    flip: bool = False
    size: int = 224

    def __post_init__(self) -> None:
        if not isinstance(self.grid, int) or not 0 <= self.grid <= 8:
            raise ConfigError(f"`grid` must be an int in [0, 8]; got {self.grid!r}.")
        if not 0.0 <= float(self.overlap) < 0.5:
            raise ConfigError(f"`overlap` must be a fraction in [0, 0.5); got {self.overlap!r}.")
        if not isinstance(self.size, int) or self.size < 16:
            raise ConfigError(f"`size` must be an int ≥ 16 (pixels); got {self.size!r}.")

    @property
    def num_views(self) -> int:
        return (1 + self.grid * self.grid) * (2 if self.flip else 1)

    def view_names(self) -> list[str]:
        """Human-readable names in view order: global, tiles row-major ``r{row}c{col}``, flips."""
        names = ["global"] + [f"r{r}c{c}" for r in range(self.grid) for c in range(self.grid)]
        return names + [f"{n}_flip" for n in names] if self.flip else names


def tile_extent(grid: int, overlap: float) -> tuple[float, float]:
    """Return (tile side, stride) as fractions of the image side.

    ``grid`` tiles of side ``w`` with stride ``w·(1−overlap)`` exactly span the image:
    ``(grid−1)·w·(1−overlap) + w = 1``, so ``w = 1 / (grid − (grid−1)·overlap)``.
    """
    side = 1.0 / (grid - (grid - 1) * overlap)
    return side, side * (1.0 - overlap)


def view_pixel_boxes(policy: ViewPolicy, width: int, height: int) -> np.ndarray:
    """Integer crop boxes ``[x0, y0, x1, y1]`` (end-exclusive), one per view, shape [V, 4].

    Tile edges are floored/ceiled outwards so neighbouring tiles never leave a gap and every tile
    has at least one pixel, even when the image is smaller than a tile would be.
    """
    if width < 1 or height < 1:
        raise InputError(f"Image must be at least 1×1 pixels; got {width}×{height}.")
    boxes = [[0, 0, width, height]]
    if policy.grid:
        side, stride = tile_extent(policy.grid, policy.overlap)
        for r in range(policy.grid):
            for c in range(policy.grid):
                x0, y0 = math.floor(c * stride * width + 1e-9), math.floor(r * stride * height + 1e-9)
                x1 = min(width, max(x0 + 1, math.ceil((c * stride + side) * width - 1e-9)))
                y1 = min(height, max(y0 + 1, math.ceil((r * stride + side) * height - 1e-9)))
                boxes.append([x0, y0, x1, y1])
    out = np.asarray(boxes, dtype=np.int64)  # [1 + g², 4]
    return np.concatenate([out, out]) if policy.flip else out


def view_boxes(policy: ViewPolicy, width: int, height: int) -> np.ndarray:
    """Relative ``[x, y, w, h]`` boxes (FiftyOne's convention) of each view, shape [V, 4].

    A flipped view covers the same region as its unflipped twin, so it repeats the box.
    """
    px = view_pixel_boxes(policy, width, height).astype(np.float64)  # [V, 4]
    scale = np.array([width, height, width, height], dtype=np.float64)
    return np.concatenate([px[:, :2], px[:, 2:] - px[:, :2]], axis=1) / scale


def build_views(images: list[torch.Tensor], policy: ViewPolicy) -> torch.Tensor:
    """Cut, resize and normalise every view of every image into one batch.

    Each view is resized to ``size×size``, antialiased when downscaling (a shrunk frame otherwise
    aliases thin cone stripes), and normalised with ImageNet statistics, which DINOv3 was trained with.
    Non-square views are squashed rather than padded so the whole region stays visible.

    Args:
        images: uint8 tensors [3, H, W] (any size and aspect), all on the same device.
        policy: the view policy.

    Returns:
        float32 tensor [N·V, 3, size, size] on the images' device, image-major (all views of
        image 0, then image 1, ...), each image's views in :func:`view_boxes` order.
    """
    if not images:
        raise InputError("`images` is empty; pass at least one [3, H, W] uint8 tensor.")
    mean = torch.tensor(IMAGENET_MEAN, device=images[0].device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images[0].device).view(1, 3, 1, 1)
    out = []
    for i, image in enumerate(images):
        if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise InputError(
                f"Image {i} must be a uint8 tensor [3, H, W]; got {image.dtype} {tuple(image.shape)}."
            )
        height, width = int(image.shape[1]), int(image.shape[2])
        x = image.unsqueeze(0).float() / 255.0  # [1, 3, H, W]
        boxes = view_pixel_boxes(policy, width, height)
        unique = boxes[: len(boxes) // 2] if policy.flip else boxes
        crops = [
            F.interpolate(
                x[:, :, y0:y1, x0:x1],
                size=(policy.size, policy.size),
                mode="bilinear",
                # Antialiasing only changes downscaling (upscaled tiles match plain bilinear to
                # ~1e-6) and costs ~4× on CPU, so it is used where a side shrinks.
                antialias=max(x1 - x0, y1 - y0) > policy.size,
                align_corners=False,
            )
            for x0, y0, x1, y1 in unique.tolist()
        ]
        views = torch.cat(crops)  # [V', 3, S, S]
        if policy.flip:
            views = torch.cat([views, views.flip(-1)])  # [V, 3, S, S]
        out.append((views - mean) / std)
    return torch.cat(out)  # [N·V, 3, S, S]


def pil_to_tensor(image) -> torch.Tensor:
    """Decode a PIL image into a uint8 tensor [3, H, W] (RGB), the input of :func:`build_views`."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)  # [H, W, 3]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
