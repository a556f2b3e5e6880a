"""Run a synthesis job against a FiftyOne collection: generate, filter, store, add in one call.

:func:`synthesize` is the one entry point the CLI and the plugin operator call. It reads candidate
parents from the collection, plans the tasks (:mod:`curation.synth.plan`), runs the pipelines in
batches (halving the batch on out-of-memory), drops images that already exist (same content hash:
re-running a seed is a no-op) or fail admission, writes each image once under
``settings.media_root`` (content-addressed, atomic rename), and only then adds every new sample in
one ``add_samples`` call. An exception or a kill before that call leaves image files but no
samples; re-running the same job writes nothing new and adds the samples.

Reproducibility: image ``i`` uses a CPU ``torch.Generator`` seeded with ``job.seed + i``, so the
same job on the same machine, batch size and library versions gives byte-identical PNGs. (A
different batch size, after an out-of-memory fallback, can change the last bits of the floats.)

Example:
    >>> from curation.synth import GeneratorConfig, SynthJob, load_pipelines, synthesize
    >>> report = synthesize(dataset, SynthJob(count=2, width=64, height=64, steps=2),  # doctest: +SKIP
    ...                     pipelines=load_pipelines(GeneratorConfig(model="tiny-random")), settings=settings)
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from curation import schema, store
from curation.errors import CurationError
from curation.schema import FieldSpec, Source, Split
from curation.settings import Settings
from curation.synth.admission import NEAR_DUPLICATE, AdmissionConfig, Candidate, Scorer, admit
from curation.synth.pipeline import GeneratorConfig, SynthPipelines, load_pipelines
from curation.synth.plan import Parent, SynthJob, Task, plan_tasks
from curation.synth.prompts import PromptBank, load_prompt_bank
from curation.synth.targeting import CategoryStats

if TYPE_CHECKING:
    import fiftyone.core.collections as foc
    from PIL import Image

    from curation.slices import SliceConfig

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

EXISTING = "existing"
"""Skip reason: an image with the same content hash is already in the dataset (a re-run)."""

SYNTH_FIELDS: tuple[FieldSpec, ...] = tuple(
    f for f in schema.FIELDS
    if f.name in {"negative_prompt", "steps", "strength", "guidance_scale", "synth_mode", "generator_random_weights"}
)
"""Synthetic-provenance fields (declared from the one field table in :mod:`curation.schema`)."""


class GenerationError(CurationError):
    """Generation cannot proceed (out of memory at batch size 1, a parent image unreadable)."""


@dataclass
class SynthReport:
    """What a run did.

    Attributes:
        planned: images the plan asked for.
        added: sample ids added to the dataset.
        skipped: images not added, by reason (``existing``, ``near_duplicate``, ``confident``).
        split: the split given to the new samples (None: random-weight generator, not admitted).
        generator: the generator id recorded on the samples.
        random_weights: whether the generator's weights were random.
        final_batch_size: batch size after any out-of-memory fallback.
        by_label: added samples per label.
    """

    planned: int
    added: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    split: str | None = None
    generator: str = ""
    random_weights: bool = False
    final_batch_size: int = 0
    by_label: dict[str, int] = field(default_factory=dict)


# Batching --------------------------------------------------------------------------------------------
def run_batched(
    items: Sequence[T],
    batch_size: int,
    fn: Callable[[Sequence[T]], R],
    *,
    on_oom: Callable[[int], None] | None = None,
) -> Iterator[tuple[Sequence[T], R]]:
    """Yield ``(chunk, fn(chunk))`` over ``items``; on out-of-memory retry the chunk at half size.

    The smaller size is kept for the rest of the run. ``on_oom(new_size)`` is called after each
    fallback (the caller frees the CUDA cache and logs).

    Raises:
        GenerationError: out of memory at batch size 1.
    """
    import torch

    size, i = max(1, int(batch_size)), 0
    while i < len(items):
        chunk = items[i : i + size]
        try:
            result = fn(chunk)
        except torch.OutOfMemoryError as e:
            if size == 1:
                raise GenerationError(
                    "Out of memory at batch size 1. Lower `width`/`height`, use `dtype: float16` with the "
                    f"fp16-fix VAE, or a larger GPU. ({str(e).splitlines()[0] if str(e) else 'OutOfMemoryError'})"
                ) from None
            size = max(1, size // 2)
            if on_oom is not None:
                on_oom(size)
            continue
        yield chunk, result
        i += len(chunk)


def _free_memory(new_size: int) -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log.warning("Out of memory: retrying with batch size %d.", new_size)


# Reading the collection ---------------------------------------------------------------------------
_PARENT_FIELDS = (
    "id", "filepath", "ground_truth.label", "split", "tags", "sources", "sequence_group", "scene_description",
    "daytime", "weather", "scene_environment", "primitives.detections.label", "primitives.detections.bounding_box",
)


def read_parents(collection: foc.SampleCollection) -> list[Parent]:
    """Plain :class:`Parent` records for every sample of ``collection`` (one query per field)."""
    if len(collection) == 0:
        return []
    columns = collection.values(list(_PARENT_FIELDS))
    parents = []
    for row in zip(*columns):
        (sid, path, label, split, tags, sources, group, desc, daytime, weather, env, names, boxes) = row
        parents.append(
            Parent(
                id=str(sid), filepath=path or "", label=label, split=split, tags=tuple(tags or ()),
                sources=tuple(sources or ()), sequence_group=group, scene_description=desc, daytime=daytime,
                weather=tuple(weather or ()), scene_environment=env,
                boxes=tuple((str(n), tuple(float(v) for v in b)) for n, b in zip(names or (), boxes or ())),
            )
        )
    return parents


def hard_negative_stats(collection: foc.SampleCollection) -> list[CategoryStats]:
    """Mined (non-synthetic) hard negatives with a Stage-1 prediction, and Stage-1 errors, per hn_category."""
    from fiftyone import ViewField as F

    if "stage1" not in collection.get_field_schema():
        return []
    view = collection.match_tags(schema.TAG_HARD_NEGATIVE).match(~F("sources").contains(Source.SYNTHETIC.value))
    view = view.exists("stage1").exists("hn_category")
    mined: dict[str, int] = {}
    errors: dict[str, int] = {}
    for cat, pred, truth in zip(*view.values(["hn_category", "stage1.label", "ground_truth.label"])):
        mined[cat] = mined.get(cat, 0) + 1
        errors[cat] = errors.get(cat, 0) + int(pred != truth)
    return [CategoryStats(c, mined[c], errors[c]) for c in schema.HN_CATEGORIES if c in mined]


# Generation ------------------------------------------------------------------------------------------
def render(pipes: SynthPipelines, tasks: Sequence[Task], job: SynthJob) -> list[Image.Image]:
    """Run the pipeline for one batch of tasks of the same mode; returns RGB PIL images."""
    import torch

    generators = [torch.Generator(device="cpu").manual_seed(t.seed) for t in tasks]
    common: dict[str, Any] = {
        "prompt": [t.prompt.prompt for t in tasks],
        "negative_prompt": [t.prompt.negative_prompt for t in tasks],
        "num_inference_steps": int(job.steps),
        "guidance_scale": float(job.guidance_scale),
        "generator": generators,
        "output_type": "pil",
    }
    size = (int(job.width), int(job.height))
    with torch.inference_mode():
        if job.mode == "text2img":
            out = pipes.text2img(height=size[1], width=size[0], **common)
        elif job.mode == "img2img":
            images = [_load_parent_image(t.parent, size) for t in tasks]
            out = pipes.img2img()(image=images, strength=float(job.resolved_strength), **common)
        else:
            images = [_load_parent_image(t.parent, size) for t in tasks]
            masks = [region_mask(t.region, size) for t in tasks]
            out = pipes.inpaint()(
                image=images, mask_image=masks, strength=float(job.resolved_strength), height=size[1], width=size[0], **common
            )
    return [im.convert("RGB") for im in out.images]


def region_mask(region: tuple[float, float, float, float] | None, size: tuple[int, int]) -> Image.Image:
    """White (repaint) inside the relative region, black elsewhere."""
    from PIL import Image

    w, h = size
    mask = Image.new("L", size, 0)
    if region is not None:
        x, y, bw, bh = region
        mask.paste(255, (int(x * w), int(y * h), max(int(x * w) + 1, round((x + bw) * w)), max(int(y * h) + 1, round((y + bh) * h))))
    return mask


def _load_parent_image(parent: Parent | None, size: tuple[int, int]) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    if parent is None:
        raise GenerationError("img2img/inpainting task without a parent (planning bug).")
    try:
        with Image.open(parent.filepath) as im:
            return im.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    except (OSError, UnidentifiedImageError) as e:
        raise GenerationError(f"Cannot read parent image {parent.filepath} (sample {parent.id}): {e}") from None


def encode_png(image: Image.Image) -> bytes:
    """Deterministic PNG bytes (no timestamps, fixed compression)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# The entry point ----------------------------------------------------------------------------------
def synthesize(
    collection: foc.SampleCollection,
    job: SynthJob,
    *,
    settings: Settings,
    pipelines: SynthPipelines | GeneratorConfig | None = None,
    bank: PromptBank | None = None,
    scorer: Scorer | None = None,
    progress: bool = True,
) -> SynthReport:
    """Generate ``job``'s images and add the admitted ones to ``collection``'s dataset.

    Args:
        collection: parents are drawn from it (the App's target view); new samples go to its dataset.
        job: what to generate.
        settings: ``media_root`` receives the images.
        pipelines: loaded pipelines, or a config to load; None loads ``tiny-random``.
        bank: prompt bank; None loads ``models/synth/prompt_bank.yaml``.
        scorer: current Stage-1 as ``images -> p_roadwork``; with it, training images it already
            gets confidently right are rejected (``job.admission``). Never used for val_synthetic.
        progress: show a rich progress bar.

    Returns:
        a :class:`SynthReport`; ``report.added`` holds the new sample ids.

    Example:
        >>> report = synthesize(dataset.match_tags("x"), SynthJob(mode="img2img", count=4), settings=s)  # doctest: +SKIP
    """
    import fiftyone as fo
    from fiftyone import ViewField as F
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from curation.media import MediaLimits, MediaStore, decode_image

    dataset = _dataset_of(collection)
    store.declare_schema(dataset, SYNTH_FIELDS)
    pipes = pipelines if isinstance(pipelines, SynthPipelines) else load_pipelines(pipelines or GeneratorConfig(model="tiny-random"))
    bank = bank or load_prompt_bank()
    parents = read_parents(collection) if job.uses_parents else []
    tasks = plan_tasks(job, bank, parents, random_weights=pipes.random_weights)
    report = SynthReport(
        planned=len(tasks), split=tasks[0].split if tasks else None, generator=pipes.generator_id,
        random_weights=pipes.random_weights, final_batch_size=int(job.batch_size),
    )
    if not tasks:
        return report

    media = MediaStore(settings.media_root)
    limits = MediaLimits(min_side=min(8, int(job.width), int(job.height)))
    existing_phashes = [h for h in dataset.distinct("phash") if h]
    slice_rules = store.slice_config(dataset)
    use_scorer = scorer is not None and job.purpose == Split.TRAIN and job.admission.reject_confident
    new_samples: list[Any] = []
    seen_hashes: set[str] = set()

    def on_oom(size: int) -> None:
        report.final_batch_size = size
        _free_memory(size)

    columns = (TextColumn("[bold]synth {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        bar_task = bar.add_task(f"{job.mode} ({job.purpose})", total=len(tasks))
        for chunk, images in run_batched(tasks, job.batch_size, lambda c: render(pipes, c, job), on_oom=on_oom):
            decoded = [decode_image(encode_png(im), name=f"synthetic seed {t.seed}", limits=limits) for t, im in zip(chunk, images)]
            hashes = [d.sha256 for d in decoded]
            present = set(dataset.match(F("content_hash").is_in(hashes)).values("content_hash")) | seen_hashes
            fresh = [(t, im, d) for t, im, d in zip(chunk, images, decoded) if d.sha256 not in present]
            _count(report.skipped, EXISTING, len(chunk) - len(fresh))
            scores = scorer([im for _, im, _ in fresh]) if use_scorer and fresh else None
            decisions = admit(
                [Candidate(d.phash, t.label) for t, _, d in fresh], existing_phashes,
                config=job.admission if use_scorer else _no_confidence(job.admission), scores=scores,
            )
            for (task, _, d), decision in zip(fresh, decisions):
                if not decision.admitted:
                    _count(report.skipped, decision.reason or NEAR_DUPLICATE, 1)
                    continue
                path = media.put(d)  # image first; the sample only in the final bulk add
                existing_phashes.append(d.phash)
                seen_hashes.add(d.sha256)
                new_samples.append(build_sample(fo, task, d, str(path), job, pipes, slice_rules))
            bar.advance(bar_task, len(chunk))

    if new_samples:
        report.added = [str(i) for i in dataset.add_samples(new_samples, progress=False)]
    for s in new_samples:
        _count(report.by_label, s["ground_truth"].label, 1)
    return report


def build_sample(
    fo: Any, task: Task, decoded: Any, path: str, job: SynthJob, pipes: SynthPipelines, slice_config: SliceConfig
) -> Any:
    """The FiftyOne sample for one admitted image: provenance, label by construction, split, slices.

    ``slice_config`` is the dataset's own rules (:func:`curation.store.slice_config`)."""
    from curation.slices import SliceInputs, brightness, compute_slices, orange_share

    parent = task.parent
    prompt = task.prompt
    daytime = prompt.daytime or (parent.daytime if parent else None)
    weather = list(prompt.weather or (parent.weather if parent else ()))
    environment = prompt.scene_environment or (parent.scene_environment if parent else None)
    bright = brightness(decoded.thumb)
    orange = orange_share(decoded.thumb, slice_config)
    slices = compute_slices(
        SliceInputs(
            daytime=daytime, weather=weather, scene_environment=environment, brightness=bright, orange_share=orange,
            label=task.label, boxes=task.boxes, sources=(Source.SYNTHETIC.value,),
        ),
        slice_config,
    )
    fields: dict[str, Any] = {
        "sources": [Source.SYNTHETIC.value],
        "source_ids": [f"{Source.SYNTHETIC.value}:{task.mode}:{decoded.sha256[:16]}"],
        "content_hash": decoded.sha256,
        "phash": decoded.phash,
        "split": task.split,
        "ground_truth": fo.Classification(label=task.label),
        "label_origin": schema.LABEL_ORIGIN_RULE,
        "source_label": {Source.SYNTHETIC.value: task.label},
        "generator": pipes.generator_id,
        "generator_random_weights": pipes.random_weights,
        "prompt": prompt.prompt,
        "negative_prompt": prompt.negative_prompt,
        "seed": int(task.seed),
        "steps": int(job.steps),
        "strength": task.strength,
        "guidance_scale": float(job.guidance_scale),
        "synth_mode": task.mode,
        "parent_id": parent.id if parent else None,
        "sequence_group": parent.sequence_group if parent else None,
        "hn_category": task.hn_category,
        "daytime": daytime,
        "weather": weather,
        "scene_environment": environment,
        "slices": slices,
        "brightness": bright,
        "orange_share": orange,
    }
    if task.boxes:
        fields["primitives"] = fo.Detections(
            detections=[fo.Detection(label=name, bounding_box=list(box)) for name, box in task.boxes]
        )
    metadata = fo.ImageMetadata(
        width=decoded.width, height=decoded.height, mime_type=decoded.mime_type, size_bytes=len(decoded.data), num_channels=3
    )
    return fo.Sample(filepath=path, tags=list(task.tags), metadata=metadata, **fields)


def _dataset_of(collection: foc.SampleCollection) -> Any:
    import fiftyone as fo

    return collection if isinstance(collection, fo.Dataset) else fo.load_dataset(collection.dataset_name)


def _no_confidence(config: AdmissionConfig) -> AdmissionConfig:
    return AdmissionConfig(max_hamming=config.max_hamming, reject_confident=False, confidence=config.confidence)


def _count(counts: dict[str, int], key: str, n: int) -> None:
    if n:
        counts[key] = counts.get(key, 0) + n


__all__ = [
    "EXISTING", "GenerationError", "SYNTH_FIELDS", "SynthReport", "build_sample", "encode_png", "hard_negative_stats",
    "read_parents", "region_mask", "render", "run_batched", "synthesize",
]
