"""``publish --dry-run``: check a bundle folder as the Hugging Face repo it would become.

Nothing is uploaded (real publishing needs the network and a token; upload the checked folder with
``hf upload <repo> <folder>``). The check covers what validators and miners rely on:

- the files a miner loads (remote code, weights, processor, config with ``auto_map`` and the
  ``None``/``Roadwork`` labels) and ``model_card.json`` with the subnet's required keys, a semantic
  version and a Unix ``submission_time`` (the validator parses it with ``int``);
- the CPU latency of one 224×224 query through the bundle's own miner detector, measured like a
  miner answers (base64 JPEG → PIL → probability), cold (first call) and warm (p50 / p99), against
  the 9 s validator timeout; and, side by side, the same query through ONNX Runtime (the bundle's
  model exported with :func:`curation.export.onnx.export_onnx`, which checks it against PyTorch);
- the same for one native-resolution 1920×1080 JPEG through the detector (a few warm calls): the
  model cuts its views from the full frame, so decoding and resizing grow with the image while the
  backbone's work does not. Eager only: the ONNX graph has a fixed 224×224 input.

Example:
    >>> from curation.export.publish import check_bundle
    >>> report = check_bundle("models/registry/1.0.0")  # doctest: +SKIP
    >>> report.passed  # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation.export.bundle import AUTO_MAP, ID2LABEL, MODEL_CARD_FILE, REMOTE_CODE_FILES, WEIGHTS_FILE
from curation.export.miner import CONFIG_FILE, DETECTOR_FILE, MINER_DIR

VALIDATOR_TIMEOUT_S = 9.0
NATIVE_SIZE = (1920, 1080)  # a dashcam frame at native resolution (width, height)
NATIVE_WARM_CALLS = 3  # the frame is timed with at most this many warm calls: p50/p99 without much extra time
REQUIRED_CARD_KEYS = ("model_name", "version", "submitted_by", "submission_time")  # the subnet's list
REQUIRED_FILES = (*REMOTE_CODE_FILES, WEIGHTS_FILE, "config.json", "preprocessor_config.json", MODEL_CARD_FILE, "README.md")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_SS58 = re.compile(r"^5[1-9A-HJ-NP-Za-km-z]{47}$")


@dataclass(frozen=True)
class LatencyStats:
    """One scorer's timings of the same query: first call, then p50 / p99 of the warm calls."""

    cold_s: float
    p50_s: float
    p99_s: float
    probability: float
    calls: int


@dataclass(frozen=True)
class PublishReport:
    """What a dry run found. ``passed`` needs no problems and every latency (see ``latency_ok``) under the timeout."""

    repo_dir: Path
    files: list[tuple[str, int]]  # (relative path, bytes)
    problems: list[str]
    warnings: list[str]
    load_s: float | None
    cold_latency_s: float | None
    warm_latency_s: float | None  # median of the warm calls
    probability: float | None
    threads: int
    timeout_s: float = VALIDATOR_TIMEOUT_S
    warm_p99_s: float | None = None
    num_views: int | None = None
    onnx: LatencyStats | None = None  # ONNX Runtime on the same query, when measured
    eager: LatencyStats | None = None  # the 224×224 query through the detector (the fields above, with its call count)
    native: LatencyStats | None = None  # the detector on one NATIVE_SIZE JPEG, when measured

    @property
    def latency_ok(self) -> bool:
        """First call and p50 of the 224×224 query, and the native frame's first call and p99, under the timeout."""
        if self.cold_latency_s is None or self.warm_latency_s is None:
            return False
        worst = max(self.cold_latency_s, self.warm_latency_s)
        if self.native is not None:
            worst = max(worst, self.native.cold_s, self.native.p99_s)
        return worst < self.timeout_s

    def latency_rows(self) -> list[tuple[str, LatencyStats]]:
        """(label, timings) per measured scorer and query, in the order ``publish --dry-run`` prints them."""
        rows = [("224×224, eager PyTorch (miner detector)", self.eager)] if self.eager is not None else []
        if self.onnx is not None:
            rows.append(("224×224, ONNX Runtime", self.onnx))
        if self.native is not None:
            rows.append((f"{NATIVE_SIZE[0]}×{NATIVE_SIZE[1]}, eager PyTorch (miner detector)", self.native))
        return rows

    @property
    def passed(self) -> bool:
        return not self.problems and self.latency_ok


def check_layout(repo_dir: str | Path) -> tuple[list[str], list[str]]:
    """Problems (would break miners or validators) and warnings for a bundle folder; pure file reads."""
    repo_dir = Path(repo_dir)
    required = (*REQUIRED_FILES, f"{MINER_DIR}/{DETECTOR_FILE}")
    problems = [f"missing {name}" for name in required if not (repo_dir / name).is_file()]
    warnings: list[str] = []
    config = _read_json(repo_dir / "config.json", problems)
    if config is not None:
        if config.get("auto_map") != AUTO_MAP:
            problems.append(f"config.json `auto_map` is {config.get('auto_map')!r}, expected {AUTO_MAP!r}")
        if {int(k): v for k, v in (config.get("id2label") or {}).items()} != ID2LABEL:
            problems.append(f"config.json `id2label` is {config.get('id2label')!r}, expected {ID2LABEL!r}")
        if config.get("trained") is False:
            warnings.append("the model is UNTRAINED (random head): do not mine with it")
    card = _read_json(repo_dir / MODEL_CARD_FILE, problems)
    if card is not None:
        missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
        if missing:
            problems.append(f"model_card.json lacks {missing}")
        if not _SEMVER.match(str(card.get("version", ""))):
            problems.append(f"model_card.json `version` {card.get('version')!r} is not X.Y.Z")
        when = card.get("submission_time")
        if not isinstance(when, int) or not 946684800 <= when <= time.time() + 86400:  # the validator's range
            problems.append(
                f"model_card.json `submission_time` {card.get('submission_time')!r} is not a Unix timestamp "
                "(validators parse it with int())"
            )
        if not _SS58.match(str(card.get("submitted_by", ""))):
            warnings.append(
                f"`submitted_by` {card.get('submitted_by')!r} does not look like an SS58 hotkey; validators compare it "
                "with your miner's hotkey (set CURATION_USER_NAME or pass --submitted-by)"
            )
    return problems, warnings


def _read_json(path: Path, problems: list[str]):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        problems.append(f"{path.name} is not valid JSON: {e}")
        return None


def load_detector(repo_dir: str | Path, *, device: str = "cpu"):
    """The bundle's own miner detector class, imported from its file (as a miner would)."""
    repo_dir = Path(repo_dir)
    path = repo_dir / MINER_DIR / DETECTOR_FILE
    name = f"_roadwork_detector_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.RoadworkDetector(config_name=str(repo_dir / MINER_DIR / CONFIG_FILE), device=device)


def sample_query(seed: int = 0) -> bytes:
    """A validator-style 224×224 JPEG (random street-like colours, augmentation level 3)."""
    from PIL import Image

    from curation.stage1.validator_view import validator_query

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    query = validator_query(Image.fromarray(pixels), seed=seed, level=3)
    buffer = io.BytesIO()
    query.save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def sample_frame(seed: int = 0, size: tuple[int, int] = NATIVE_SIZE) -> bytes:
    """A native-resolution JPEG (quality 90) of smooth random colour blocks, about a real frame's bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    coarse.resize(size, Image.BILINEAR).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def measure_latency(detector, jpeg: bytes, *, warm_calls: int = 3) -> LatencyStats:
    """Time base64 JPEG → PIL → ``detector(image)`` (a probability), like the miner's forward."""
    from PIL import Image

    payload = base64.b64encode(jpeg)

    def one() -> tuple[float, float]:
        start = time.perf_counter()
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        p = detector(image)
        return time.perf_counter() - start, p

    cold, p = one()
    warm = [one()[0] for _ in range(max(1, warm_calls))]
    return LatencyStats(cold_s=cold, p50_s=statistics.median(warm), p99_s=float(np.percentile(warm, 99)), probability=float(p), calls=len(warm))


class OnnxScorer:
    """The bundle's model under ONNX Runtime: PIL image → P(Roadwork), as the detector answers."""

    def __init__(self, onnx_path: Path, *, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def __call__(self, image) -> float:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)[None].transpose(0, 3, 1, 2) / 255.0  # [1, 3, H, W]
        logits = self.session.run(None, {"pixel_values": np.ascontiguousarray(pixels)})[0][0]  # [2]
        return float(1.0 / (1.0 + np.exp(logits[0] - logits[1])))


def onnx_latency(repo_dir: Path, jpeg: bytes, *, warm_calls: int, threads: int) -> LatencyStats:
    """Export the bundle to ONNX in a temporary folder (checked against PyTorch) and time the query."""
    import tempfile

    from curation.export.onnx import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        export = export_onnx(repo_dir, Path(tmp) / "model.onnx")
        return measure_latency(OnnxScorer(export.path, threads=threads), jpeg, warm_calls=warm_calls)


def check_bundle(repo_dir: str | Path, *, warm_calls: int = 3, device: str = "cpu", onnx: bool = False) -> PublishReport:
    """Check a bundle folder's layout and time one 224×224 query through its miner detector (and ONNX
    Runtime), then one native 1920×1080 frame through the detector."""
    import torch

    repo_dir = Path(repo_dir)
    files = [(str(p.relative_to(repo_dir)), p.stat().st_size) for p in sorted(repo_dir.rglob("*")) if p.is_file()]
    problems, warnings = check_layout(repo_dir)
    load_s = eager = onnx_stats = native = views = None
    if not any(m.startswith("missing") for m in problems):
        start = time.perf_counter()
        detector = load_detector(repo_dir, device=device)
        load_s = time.perf_counter() - start
        query = sample_query()
        eager = measure_latency(detector, query, warm_calls=warm_calls)
        native = measure_latency(detector, sample_frame(), warm_calls=min(warm_calls, NATIVE_WARM_CALLS))
        for stats in (eager, native):
            if not 0.0 <= stats.probability <= 1.0:
                problems.append(f"the detector returned {stats.probability!r}, not a probability in [0, 1]")
        config = json.loads((repo_dir / "config.json").read_text())
        views = (1 + config.get("view_grid", 0) ** 2) * (2 if config.get("view_flip") else 1)
        if onnx and device == "cpu":
            onnx_stats = onnx_latency(repo_dir, query, warm_calls=warm_calls, threads=torch.get_num_threads())
            if abs(onnx_stats.probability - eager.probability) > 1e-4:
                problems.append(f"ONNX Runtime answers {onnx_stats.probability:.6f}, the detector {eager.probability:.6f}")
    return PublishReport(
        repo_dir=repo_dir,
        files=files,
        problems=problems,
        warnings=warnings,
        load_s=load_s,
        cold_latency_s=eager.cold_s if eager else None,
        warm_latency_s=eager.p50_s if eager else None,
        warm_p99_s=eager.p99_s if eager else None,
        probability=eager.probability if eager else None,
        threads=torch.get_num_threads(),
        num_views=views,
        onnx=onnx_stats,
        eager=eager,
        native=native,
    )
