"""Plan a synthesis run: the job config, which parents qualify, and one task per image.

Everything that decides *what* is generated — parent eligibility, prompts, seeds, inpainting
regions, the label and boxes by construction, the split — is decided here, before any pixel is
made, by pure functions of the job, the prompt bank and plain parent records. ``generate.py`` only
executes the tasks. The same job, bank and parents always give the same tasks.

Labels by construction:

- ``text2img``: the prompt kind's label (hard_negative/negative → no_roadwork, positive →
  roadwork); ``caption`` prompts (validator style) keep the parent's label.
- ``img2img``: the parent's label with a caption prompt; with a hard-negative prompt only
  ``no_roadwork`` parents qualify and the child stays ``no_roadwork``.
- ``inpaint_replace``: the region covering *every* roadwork box of a roadwork parent is painted over
  with a non-roadwork orange object → ``no_roadwork``. Parents whose roadwork is not boxed do not
  qualify (nothing says where the evidence is).
- ``inpaint_add``: a roadwork object painted into a ``no_roadwork`` parent → ``roadwork``, with a box
  of that class at the region.

Example:
    >>> from curation.synth.plan import SynthJob
    >>> SynthJob(mode="img2img").resolved_strength
    0.7
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from curation.errors import ConfigError, InputError, suggest
from curation.schema import CONTEXT_CLASSES, ROADWORK_PRIMITIVES, TAG_LABEL_CONFLICT, TAG_LEAK, TAG_NOT_ADMITTED, Label, Source, Split
from curation.synth.admission import AdmissionConfig, child_split
from curation.synth.prompts import KINDS, ComposedPrompt, PromptBank
from curation.synth.targeting import largest_remainder

MODES = ("text2img", "img2img", "inpaint_replace", "inpaint_add")
PURPOSES = (Split.TRAIN.value, Split.VAL_SYNTHETIC.value)
PROMPT_KINDS = (*KINDS, "caption")
DEFAULT_STRENGTH = {"img2img": 0.7, "inpaint_replace": 0.99, "inpaint_add": 0.99}
"""img2img at 0.7 as validators do; inpainting repaints the masked region almost from noise."""

Box = tuple[float, float, float, float]
"""Relative [x, y, w, h] in [0, 1], FiftyOne's bounding-box convention."""


@dataclass(frozen=True)
class SynthJob:
    """One synthesis run.

    Attributes:
        mode: text2img | img2img | inpaint_replace | inpaint_add.
        purpose: ``train`` (parents from split train, children split train) or ``val_synthetic``
            (validator-style caption children of val/calib parents, evaluation only).
        count: images to generate (ignored when ``categories`` gives the counts).
        seed: image ``i`` uses seed ``seed + i``; the same seed reproduces the same bytes.
        kind: text2img/img2img prompt kind: hard_negative | positive | negative | caption.
            ``caption`` uses the parent's scene description (validator style) and keeps its label.
        categories: images per hn_category for hard negatives and ``inpaint_replace`` (from
            :func:`curation.synth.targeting.allocate_budget`); None spreads ``count`` evenly.
        steps, guidance_scale: diffusion steps and classifier-free guidance.
        strength: img2img/inpaint strength; None uses 0.7 for img2img and 0.99 for inpainting.
        width, height: output size (SDXL: 1024; the tiny test pipeline: 64).
        batch_size: images per pipeline call; halved on out-of-memory.
        region: inpainting region [x, y, w, h] (relative) for every parent; None derives it
            (replace: the padded union of the parent's roadwork boxes; add: a seeded box low in the frame).
        region_padding: relative margin added around the derived replace region.
        max_region_area: parents whose replace region would exceed this share of the image are skipped.
        admission: near-duplicate and confidence filter options.
    """

    mode: str = "text2img"
    purpose: str = "train"
    count: int = 8
    seed: int = 0
    kind: str = "hard_negative"
    categories: dict[str, int] | None = None
    steps: int = 30
    guidance_scale: float = 5.0
    strength: float | None = None
    width: int = 1024
    height: int = 1024
    batch_size: int = 4
    region: tuple[float, float, float, float] | None = None
    region_padding: float = 0.05
    max_region_area: float = 0.6
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)

    def __post_init__(self) -> None:
        _one_of("mode", self.mode, MODES)
        _one_of("purpose", self.purpose, PURPOSES)
        _one_of("kind", self.kind, PROMPT_KINDS)
        if self.purpose == Split.VAL_SYNTHETIC:
            if self.mode not in ("text2img", "img2img"):
                raise ConfigError(
                    f"`purpose` val_synthetic takes mode text2img or img2img (validator style); got mode {self.mode!r}."
                )
            object.__setattr__(self, "kind", "caption")
        for name, low in (("count", 0), ("steps", 1), ("width", 8), ("height", 8), ("batch_size", 1)):
            if int(getattr(self, name)) < low:
                raise ConfigError(f"The `{name}` parameter must be an int in [{low}, inf). Got {getattr(self, name)} instead.")
        if int(self.width) % 8 or int(self.height) % 8:
            raise ConfigError(f"`width` and `height` must be multiples of 8 (the VAE's stride). Got {self.width}×{self.height}.")
        if self.strength is not None and not 0.0 < float(self.strength) <= 1.0:
            raise ConfigError(f"The `strength` parameter must be a float in (0, 1]. Got {self.strength} instead.")
        if self.categories is not None:
            cats = {str(k): int(v) for k, v in dict(self.categories).items()}
            if any(v < 0 for v in cats.values()):
                raise ConfigError(f"`categories` counts must be >= 0; got {cats}.")
            object.__setattr__(self, "categories", cats)
        if self.region is not None:
            object.__setattr__(self, "region", _check_box(self.region, "region"))
        for name in ("region_padding", "max_region_area"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ConfigError(f"The `{name}` parameter must be a float in [0, 1]. Got {getattr(self, name)} instead.")

    @property
    def resolved_strength(self) -> float | None:
        """The strength actually used (None for text-to-image)."""
        if self.mode == "text2img":
            return None
        return float(self.strength) if self.strength is not None else DEFAULT_STRENGTH[self.mode]

    @property
    def uses_parents(self) -> bool:
        return self.mode != "text2img" or self.kind == "caption"

    @property
    def uses_categories(self) -> bool:
        return self.mode == "inpaint_replace" or (self.kind == "hard_negative" and self.mode in ("text2img", "img2img"))


@dataclass(frozen=True)
class Parent:
    """What planning needs to know about a candidate parent sample."""

    id: str
    filepath: str
    label: str | None
    split: str | None = None
    tags: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    sequence_group: str | None = None
    scene_description: str | None = None
    daytime: str | None = None
    weather: tuple[str, ...] = ()
    scene_environment: str | None = None
    boxes: tuple[tuple[str, Box], ...] = ()

    @property
    def roadwork_boxes(self) -> list[Box]:
        return [b for name, b in self.boxes if name in ROADWORK_PRIMITIVES]


@dataclass(frozen=True)
class Task:
    """One image to generate, fully decided."""

    index: int
    seed: int
    mode: str
    prompt: ComposedPrompt
    split: str | None
    tags: tuple[str, ...] = ()
    parent: Parent | None = None
    region: Box | None = None
    boxes: tuple[tuple[str, Box], ...] = ()
    strength: float | None = None

    @property
    def label(self) -> str:
        return self.prompt.label

    @property
    def hn_category(self) -> str | None:
        if self.prompt.kind in ("hard_negative", "inpaint_replace"):
            return self.prompt.category
        return None


# Eligibility ---------------------------------------------------------------------------------------
def parent_problem(parent: Parent, job: SynthJob) -> str | None:
    """Why ``parent`` cannot parent ``job``'s images, or None when it can.

    Training parents come from split train only and never carry the ``leak`` tag; evaluation
    parents come from val or calib. Synthetic samples never parent (no generations of generations),
    label conflicts never do, and each mode needs a parent of the right label.
    """
    if Source.SYNTHETIC in parent.sources:
        return "synthetic"
    if TAG_LABEL_CONFLICT in parent.tags or TAG_NOT_ADMITTED in parent.tags:
        return "tagged"
    if job.purpose == Split.TRAIN:
        if parent.split != Split.TRAIN:
            return "split"
        if TAG_LEAK in parent.tags:
            return "leak"
    elif parent.split not in (Split.VAL, Split.CALIB):
        return "split"
    if parent.label not in (Label.ROADWORK, Label.NO_ROADWORK):
        return "unlabeled"
    if not parent.filepath:
        return "no_media"
    if job.mode == "img2img" and job.kind in ("hard_negative", "negative") and parent.label != Label.NO_ROADWORK:
        return "label"
    if job.mode == "img2img" and job.kind == "positive" and parent.label != Label.ROADWORK:
        return "label"
    if job.mode == "inpaint_add" and parent.label != Label.NO_ROADWORK:
        return "label"
    if job.mode == "inpaint_replace":
        if parent.label != Label.ROADWORK or not parent.roadwork_boxes:
            return "label" if parent.label != Label.ROADWORK else "no_boxes"
        region = replace_region(parent, job)
        if region is None:
            return "region"
    return None


def eligible_parents(parents: Sequence[Parent], job: SynthJob) -> list[Parent]:
    """The parents ``job`` may use, sorted by id (so the plan does not depend on query order)."""
    return sorted((p for p in parents if parent_problem(p, job) is None), key=lambda p: p.id)


# Regions ----------------------------------------------------------------------------------------------
def replace_region(parent: Parent, job: SynthJob) -> Box | None:
    """The region to paint over: it must contain every roadwork box, else None (label unknown)."""
    boxes = parent.roadwork_boxes
    if not boxes:
        return None
    if job.region is not None:
        return job.region if all(box_inside(b, job.region) for b in boxes) else None
    region = pad_box(union_box(boxes), job.region_padding)
    return region if region[2] * region[3] <= job.max_region_area else None


def add_region(seed: int, job: SynthJob) -> Box:
    """A seeded box low in the frame (where the road usually is) unless the job fixes one."""
    if job.region is not None:
        return job.region
    u = [_uniform(seed, f"region-{k}") for k in range(4)]
    w, h = 0.12 + 0.13 * u[0], 0.15 + 0.15 * u[1]
    cx, bottom = 0.2 + 0.6 * u[2], 0.7 + 0.25 * u[3]
    x = min(max(cx - w / 2, 0.0), 1.0 - w)
    y = min(max(bottom - h, 0.0), 1.0 - h)
    return (round(x, 6), round(y, 6), round(w, 6), round(h, 6))


def union_box(boxes: Sequence[Box]) -> Box:
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def pad_box(box: Box, pad: float) -> Box:
    x0, y0 = max(0.0, box[0] - pad), max(0.0, box[1] - pad)
    x1, y1 = min(1.0, box[0] + box[2] + pad), min(1.0, box[1] + box[3] + pad)
    return (x0, y0, x1 - x0, y1 - y0)


def box_inside(inner: Box, outer: Box, tol: float = 1e-6) -> bool:
    return (
        inner[0] >= outer[0] - tol
        and inner[1] >= outer[1] - tol
        and inner[0] + inner[2] <= outer[0] + outer[2] + tol
        and inner[1] + inner[3] <= outer[1] + outer[3] + tol
    )


def boxes_overlap(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


# Planning ---------------------------------------------------------------------------------------------
def category_sequence(job: SynthJob, bank: PromptBank) -> list[str | None]:
    """The category of each image in order (None when the job does not use categories)."""
    if not job.uses_categories:
        return [None] * int(job.count)
    if job.categories is not None:
        for name in job.categories:
            if name not in bank.hard_negatives:
                raise ConfigError(
                    f"Unknown hard-negative category `{name}` in `categories`.{suggest(name, bank.categories)} "
                    f"Allowed: {', '.join(bank.categories)}."
                )
        counts = job.categories
    else:
        names = bank.categories
        counts = dict(zip(names, largest_remainder([1.0] * len(names), int(job.count))))
    return [name for name, n in counts.items() for _ in range(n)]


def plan_tasks(job: SynthJob, bank: PromptBank, parents: Sequence[Parent], *, random_weights: bool) -> list[Task]:
    """One :class:`Task` per image, deterministic in (job, bank, parents).

    Raises:
        InputError: the job needs parents and none qualifies (the message says what is required).
    """
    categories = category_sequence(job, bank)
    pool = eligible_parents(parents, job) if job.uses_parents else []
    if job.uses_parents and categories and not pool:
        raise InputError(f"No parent qualifies for mode {job.mode!r}, purpose {job.purpose!r}: {_requirement(job)}")
    order = list(range(len(pool)))
    random.Random(int(job.seed)).shuffle(order)
    split = child_split(job.purpose, random_weights=random_weights)
    tags = (TAG_NOT_ADMITTED,) if random_weights else ()
    tasks = []
    for i, category in enumerate(categories):
        seed = int(job.seed) + i
        parent = pool[order[i % len(pool)]] if pool else None
        prompt, region, boxes = _compose(job, bank, seed, category, parent)
        tasks.append(
            Task(
                index=i, seed=seed, mode=job.mode, prompt=prompt, split=split, tags=tags, parent=parent,
                region=region, boxes=boxes, strength=job.resolved_strength,
            )
        )
    return tasks


def _compose(
    job: SynthJob, bank: PromptBank, seed: int, category: str | None, parent: Parent | None
) -> tuple[ComposedPrompt, Box | None, tuple[tuple[str, Box], ...]]:
    if job.mode == "inpaint_replace":
        assert parent is not None and category is not None
        region = replace_region(parent, job)
        assert region is not None
        kept = tuple((n, b) for n, b in parent.boxes if n in CONTEXT_CLASSES and not boxes_overlap(b, region))
        return bank.inpaint_distractor(category, seed=seed), region, kept
    if job.mode == "inpaint_add":
        assert parent is not None
        region = add_region(seed, job)
        prompt = bank.inpaint_roadwork(seed=seed)
        kept = tuple((n, b) for n, b in parent.boxes if n in CONTEXT_CLASSES and not boxes_overlap(b, region))
        return prompt, region, (*kept, (str(prompt.category), region))
    if job.kind == "caption":
        assert parent is not None and parent.label is not None
        return bank.caption(parent.scene_description, label=parent.label, seed=seed), None, ()
    return bank.compose(job.kind, seed=seed, category=category), None, ()


def _requirement(job: SynthJob) -> str:
    where = "split train without the `leak` tag" if job.purpose == Split.TRAIN else "split val or calib"
    need = {
        "inpaint_replace": "a roadwork label with every roadwork object boxed (primitives)",
        "inpaint_add": "the no_roadwork label",
        "img2img": "a roadwork or no_roadwork label" + (" (no_roadwork for hard negatives)" if job.kind == "hard_negative" else ""),
        "text2img": "a roadwork or no_roadwork label",
    }[job.mode]
    return f"parents must be non-synthetic samples in {where}, with {need}, and an image file."


def _uniform(seed: int, slot: str) -> float:
    digest = hashlib.sha256(f"{int(seed)}:{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _one_of(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"The `{name}` parameter must be one of {', '.join(allowed)}. Got {value!r} instead.{suggest(str(value), allowed)}"
        )


def _check_box(box: Sequence[float], name: str) -> Box:
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ConfigError(f"The `{name}` parameter must be [x, y, w, h] (relative). Got {box!r} instead.") from None
    if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 - x + 1e-9 and 0 < h <= 1 - y + 1e-9):
        raise ConfigError(f"The `{name}` parameter must be a relative box inside the image. Got {list(box)!r} instead.")
    return (x, y, w, h)


def counts_by(tasks: Sequence[Task], key: str) -> Mapping[str, int]:
    """Tasks per value of an attribute (``label``, ``hn_category``), for reports."""
    out: dict[str, int] = {}
    for t in tasks:
        value = str(getattr(t, key))
        out[value] = out.get(value, 0) + 1
    return out
