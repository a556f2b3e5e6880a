"""Street geometry, sky, ground, buildings, lighting and weather for the demo scenes.

A one-point perspective with a camera 1.5 m above a flat road: a ground point ``u`` metres to the
side at depth parameter ``t`` (1 at the frame bottom, 0 at the horizon) lands at
``x = vx + u * ppm(t)``, ``y = horizon + t * (bottom - horizon)`` with ``ppm(t)`` pixels per metre.
Sizes in metres therefore shrink consistently with distance, which keeps object sizes believable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from curation.demo.draw import Canvas

CAMERA_HEIGHT_M = 1.5
LANE_M = 3.5

_SKY = {
    "day": ((70, 130, 210), (185, 210, 235)),
    "overcast": ((140, 145, 155), (200, 200, 206)),
    "Twilight": ((58, 66, 128), (226, 150, 112)),
    "Dark": ((10, 12, 28), (40, 44, 66)),
    "sunset": ((96, 70, 140), (252, 138, 48)),
}
_TINT = {"Light": (1.0, 1.0, 1.0), "Twilight": (0.74, 0.68, 0.8), "Dark": (0.32, 0.34, 0.45)}
_SUNSET_TINT = (1.08, 0.8, 0.56)


@dataclass(frozen=True)
class Geometry:
    """Where the road is: horizon, vanishing point, lanes; ``side`` mirrors the work side."""

    width: int
    height: int
    horizon: float
    vx: float
    bottom: float
    side: int  # +1: the work lane is on the right
    near_edge: float  # metres from the camera to the work-side road edge
    far_edge: float  # metres (negative) to the other road edge
    walk: float  # sidewalk width in metres, 0 without sidewalks
    lanes: int

    def ppm(self, t: float) -> float:
        return t * (self.bottom - self.horizon) / CAMERA_HEIGHT_M

    def xy(self, u: float, t: float) -> tuple[float, float]:
        """Image point of the ground point ``u`` metres towards the work side at depth ``t``."""
        return self.vx + self.side * u * self.ppm(t), self.horizon + t * (self.bottom - self.horizon)

    @property
    def t_max(self) -> float:
        """Depth parameter of the canvas' bottom row (past the frame bottom by the margin)."""
        return (self.height - self.horizon) / (self.bottom - self.horizon)

    def ground_box(self, u0: float, u1: float) -> tuple[float, float, float, float] | None:
        """Visible bounding box of the ground strip between ``u0`` and ``u1``, or None."""
        pts = [self.xy(u, t) for t in np.linspace(0.02, self.t_max, 48) for u in (u0, u1)]
        inside = [(x, y) for x, y in pts if 0 <= x <= self.width]
        edge_x = [min(max(x, 0.0), float(self.width)) for x, _ in pts]
        if not inside and len(set(edge_x)) == 1:
            return None
        ys = [y for _, y in inside] or [self.height]
        box = (min(edge_x), min(ys), max(edge_x), float(self.height))
        return box if box[2] - box[0] >= 2 and box[3] - box[1] >= 2 else None


def make_geometry(size: tuple[int, int], margin: int, environment: str, rng: np.random.Generator) -> Geometry:
    w, h = size
    lanes = {"Highway": int(rng.integers(3, 5)), "Urban": int(rng.integers(2, 4))}.get(environment, 2)
    near = 1.5 * LANE_M  # the camera drives in the lane next to the work lane
    return Geometry(
        width=w + 2 * margin,
        height=h + 2 * margin,
        horizon=margin + h * rng.uniform(0.36, 0.48),
        vx=margin + w * rng.uniform(0.42, 0.58),
        bottom=float(margin + h),
        side=1 if rng.random() < 0.6 else -1,
        near_edge=near,
        far_edge=near - lanes * LANE_M,
        walk=2.5 if environment in ("Urban", "Suburban") else 0.0,
        lanes=lanes,
    )


def sky(geo: Geometry, daytime: str, weather: tuple[str, ...], sunset: bool) -> np.ndarray:
    """The whole canvas filled with a vertical sky gradient, HxWx3 float."""
    if sunset:
        key = "sunset"
    elif daytime != "Light":
        key = daytime
    else:
        key = "day" if "Sunny" in weather else "overcast"
    top, low = (np.array(c, np.float32) for c in _SKY[key])
    f = np.clip(np.arange(geo.height, dtype=np.float32) / max(geo.horizon, 1.0), 0, 1)[:, None]
    col = top * (1 - f) + low * f
    return np.broadcast_to(col[:, None, :], (geo.height, geo.width, 3)).copy()


def ground(c: Canvas, geo: Geometry, environment: str, snowy: bool, road: bool = True) -> None:
    """Ground, road surface, sidewalks and lane markings."""
    d = c.draw
    if environment == "Urban":
        base = (150, 148, 142)
    elif snowy:
        base = (222, 224, 230)
    else:
        base = (96, 128, 70) if environment != "Highway" else (120, 130, 80)
    d.rectangle([0, geo.horizon, geo.width, geo.height], fill=base)
    if not road:
        return
    tm = geo.t_max
    strip = lambda u0, u1: [geo.xy(u0, 0.0), geo.xy(u1, 0.0), geo.xy(u1, tm), geo.xy(u0, tm)]  # noqa: E731
    if geo.walk:
        d.polygon(strip(geo.near_edge, geo.near_edge + geo.walk), fill=(172, 170, 162))
        d.polygon(strip(geo.far_edge - geo.walk, geo.far_edge), fill=(172, 170, 162))
    d.polygon(strip(geo.far_edge, geo.near_edge), fill=(168, 168, 172) if snowy else (88, 88, 92))
    white, yellow = (226, 226, 222), (222, 188, 40)
    for u in (geo.near_edge - 0.25, geo.far_edge + 0.25):
        d.polygon(strip(u - 0.08, u + 0.08), fill=white)
    for k in range(1, geo.lanes):
        u = geo.near_edge - k * LANE_M
        color = yellow if environment == "Rural" else white
        for z in np.arange(1.0 / tm, 40.0, 3.0):
            t0, t1 = 1.0 / z, 1.0 / (z + 1.3)
            d.polygon([geo.xy(u - 0.08, t0), geo.xy(u + 0.08, t0), geo.xy(u + 0.08, t1), geo.xy(u - 0.08, t1)], fill=color)


def skyline(c: Canvas, geo: Geometry, rng: np.random.Generator) -> None:
    """Distant buildings standing on the horizon."""
    x = 0.0
    scale = geo.height / 360
    while x < geo.width:
        w = rng.uniform(20, 60) * scale
        h = rng.uniform(8, 60) * scale
        g = int(rng.integers(110, 160))
        c.draw.rectangle([x, geo.horizon - h, x + w, geo.horizon], fill=(g - 10, g, g + 15))
        x += w
    c.draw.rectangle([0, geo.horizon - 2, geo.width, geo.horizon], fill=(120, 124, 130))


def facades(c: Canvas, geo: Geometry, rng: np.random.Generator, night: bool, low: bool) -> None:
    """Building fronts along both sidewalks (low houses when ``low``), with windows."""
    palette = [(170, 160, 150), (140, 110, 95), (190, 185, 170), (120, 125, 135), (160, 150, 120)]
    for sign in (1, -1):
        u = geo.near_edge + geo.walk + 0.5 if sign > 0 else geo.far_edge - geo.walk - 0.5
        zs = [1.0 / geo.t_max]
        while zs[-1] < 30:
            zs.append(zs[-1] + rng.uniform(1.0, 3.0))
        for z0, z1 in reversed(list(zip(zs, zs[1:]))):
            hb = rng.uniform(4, 7) if low else rng.uniform(8, 28)
            color = palette[int(rng.integers(len(palette)))]
            _facade(c, geo, u, z0, z1, hb, color, rng, night)


def _facade(c: Canvas, geo: Geometry, u: float, z0: float, z1: float, hb: float, color: tuple[int, int, int], rng: np.random.Generator, night: bool) -> None:
    def pt(z: float, up: float) -> tuple[float, float]:
        x, y = geo.xy(u, 1.0 / z)
        return x, y - up * geo.ppm(1.0 / z)

    c.draw.polygon([pt(z0, 0), pt(z1, 0), pt(z1, hb), pt(z0, hb)], fill=color, outline=(70, 70, 70))
    cols, rows = max(1, int((z1 - z0) * 2)), max(1, int(hb / 3))
    for i in range(cols):
        za, zb = z0 + (i + 0.25) / cols * (z1 - z0), z0 + (i + 0.75) / cols * (z1 - z0)
        for j in range(rows):
            ha, hb_ = (j + 0.3) / rows * hb, (j + 0.75) / rows * hb
            quad = [pt(za, ha), pt(zb, ha), pt(zb, hb_), pt(za, hb_)]
            if night and rng.random() < 0.35:
                c.light("polygon", quad, (255, 218, 140))
            else:
                c.draw.polygon(quad, fill=(70, 80, 96))


def guard_rail(c: Canvas, geo: Geometry) -> None:
    u, tm = geo.near_edge + 0.6, geo.t_max
    pts = []
    for t in (0.0, tm):
        x, y = geo.xy(u, t)
        pts.append((x, y - 0.55 * geo.ppm(t)))
        pts.append((x, y - 0.8 * geo.ppm(t)))
    c.draw.polygon([pts[1], pts[3], pts[2], pts[0]], fill=(176, 178, 182), outline=(110, 110, 115))


def finish(c: Canvas, daytime: str, weather: tuple[str, ...], sunset: bool, rng: np.random.Generator) -> Image.Image:
    """Apply lighting, paint the lights, weather and sensor noise; return the final RGB image."""
    arr = np.asarray(c.image, dtype=np.float32)
    tint = np.array(_SUNSET_TINT if sunset else _TINT[daytime], np.float32)
    if {"Cloudy", "Rain"} & set(weather):
        tint = tint * 0.88
    arr = arr * tint
    if "Fog" in weather:
        arr = arr * 0.65 + np.array([200, 200, 205], np.float32) * 0.35
    lit = Canvas(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    for shape, xy, color in c.lights:
        getattr(lit.draw, shape)(xy, fill=color)
    w, h = lit.image.size
    if "Rain" in weather:
        for _ in range(w * h // 900):
            x, y, n = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 16)
            lit.draw.line([(x, y), (x - 0.25 * n, y + n)], fill=(178, 182, 192), width=1)
    if "Snow" in weather:
        for _ in range(w * h // 700):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.6, 2.0)
            lit.draw.ellipse([x - r, y - r, x + r, y + r], fill=(245, 245, 250))
    noise = rng.integers(-4, 5, size=(h, w, 1), dtype=np.int16)
    out = np.asarray(lit.image, dtype=np.int16) + noise
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
