"""Fixtures for the synthesis tests: one tiny SDXL pipeline per session and a few parent samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tiny pipeline's ops are too small to gain from threads; on a shared CPU, one thread was ~20× faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_pipes():
    """The tiny random SDXL pipeline (built once; modules shared by text2img/img2img/inpaint)."""
    from diffusers.utils import logging as diffusers_logging

    from curation.synth.pipeline import GeneratorConfig, load_pipelines

    diffusers_logging.set_verbosity_error()
    return load_pipelines(GeneratorConfig(model="tiny-random", device="cpu"))


@pytest.fixture
def real_pipes(tiny_pipes):
    """The tiny pipeline posing as real weights, to exercise the admitted (split train) path."""
    return tiny_pipes.with_random_weights(False)


def _image(path: Path, seed: int) -> str:
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(base).resize((96, 64), Image.Resampling.BICUBIC).save(path)
    return str(path)


@pytest.fixture
def parents(dataset, tmp_path):
    """Parents in every split: train (roadwork with boxes, clean negative, leaked), val, calib, test."""
    import fiftyone as fo

    rows = [
        ("train_rw", "train", "roadwork", [], "v1/s1", [("cone", [0.4, 0.5, 0.1, 0.2]), ("road", [0.0, 0.6, 1.0, 0.4])]),
        ("train_neg", "train", "no_roadwork", [], "v1/s2", []),
        ("train_leak", "train", "no_roadwork", ["leak"], "v9/s9", []),
        ("val_rw", "val", "roadwork", [], "v2/s1", []),
        ("calib_neg", "calib", "no_roadwork", [], "v3/s1", []),
        ("test_neg", "test", "no_roadwork", [], "v4/s1", []),
    ]
    samples = []
    for i, (name, split, label, tags, group, boxes) in enumerate(rows):
        s = fo.Sample(
            filepath=_image(tmp_path / f"{name}.png", i),
            tags=tags,
            split=split,
            sources=["natix"],
            ground_truth=fo.Classification(label=label),
            label_origin="rule",
            sequence_group=group,
            scene_description=f"a street scene {name}",
            daytime="Light",
            weather=["Sunny"],
            scene_environment="Urban",
        )
        if boxes:
            s["primitives"] = fo.Detections(detections=[fo.Detection(label=n, bounding_box=b) for n, b in boxes])
        samples.append(s)
    ids = dataset.add_samples(samples, progress=False)
    return {row[0]: sid for row, sid in zip(rows, ids)}
