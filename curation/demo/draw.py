"""Drawing primitives for the demo street scenes.

Every object is drawn at a ground point (centre ``x``, bottom ``y``) with a pixel height ``h`` and
returns its bounding box, so a scene knows exactly what it drew and where. Roadwork objects are
drawn the way the real ones look (striped cones, drums and panels, diamond signs with text) so a
small model can learn them; distractors reuse the same oranges so colour alone is not enough.
Light sources are recorded on the canvas and painted after the day/night lighting pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
BBox = tuple[float, float, float, float]

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")

ORANGE: RGB = (244, 112, 24)
WHITE: RGB = (236, 236, 230)
BLACK: RGB = (22, 22, 22)
AMBER: RGB = (255, 186, 40)
DARK: RGB = (48, 48, 52)
SKIN: RGB = (205, 160, 125)
VEST_ORANGE: RGB = (250, 120, 20)
VEST_LIME: RGB = (196, 236, 46)


@dataclass
class Canvas:
    """An image being drawn plus the light sources to paint after the lighting pass."""

    image: Image.Image
    draw: ImageDraw.ImageDraw = field(init=False)
    lights: list[tuple[str, list[float], RGB]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.draw = ImageDraw.Draw(self.image)

    def light(self, shape: str, xy: list[float], color: RGB) -> None:
        """Draw ``shape`` now and again, unlit, after the lighting pass (lamps glow at night)."""
        getattr(self.draw, shape)(xy, fill=color)
        self.lights.append((shape, xy, color))


@lru_cache(maxsize=128)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A real TTF at ``size`` px so that OCR can read the rendered text later."""
    size = max(6, int(size))
    if FONT_PATH.exists():
        return ImageFont.truetype(str(FONT_PATH), size)
    return ImageFont.load_default(size=size)


def _layouts(words: list[str]) -> list[list[str]]:
    """Ways to break ``words`` into one, two or three lines, keeping word order."""
    n = len(words)
    out = [[" ".join(words)]]
    out += [[" ".join(words[:i]), " ".join(words[i:])] for i in range(1, n)]
    out += [[" ".join(words[:i]), " ".join(words[i:j]), " ".join(words[j:])] for i in range(1, n) for j in range(i + 1, n)]
    return out


def text_panel(text: str, width: int, height: int, bg: RGB, fg: RGB, border: RGB | None = None) -> Image.Image:
    """A rectangular sign with ``text`` at the largest size that fits in at most three lines."""
    width, height = max(4, round(width)), max(4, round(height))
    img = Image.new("RGB", (width, height), bg)
    d = ImageDraw.Draw(img)
    pad = max(1, min(width, height) // 10)
    if border is not None:
        d.rectangle([0, 0, width - 1, height - 1], outline=border, width=max(1, pad // 2))
    _draw_text_block(d, text, (pad, pad, width - pad, height - pad), fg)
    return img


def _draw_text_block(d: ImageDraw.ImageDraw, text: str, box: BBox, fg: RGB) -> None:
    """Centre ``text`` in ``box`` choosing the line breaks that allow the biggest font."""
    x0, y0, x1, y1 = box
    ref = font(100)
    cap = ref.getbbox("H")[3] - ref.getbbox("H")[1]
    best, best_size = [text], 0.0
    for lines in _layouts(text.split()):
        widest = max(ref.getlength(line) for line in lines)
        size = 100 * min((x1 - x0) / widest, (y1 - y0) / (len(lines) * cap * 1.45))
        if size > best_size:
            best, best_size = lines, size
    f = font(int(best_size))
    step = (y1 - y0) / len(best)
    for i, line in enumerate(best):
        d.text(((x0 + x1) / 2, y0 + step * (i + 0.5)), line, fill=fg, font=f, anchor="mm")


def ttc_sign_image(text: str, size: int) -> Image.Image:
    """An orange diamond work-zone sign with black text, RGBA so the corners stay transparent."""
    size = max(8, round(size))
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    s = size - 1
    diamond = [(s / 2, 0), (s, s / 2), (s / 2, s), (0, s / 2)]
    d.polygon(diamond, fill=BLACK)
    b = max(1.0, size * 0.04)
    d.polygon([(s / 2, b), (s - b, s / 2), (s / 2, s - b), (b, s / 2)], fill=ORANGE)
    # A w x h block fits in the diamond when w + h <= the diagonal; keep a margin for the border.
    _draw_text_block(d, text, (s * 0.2, s * 0.31, s * 0.8, s * 0.69), BLACK)
    return img


def stripes(w: float, h: float, c1: RGB, c2: RGB, period: float, slope: float = 1.0) -> Image.Image:
    """Diagonal two-colour stripes, the retroreflective pattern on panels and barricades."""
    w, h = max(1, round(w)), max(1, round(h))
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((xx + slope * yy) // max(2.0, period)) % 2 == 0
    arr = np.where(mask[..., None], np.array(c1, np.uint8), np.array(c2, np.uint8))
    return Image.fromarray(arr.astype(np.uint8))


def _paste(c: Canvas, img: Image.Image, x0: float, y0: float) -> None:
    mask = img.getchannel("A") if img.mode == "RGBA" else None
    c.image.paste(img.convert("RGB"), (round(x0), round(y0)), mask)


def _band(x: float, top: float, bottom: float, w0: float, w1: float, a: float, b: float) -> list[tuple[float, float]]:
    """The part of a trapezoid (half-widths w0 at top, w1 at bottom) between height fractions a, b."""
    ya, yb = top + a * (bottom - top), top + b * (bottom - top)
    wa, wb = w0 + a * (w1 - w0), w0 + b * (w1 - w0)
    return [(x - wa, ya), (x + wa, ya), (x + wb, yb), (x - wb, yb)]


# Roadwork primitives ---------------------------------------------------------------------------


def cone(c: Canvas, x: float, y: float, h: float) -> BBox:
    top, base = y - h, y - 0.1 * h
    c.draw.polygon(_band(x, top, base, 0.07 * h, 0.28 * h, 0.0, 1.0), fill=ORANGE)
    for a, b in ((0.3, 0.45), (0.58, 0.7)):
        c.draw.polygon(_band(x, top, base, 0.07 * h, 0.28 * h, a, b), fill=WHITE)
    c.draw.rectangle([x - 0.38 * h, base, x + 0.38 * h, y], fill=DARK)
    return (x - 0.38 * h, top, x + 0.38 * h, y)


def drum(c: Canvas, x: float, y: float, h: float) -> BBox:
    hw, top = 0.3 * h, y - h
    c.draw.rounded_rectangle([x - hw, top, x + hw, y - 0.06 * h], radius=max(1, 0.08 * h), fill=ORANGE)
    for a in (0.14, 0.42, 0.7):
        c.draw.rectangle([x - hw, top + a * h, x + hw, top + (a + 0.13) * h], fill=WHITE)
    c.draw.rectangle([x - 1.15 * hw, y - 0.08 * h, x + 1.15 * hw, y], fill=DARK)
    return (x - 1.15 * hw, top, x + 1.15 * hw, y)


def barrier(c: Canvas, x: float, y: float, h: float, color: RGB) -> BBox:
    """A water-filled or concrete barrier segment seen from the front."""
    hw = 0.9 * h
    profile = [(x - hw, y), (x + hw, y), (x + 0.92 * hw, y - 0.35 * h), (x + 0.85 * hw, y - h), (x - 0.85 * hw, y - h), (x - 0.92 * hw, y - 0.35 * h)]
    c.draw.polygon(profile, fill=color, outline=DARK)
    c.draw.rectangle([x - 0.5 * hw, y - 0.62 * h, x + 0.5 * hw, y - 0.5 * h], fill=AMBER if color != ORANGE else WHITE)
    return (x - hw, y - h, x + hw, y)


def barricade(c: Canvas, x: float, y: float, h: float) -> BBox:
    """A Type III barricade: striped boards on two legs."""
    hw, top = 0.75 * h, y - h
    leg = max(1.0, 0.04 * h)
    for lx in (x - 0.6 * hw, x + 0.6 * hw):
        c.draw.rectangle([lx - leg, top + 0.1 * h, lx + leg, y], fill=DARK)
    for k, slope in enumerate((1.0, -1.0, 1.0)):
        _paste(c, stripes(2 * hw, 0.17 * h, ORANGE, WHITE, 0.12 * h, slope), x - hw, top + k * 0.28 * h)
    return (x - hw, top, x + hw, y)


def vertical_panel(c: Canvas, x: float, y: float, h: float) -> BBox:
    hw, top = 0.13 * h, y - h
    c.draw.rectangle([x - 0.03 * h, top + 0.5 * h, x + 0.03 * h, y - 0.08 * h], fill=DARK)
    _paste(c, stripes(2 * hw, 0.58 * h, ORANGE, WHITE, 0.1 * h), x - hw, top)
    c.draw.rectangle([x - 0.2 * h, y - 0.08 * h, x + 0.2 * h, y], fill=BLACK)
    return (x - 0.2 * h, top, x + 0.2 * h, y)


def arrow_board(c: Canvas, x: float, y: float, h: float, direction: int) -> BBox:
    """A trailer with a black board of amber lamps forming an arrow (direction -1 left, +1 right)."""
    bw, bh = 0.55 * h, 0.34 * h
    c.draw.rectangle([x - 0.03 * h, y - h + bh, x + 0.03 * h, y - 0.2 * h], fill=DARK)
    c.draw.rectangle([x - 0.36 * h, y - 0.22 * h, x + 0.36 * h, y - 0.08 * h], fill=ORANGE)
    for wx in (x - 0.25 * h, x + 0.25 * h):
        c.draw.ellipse([wx - 0.07 * h, y - 0.14 * h, wx + 0.07 * h, y], fill=BLACK)
    c.draw.rectangle([x - bw, y - h, x + bw, y - h + bh], fill=BLACK)
    r, cy = max(0.8, 0.025 * h), y - h + bh / 2
    for k in range(-4, 5):
        c.light("ellipse", [x + k * 0.1 * h - r, cy - r, x + k * 0.1 * h + r, cy + r], AMBER)
    tip = x + direction * 0.45 * h
    for k in (1, 2, 3):
        for s in (-1, 1):
            px, py = tip - direction * k * 0.08 * h, cy + s * k * 0.07 * h
            c.light("ellipse", [px - r, py - r, px + r, py + r], AMBER)
    return (x - bw, y - h, x + bw, y)


def message_board(c: Canvas, x: float, y: float, h: float, text: str) -> BBox:
    """A trailer-mounted message board with amber text."""
    bw, bh = 0.7 * h, 0.42 * h
    c.draw.rectangle([x - 0.03 * h, y - h + bh, x + 0.03 * h, y - 0.2 * h], fill=DARK)
    c.draw.rectangle([x - 0.4 * h, y - 0.22 * h, x + 0.4 * h, y - 0.08 * h], fill=ORANGE)
    _paste(c, text_panel(text, 2 * bw, bh, BLACK, AMBER, border=DARK), x - bw, y - h)
    return (x - bw, y - h, x + bw, y)


def ttc_sign(c: Canvas, x: float, y: float, h: float, text: str) -> BBox:
    """A diamond sign on a post; the box covers the sign face, as ROADWork annotates it."""
    d = 0.5 * h
    c.draw.rectangle([x - 0.02 * h, y - h + 0.8 * d, x + 0.02 * h, y], fill=DARK)
    _paste(c, ttc_sign_image(text, d), x - d / 2, y - h)
    return (x - d / 2, y - h, x + d / 2, y - h + d)


def chevron_sign(c: Canvas, x: float, y: float, h: float, direction: int) -> BBox:
    """An orange chevron-alignment sign (direction -1 points left)."""
    w, sh = 0.32 * h, 0.4 * h
    c.draw.rectangle([x - 0.02 * h, y - h + sh, x + 0.02 * h, y], fill=DARK)
    c.draw.rectangle([x - w / 2, y - h, x + w / 2, y - h + sh], fill=ORANGE, outline=BLACK)
    cx, cy, a = x, y - h + sh / 2, 0.12 * h
    tip = cx + direction * a
    c.draw.polygon([(tip, cy), (cx - direction * a * 0.2, cy - a), (cx - direction * a * 0.9, cy - a), (tip - direction * a * 0.7, cy), (cx - direction * a * 0.9, cy + a), (cx - direction * a * 0.2, cy + a)], fill=BLACK)
    return (x - w / 2, y - h, x + w / 2, y - h + sh)


def text_sign(c: Canvas, x: float, y: float, h: float, text: str, bg: RGB, fg: RGB, width: float) -> BBox:
    """A rectangular sign with text on a post (work-zone text sign or shop sign)."""
    sh = 0.45 * h
    c.draw.rectangle([x - 0.02 * h, y - h + sh, x + 0.02 * h, y], fill=DARK)
    _paste(c, text_panel(text, width, sh, bg, fg, border=BLACK), x - width / 2, y - h)
    return (x - width / 2, y - h, x + width / 2, y - h + sh)


def person(c: Canvas, x: float, y: float, h: float, shirt: RGB, vest: RGB | None = None, hat: RGB | None = None) -> BBox:
    """A standing figure; a vest adds reflective stripes, a hat a hard hat."""
    r = 0.075 * h
    hy = y - h + 0.1 * h
    pants = (44, 52, 84)
    for lx in (x - 0.07 * h, x + 0.02 * h):
        c.draw.rectangle([lx, y - 0.46 * h, lx + 0.05 * h, y - 0.03 * h], fill=pants)
        c.draw.rectangle([lx - 0.01 * h, y - 0.04 * h, lx + 0.07 * h, y], fill=BLACK)
    torso = vest or shirt
    c.draw.rectangle([x - 0.18 * h, y - 0.8 * h, x - 0.12 * h, y - 0.5 * h], fill=shirt)
    c.draw.rectangle([x + 0.12 * h, y - 0.8 * h, x + 0.18 * h, y - 0.5 * h], fill=shirt)
    c.draw.rectangle([x - 0.13 * h, y - 0.82 * h, x + 0.13 * h, y - 0.44 * h], fill=torso)
    if vest is not None:
        c.draw.rectangle([x - 0.13 * h, y - 0.62 * h, x + 0.13 * h, y - 0.58 * h], fill=(215, 215, 215))
        for sx in (x - 0.08 * h, x + 0.05 * h):
            c.draw.rectangle([sx, y - 0.82 * h, sx + 0.03 * h, y - 0.62 * h], fill=(215, 215, 215))
    c.draw.ellipse([x - r, hy - r, x + r, hy + r], fill=SKIN)
    if hat is not None:
        c.draw.chord([x - 1.25 * r, hy - 1.5 * r, x + 1.25 * r, hy + 0.6 * r], 180, 360, fill=hat)
    return (x - 0.18 * h, y - h, x + 0.18 * h, y)


def work_vehicle(c: Canvas, x: float, y: float, h: float, body: RGB) -> BBox:
    """A work truck from behind: chevron rear panel and an amber beacon."""
    hw = 0.55 * h
    c.draw.rectangle([x - hw, y - 0.9 * h, x + hw, y - 0.14 * h], fill=body, outline=DARK)
    half = hw
    _paste(c, stripes(half, 0.3 * h, ORANGE, WHITE, 0.09 * h, 1.0), x - hw, y - 0.46 * h)
    _paste(c, stripes(half, 0.3 * h, ORANGE, WHITE, 0.09 * h, -1.0), x, y - 0.46 * h)
    c.light("rectangle", [x - 0.08 * h, y - h, x + 0.08 * h, y - 0.9 * h], AMBER)
    for wx in (x - 0.38 * h, x + 0.24 * h):
        c.draw.rectangle([wx, y - 0.16 * h, wx + 0.14 * h, y], fill=BLACK)
    for lx in (x - hw, x + hw - 0.08 * h):
        c.light("rectangle", [lx, y - 0.56 * h, lx + 0.08 * h, y - 0.48 * h], (220, 30, 30))
    return (x - hw, y - h, x + hw, y)


def excavator(c: Canvas, x: float, y: float, h: float) -> BBox:
    """A tracked excavator from the side, arm raised to the right."""
    yellow = (238, 188, 22)
    c.draw.rounded_rectangle([x - 0.6 * h, y - 0.2 * h, x + 0.4 * h, y], radius=max(1, 0.08 * h), fill=DARK)
    c.draw.rectangle([x - 0.55 * h, y - 0.55 * h, x + 0.25 * h, y - 0.2 * h], fill=yellow)
    c.draw.rectangle([x - 0.05 * h, y - 0.88 * h, x + 0.25 * h, y - 0.55 * h], fill=yellow)
    c.draw.rectangle([x + 0.02 * h, y - 0.82 * h, x + 0.2 * h, y - 0.62 * h], fill=(90, 120, 140))
    arm = [(x + 0.2 * h, y - 0.5 * h), (x + 0.7 * h, y - h), (x + 1.0 * h, y - 0.4 * h)]
    c.draw.line(arm, fill=yellow, width=max(1, round(0.09 * h)))
    c.draw.polygon([(x + 0.92 * h, y - 0.42 * h), (x + 1.12 * h, y - 0.42 * h), (x + 1.05 * h, y - 0.2 * h), (x + 0.9 * h, y - 0.24 * h)], fill=DARK)
    return (x - 0.6 * h, y - h, x + 1.12 * h, y)


def mesh_fence(c: Canvas, x: float, y: float, h: float, w: float, color: RGB = ORANGE) -> BBox:
    """A plastic safety fence (orange mesh between posts)."""
    x0, x1, top = x - w / 2, x + w / 2, y - h
    lw = max(1, round(h / 24))
    step = max(2.0, h / 6)
    for k in range(int(h / step) + 1):
        c.draw.line([(x0, top + k * step), (x1, top + k * step)], fill=color, width=lw)
    for k in range(int(w / step) + 1):
        c.draw.line([(x0 + k * step, top), (x0 + k * step, y)], fill=color, width=lw)
    for k in range(4):
        px = x0 + k * w / 3
        c.draw.rectangle([px - lw, top - 0.05 * h, px + lw, y], fill=(120, 120, 120))
    return (x0 - lw, top - 0.05 * h, x1 + lw, y)


# Scenery and distractors ----------------------------------------------------------------------


def picket_fence(c: Canvas, x: float, y: float, h: float, w: float, color: RGB) -> BBox:
    """A garden fence: pointed pickets on two rails."""
    x0, x1 = x - w / 2, x + w / 2
    pw = max(1.0, h * 0.18)
    for rail in (0.3, 0.7):
        c.draw.rectangle([x0, y - rail * h - 0.05 * h, x1, y - rail * h + 0.05 * h], fill=color)
    px = x0
    while px < x1:
        c.draw.polygon([(px, y), (px, y - 0.85 * h), (px + pw / 2, y - h), (px + pw, y - 0.85 * h), (px + pw, y)], fill=color, outline=DARK)
        px += pw * 1.7
    return (x0, y - h, x1, y)


def car(c: Canvas, x: float, y: float, h: float, color: RGB) -> BBox:
    """A car seen from behind."""
    hw = 0.9 * h
    c.draw.polygon([(x - 0.72 * hw, y - 0.58 * h), (x + 0.72 * hw, y - 0.58 * h), (x + 0.58 * hw, y - h), (x - 0.58 * hw, y - h)], fill=color)
    c.draw.polygon([(x - 0.62 * hw, y - 0.62 * h), (x + 0.62 * hw, y - 0.62 * h), (x + 0.52 * hw, y - 0.94 * h), (x - 0.52 * hw, y - 0.94 * h)], fill=(60, 70, 85))
    for wx in (x - 0.92 * hw, x + 0.6 * hw):
        c.draw.rectangle([wx, y - 0.18 * h, wx + 0.32 * hw, y], fill=BLACK)
    c.draw.rectangle([x - hw, y - 0.6 * h, x + hw, y - 0.12 * h], fill=color, outline=DARK)
    c.draw.rectangle([x - 0.18 * hw, y - 0.34 * h, x + 0.18 * hw, y - 0.22 * h], fill=WHITE)
    for lx in (x - hw, x + 0.78 * hw):
        c.light("rectangle", [lx, y - 0.5 * h, lx + 0.22 * hw, y - 0.4 * h], (215, 25, 25))
    return (x - hw, y - h, x + hw, y)


def bus(c: Canvas, x: float, y: float, h: float, color: RGB) -> BBox:
    """A city bus from behind."""
    hw = 0.45 * h
    c.draw.rectangle([x - hw, y - h, x + hw, y - 0.08 * h], fill=color, outline=DARK)
    c.draw.rectangle([x - 0.85 * hw, y - 0.92 * h, x + 0.85 * hw, y - 0.62 * h], fill=(60, 70, 85))
    for wx in (x - 0.9 * hw, x + 0.55 * hw):
        c.draw.rectangle([wx, y - 0.1 * h, wx + 0.35 * hw, y], fill=BLACK)
    for lx in (x - hw, x + 0.82 * hw):
        c.light("rectangle", [lx, y - 0.3 * h, lx + 0.18 * hw, y - 0.2 * h], (215, 25, 25))
    return (x - hw, y - h, x + hw, y)


def tree(c: Canvas, x: float, y: float, h: float, palette: list[RGB], rng: np.random.Generator) -> BBox:
    """A roadside tree; an autumn palette makes it an orange distractor."""
    c.draw.rectangle([x - 0.04 * h, y - 0.5 * h, x + 0.04 * h, y], fill=(92, 64, 40))
    for _ in range(7):
        cx = x + rng.uniform(-0.2, 0.2) * h
        cy = y - rng.uniform(0.55, 0.85) * h
        r = rng.uniform(0.14, 0.24) * h
        c.draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=palette[int(rng.integers(len(palette)))])
    return (x - 0.44 * h, y - h, x + 0.44 * h, y)


def street_lamp(c: Canvas, x: float, y: float, h: float, direction: int) -> BBox:
    lw = max(1, round(0.02 * h))
    c.draw.line([(x, y), (x, y - h), (x + direction * 0.25 * h, y - h)], fill=(90, 90, 95), width=lw)
    hx = x + direction * 0.25 * h
    c.light("ellipse", [hx - 0.04 * h, y - h, hx + 0.04 * h, y - 0.97 * h], (255, 236, 180))
    return (min(x, hx), y - h, max(x, hx), y)


def crane(c: Canvas, x: float, y: float, h: float, color: RGB) -> BBox:
    """A tower crane in the skyline: lattice mast, jib, counterweight and hook."""
    mw, lw = 0.04 * h, max(1, round(h / 150))
    top = y - h
    c.draw.line([(x - mw, y), (x - mw, top)], fill=color, width=lw + 1)
    c.draw.line([(x + mw, y), (x + mw, top)], fill=color, width=lw + 1)
    step = 2 * mw
    k = 0
    while y - (k + 1) * step > top:
        c.draw.line([(x - mw, y - k * step), (x + mw, y - (k + 1) * step)], fill=color, width=lw)
        k += 1
    jl, jr = x - 0.3 * h, x + 0.9 * h
    c.draw.line([(jl, top), (jr, top)], fill=color, width=lw + 1)
    c.draw.line([(jl, top + 0.03 * h), (jr, top + 0.03 * h)], fill=color, width=lw)
    c.draw.line([(x, top - 0.1 * h), (jr, top), (x, top - 0.1 * h), (jl, top)], fill=color, width=lw)
    c.draw.rectangle([jl, top, jl + 0.1 * h, top + 0.07 * h], fill=(110, 110, 110))
    c.draw.rectangle([x + mw, top + 0.03 * h, x + 0.1 * h, top + 0.09 * h], fill=color)
    hook = x + 0.6 * h
    c.draw.line([(hook, top), (hook, top + 0.4 * h)], fill=DARK, width=1)
    c.draw.rectangle([hook - 0.015 * h, top + 0.4 * h, hook + 0.015 * h, top + 0.43 * h], fill=DARK)
    return (jl, top - 0.1 * h, jr, y)


def billboard(c: Canvas, x: float, y: float, h: float, w: float, text: str, bg: RGB, fg: RGB) -> BBox:
    """An advertising board on two poles."""
    bh = 0.45 * h
    for px in (x - 0.3 * w, x + 0.3 * w):
        c.draw.rectangle([px - 0.02 * w, y - h + bh, px + 0.02 * w, y], fill=(100, 100, 104))
    _paste(c, text_panel(text, w, bh, bg, fg, border=DARK), x - w / 2, y - h)
    return (x - w / 2, y - h, x + w / 2, y)
