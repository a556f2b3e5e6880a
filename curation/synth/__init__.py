"""SDXL synthetic images: targeted hard negatives, validator-style training data, val_synthetic.

- :mod:`~curation.synth.pipeline`: load SDXL (hub id / local dir, fp16-fix VAE) or build a tiny one.
- :mod:`~curation.synth.prompts`: the prompt bank and deterministic prompt composition.
- :mod:`~curation.synth.targeting`: allocate a budget to the hn_categories Stage-1 fails most (pure).
- :mod:`~curation.synth.plan`: the job config and one fully decided task per image (pure).
- :mod:`~curation.synth.admission`: near-duplicate / confidence filter and the random-weight guard (pure).
- :mod:`~curation.synth.generate`: :func:`synthesize`, the entry point the CLI and operator call.

Heavy libraries (torch, diffusers, FiftyOne) load inside functions, so importing this is cheap.

Example:
    >>> from curation.synth import GeneratorConfig, SynthJob, load_pipelines, synthesize  # doctest: +SKIP
    >>> pipes = load_pipelines(GeneratorConfig(model="tiny-random"))  # doctest: +SKIP
    >>> synthesize(dataset, SynthJob(count=4, width=64, height=64, steps=2), pipelines=pipes,  # doctest: +SKIP
    ...            settings=settings).added
"""

from curation.synth.admission import AdmissionConfig, admit, child_split
from curation.synth.generate import SYNTH_FIELDS, GenerationError, SynthReport, hard_negative_stats, synthesize
from curation.synth.pipeline import TINY, GeneratorConfig, SynthPipelines, build_tiny_pipeline, load_pipelines
from curation.synth.plan import MODES, PURPOSES, SynthJob, plan_tasks
from curation.synth.prompts import PromptBank, load_prompt_bank
from curation.synth.targeting import CategoryStats, TargetingConfig, allocate_budget

__all__ = [
    "MODES",
    "PURPOSES",
    "SYNTH_FIELDS",
    "TINY",
    "AdmissionConfig",
    "CategoryStats",
    "GenerationError",
    "GeneratorConfig",
    "PromptBank",
    "SynthJob",
    "SynthPipelines",
    "SynthReport",
    "TargetingConfig",
    "admit",
    "allocate_budget",
    "build_tiny_pipeline",
    "child_split",
    "hard_negative_stats",
    "load_pipelines",
    "load_prompt_bank",
    "plan_tasks",
    "synthesize",
]
