"""Rendered street scenes with one text sign: ground truth for OCR tests, benchmarks and demo positives.

Real NATIX frames carry no per-sign text labels, so the OCR floor is measured on scenes whose text,
cap height and shape are known exactly. Fonts come from matplotlib's bundled DejaVu/STIX files
(matplotlib is a hard dependency) plus Pillow's built-in font, so no system font is needed.

Example:
    >>> from curation.stage2.signs import SignSpec, render_scene
    >>> scene = render_scene(SignSpec("ROAD WORK AHEAD", cap_height=16), seed=0)
    >>> scene.image.shape
    (224, 224, 3)
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from curation.errors import InputError

FONTS: tuple[str, ...] = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono-Bold.ttf",
    "pillow-default",
)
"""Font names :func:`render_scene` accepts: matplotlib's bundled files and Pillow's built-in Aileron."""

ORANGE = (255, 128, 0)
WHITE = (245, 245, 240)
BLACK = (15, 15, 15)


@dataclass(frozen=True)
class Scene:
    """A rendered frame and where its sign is.

    Attributes:
        image: RGB uint8 array (H, W, 3).
        sign_box: the sign's bounding box, relative [x, y, w, h] as FiftyOne stores boxes.
    """

    image: np.ndarray
    sign_box: tuple[float, float, float, float]


@dataclass(frozen=True)
class SignSpec:
    """One sign: its text, size and look.

    Attributes:
        text: words to print; they wrap onto several lines when one line would not fit.
        cap_height: height of a capital letter in the FINAL image, in pixels.
        shape: "diamond" (warning sign) or "rectangle"; a diamond too small for its text falls
            back to a rectangle, as real oversized messages do.
        font: one of :data:`FONTS`.
        rotation: degrees, counter-clockwise.
        background: sign colour; text is black on orange and white, black on white.
    """

    text: str
    cap_height: int = 16
    shape: Literal["diamond", "rectangle"] = "diamond"
    font: str = FONTS[0]
    rotation: float = 0.0
    background: tuple[int, int, int] = ORANGE

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise InputError("`text` must not be empty.")
        if not 4 <= self.cap_height <= 400:
            raise InputError(f"`cap_height` must be in [4, 400] px; got {self.cap_height}.")
        if self.shape not in ("diamond", "rectangle"):
            raise InputError(f"`shape` must be 'diamond' or 'rectangle'; got {self.shape!r}.")
        if self.font not in FONTS:
            raise InputError(f"`font` must be one of {list(FONTS)}; got {self.font!r}.")


@lru_cache(maxsize=64)
def _font(name: str, cap_height: int) -> ImageFont.FreeTypeFont:
    """The font at the size whose capital 'H' is `cap_height` pixels tall."""

    def load(size: int) -> ImageFont.FreeTypeFont:
        if name == "pillow-default":
            return ImageFont.load_default(size)
        spec = find_spec("matplotlib")
        root = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"  # type: ignore[union-attr,arg-type]
        return ImageFont.truetype(str(root / name), size)

    probe = 100
    top, bottom = load(probe).getbbox("H")[1::2]
    return load(max(1, round(probe * cap_height / (bottom - top))))


def _street(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Sky, buildings, road with lane marks and sensor noise: enough clutter to make OCR find text, not edges."""
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    horizon = int(height * rng.uniform(0.40, 0.55))
    sky = np.linspace(200, 150, horizon)
    for y, v in enumerate(sky):
        draw.line([(0, y), (width, y)], fill=(int(v * 0.8), int(v * 0.9), int(v)))
    x = 0
    while x < width:  # building facades with windows
        bw = int(width * rng.uniform(0.08, 0.2))
        bh = int(horizon * rng.uniform(0.3, 0.9))
        shade = int(rng.integers(70, 160))
        draw.rectangle([x, horizon - bh, x + bw, horizon], fill=(shade, shade - 10, shade - 20))
        for wy in range(horizon - bh + 4, horizon - 6, max(6, bh // 6)):
            for wx in range(x + 3, x + bw - 4, max(6, bw // 4)):
                draw.rectangle([wx, wy, wx + max(2, bw // 10), wy + max(2, bh // 14)], fill=(40, 50, 60))
        x += bw
    draw.rectangle([0, horizon, width, height], fill=(120, 118, 105))
    draw.polygon([(0, height), (width, height), (width * 0.6, horizon), (width * 0.4, horizon)], fill=(85, 85, 90))
    draw.rectangle([0, horizon, width, horizon + 2], fill=(95, 100, 80))
    for i in range(6):  # dashed centre line in perspective
        t0, t1 = i / 6, (i + 0.5) / 6
        y0, y1 = horizon + (height - horizon) * t0, horizon + (height - horizon) * t1
        draw.line([(width / 2, y0), (width / 2, y1)], fill=(230, 230, 230), width=max(1, int(1 + 4 * t1)))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 4, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _wrap(words: list[str], font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    lines: list[str] = []
    for word in words:
        if lines and font.getlength(f"{lines[-1]} {word}") <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _sign(spec: SignSpec, max_side: int) -> Image.Image:
    """The sign alone on a transparent layer, rotated."""
    font = _font(spec.font, spec.cap_height)
    lines = _wrap(spec.text.split(), font, max_side * 0.8)
    line_h = int(spec.cap_height * 1.6)
    widths = [font.getlength(line) for line in lines]
    text_w, text_h = max(widths), line_h * len(lines) - int(spec.cap_height * 0.6)
    pad = max(4, spec.cap_height // 2)
    shape = spec.shape
    half_diag = (text_w + text_h) / 2 + pad  # the text box's corners lie inside |x|+|y| <= half_diag
    turn = abs(np.cos(np.radians(spec.rotation))) + abs(np.sin(np.radians(spec.rotation)))
    if shape == "diamond" and 2 * half_diag * turn > max_side:
        shape = "rectangle"
    if shape == "diamond":
        w = h = int(2 * half_diag) + 2
    else:
        w, h = int(text_w) + 2 * pad, int(text_h) + 2 * pad
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    border = max(1, spec.cap_height // 8)
    if shape == "diamond":
        pts = [(w / 2, 0), (w - 1, h / 2), (w / 2, h - 1), (0, h / 2)]
        draw.polygon(pts, fill=(*BLACK, 255))
        inner = [(w / 2, border * 1.5), (w - 1 - border * 1.5, h / 2), (w / 2, h - 1 - border * 1.5), (border * 1.5, h / 2)]
        draw.polygon(inner, fill=(*spec.background, 255))
    else:
        draw.rectangle([0, 0, w - 1, h - 1], fill=(*BLACK, 255))
        draw.rectangle([border, border, w - 1 - border, h - 1 - border], fill=(*spec.background, 255))
    top = (h - text_h) / 2
    for i, (line, lw) in enumerate(zip(lines, widths, strict=True)):
        y = top + i * line_h
        # Anchor "ls" puts the baseline at y + cap_height so the capital fills [y, y + cap_height].
        draw.text(((w - lw) / 2, y + spec.cap_height), line, font=font, fill=(*BLACK, 255), anchor="ls")
    return layer.rotate(spec.rotation, resample=Image.Resampling.BICUBIC, expand=True)


def render_scene(
    spec: SignSpec,
    *,
    size: tuple[int, int] = (224, 224),
    seed: int = 0,
    jpeg_quality: int | None = 75,
) -> Scene:
    """A street scene with the sign pasted at a random place.

    Text is drawn at its final pixel size (no resize afterwards), so `cap_height` is exactly what the
    OCR sees; `jpeg_quality` re-encodes the frame as validators do (None skips it).
    """
    width, height = size
    rng = np.random.default_rng(seed)
    scene = _street(width, height, rng)
    sign = _sign(spec, int(min(width, height) * 0.95))
    if sign.width > width or sign.height > height:
        raise InputError(
            f"A sign of {sign.width}x{sign.height} px ({spec.text!r} at cap height {spec.cap_height}) "
            f"does not fit a {width}x{height} image; lower `cap_height`."
        )
    x = int(rng.integers(0, width - sign.width + 1))
    y = int(rng.integers(0, height - sign.height + 1))
    scene.paste(sign, (x, y), sign)
    if jpeg_quality is not None:
        buf = io.BytesIO()
        scene.save(buf, format="JPEG", quality=jpeg_quality)
        scene = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    box = (x / width, y / height, sign.width / width, sign.height / height)
    return Scene(image=np.asarray(scene), sign_box=box)
