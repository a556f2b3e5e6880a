"""Video sequences and the source metadata attached to each demo image.

NATIX and ROADWork images are frames of dashcam videos: several consecutive frames of one
sequence show the same scene with small camera shifts. A :class:`SequencePlan` fixes the scene and
its metadata; :func:`shoot` cuts frame ``k`` out of the rendered scene and encodes it, so any frame
can be re-created later (the leakage fixtures share sequences across sources that way).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from PIL import Image

from curation.demo.scene import NEGATIVE_KINDS, POSITIVE_KINDS, Frame, Scene, SceneSpec, sample_spec, view

CITIES: tuple[tuple[str, float, float], ...] = (
    ("Pittsburgh", 40.4406, -79.9959),
    ("Boston", 42.3601, -71.0589),
    ("Chicago", 41.8781, -87.6298),
    ("Los Angeles", 34.0522, -118.2437),
    ("Washington DC", 38.9072, -77.0369),
    ("Charlotte", 35.2271, -80.8431),
    ("Denver", 39.7392, -104.9903),
    ("Detroit", 42.3314, -83.0458),
)

POSITIVE_WEIGHTS: dict[str, float] = {
    "cones": 3, "drums": 2, "barrier": 1, "barricade": 2, "vertical_panels": 1, "arrow_board": 1, "workers": 2,
    "work_vehicle": 1, "work_fence": 1, "equipment": 1, "mixed": 3, "tiny": 2, "edge_cut": 1, "sign_text_only": 2,
}  # fmt: skip
NEGATIVE_WEIGHTS: dict[str, float] = {kind: (2.0 if kind == "plain" else 1.0) for kind in NEGATIVE_KINDS}

_DESCRIPTIONS: dict[str, str] = {
    "cones": "Traffic cones close the {side} lane ahead.",
    "drums": "Orange drums channel traffic away from the {side} lane.",
    "barrier": "Temporary barriers line the {side} edge of the road.",
    "barricade": "Barricades block the {side} lane.",
    "vertical_panels": "Vertical panels taper the {side} lane closed.",
    "arrow_board": "An arrow board directs traffic out of the {side} lane.",
    "workers": "Workers in safety vests stand in the {side} lane.",
    "work_vehicle": "A work truck with a flashing beacon is parked in the {side} lane.",
    "work_fence": "A safety fence closes off part of the {side} lane.",
    "equipment": "An excavator works beside the {side} lane.",
    "mixed": "A work zone narrows the road on the {side}.",
    "tiny": "Distant cones mark a work zone far ahead.",
    "edge_cut": "Roadwork equipment at the edge of the view.",
    "sign_text_only": "A sign warns of roadwork ahead.",
}
_ALTERATION: dict[str, str] = {
    "cones": "Lane Closure", "drums": "Lane Closure", "barrier": "Lane Shift", "barricade": "Lane Closure",
    "vertical_panels": "Lane Shift", "arrow_board": "Lane Closure", "workers": "Shoulder Work",
    "work_vehicle": "Shoulder Work", "work_fence": "Lane Closure", "equipment": "Shoulder Work", "mixed": "Lane Closure",
    "tiny": "Lane Closure", "edge_cut": "Lane Shift", "sign_text_only": "Advance Warning",
}  # fmt: skip


@dataclass(frozen=True)
class SequencePlan:
    """A video sequence: one scene, where and when it was filmed, and its first frame number."""

    vid_id: str
    seq_id: str
    spec: SceneSpec
    city: str
    gps: tuple[float, float]
    start: datetime
    first_frame: int

    def offset(self, k: int) -> tuple[int, int]:
        """Camera shift of frame ``k``: a small random walk that stays inside the scene margin."""
        steps = np.random.default_rng([self.spec.seed, 3]).integers(-3, 4, size=(k + 1, 2))
        steps[0] = 0
        m = self.spec.margin
        return tuple(int(v) for v in np.clip(steps.cumsum(axis=0)[k], -m, m))  # type: ignore[return-value]

    def frame_id(self, k: int) -> str:
        return f"{self.first_frame + 5 * k:06d}"

    def date(self, k: int) -> str:
        return (self.start + timedelta(seconds=k)).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class Shot:
    """One encoded image plus what a source records about it."""

    jpeg: bytes
    frame: Frame
    plan: SequencePlan | None = None
    k: int = 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.jpeg).hexdigest()

    @property
    def frame_id(self) -> str:
        return self.plan.frame_id(self.k) if self.plan else ""


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """Baseline JPEG without metadata: the same pixels always give the same bytes."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def pick_kind(rng: np.random.Generator, positive: bool, kinds: list[str] | None = None, look_alike: float | None = None) -> str:
    """A scene kind by the corpus weights; ``look_alike`` instead fixes the share of negatives that are
    orange look-alikes (the rest plain streets), as in a dashcam stream where most frames are ordinary."""
    if not positive and look_alike is not None:
        hard = [k for k in NEGATIVE_KINDS if k != "plain" and (kinds is None or k in kinds)]
        return hard[int(rng.integers(len(hard)))] if rng.random() < look_alike else "plain"
    weights = POSITIVE_WEIGHTS if positive else NEGATIVE_WEIGHTS
    names = [k for k in weights if kinds is None or k in kinds]
    p = np.array([weights[k] for k in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def plan_sequence(rng: np.random.Generator, kind: str, seed: int, vid_id: str, seq_id: str, *, size: tuple[int, int] = (640, 360), margin: int = 8) -> SequencePlan:
    name, lat, lon = CITIES[int(rng.integers(len(CITIES)))]
    gps = (round(lat + rng.uniform(-0.05, 0.05), 5), round(lon + rng.uniform(-0.05, 0.05), 5))
    start = datetime(2022, 3, 1) + timedelta(days=int(rng.integers(0, 700)), seconds=int(rng.integers(6 * 3600, 20 * 3600)))
    return SequencePlan(vid_id, seq_id, sample_spec(kind, seed, size=size, margin=margin), name, gps, start, int(rng.integers(0, 2000)))


def shoot(plan: SequencePlan, scene: Scene, k: int, *, quality: int = 90, shift: tuple[int, int] = (0, 0)) -> Shot:
    """Frame ``k`` of the sequence, optionally shifted a little more (near-duplicate fixtures)."""
    dx, dy = plan.offset(k)
    m = plan.spec.margin
    frame = view(scene, int(np.clip(dx + shift[0], -m, m)), int(np.clip(dy + shift[1], -m, m)))
    return Shot(encode_jpeg(frame.image, quality), frame, plan, k)


def description(spec: SceneSpec, rng: np.random.Generator) -> str:
    """A scene description as the sources write them: roadwork text for positives, empty otherwise.

    Negatives are written empty, never "No Description": validators treat that literal as a
    description (truthy), so a label-0 row carrying it is a label conflict they skip, and so does
    the importer. The corpus's deliberate conflicts are its manifest's ``label_conflicts``.
    """
    if spec.kind in POSITIVE_KINDS:
        return _DESCRIPTIONS[spec.kind].format(side="right" if rng.random() < 0.6 else "left")
    rng.random()  # keeps the draw so the rest of the corpus is unchanged
    return ""


def travel_alteration(spec: SceneSpec, text: str) -> tuple[str, ...]:
    """ROADWork's travel-alteration tags; ``("None",)`` means no work zone."""
    if spec.kind not in POSITIVE_KINDS:
        return ("None",)
    return ("Detour",) if "DETOUR" in text else (_ALTERATION[spec.kind],)
