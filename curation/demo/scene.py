"""Procedural street scenes with exact labels: roadwork positives and orange distractor negatives.

``render_scene(spec)`` is a pure function of its :class:`SceneSpec`: the same spec always gives the
same pixels and boxes. A scene is rendered with a margin so a video sequence can be cut from it as
several frames with small camera shifts (:func:`view`). Boxes use the unified class names of
``curation.schema``; the ``kind`` says what the image is about and, for distractor negatives, which
hard-negative category it belongs to.

Example:
    >>> frame = view(render_scene(sample_spec("cones", seed=3)))
    >>> frame.is_roadwork, frame.image.size
    (True, (640, 360))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from curation.demo import backdrop, draw
from curation.demo.backdrop import LANE_M
from curation.demo.draw import ORANGE, WHITE, BBox, Canvas
from curation.errors import ConfigError, suggest
from curation.schema import ROADWORK_PRIMITIVES

POSITIVE_KINDS: dict[str, frozenset[str]] = {
    "cones": frozenset({"cone"}),
    "drums": frozenset({"drum"}),
    "barrier": frozenset({"barrier"}),
    "barricade": frozenset({"barricade"}),
    "vertical_panels": frozenset({"vertical_panel"}),
    "arrow_board": frozenset({"arrow_board"}),
    "workers": frozenset({"worker"}),
    "work_vehicle": frozenset({"work_vehicle"}),
    "work_fence": frozenset({"fence"}),
    "equipment": frozenset({"work_equipment"}),
    "mixed": frozenset({"cone", "drum", "barricade", "vertical_panel", "worker", "ttc_sign", "ttc_message_board"}),
    "tiny": frozenset({"cone", "drum"}),
    "edge_cut": frozenset({"cone", "drum", "barricade"}),
    "sign_text_only": frozenset({"ttc_sign"}),
}
"""Positive kinds and the unified classes they draw evidence from (any one is enough)."""

NEGATIVE_KINDS: dict[str, str] = {
    "plain": "",
    "orange_billboard": "ad",
    "shop_sign": "ad",
    "foliage": "foliage",
    "crane": "crane",
    "vest": "vest",
    "sunset": "sunset_light",
    "orange_vehicle": "vehicle",
    "garden_fence": "fence",
}
"""Negative kinds and their hard-negative category ("" for a plain street)."""

ROADWORK_TEXTS = ("ROAD WORK AHEAD", "DETOUR", "LANE CLOSED", "MEN WORKING", "ONE LANE ROAD")
SHOP_TEXTS = ("PIZZA", "SALE 50%", "CAFE", "PHARMACY", "BAKERY", "OPEN 24H")
AD_TEXTS = ("MEGA SALE", "FRESH JUICE", "NEW PHONE", "HOLIDAY DEALS", "BIG BURGER")
DAYTIMES = ("Light", "Twilight", "Dark")
WEATHERS = ("Sunny", "Cloudy", "Rain", "Snow", "Fog")
ENVIRONMENTS = ("Urban", "Highway", "Suburban", "Rural")

_ORANGES = [ORANGE, (255, 140, 0), (235, 95, 30), (250, 165, 40)]
_AUTUMN = [(232, 120, 30), (205, 70, 28), (236, 178, 46), (190, 96, 40)]
_GREEN = [(60, 110, 50), (80, 130, 60), (46, 92, 44)]
_CAR_COLORS = [(200, 200, 205), (40, 40, 46), (30, 60, 130), (140, 20, 24), (110, 115, 120), (230, 230, 232)]
_SHIRTS = [(40, 60, 120), (120, 30, 40), (60, 60, 60), (200, 200, 200), (30, 90, 60)]
_FORCED_ENV = {"shop_sign": "Urban", "crane": "Urban", "foliage": "Suburban"}


@dataclass(frozen=True)
class SceneSpec:
    """Everything that decides a scene; ``classes`` limits which roadwork classes may be drawn."""

    kind: str
    seed: int
    size: tuple[int, int] = (640, 360)
    margin: int = 0
    daytime: str = "Light"
    weather: tuple[str, ...] = ("Sunny",)
    environment: str = "Urban"
    classes: frozenset[str] | None = None

    def __post_init__(self) -> None:
        kinds = (*POSITIVE_KINDS, *NEGATIVE_KINDS)
        if self.kind not in kinds:
            raise ConfigError(f"Unknown scene kind `{self.kind}`.{suggest(self.kind, kinds)} Allowed: {kinds}.")
        for name, value, allowed in (("daytime", self.daytime, DAYTIMES), ("environment", self.environment, ENVIRONMENTS)):
            if value not in allowed:
                raise ConfigError(f"The `{name}` of a scene must be one of {allowed}. Got {value!r} instead.")

    @property
    def is_roadwork(self) -> bool:
        return self.kind in POSITIVE_KINDS

    @property
    def hn_category(self) -> str:
        return NEGATIVE_KINDS.get(self.kind, "")


@dataclass(frozen=True)
class Box:
    """A labelled box in pixels; ``subtype`` refines a class (e.g. a sign's "left chevron")."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    subtype: str = ""

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0)


@dataclass(frozen=True)
class Scene:
    spec: SceneSpec
    canvas: Image.Image
    boxes: tuple[Box, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Frame:
    """One camera view of a scene: the image a source would store, with boxes in its pixels."""

    spec: SceneSpec
    image: Image.Image
    boxes: tuple[Box, ...]
    texts: tuple[str, ...]

    @property
    def is_roadwork(self) -> bool:
        return any(b.label in ROADWORK_PRIMITIVES for b in self.boxes)

    @property
    def text(self) -> str:
        return " | ".join(self.texts)


def kinds_for(classes: frozenset[str] | None) -> tuple[list[str], list[str]]:
    """Positive and negative kinds drawable when only ``classes`` may be labelled."""
    positives = [k for k, need in POSITIVE_KINDS.items() if classes is None or need & classes]
    return positives, list(NEGATIVE_KINDS)


def sample_spec(kind: str, seed: int, *, size: tuple[int, int] = (640, 360), margin: int = 0, classes: frozenset[str] | None = None) -> SceneSpec:
    """A spec with daytime, weather and environment drawn from ``seed`` (some fixed by the kind)."""
    rng = np.random.default_rng([seed, 7])
    daytime = str(rng.choice(DAYTIMES, p=[0.6, 0.15, 0.25]))
    weather = str(rng.choice(WEATHERS, p=[0.5, 0.22, 0.14, 0.08, 0.06]))
    environment = _FORCED_ENV.get(kind, str(rng.choice(ENVIRONMENTS, p=[0.4, 0.25, 0.2, 0.15])))
    if kind == "sunset":
        daytime, weather = "Twilight", "Sunny"
    return SceneSpec(kind, seed, size, margin, daytime, (weather,), environment, classes)


def render_scene(spec: SceneSpec) -> Scene:
    """Draw the scene of ``spec``: pure and deterministic."""
    return _Builder(spec).build()


def view(scene: Scene, dx: int = 0, dy: int = 0) -> Frame:
    """The frame seen with the camera shifted by (dx, dy) pixels; |dx|, |dy| <= the margin."""
    m = scene.spec.margin
    if abs(dx) > m or abs(dy) > m:
        raise ConfigError(f"A view shift must stay within the margin {m}. Got ({dx}, {dy}) instead.")
    w, h = scene.spec.size
    x0, y0 = m + dx, m + dy
    image = scene.canvas.crop((x0, y0, x0 + w, y0 + h))
    boxes = []
    for b in scene.boxes:
        cx0, cy0 = max(b.x0 - x0, 0.0), max(b.y0 - y0, 0.0)
        cx1, cy1 = min(b.x1 - x0, float(w)), min(b.y1 - y0, float(h))
        if cx1 - cx0 >= 2 and cy1 - cy0 >= 2:
            boxes.append(replace(b, x0=cx0, y0=cy0, x1=cx1, y1=cy1))
    return Frame(scene.spec, image, tuple(boxes), scene.texts)


@dataclass(order=True)
class _Item:
    t: float
    order: int
    label: str = field(compare=False)
    subtype: str = field(compare=False)
    paint: Callable[[Canvas], BBox] = field(compare=False)


class _Builder:
    """Collects the objects of one scene, then paints them far to near."""

    def __init__(self, spec: SceneSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng([spec.seed, 11])
        self.geo = backdrop.make_geometry(spec.size, spec.margin, spec.environment, self.rng)
        self.items: list[_Item] = []
        self.texts: list[str] = []

    # -- placement ---------------------------------------------------------------------------
    def ok(self, label: str) -> bool:
        return self.spec.classes is None or label in self.spec.classes

    def put(self, label: str, u: float, t: float, size_m: float, fn: Callable[..., BBox], *args: object, subtype: str = "", x: float | None = None) -> None:
        """Queue ``fn(canvas, x, y, h, *args)`` for the ground point (u, t), ``size_m`` tall."""
        if label in ROADWORK_PRIMITIVES and x is None:
            t = min(t, self.max_t(u))  # evidence must stay in the frame
        gx, gy = self.geo.xy(u, t)
        h = size_m * self.geo.ppm(t)
        px = gx if x is None else x
        self.items.append(_Item(t, len(self.items), label, subtype, lambda c: fn(c, px, gy, h, *args)))

    def taper(self, n: int) -> list[tuple[float, float]]:
        """(u, t) points of a lane-closure taper: from the road edge near us into the lane ahead."""
        z0 = self.rng.uniform(1.4, 2.2)
        z1 = z0 + self.rng.uniform(3.0, 7.0)
        edge = self.geo.near_edge
        return [(edge - 0.4 - f * 2.9, 1.0 / (z0 + f * (z1 - z0))) for f in np.linspace(0, 1, n)]

    def max_t(self, u: float, pad: float = 4.0) -> float:
        """The largest depth at which the ground point ``u`` metres aside is ``pad`` px inside the frame."""
        g, (w, _), m = self.geo, self.spec.size, self.spec.margin
        room = (m + w - g.vx if g.side * u > 0 else g.vx - m) - pad
        return room / max(abs(u) * g.ppm(1.0), 1e-6)

    def fit_t(self, u: float, lo: float, hi: float) -> float:
        """A depth in [lo, hi], or nearer the horizon when needed, keeping ``u`` 8 px inside the frame."""
        top = min(hi, self.max_t(u, pad=8.0))
        return self.rng.uniform(min(lo, 0.75 * top), top)

    def lane_t(self) -> float:
        return 1.0 / self.rng.uniform(2.2, 5.0)

    def pick(self, options: tuple | list):  # noqa: ANN201 - element type of `options`
        return options[int(self.rng.integers(len(options)))]

    # -- roadwork recipes ----------------------------------------------------------------------
    def cones(self) -> None:
        for u, t in self.taper(int(self.rng.integers(4, 10))):
            self.put("cone", u, t, 0.72, draw.cone)
        self.maybe_diamond(0.35)
        if self.ok("worker") and self.rng.random() < 0.2:
            self.worker()

    def drums(self) -> None:
        for u, t in self.taper(int(self.rng.integers(3, 8))):
            self.put("drum", u, t, 0.95, draw.drum)
        self.maybe_diamond(0.25)

    def barrier(self) -> None:
        concrete = self.rng.random() < 0.3
        z = self.rng.uniform(1.5, 2.2)
        for k in range(int(self.rng.integers(3, 7))):
            color = (176, 176, 170) if concrete else (ORANGE if k % 2 == 0 else WHITE)
            self.put("barrier", self.geo.near_edge - 0.7, 1.0 / (z + 1.2 * k), 0.85, draw.barrier, color)

    def barricade(self) -> None:
        t = self.lane_t()
        for k in range(int(self.rng.integers(1, 4))):
            self.put("barricade", self.geo.near_edge - 0.9 - 1.2 * k, t, 1.3, draw.barricade)
        self.maybe_diamond(0.3)

    def vertical_panels(self) -> None:
        for u, t in self.taper(int(self.rng.integers(4, 8))):
            self.put("vertical_panel", u, t, 1.1, draw.vertical_panel)

    def arrow_board(self) -> None:
        self.put("arrow_board", self.geo.near_edge - 1.75, 1.0 / self.rng.uniform(3.0, 5.5), 2.4, draw.arrow_board, -self.geo.side)
        for u, t in self.taper(int(self.rng.integers(2, 5)))[:3]:
            if self.ok("cone"):
                self.put("cone", u, t, 0.72, draw.cone)

    def worker(self) -> None:
        vest = self.pick([draw.VEST_ORANGE, draw.VEST_LIME])
        hat = self.pick([(250, 250, 250), (250, 210, 30), ORANGE])
        u = self.geo.near_edge - self.rng.uniform(0.8, 2.6)
        self.put("worker", u, self.lane_t(), 1.75, draw.person, self.pick(_SHIRTS), vest, hat)

    def workers(self) -> None:
        for _ in range(int(self.rng.integers(1, 4))):
            self.worker()
        if self.ok("cone") and self.rng.random() < 0.5:
            for u, t in self.taper(int(self.rng.integers(2, 5))):
                self.put("cone", u, t, 0.72, draw.cone)

    def work_vehicle(self) -> None:
        body = self.pick([(238, 238, 238), (240, 200, 30), ORANGE])
        self.put("work_vehicle", self.geo.near_edge - 1.75, 1.0 / self.rng.uniform(2.5, 5.0), 2.8, draw.work_vehicle, body)
        if self.ok("cone") and self.rng.random() < 0.5:
            for u, t in self.taper(3):
                self.put("cone", u, t, 0.72, draw.cone)

    def work_fence(self) -> None:
        t = self.lane_t()
        w = self.rng.uniform(3.0, 5.0) * self.geo.ppm(t)
        self.put("fence", self.geo.near_edge - 1.75, t, 1.1, draw.mesh_fence, w)
        if self.ok("barricade") and self.rng.random() < 0.4:
            self.put("barricade", self.geo.near_edge - 0.9, t * 1.15, 1.3, draw.barricade)

    def equipment(self) -> None:
        self.put("work_equipment", self.geo.near_edge - 2.2, 1.0 / self.rng.uniform(3.0, 6.0), 2.6, draw.excavator)
        if self.ok("cone") and self.rng.random() < 0.5:
            for u, t in self.taper(3):
                self.put("cone", u, t, 0.72, draw.cone)

    def mixed(self) -> None:
        recipes = {"cone": self.cones, "drum": self.drums, "barricade": self.barricade, "vertical_panel": self.vertical_panels, "worker": self.worker, "ttc_sign": lambda: self.maybe_diamond(1.0), "ttc_message_board": self.message_board}
        names = [n for n in recipes if self.ok(n)]
        for i in self.rng.permutation(len(names))[: int(self.rng.integers(2, 4))]:
            recipes[names[i]]()

    def message_board(self) -> None:
        text = self.pick(ROADWORK_TEXTS)
        self.texts.append(text)
        self.put("ttc_message_board", self.geo.near_edge - 0.8, 1.0 / self.rng.uniform(2.5, 4.5), 2.6, draw.message_board, text)

    def tiny(self) -> None:
        names = [n for n in ("cone", "drum") if self.ok(n)]
        for _ in range(int(self.rng.integers(1, 4))):
            name = self.pick(names)
            fn, size = (draw.cone, 0.72) if name == "cone" else (draw.drum, 0.95)
            self.put(name, self.geo.near_edge - self.rng.uniform(0.4, 2.0), 1.0 / self.rng.uniform(9.0, 15.0), size, fn)

    def edge_cut(self) -> None:
        """One large object half outside the frame's left or right edge."""
        options = [(n, fn, s, half) for n, fn, s, half in (("cone", draw.cone, 0.72, 0.38), ("drum", draw.drum, 0.95, 0.35), ("barricade", draw.barricade, 1.3, 0.75)) if self.ok(n)]
        name, fn, size, half = self.pick(options)
        t = self.rng.uniform(0.7, 0.95)
        w, m = self.spec.size[0], self.spec.margin
        edge_right = self.rng.random() < 0.5
        x = m + w + half * size * self.geo.ppm(t) * 0.2 if edge_right else m - half * size * self.geo.ppm(t) * 0.2
        self.put(name, self.geo.near_edge - 1.75, t, size, fn, x=x)

    def sign_text_only(self) -> None:
        """A rectangular text sign is the only evidence: only reading it tells roadwork apart."""
        text = self.pick(ROADWORK_TEXTS)
        self.texts.append(text)
        u = self.geo.near_edge - 1.2
        t = self.fit_t(u + 1.1, 0.32, 0.5)
        bg = self.pick([ORANGE, WHITE, (250, 200, 40)])
        self.put("ttc_sign", u, t, 2.4, draw.text_sign, text, bg, draw.BLACK, 2.2 * self.geo.ppm(t))

    def maybe_diamond(self, p: float) -> None:
        if not self.ok("ttc_sign") or self.rng.random() >= p:
            return
        t = 1.0 / self.rng.uniform(2.0, 4.0)
        if self.rng.random() < 0.3:
            direction = -self.geo.side
            sub = "left chevron" if direction < 0 else "right chevron"
            self.put("ttc_sign", self.geo.near_edge - 0.3, t, 2.0, draw.chevron_sign, direction, subtype=sub)
            return
        text = self.pick(ROADWORK_TEXTS)
        self.texts.append(text)
        self.put("ttc_sign", self.geo.near_edge - 0.3, t, 2.6, draw.ttc_sign, text, subtype=text.lower())

    # -- distractors -------------------------------------------------------------------------
    def roadside_u(self, extra: float) -> float:
        sign = 1 if self.rng.random() < 0.5 else -1
        return self.geo.near_edge + self.geo.walk + extra if sign > 0 else self.geo.far_edge - self.geo.walk - extra

    def orange_billboard(self) -> None:
        text = self.pick(AD_TEXTS)
        self.texts.append(text)
        t = self.rng.uniform(0.12, 0.2)
        fg = self.pick([WHITE, draw.BLACK])
        self.put("", self.roadside_u(2.0), t, 7.0, draw.billboard, 6.0 * self.geo.ppm(t), text, self.pick(_ORANGES), fg)

    def shop_sign(self) -> None:
        for _ in range(int(self.rng.integers(1, 4))):
            text = self.pick(SHOP_TEXTS)
            self.texts.append(text)
            u = self.roadside_u(0.2)
            t = self.fit_t(abs(u) + 1.1, 0.14, 0.3) if u > 0 else self.rng.uniform(0.14, 0.3)
            bg = self.pick([ORANGE, WHITE, (250, 200, 40), (200, 40, 40)])
            self.put("", u, t, 4.0, draw.text_sign, text, bg, draw.BLACK, 2.2 * self.geo.ppm(t))

    def foliage(self) -> None:
        for _ in range(int(self.rng.integers(4, 9))):
            self.put("", self.roadside_u(self.rng.uniform(2.5, 5.0)), self.rng.uniform(0.1, 0.32), 7.0, draw.tree, _AUTUMN, self.rng)

    def crane(self) -> None:
        """Drawn over the buildings but behind the street objects (see :meth:`skyline_crane`)."""

    def skyline_crane(self, canvas: Canvas) -> None:
        g = self.geo
        x = g.vx + self.rng.uniform(-0.25, 0.1) * g.width
        h = self.rng.uniform(0.55, 0.8) * g.horizon
        draw.crane(canvas, x, g.horizon, h, self.pick([(236, 180, 24), ORANGE]))

    def vest(self) -> None:
        for _ in range(int(self.rng.integers(1, 4))):
            self.put("", 0.0, self.rng.uniform(0.05, 0.2), 7.0, draw.tree, _GREEN, self.rng, x=self.rng.uniform(0, self.geo.width))
        for _ in range(int(self.rng.integers(1, 3))):
            x = self.rng.uniform(0.2, 0.8) * self.geo.width
            vest = self.pick([draw.VEST_ORANGE, draw.VEST_LIME])
            self.put("", 0.0, self.rng.uniform(0.45, 0.9), 1.75, draw.person, self.pick(_SHIRTS), vest, None, x=x)

    def traffic_slot(self) -> tuple[float, float]:
        """(u, t) of a vehicle that cannot hide the work zone: far ahead in our lane, or two lanes away."""
        lane = int(self.rng.integers(1, self.geo.lanes))
        t = self.rng.uniform(0.07, 0.12) if lane == 1 else self.rng.uniform(0.12, 0.4)
        return self.geo.near_edge - 1.75 - LANE_M * lane, t

    def orange_vehicle(self) -> None:
        u, t = self.traffic_slot()
        if self.rng.random() < 0.5:
            self.put("", u, t, 1.45, draw.car, self.pick(_ORANGES))
        else:
            self.put("", u, t, 3.2, draw.bus, self.pick(_ORANGES))

    def garden_fence(self) -> None:
        color = self.pick([(236, 236, 230), (120, 84, 52), ORANGE])
        for _ in range(int(self.rng.integers(1, 4))):
            t = self.rng.uniform(0.15, 0.35)
            self.put("", self.roadside_u(0.3), t, 1.1, draw.picket_fence, 4.0 * self.geo.ppm(t), color)

    def sunset(self) -> None:
        """The light itself is the distractor (see ``backdrop.finish``)."""

    def plain(self) -> None:
        """Nothing but the street."""

    # -- scenery -------------------------------------------------------------------------------
    def traffic(self) -> None:
        for _ in range(int(self.rng.integers(0, 4))):
            self.put("", *self.traffic_slot(), 1.45, draw.car, self.pick(_CAR_COLORS))

    def roadside(self) -> None:
        g, env = self.geo, self.spec.environment
        if env in ("Urban", "Highway", "Suburban"):
            for z in np.arange(1.6, 24.0, self.rng.uniform(5.0, 8.0)):
                self.put("", g.near_edge + 0.4, 1.0 / z, 8.0, draw.street_lamp, self.geo.side * -1)
        if env in ("Suburban", "Rural"):
            for _ in range(int(self.rng.integers(2, 6))):
                self.put("", self.roadside_u(self.rng.uniform(3.0, 5.0)), self.rng.uniform(0.08, 0.3), 7.0, draw.tree, _GREEN, self.rng)
        if g.walk and self.rng.random() < 0.4:
            self.put("", self.roadside_u(-1.2), self.rng.uniform(0.2, 0.45), 1.75, draw.person, self.pick(_SHIRTS))

    def build(self) -> Scene:
        spec, g, rng = self.spec, self.geo, self.rng
        sunset, snowy = spec.kind == "sunset", "Snow" in spec.weather
        canvas = Canvas(Image.fromarray(backdrop.sky(g, spec.daytime, spec.weather, sunset).astype(np.uint8)))
        if sunset:
            r = 0.06 * g.height
            canvas.draw.ellipse([g.vx - r, g.horizon - 1.4 * r, g.vx + r, g.horizon + 0.6 * r], fill=(255, 206, 120))
        on_road = spec.kind != "vest"
        if spec.environment == "Urban" and on_road:
            backdrop.skyline(canvas, g, rng)
        backdrop.ground(canvas, g, spec.environment if on_road else "Suburban", snowy, road=on_road)
        if on_road and spec.environment in ("Urban", "Suburban"):
            backdrop.facades(canvas, g, rng, spec.daytime == "Dark", low=spec.environment == "Suburban")
        if spec.kind == "crane":
            self.skyline_crane(canvas)
        if on_road and spec.environment == "Highway":
            backdrop.guard_rail(canvas, g)
        if on_road:
            self.traffic()
            self.roadside()
        getattr(self, spec.kind)()
        extras = ["orange_billboard", "foliage", "orange_vehicle"] + (["shop_sign"] if spec.environment == "Urban" else [])
        if on_road and spec.kind != "plain" and rng.random() < (0.3 if spec.is_roadwork else 0.2):
            getattr(self, self.pick([e for e in extras if e != spec.kind]))()
        boxes = [Box(label, *box) for label, box in (("road", g.ground_box(g.far_edge, g.near_edge)),) if on_road and box]
        if on_road and g.walk:
            for u0, u1 in ((g.near_edge, g.near_edge + g.walk), (g.far_edge - g.walk, g.far_edge)):
                if (box := g.ground_box(min(u0, u1), max(u0, u1))) is not None:
                    boxes.append(Box("sidewalk", *box))
        for item in sorted(self.items):
            bbox = item.paint(canvas)
            if item.label:
                boxes.append(Box(item.label, *_clip(bbox, g.width, g.height), subtype=item.subtype))
        image = backdrop.finish(canvas, spec.daytime, spec.weather, sunset, rng)
        return Scene(spec, image, tuple(b for b in boxes if b.x1 - b.x0 >= 1 and b.y1 - b.y0 >= 1), tuple(self.texts))


def _clip(box: BBox, w: int, h: int) -> BBox:
    x0, y0, x1, y1 = box
    return (min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h))
