"""The StreetVision miner adapter written into every bundle under ``miner/``.

``hf_template/miner/roadwork_detector.py`` (copied as is) is a detector class for the subnet's
detector registry: it registers as ``Stage1Roadwork`` through ``DETECTOR_REGISTRY.register_module``
(the decorator the subnet's own ``ViT`` and ``ROADWORK`` detectors use; ``natix.miner.registry`` in
current releases, ``base_miner.registry`` before the move) and subclasses the subnet's
``FeatureDetector``, whose constructor ``(model_name, config_name, device)`` reads a YAML file into
attributes. This module renders that YAML and the install notes.

Example:
    >>> import tempfile, pathlib
    >>> from curation.export.miner import write_miner_adapter
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> sorted(p.name for p in write_miner_adapter(folder, model_version="1.0.0").iterdir())
    ['README.md', 'roadwork_detector.py', 'roadwork_stage1.yaml']
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MINER_DIR = "miner"
DETECTOR_FILE = "roadwork_detector.py"
CONFIG_FILE = "roadwork_stage1.yaml"
MODULE_NAME = "Stage1Roadwork"
TEMPLATE = Path(__file__).resolve().parent / "hf_template" / MINER_DIR / DETECTOR_FILE

CONFIG_TEMPLATE = """\
# StreetVision detector config for the Stage-1 roadwork bundle, model version {version}.
# miner.env:  IMAGE_DETECTOR={module}
#             IMAGE_DETECTOR_CONFIG=/absolute/path/to/{config}
# Bundle folder; a relative path resolves against this file's folder ('..' = the bundle root
# while this file stays in the bundle's miner/ folder). Set null to load `hf_repo` instead.
model_dir: {model_dir}
hf_repo: {hf_repo}
revision: null
# Folder for the query log (log.jsonl + images/<sha256>.jpg, read by `curation ingest queries`);
# null disables logging.
query_log_dir: null
model_version: {version_json}
"""

README_TEMPLATE = """\
# Miner adapter — Stage-1 roadwork model {version}

The subnet's stock `ViT` detector loads Hugging Face models without remote code; this model builds
its views inside a custom architecture, so it ships its own detector class, `{module}`.

## Install into a StreetVision miner
1. Copy `{detector}` into the subnet's detector package — `natix/miner/detectors/` (current
   releases) or `base_miner/detectors/` (older ones) — and register it by adding to that package's
   `__init__.py`:

       from .roadwork_detector import RoadworkDetector  # registers "{module}"

2. Point `model_dir` in `{config}` at this bundle (absolute path), or set `hf_repo` to the
   Hugging Face repo you published it to (and `model_dir: null`).
3. In `miner.env`:

       IMAGE_DETECTOR={module}
       IMAGE_DETECTOR_CONFIG=/absolute/path/to/{config}
       IMAGE_DETECTOR_DEVICE=cpu   # or cuda

The detector returns P(Roadwork) in [0, 1]; the calibrated threshold is at 0.5, where validators round.

## Optional: log validator queries for active learning
Set `query_log_dir` in `{config}`. Each scored image is saved as `images/<sha256>.jpg` (the exact
bytes received when the image comes straight from `Image.open(BytesIO(...))`, as in the miner's
`forward_image`) and one line is appended to `log.jsonl`:

    {{"file": "images/<sha256>.jpg", "received_at": "2025-06-01T12:00:00.000Z", "validator_hotkey": "5F...",
     "response": 0.93, "model_version": "{version}", "feedback": null}}

To record which validator asked, pass its hotkey in the miner's `forward_image`:

    synapse.prediction = self.image_detector(image, validator_hotkey=synapse.dendrite.hotkey)

Import the folder into the curation platform with `curation ingest queries FOLDER`.

The detector runs in the subnet's stock miner environment as it is (transformers ~4.45): the bundle
supports transformers >= 4.45 and brings its own DINOv3 code, so nothing needs upgrading.

## Without the subnet
`RoadworkDetector(config_name="/path/to/{config}")(pil_image)` works anywhere `torch` and
`transformers` (>= 4.45) are installed; `../roadwork_predict.py` offers `predict(pil_image) -> float`.
"""


def write_miner_adapter(bundle_dir: str | Path, *, model_version: str, hf_repo: str | None = None) -> Path:
    """Write ``miner/`` (detector class, YAML config, README) into a bundle folder; returns it."""
    folder = Path(bundle_dir) / MINER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TEMPLATE, folder / DETECTOR_FILE)
    (folder / CONFIG_FILE).write_text(render_config(model_version=model_version, hf_repo=hf_repo), encoding="utf-8")
    (folder / "README.md").write_text(
        README_TEMPLATE.format(version=model_version, module=MODULE_NAME, detector=DETECTOR_FILE, config=CONFIG_FILE),
        encoding="utf-8",
    )
    return folder


def render_config(*, model_version: str, hf_repo: str | None = None, model_dir: str | None = "..") -> str:
    """The detector's YAML (values JSON-quoted, which YAML reads as the same strings)."""
    return CONFIG_TEMPLATE.format(
        version=model_version,
        version_json=json.dumps(model_version),
        module=MODULE_NAME,
        config=CONFIG_FILE,
        model_dir=json.dumps(model_dir) if model_dir else "null",
        hf_repo=json.dumps(hf_repo) if hf_repo else "null",
    )
