"""One-function entry for any miner: ``predict(PIL.Image) -> float``, the Roadwork probability.

Standalone: needs ``torch``, ``transformers`` and ``Pillow``, never the curation platform. The
probability is calibrated and shifted so the model's decision threshold is exactly 0.5::

    from roadwork_predict import predict
    p = predict(Image.open("query.jpg"))   # > 0.5 means roadwork

The model loads once per (folder, device) and is cached. ``model_dir`` defaults to the folder
holding this file (the bundle, or its Hugging Face snapshot).
"""

from __future__ import annotations

import threading
from pathlib import Path

BUNDLE_DIR = Path(__file__).resolve().parent
_CACHE: dict = {}
_LOCK = threading.Lock()


def load(model_dir: str | Path | None = None, device: str = "cpu"):
    """Return ``(model, image_processor)`` for a bundle, loading it on first use."""
    key = (str(Path(model_dir or BUNDLE_DIR).resolve()), str(device))
    with _LOCK:
        if key not in _CACHE:
            from transformers import AutoImageProcessor, AutoModelForImageClassification

            model = AutoModelForImageClassification.from_pretrained(key[0], trust_remote_code=True)
            processor = AutoImageProcessor.from_pretrained(key[0])
            _CACHE[key] = (model.to(device).eval(), processor)
        return _CACHE[key]


def predict(image, *, model_dir: str | Path | None = None, device: str = "cpu") -> float:
    """P(Roadwork) in [0, 1] for one PIL image of any size; > 0.5 means roadwork."""
    return predict_batch([image], model_dir=model_dir, device=device)[0]


def predict_batch(images, *, model_dir: str | Path | None = None, device: str = "cpu") -> list[float]:
    """P(Roadwork) for several PIL images; images of one size share one forward pass."""
    import torch

    model, processor = load(model_dir, device)
    from PIL import ImageOps

    images = [ImageOps.exif_transpose(im).convert("RGB") for im in images]  # upright, as the platform trains
    probs: list[float | None] = [None] * len(images)
    by_size: dict = {}
    for i, image in enumerate(images):
        by_size.setdefault(image.size, []).append(i)
    for indices in by_size.values():
        pixels = processor(images=[images[i] for i in indices], return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            z = model(pixel_values=pixels.to(device)).roadwork_logit.double()
        for i, p in zip(indices, torch.sigmoid(z).tolist()):
            probs[i] = float(p)
    return probs  # type: ignore[return-value]
