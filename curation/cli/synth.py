"""`curation synth`: generate SDXL synthetic images into the platform dataset.

Imported by :mod:`curation.cli`; heavy libraries load inside the command so ``--help`` stays fast.

Examples::

    # Targeted hard negatives: split the budget over the hn_categories Stage-1 fails most
    curation synth --mode text2img --kind hard_negative --count 200 --target
    # Validator-style evaluation children of val/calib images
    curation synth --mode img2img --purpose val_synthetic --count 100
    # Offline demo / smoke test (random weights: never admitted to training)
    curation synth --model tiny-random --count 4
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curation.cli.base import SettingsOption, command, config_option, console, load_settings, print_counts
from curation.errors import ConfigError
from curation.synth.admission import AdmissionConfig
from curation.synth.pipeline import GeneratorConfig

TINY_DEFAULTS = {"width": 64, "height": 64, "steps": 4}
"""Sizes used with ``--model tiny-random`` unless given: the tiny UNet's native 64×64."""


def parse_categories(values: list[str] | None) -> dict[str, int] | None:
    """``["crane=10", "ad=5"]`` → ``{"crane": 10, "ad": 5}``."""
    if not values:
        return None
    out: dict[str, int] = {}
    for value in values:
        name, sep, n = value.partition("=")
        if not sep or not n.strip().isdigit():
            raise ConfigError(f"`--category` takes NAME=COUNT (for example crane=10); got {value!r}.")
        out[name.strip()] = int(n)
    return out


def parse_region(value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise ConfigError(f"`--region` takes x,y,w,h (relative, e.g. 0.4,0.5,0.2,0.3); got {value!r}.") from None


@command("synth")
def synth_command(
    mode: Annotated[str, typer.Option(help="text2img | img2img | inpaint_replace | inpaint_add.")] = "text2img",
    purpose: Annotated[str, typer.Option(help="train (parents from train) | val_synthetic (children of val/calib).")] = "train",
    count: Annotated[int, typer.Option(help="Images to generate.")] = 8,
    seed: Annotated[int, typer.Option(help="Image i uses seed+i; the same seed reproduces the same bytes.")] = 0,
    kind: Annotated[str, typer.Option(help="Prompt kind: hard_negative | positive | negative | caption.")] = "hard_negative",
    category: Annotated[list[str] | None, typer.Option(help="NAME=COUNT per hn_category (repeatable).")] = None,
    target: Annotated[bool, typer.Option(help="Allocate --count over hn_categories by Stage-1 errors on mined hard negatives.")] = False,
    model: Annotated[str, typer.Option(help="SDXL hub id, local diffusers dir, or tiny-random.")] = "stabilityai/stable-diffusion-xl-base-1.0",
    vae: Annotated[str | None, typer.Option(help="Replacement VAE, e.g. madebyollin/sdxl-vae-fp16-fix.")] = None,
    inpaint_model: Annotated[str | None, typer.Option(help="Dedicated SDXL inpainting checkpoint.")] = None,
    dtype: Annotated[str, typer.Option(help="auto | float32 | float16 | bfloat16.")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    random_weights: Annotated[bool, config_option(GeneratorConfig, "random_weights")] = GeneratorConfig.random_weights,
    steps: Annotated[int | None, typer.Option(help="Diffusion steps (default 30; 4 for tiny-random).")] = None,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 5.0,
    strength: Annotated[float | None, typer.Option(help="img2img/inpaint strength (default 0.7 / 0.99).")] = None,
    width: Annotated[int | None, typer.Option(help="Output width (default 1024; 64 for tiny-random).")] = None,
    height: Annotated[int | None, typer.Option(help="Output height (default 1024; 64 for tiny-random).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per pipeline call (halved on out-of-memory).")] = 4,
    region: Annotated[str | None, typer.Option(help="Inpainting region x,y,w,h (relative) for every parent.")] = None,
    max_hamming: Annotated[int, config_option(AdmissionConfig, "max_hamming")] = AdmissionConfig.max_hamming,
    tag: Annotated[str | None, typer.Option(help="Only parents carrying this tag.")] = None,
    prompt_bank: Annotated[Path | None, typer.Option(help="Prompt bank YAML (default models/synth/prompt_bank.yaml).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the plan (labels, categories) and generate nothing.")] = False,
    settings_file: SettingsOption = None,
) -> None:
    """Generate SDXL synthetic images (hard negatives, validator-style data, val_synthetic)."""
    from curation import store
    from curation.synth.generate import hard_negative_stats, read_parents, synthesize
    from curation.synth.pipeline import TINY, load_pipelines
    from curation.synth.plan import SynthJob, counts_by, plan_tasks
    from curation.synth.prompts import load_prompt_bank
    from curation.synth.targeting import allocate_budget

    settings = load_settings(settings_file)
    tiny = model == TINY
    bank = load_prompt_bank(prompt_bank)
    dataset = store.open_dataset(settings, create=False)
    collection = dataset.match_tags(tag) if tag else dataset
    categories = parse_categories(category)
    if target:
        if categories:
            raise ConfigError("Give either `--target` or `--category`, not both.")
        stats = hard_negative_stats(dataset)
        categories = allocate_budget(stats, count, categories=bank.categories)
        print_counts("targeted hn_category budget", {k: v for k, v in categories.items()})
    job = SynthJob(
        mode=mode,
        purpose=purpose,
        count=count,
        seed=seed,
        kind=kind,
        categories=categories,
        steps=steps if steps is not None else (TINY_DEFAULTS["steps"] if tiny else 30),
        guidance_scale=guidance,
        strength=strength,
        width=width if width is not None else (TINY_DEFAULTS["width"] if tiny else 1024),
        height=height if height is not None else (TINY_DEFAULTS["height"] if tiny else 1024),
        batch_size=batch_size,
        region=parse_region(region),
        admission=AdmissionConfig(max_hamming=max_hamming),
    )
    config = GeneratorConfig(
        model=model, inpaint_model=inpaint_model, vae=vae, dtype=dtype, device=device, random_weights=random_weights
    )
    if dry_run:
        parents = read_parents(collection) if job.uses_parents else []
        tasks = plan_tasks(job, bank, parents, random_weights=tiny or random_weights)
        console.print(f"Plan: {len(tasks)} images, mode {job.mode}, purpose {job.purpose} (nothing generated)")
        print_counts("label", dict(counts_by(tasks, "label")))
        print_counts("hn_category", dict(counts_by(tasks, "hn_category")))
        return
    pipes = load_pipelines(config)
    report = synthesize(collection, job, settings=settings, pipelines=pipes, bank=bank)
    split = report.split or "none (random-weight generator: tagged not_admitted, never trained on)"
    console.print(
        f"Added {len(report.added)} of {report.planned} synthetic images to `{dataset.name}` "
        f"(split {split}; generator {report.generator}; final batch size {report.final_batch_size})."
    )
    if report.by_label:
        print_counts("added by label", report.by_label)
    if report.skipped:
        print_counts("skipped", report.skipped)
