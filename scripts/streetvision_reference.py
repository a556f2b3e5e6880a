"""Record what the StreetVision subnet's OWN code sends miners, as test data for our renderer.

Run once by hand from the repository root (needs the subnet mirror, torchvision and opencv):

    source .venv/bin/activate
    python scripts/streetvision_reference.py \
        --mirror /work/.mirror/ykatyhoney+streetvision-subnet/repo --out tests/data/streetvision

For each contract it extracts the subnet files at that commit (``git show``) into a temp dir,
imports them (``bittensor`` and the heavy validator config are stubbed: they do not touch the
pixels) and renders a few small synthetic images with fixed seeds:

* A (28a1755) and B (e02ce2c): ``apply_augmentation_by_level`` + ``prepare_synapse`` for every
  level; seeds are searched so the subnet's own level draw (default probabilities) hits each level.
* C (cc3e0b9): ``prepare_synapse`` on the native image (no augmentation since that commit).

Recorded per case: the parameters the subnet sampled (level, rotation angle, crop box, flip params,
per-distortion severities, the seed of the colour-noise draw), the uint8 image handed to the JPEG
encoder and the JPEG bytes of the wire payload. The colour-noise draw (``np.random.randn`` on the
global state) is redirected to ``RandomState(noise_seed)`` so a test can replay it. Outputs:
``reference.npz`` (inputs, pre-JPEG pixels, JPEG bytes) and ``cases.json``.

The reference depends on the machine: OpenCV's float colour conversion uses FMA on AVX2 CPUs.
It was produced on x86-64 with AVX2/AVX-512, opencv 5.1, torch 2.14, torchvision 0.29, Pillow 13.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib
import io
import json
import random
import re
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CONTRACTS = {  # name -> (commit, subnet files the rendering needs)
    "streetvision-2025-11": ("28a1755", ["natix/utils/image_transforms.py", "natix/protocol.py"]),
    "streetvision-2026-04": ("e02ce2c", ["natix/utils/image_transforms.py", "natix/protocol.py"]),
    "streetvision-2026-05": ("cc3e0b9", ["natix/protocol.py"]),
}
LEVEL_PROBS = (0.25, 0.25, 0.25, 0.25)  # the subnet's default level_probs, used to predict seeds
SEEDS_PER_LEVEL = {0: 1, 1: 1, 2: 2, 3: 2}
AUDIT_RUNS = 150  # seeds per contract for the flip audit (levels >= 1 only)
LEVEL_AUDIT_RUNS = 1000
# Full pre-JPEG pixels are kept for these cases only (size budget); every case keeps its SHA-256.
PIXEL_CASES = {("wide_192x108", 1), ("wide_192x108", 3)}


def test_images() -> dict[str, np.ndarray]:
    """Small structured RGB images: edges, gradients and odd sizes expose crop/resize offsets."""
    out = {}
    for name, (w, h) in {"wide_192x108": (192, 108), "square_160x160": (160, 160), "tall_97x161": (97, 161)}.items():
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        r = 255 * x / (w - 1)
        g = 127.5 + 127.5 * np.sin(y / 5.0 + x / 11.0)
        b = np.where(((x // 12) + (y // 12)) % 2 == 0, 230.0, 25.0)
        disc = (x - 0.3 * w) ** 2 + (y - 0.6 * h) ** 2 < (0.18 * min(w, h)) ** 2
        r[disc], g[disc], b[disc] = 250, 140, 0  # an orange "cone"
        band = np.abs(y - 0.25 * h - 0.3 * x) < 2
        r[band], g[band], b[band] = 255, 255, 255
        out[name] = np.clip(np.rint(np.stack([r, g, b], -1)), 0, 255).astype(np.uint8)
    return out


def extract(mirror: Path, commit: str, files: list[str], root: Path) -> None:
    """Write the subnet files at ``commit`` under ``root`` plus stubs for what they import."""
    for rel in files:
        text = subprocess.run(["git", "-C", str(mirror), "show", f"{commit}:{rel}"], check=True, capture_output=True, text=True).stdout
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    config = subprocess.run(
        ["git", "-C", str(mirror), "show", f"{commit}:natix/validator/config.py"], check=True, capture_output=True, text=True
    ).stdout
    size = re.search(r"^TARGET_IMAGE_SIZE\b[^=]*=\s*(\(\d+,\s*\d+\))", config, re.MULTILINE)
    if size is None:  # from cc3e0b9 on it is re-exported from natix/constants.py
        constants = subprocess.run(
            ["git", "-C", str(mirror), "show", f"{commit}:natix/constants.py"], check=True, capture_output=True, text=True
        ).stdout
        size = re.search(r"^TARGET_IMAGE_SIZE\b[^=]*=\s*(\(\d+,\s*\d+\))", constants, re.MULTILINE)
    for pkg in ("natix", "natix/utils", "natix/validator"):
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").touch()
    # The real config creates cache folders in $HOME and pulls in the whole validator: keep its one constant.
    (root / "natix/validator/config.py").write_text(f"TARGET_IMAGE_SIZE = {size.group(1)}\n")
    (root / "natix/constants.py").write_text(f"TARGET_IMAGE_SIZE = {size.group(1)}\n")


def stub_bittensor() -> None:
    """``natix.protocol`` only needs ``bt.Synapse`` (a pydantic model) and ``bt.logging``."""
    import pydantic

    bt = types.ModuleType("bittensor")
    bt.Synapse = type("Synapse", (pydantic.BaseModel,), {"model_config": pydantic.ConfigDict(validate_assignment=True)})
    bt.logging = types.SimpleNamespace(**{k: (lambda *a, **k: None) for k in ("info", "debug", "error", "warning", "success")})
    sys.modules["bittensor"] = bt


def import_subnet(root: Path):
    for name in [m for m in sys.modules if m == "natix" or m.startswith("natix.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        protocol = importlib.import_module("natix.protocol")
        transforms = importlib.import_module("natix.utils.image_transforms") if (root / "natix/utils/image_transforms.py").exists() else None
    finally:
        sys.path.remove(str(root))
    return transforms, protocol


class Recorder:
    """Hooks into the subnet modules: distortion severities, the noise draw and the wire image."""

    def __init__(self, transforms, protocol):
        self.distortions: list[list] = []
        self.noise_seed = 0
        self.pre_jpeg: np.ndarray | None = None
        self.hflips = self.vflips = 0
        if transforms is not None:
            self._hook_transforms(transforms)
        original = protocol.prepare_image_synapse

        def capture(image):
            self.pre_jpeg = np.array(image)
            return original(image)

        protocol.prepare_image_synapse = capture

    def _hook_transforms(self, mod) -> None:
        recorder = self
        call = mod.ApplyDeeperForensicsDistortion.__call__

        def distort(self, img, level=None):
            out = call(self, img, level)
            recorder.distortions.append([self.distortion_type, int(self.level)])
            return out

        mod.ApplyDeeperForensicsDistortion.__call__ = distort
        real_random = np.random

        class SeededRandom:  # np.random, except that randn replays RandomState(noise_seed)
            def __getattr__(self, name):
                return getattr(real_random, name)

            def randn(self, *shape):
                return real_random.RandomState(recorder.noise_seed).randn(*shape)

        class NumpyProxy:
            random = SeededRandom()

            def __getattr__(self, name):
                return getattr(np, name)

        mod.np = NumpyProxy()
        hflip, vflip = mod.transforms.functional.hflip, mod.transforms.functional.vflip

        def count_h(img):
            recorder.hflips += 1
            return hflip(img)

        def count_v(img):
            recorder.vflips += 1
            return vflip(img)

        mod.transforms.functional.hflip, mod.transforms.functional.vflip = count_h, count_v


def seed_all(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)


def predicted_level(seed: int) -> int:
    """The level the subnet draws first thing after ``seed_all(seed)`` (np.random.random())."""
    r = np.random.RandomState(seed).random_sample()
    return int(np.searchsorted(np.cumsum(LEVEL_PROBS), r))


def plain(value):
    """JSON-ready copy of the subnet's params (tuples, torch scalars, numpy bools)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def run_augmented(name, commit, transforms, protocol, rec, images, arrays, cases) -> None:
    seed = 1000
    for image_name, pixels in images.items():
        for level, count in SEEDS_PER_LEVEL.items():
            for _ in range(count):
                while predicted_level(seed) != level:
                    seed += 1
                rec.distortions, rec.noise_seed = [], seed * 7 + 3
                seed_all(seed)
                out, got_level, params = transforms.apply_augmentation_by_level(Image.fromarray(pixels), (224, 224), None)
                assert got_level == level, (got_level, level)
                synapse = protocol.prepare_synapse(out, modality="image")
                key = f"{name}__{image_name}__L{level}__s{seed}"
                if (image_name, level) in PIXEL_CASES and f"pre__{name}__{image_name}__L{level}" not in arrays:
                    arrays[f"pre__{key}"] = rec.pre_jpeg
                    arrays[f"pre__{name}__{image_name}__L{level}"] = np.zeros(0, np.uint8)  # marker, dropped below
                arrays[f"jpeg__{key}"] = np.frombuffer(base64.b64decode(synapse.image), dtype=np.uint8)
                cases.append(
                    {
                        "key": key,
                        "policy": name,
                        "commit": commit,
                        "image": image_name,
                        "seed": seed,
                        "level": level,
                        "params": plain(params),
                        "distortions": list(rec.distortions),
                        "noise_seed": rec.noise_seed,
                        "pre_jpeg_sha256": digest(rec.pre_jpeg),
                        "pre_jpeg_shape": list(rec.pre_jpeg.shape),
                    }
                )
                seed += 1


def digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).hexdigest()


def audits(transforms, rec) -> dict:
    """Flip calls over many runs of levels 1-3, and the level frequencies of the default draw."""
    image = Image.fromarray(np.zeros((16, 24, 3), np.uint8))
    rec.hflips = rec.vflips = 0
    flip_params, runs = [], 0
    for seed in range(AUDIT_RUNS * 4):
        if predicted_level(seed) == 0:
            continue
        seed_all(seed)
        _, _, params = transforms.apply_augmentation_by_level(image, (224, 224), None)
        flip_params.append(plain({k: v for k, v in params.items() if "Flip" in k}))
        runs += 1
    counts = [0, 0, 0, 0]
    np.random.seed(12345)  # the subnet's own level draw, on one continuing global stream
    tiny = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    for _ in range(LEVEL_AUDIT_RUNS):
        counts[transforms.apply_augmentation_by_level(tiny, (224, 224), None)[1]] += 1
    distinct = sorted({json.dumps(p, sort_keys=True) for p in flip_params})
    return {
        "augmented_runs": runs,
        "hflip_calls": rec.hflips,
        "vflip_calls": rec.vflips,
        "distinct_flip_params": [json.loads(d) for d in distinct],
        "level_counts": counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror/ykatyhoney+streetvision-subnet/repo"))
    parser.add_argument("--out", type=Path, default=Path("tests/data/streetvision"))
    args = parser.parse_args()
    stub_bittensor()
    images = test_images()
    arrays = {f"input__{k}": v for k, v in images.items()}
    cases: list[dict] = []
    audit: dict[str, dict] = {}
    for name, (commit, files) in CONTRACTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            extract(args.mirror, commit, files, Path(tmp))
            transforms, protocol = import_subnet(Path(tmp))
        rec = Recorder(transforms, protocol)
        if name != "streetvision-2026-05":
            with contextlib.redirect_stdout(io.StringIO()):  # the subnet prints on every crop transform
                run_augmented(name, commit, transforms, protocol, rec, images, arrays, cases)
                audit[name] = audits(transforms, rec)
        else:  # C: the cache/API image goes to prepare_synapse untouched
            for image_name, pixels in images.items():
                synapse = protocol.prepare_synapse(Image.fromarray(pixels), modality="image")
                key = f"{name}__{image_name}__native"
                arrays[f"jpeg__{key}"] = np.frombuffer(base64.b64decode(synapse.image), dtype=np.uint8)
                cases.append(
                    {
                        "key": key,
                        "policy": name,
                        "commit": commit,
                        "image": image_name,
                        "seed": None,
                        "level": None,
                        "params": {},
                        "distortions": [],
                        "noise_seed": None,
                        "pre_jpeg_sha256": digest(rec.pre_jpeg),
                        "pre_jpeg_shape": list(rec.pre_jpeg.shape),
                    }
                )
    args.out.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in arrays.items() if v.size}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    (args.out / "reference.npz").write_bytes(buffer.getvalue())
    versions = {"torch": torch.__version__, "numpy": np.__version__, "pillow": Image.__version__}
    import cv2
    import torchvision

    versions |= {"opencv": cv2.__version__, "torchvision": torchvision.__version__}
    meta = {"generated_by": "scripts/streetvision_reference.py", "versions": versions, "cases": cases, "audit": audit}
    (args.out / "cases.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(cases)} cases, {len(buffer.getvalue()) / 1e6:.2f} MB -> {args.out}")


if __name__ == "__main__":
    main()
