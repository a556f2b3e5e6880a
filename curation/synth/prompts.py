"""The prompt bank (typed config + YAML) and deterministic prompt composition from a seed.

The bank lives in ``models/synth/prompt_bank.yaml``: orange-but-not-roadwork subjects keyed by
``hn_category`` (ad, crane, foliage, vest, sunset_light, fence, vehicle), validator-style positive
and negative scenes, roadwork objects to paint into clean scenes, and scene variation (daytime,
weather, environment). :meth:`PromptBank.compose` turns ``(kind, category, seed)`` into one prompt
and the scene tags it implies; the same arguments always give the same prompt (choices come from
a sha256 of the seed, not from a global random state).

Pure: no disk access except :func:`load_prompt_bank`.

Example:
    >>> from curation.synth.prompts import load_prompt_bank
    >>> bank = load_prompt_bank()
    >>> p = bank.compose("hard_negative", category="crane", seed=3)
    >>> p.label, p.category
    ('no_roadwork', 'crane')
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import ConfigError, suggest
from curation.schema import HN_CATEGORIES, ROADWORK_PRIMITIVES, Label
from curation.typed_config import from_mapping, read_yaml

KINDS = ("hard_negative", "positive", "negative")
"""What a composed text-to-image prompt shows; the label follows from the kind."""

DEFAULT_BANK = Path("synth") / "prompt_bank.yaml"
"""Path of the default bank inside the ``models/`` data folder."""

_EMPTY_DESCRIPTIONS = {"", "no description", "none", "n/a"}


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{where} must be a list of strings; got {value!r}.")
    out = tuple(str(v).strip() for v in value)
    if any(not v for v in out):
        raise ConfigError(f"{where} must not contain empty strings.")
    return out


def _options(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{where} must be a non-empty mapping of tag to phrases; got {value!r}.")
    out = {str(k): _strings(v, f"{where}.{k}") for k, v in value.items()}
    for key, phrases in out.items():
        if not phrases:
            raise ConfigError(f"{where}.{key} must list at least one phrase.")
    return out


@dataclass(frozen=True)
class CategoryPrompts:
    """Prompts for one orange-not-roadwork category.

    Attributes:
        prompts: text-to-image subjects (the image shows this and no roadwork).
        inpaint: objects painted over an evidence region (mode ``inpaint_replace``).
        daytime: fixes the daytime tag for the category (``Twilight`` for sunset light), else random.
    """

    prompts: tuple[str, ...] = ()
    inpaint: tuple[str, ...] = ()
    daytime: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", _strings(self.prompts, "`prompts`"))
        object.__setattr__(self, "inpaint", _strings(self.inpaint, "`inpaint`"))
        if not self.prompts:
            raise ConfigError("A hard-negative category needs at least one entry in `prompts`.")


@dataclass(frozen=True)
class SceneOptions:
    """Scene variation: tag value → phrases, per axis. The tag is stored on the sample."""

    daytime: dict[str, tuple[str, ...]] = field(default_factory=dict)
    weather: dict[str, tuple[str, ...]] = field(default_factory=dict)
    environment: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("daytime", "weather", "environment"):
            object.__setattr__(self, name, _options(getattr(self, name), f"`scene.{name}`"))


@dataclass(frozen=True)
class ComposedPrompt:
    """One prompt with everything its construction implies.

    Attributes:
        prompt, negative_prompt: passed to the pipeline and stored on the sample.
        label: ``roadwork`` or ``no_roadwork``, by construction.
        kind: hard_negative | positive | negative | caption | inpaint_replace | inpaint_add.
        category: ``hn_category`` for hard negatives, the primitive class for ``inpaint_add``.
        daytime, weather, scene_environment: scene tags (None/() when the prompt came from a caption).
    """

    prompt: str
    negative_prompt: str
    label: str
    kind: str
    category: str | None = None
    daytime: str | None = None
    weather: tuple[str, ...] = ()
    scene_environment: str | None = None


@dataclass(frozen=True)
class PromptBank:
    """Typed prompt bank; build it with :func:`load_prompt_bank` or :meth:`from_mapping`."""

    negative_prompt: str
    negative_prompt_roadwork: str
    styles: tuple[str, ...]
    hard_negatives: dict[str, CategoryPrompts]
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    roadwork_objects: dict[str, tuple[str, ...]]
    scene: SceneOptions

    def __post_init__(self) -> None:
        for name in ("styles", "positives", "negatives"):
            values = _strings(getattr(self, name), f"`{name}`")
            if not values:
                raise ConfigError(f"The prompt bank's `{name}` must list at least one phrase.")
            object.__setattr__(self, name, values)
        for key in self.hard_negatives:
            if key not in HN_CATEGORIES:
                raise ConfigError(
                    f"Unknown hard-negative category `{key}` in the prompt bank.{suggest(key, HN_CATEGORIES)} "
                    f"Allowed: {', '.join(HN_CATEGORIES)}."
                )
        for key in self.roadwork_objects:
            if key not in ROADWORK_PRIMITIVES:
                raise ConfigError(
                    f"Unknown roadwork class `{key}` in `roadwork_objects`.{suggest(key, ROADWORK_PRIMITIVES)} "
                    f"Allowed: {', '.join(ROADWORK_PRIMITIVES)}."
                )
        for key, spec in self.hard_negatives.items():
            if spec.daytime is not None and spec.daytime not in self.scene.daytime:
                raise ConfigError(
                    f"`hard_negatives.{key}.daytime` is {spec.daytime!r}; allowed: {', '.join(self.scene.daytime)}."
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str) -> PromptBank:
        """Parse a YAML mapping; unknown keys are rejected with the nearest valid key."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source} must hold a mapping; got {type(values).__name__}.")
        known = ("negative_prompt", "negative_prompt_roadwork", "styles", "hard_negatives", "positives",
                 "negatives", "roadwork_objects", "scene")
        for key in values:
            if key not in known:
                raise ConfigError(
                    f"Unknown key `{key}` in {source} for PromptBank.{suggest(str(key), known)} "
                    f"Allowed: {', '.join(sorted(known))}."
                )
        missing = [k for k in known if k not in values]
        if missing:
            raise ConfigError(f"{source} is missing `{missing[0]}` (PromptBank needs {', '.join(known)}).")
        hard = values["hard_negatives"]
        if not isinstance(hard, Mapping) or not hard:
            raise ConfigError(f"{source}: `hard_negatives` must map hn_category to prompts.")
        objects = values["roadwork_objects"]
        if not isinstance(objects, Mapping) or not objects:
            raise ConfigError(f"{source}: `roadwork_objects` must map a roadwork class to phrases.")
        return cls(
            negative_prompt=str(values["negative_prompt"]).strip(),
            negative_prompt_roadwork=str(values["negative_prompt_roadwork"]).strip(),
            styles=values["styles"],
            hard_negatives={
                str(k): from_mapping(CategoryPrompts, v or {}, source=f"{source}: `hard_negatives.{k}`")
                for k, v in hard.items()
            },
            positives=values["positives"],
            negatives=values["negatives"],
            roadwork_objects={str(k): _strings(v, f"{source}: `roadwork_objects.{k}`") for k, v in objects.items()},
            scene=from_mapping(SceneOptions, values["scene"], source=f"{source}: `scene`"),
        )

    @property
    def categories(self) -> tuple[str, ...]:
        """The hn_categories the bank can generate, in :data:`HN_CATEGORIES` order."""
        return tuple(c for c in HN_CATEGORIES if c in self.hard_negatives)

    # Composition ----------------------------------------------------------------------------------
    def compose(self, kind: str, *, seed: int, category: str | None = None) -> ComposedPrompt:
        """A text-to-image prompt of ``kind`` (hard_negative needs ``category``), chosen by ``seed``."""
        if kind not in KINDS:
            raise ConfigError(f"Unknown prompt kind `{kind}`.{suggest(kind, KINDS)} Allowed: {', '.join(KINDS)}.")
        fixed_daytime = None
        if kind == "hard_negative":
            spec = self._category(category)
            subject, fixed_daytime = pick(spec.prompts, seed, "subject"), spec.daytime
        else:
            category = None
            subject = pick(self.positives if kind == "positive" else self.negatives, seed, "subject")
        daytime = fixed_daytime or pick(tuple(self.scene.daytime), seed, "daytime")
        weather = pick(tuple(self.scene.weather), seed, "weather")
        environment = pick(tuple(self.scene.environment), seed, "environment")
        parts = [
            pick(self.styles, seed, "style"),
            subject,
            pick(self.scene.environment[environment], seed, "environment-phrase"),
            pick(self.scene.daytime[daytime], seed, "daytime-phrase"),
            pick(self.scene.weather[weather], seed, "weather-phrase"),
        ]
        roadwork = kind == "positive"
        return ComposedPrompt(
            prompt=", ".join(parts),
            negative_prompt=self.negative_prompt_roadwork if roadwork else self.negative_prompt,
            label=Label.ROADWORK.value if roadwork else Label.NO_ROADWORK.value,
            kind=kind,
            category=category,
            daytime=daytime,
            weather=(weather,),
            scene_environment=environment,
        )

    def caption(self, description: str | None, *, label: str, seed: int) -> ComposedPrompt:
        """Validator-style prompt from a real image's caption; a bank scene when it has none.

        Validators prompt SDXL with captions of real images and keep the real image's label.
        """
        text = (description or "").strip()
        if text.lower() in _EMPTY_DESCRIPTIONS:
            composed = self.compose("positive" if label == Label.ROADWORK else "negative", seed=seed)
            return dataclasses.replace(composed, kind="caption", label=label)
        roadwork = label == Label.ROADWORK
        return ComposedPrompt(
            prompt=f"{pick(self.styles, seed, 'style')}, {text}",
            negative_prompt=self.negative_prompt_roadwork if roadwork else self.negative_prompt,
            label=label,
            kind="caption",
        )

    def inpaint_distractor(self, category: str, *, seed: int) -> ComposedPrompt:
        """Prompt for painting a non-roadwork orange object of ``category`` over an evidence region."""
        spec = self._category(category)
        subject = pick(spec.inpaint or spec.prompts, seed, "inpaint")
        return ComposedPrompt(
            prompt=f"{subject}, photorealistic, street scene",
            negative_prompt=self.negative_prompt,
            label=Label.NO_ROADWORK.value,
            kind="inpaint_replace",
            category=category,
        )

    def inpaint_roadwork(self, *, seed: int, primitive: str | None = None) -> ComposedPrompt:
        """Prompt for painting a roadwork object (class ``primitive`` or one chosen by seed) into a scene."""
        classes = tuple(self.roadwork_objects)
        primitive = primitive or pick(classes, seed, "primitive")
        if primitive not in self.roadwork_objects:
            raise ConfigError(
                f"No `roadwork_objects` entry for `{primitive}`.{suggest(primitive, classes)} Allowed: {', '.join(classes)}."
            )
        subject = pick(self.roadwork_objects[primitive], seed, "inpaint")
        return ComposedPrompt(
            prompt=f"{subject} on the road, photorealistic, street scene",
            negative_prompt=self.negative_prompt_roadwork,
            label=Label.ROADWORK.value,
            kind="inpaint_add",
            category=primitive,
        )

    def _category(self, category: str | None) -> CategoryPrompts:
        if category not in self.hard_negatives:
            raise ConfigError(
                f"Unknown hard-negative category `{category}` for this prompt bank."
                f"{suggest(str(category), self.hard_negatives)} Allowed: {', '.join(self.categories)}."
            )
        return self.hard_negatives[category]


def pick(options: Sequence[str], seed: int, slot: str) -> str:
    """Deterministic choice: the same (seed, slot) always picks the same option, on any machine."""
    if not options:
        raise ConfigError(f"No options to choose the `{slot}` from.")
    digest = hashlib.sha256(f"{int(seed)}:{slot}".encode()).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


def load_prompt_bank(path: str | Path | None = None) -> PromptBank:
    """Read a prompt bank YAML (default: ``models/synth/prompt_bank.yaml``)."""
    if path is None:
        from curation.assets import asset_dir

        path = asset_dir("models") / DEFAULT_BANK
    values = read_yaml(path, what="Prompt bank")
    return PromptBank.from_mapping(values or {}, source=str(path))
