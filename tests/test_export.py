"""Deployable bundle: platform parity in an isolated interpreter, atomicity, card, miner adapter, ONNX, publish."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from isolation import BLOCK_PLATFORM
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from curation.cli import app
from curation.errors import ConfigError
from curation.export import bundle as bundle_mod
from curation.export.bundle import export_bundle, read_manifest
from curation.ingest.sources.queries import parse_query_line
from curation.media import open_rgb
from curation.stage1.backbone import load_backbone, tiny_random_backbone
from curation.stage1.model import Stage1Config, Stage1Model
from curation.stage1.validator_view import validator_query
from curation.stage1.views import ViewPolicy, pil_to_tensor

torch.set_num_threads(min(2, torch.get_num_threads()))
TEMPERATURE = 1.7
CARD = {"model_name": "roadwork-test", "submitted_by": "tester"}
HOTKEY = "5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX"


def scene(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """A cheap street-like picture: grey road, sky, a few orange cones (so views differ)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), (90, 90, 95))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, width, height // 3], fill=(135, 170, 220))
    for _ in range(int(rng.integers(0, 4))):
        x, y = int(rng.integers(0, width - 30)), int(rng.integers(height // 3, height - 40))
        draw.polygon([(x, y + 40), (x + 15, y), (x + 30, y + 40)], fill=(255, 110, 0))
    noise = rng.integers(-20, 20, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int64) + noise, 0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def queries(tmp_path_factory) -> dict[str, Path]:
    """Validator-style 224×224 queries (levels 0-3) and one full-resolution 320×180 frame, saved losslessly."""
    folder = tmp_path_factory.mktemp("queries")
    images = {f"q{level}": validator_query(scene(level), seed=10 + level, level=level) for level in range(4)}
    images["frame"] = scene(7, 320, 180)  # not square, global view downsampled with antialiasing
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name}.png"
        image.save(paths[name])
    return paths


def platform_raw(model: Stage1Model, paths: dict[str, Path]) -> dict[str, float]:
    with torch.inference_mode():
        out = model.forward_images([pil_to_tensor(open_rgb(p)) for p in paths.values()])  # as the platform reads files
    return dict(zip(paths, out.image_logits.double().tolist(), strict=True))


def tiny_model(config: Stage1Config, seed: int, paths: dict[str, Path], backbone=None, spread: float = 25.0) -> Stage1Model:
    """A tiny model whose calibrated threshold (≠ 0.5) splits the queries, so rounding is exercised."""
    model = Stage1Model.build(config, backbone=backbone or tiny_random_backbone(seed=seed), seed=seed)
    with torch.no_grad():
        model.head.mlp[-1].weight.mul_(spread)  # spread the random head's logits
    probs = sorted(1 / (1 + math.exp(-z / TEMPERATURE)) for z in platform_raw(model, paths).values())
    threshold = (probs[2] + probs[3]) / 2
    assert abs(threshold - 0.5) > 1e-3, "the test needs a threshold away from 0.5"
    model.set_calibration(threshold=threshold, temperature=TEMPERATURE)
    return model


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, queries) -> dict[str, tuple[Stage1Model, Path]]:
    root = tmp_path_factory.mktemp("bundles")
    plain = tiny_model(Stage1Config(), 0, queries)  # untrained, topk_mean, 3×3 tiles
    learned = tiny_model(
        Stage1Config(views=ViewPolicy(grid=2, overlap=0.15, flip=True), aggregator="attention", head_hidden=16), 1, queries
    )
    learned.mark_trained(version="1.2.3", data_fingerprint="sha256:feedbeef")
    # The ImageNet EfficientNet-Lite0 (timm) backbone: its bundle needs timm, not the platform.
    cnn = tiny_model(
        Stage1Config(backbone="efficientnet-lite0", views=ViewPolicy(grid=2, size=224)), 2, queries, backbone=load_backbone("efficientnet-lite0"),
        spread=1.0,  # its 2×1280 features already spread a random head's logits (×25 made them ~10³, beyond float32's 1e-4)
    )
    out = {}
    for name, model in (("plain", plain), ("learned", learned), ("cnn", cnn)):
        metrics = {"calib": {"mcc": 0.61, "accuracy": 0.83}, "n_queries": 400}
        data = {"train": {"natix": 1200, "synthetic": 300}}
        gate = {"kind": "logistic", "coef": [0.1, -0.2], "ltt": {"threshold": 0.3}}
        path = export_bundle(model, root / name, model_card=CARD, metrics=metrics, data_summary=data, gate=gate)
        out[name] = (model, path)
    return out


ISOLATED = BLOCK_PLATFORM + textwrap.dedent(
    """
    import hashlib
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    out = {"blocked": blocked, "curation_loaded": "curation" in sys.modules, "bundles": {}}
    images = {name: Image.open(path).convert("RGB") for name, path in args["images"].items()}
    for bundle_name, folder in args["bundles"].items():
        clf = pipeline("image-classification", model=folder, trust_remote_code=True)
        model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
        processor = AutoImageProcessor.from_pretrained(folder)
        sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location("rp_" + bundle_name, folder + "/roadwork_predict.py")
        predict_module = importlib.util.module_from_spec(spec); spec.loader.exec_module(predict_module)
        spec = importlib.util.spec_from_file_location("rd_" + bundle_name, folder + "/miner/roadwork_detector.py")
        detector_module = importlib.util.module_from_spec(spec); spec.loader.exec_module(detector_module)
        detector = detector_module.RoadworkDetector(config_name=args["detector_configs"][bundle_name])
        result = {"pipeline": {}, "logits": {}, "predict": {}, "detector": {},
                  "registered": detector_module.DETECTOR_REGISTRY is not None}
        for name, image in images.items():
            scores = {r["label"]: r["score"] for r in clf(image)}
            result["pipeline"][name] = scores["Roadwork"]
            with torch.inference_mode():
                logits = model(**processor(images=image, return_tensors="pt")).logits[0].double()
            result["logits"][name] = logits.tolist()
            result["predict"][name] = predict_module.predict(image)
        for name, path in args["jpegs"].items():
            data = open(path, "rb").read()
            result["detector"][name] = detector(Image.open(io.BytesIO(data)), validator_hotkey=args["hotkey"])
        out["bundles"][bundle_name] = result
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def isolated_run(tmp_path_factory, bundles, queries) -> dict:
    """Load every bundle in a fresh interpreter where `import curation` raises ImportError."""
    root = tmp_path_factory.mktemp("isolated")
    blocker = root / "blocker" / "curation"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('the platform must not be needed by a bundle')\n")
    jpegs = {}
    for name in ("q0", "q3"):
        jpegs[name] = root / f"{name}.jpg"
        jpegs[name].write_bytes(jpeg_bytes(Image.open(queries[name])))
    # A phone JPEG stored sideways with EXIF orientation 6: the miner must score it upright, as the
    # platform reads it when the logged query is ingested.
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.open(queries["q0"]).rotate(90, expand=True).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    jpegs["q0_exif"] = root / "q0_exif.jpg"
    jpegs["q0_exif"].write_bytes(buffer.getvalue())
    configs = {}
    for name, (_, path) in bundles.items():
        config = yaml.safe_load((path / "miner" / "roadwork_stage1.yaml").read_text())
        config.update(model_dir=str(path), query_log_dir=str(root / f"log_{name}"))
        configs[name] = root / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(config))
    args = {
        "blocker": str(blocker.parent),
        "images": {k: str(v) for k, v in queries.items()},
        "bundles": {k: str(p) for k, (_, p) in bundles.items()},
        "detector_configs": {k: str(v) for k, v in configs.items()},
        "jpegs": {k: str(v) for k, v in jpegs.items()},
        "hotkey": HOTKEY,
    }
    script = root / "isolated.py"
    script.write_text(ISOLATED)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HOME", "HF_MODULES_CACHE")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(root / "hf"), OMP_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(args)], check=False, cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return {"result": json.loads(line[len("RESULT ") :]), "root": root, "jpegs": jpegs}


@pytest.mark.parametrize("name", ["plain", "learned", "cnn"])
def test_bundle_without_platform_matches_platform(isolated_run, bundles, queries, name):
    result = isolated_run["result"]
    assert result["blocked"] and not result["curation_loaded"]
    model, _ = bundles[name]
    cfg = model.config
    shift = -math.log(cfg.threshold / (1 - cfg.threshold))
    raw = platform_raw(model, queries)
    got = result["bundles"][name]
    for query in queries:
        expected_z = raw[query] / cfg.temperature + shift  # platform logit at its threshold ↔ bundle at 0.5
        neg, pos = got["logits"][query]
        assert pos - neg == pytest.approx(expected_z, abs=1e-4), query
        expected_p = 1 / (1 + math.exp(-expected_z))
        for entry in ("pipeline", "predict"):
            assert got[entry][query] == pytest.approx(expected_p, abs=1e-4), (entry, query)
        platform_p = model.predict([Image.open(queries[query])])[0].p_roadwork
        assert (platform_p >= cfg.threshold) == (np.round(got["pipeline"][query]) == 1), query
    decisions = {np.round(got["pipeline"][q]) for q in queries}
    assert decisions == {0.0, 1.0}, "the queries should fall on both sides of the calibrated threshold"


def test_miner_detector_matches_and_logs_queries(isolated_run, bundles):
    result, root = isolated_run["result"], isolated_run["root"]
    for name, (model, _) in bundles.items():
        got = result["bundles"][name]
        assert got["registered"] is False  # no subnet installed: plain class, same API
        cfg = model.config
        shift = -math.log(cfg.threshold / (1 - cfg.threshold))
        for query, path in isolated_run["jpegs"].items():
            z = platform_raw(model, {query: path})[query] / cfg.temperature + shift
            assert got["detector"][query] == pytest.approx(1 / (1 + math.exp(-z)), abs=1e-4)
        log_dir = root / f"log_{name}"
        lines = (log_dir / "log.jsonl").read_text().splitlines()
        assert len(lines) == len(isolated_run["jpegs"])
        for line, (query, path) in zip(lines, isolated_run["jpegs"].items(), strict=True):
            entry = json.loads(line)
            data = path.read_bytes()
            assert entry["file"] == f"images/{hashlib.sha256(data).hexdigest()}.jpg"
            assert (log_dir / entry["file"]).read_bytes() == data  # the exact bytes received
            assert entry["validator_hotkey"] == HOTKEY and entry["feedback"] is None
            assert entry["model_version"] == cfg.version and entry["response"] == got["detector"][query]
            assert entry["received_at"].endswith("Z")
            record = parse_query_line(line, root=log_dir, where="log.jsonl")  # the platform's importer accepts it
            assert record.path == log_dir / entry["file"] and record.extra["query_meta"]["validator_hotkey"] == HOTKEY


def test_bundle_layout_card_and_calibration(bundles):
    for model, path in bundles.values():
        names = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
        assert {
            "config.json", "configuration_roadwork.py", "modeling_roadwork.py", "dinov3_plain.py", "model.safetensors",
            "preprocessor_config.json", "calibration.json", "model_card.json", "README.md", "manifest.json",
            "roadwork_predict.py", "miner/roadwork_detector.py", "miner/roadwork_stage1.yaml", "miner/README.md",
        } <= names  # fmt: skip
        for code in ("configuration_roadwork.py", "modeling_roadwork.py", "dinov3_plain.py", "roadwork_predict.py", "miner/roadwork_detector.py"):
            text = (path / code).read_text()
            assert "import curation" not in text and "from curation" not in text
        config = json.loads((path / "config.json").read_text())
        assert config["id2label"] == {"0": "None", "1": "Roadwork"} and config["label2id"] == {"None": 0, "Roadwork": 1}
        assert config["auto_map"]["AutoModelForImageClassification"] == "modeling_roadwork.RoadworkForImageClassification"
        assert config["auto_map"]["AutoConfig"] == "configuration_roadwork.RoadworkConfig"
        processor = json.loads((path / "preprocessor_config.json").read_text())
        assert processor["do_resize"] is False and processor["do_normalize"] is False and processor["do_rescale"] is True
        calibration = json.loads((path / "calibration.json").read_text())
        assert calibration["threshold"] == model.config.threshold and calibration["temperature"] == TEMPERATURE
        assert calibration["logit_shift"] == pytest.approx(-math.log(model.config.threshold / (1 - model.config.threshold)))
        assert calibration["gate"]["kind"] == "logistic"
        card = json.loads((path / "model_card.json").read_text())
        assert set(card) >= {"model_name", "description", "version", "submitted_by", "submission_time"}
        assert card["version"] == model.config.version and card["submitted_by"] == "tester"
        assert isinstance(card["submission_time"], int) and card["submission_time"] > 1_700_000_000
        readme = (path / "README.md").read_text()
        assert "| calib.mcc | 0.6100 |" in readme and "| train.natix | 1200 |" in readme
        assert read_manifest(path)["files"]["model.safetensors"]["bytes"] > 0
        yaml_config = yaml.safe_load((path / "miner" / "roadwork_stage1.yaml").read_text())
        assert yaml_config["model_dir"] == ".." and yaml_config["model_version"] == model.config.version
        if model.config.trained:
            assert "UNTRAINED" not in readme + card["description"] and "sha256:feedbeef" in readme
        else:
            assert "UNTRAINED" in readme and card["description"].startswith("UNTRAINED")


def test_model_card_errors_name_the_key(bundles, tmp_path):
    model, _ = bundles["plain"]
    with pytest.raises(ConfigError, match="Did you mean `submitted_by`"):
        export_bundle(model, tmp_path / "b", model_card={"model_name": "x", "submited_by": "me"})
    with pytest.raises(ConfigError, match="non-empty `submitted_by`"):
        export_bundle(model, tmp_path / "b", model_card={"model_name": "x"})
    with pytest.raises(ConfigError, match="JSON-serialisable"):
        export_bundle(model, tmp_path / "b", model_card=CARD, metrics={"bad": object()})
    assert not (tmp_path / "b").exists()


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_export_is_atomic(bundles, tmp_path, monkeypatch, error):
    model, _ = bundles["plain"]
    out = tmp_path / "registry" / "bundle"

    def killed(*args, **kwargs):
        raise error("killed mid-export")

    with monkeypatch.context() as patch:
        patch.setattr(bundle_mod, "write_readme", killed)
        with pytest.raises(error):
            export_bundle(model, out, model_card=CARD)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no half bundle, no temp folder

    export_bundle(model, out, model_card=CARD)
    before = _tree_digest(out)
    with monkeypatch.context() as patch:
        patch.setattr(bundle_mod, "write_weights", killed)
        with pytest.raises(error):
            export_bundle(model, out, model_card=CARD)
    assert _tree_digest(out) == before and [p.name for p in out.parent.iterdir()] == ["bundle"]

    stale = out.parent / ".bundle.partial-999999999-deadbeef"  # left by a killed process (pid gone)
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    export_bundle(model, out, model_card=CARD)  # replaces the old bundle and sweeps the stale folder
    assert [p.name for p in out.parent.iterdir()] == ["bundle"] and read_manifest(out)["model_version"] == "0.0.0"


@pytest.mark.slow  # the dynamo exporter takes ~20 s on 2 CPU threads even for the tiny backbone
@pytest.mark.parametrize("name", ["plain", "cnn"])
def test_onnx_matches_pytorch_and_platform(bundles, queries, tmp_path, name):
    import onnxruntime as ort

    from curation.export.onnx import export_onnx

    model, path = bundles[name]
    report = export_onnx(path, tmp_path / "model.onnx", check_batch_sizes=(1, 3))
    assert report.max_abs_diff < 1e-4 and report.batch_sizes_checked == (1, 3)
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    names = [q for q in queries if q != "frame"]  # the graph's input size is fixed at 224
    pixels = np.stack([np.asarray(Image.open(queries[q]).convert("RGB"), dtype=np.float32) / 255 for q in names])
    logits = session.run(None, {"pixel_values": pixels.transpose(0, 3, 1, 2).copy()})[0]
    cfg = model.config
    raw = platform_raw(model, {q: queries[q] for q in names})
    expected = np.array([raw[q] / cfg.temperature - math.log(cfg.threshold / (1 - cfg.threshold)) for q in names])
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], expected, atol=1e-4)


def write_settings(tmp_path: Path) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(
        yaml.safe_dump({"home": str(tmp_path / "home"), "registry_dir": str(tmp_path / "registry"), "user_name": HOTKEY})
    )
    return path


def test_cli_export_and_publish_dry_run(bundles, tmp_path):
    model, _ = bundles["learned"]
    settings_file = write_settings(tmp_path)
    model.save(tmp_path / "registry" / "1.2.3")
    (tmp_path / "registry" / "1.2.3" / "metrics.json").write_text(json.dumps({"calib": {"mcc": 0.7}}))
    runner = CliRunner()

    result = runner.invoke(app, ["export", "--version", "1.2.4", "--out", str(tmp_path / "x"), "--settings", str(settings_file)])
    assert result.exit_code == 2 and "not registered" in result.output and "1.2.3" in result.output

    out = tmp_path / "exported"
    result = runner.invoke(app, ["export", "--version", "1.2.3", "--out", str(out), "--settings", str(settings_file)])
    assert result.exit_code == 0, result.output
    assert "| calib.mcc | 0.7000 |" in (out / "README.md").read_text()
    assert json.loads((out / "model_card.json").read_text())["submitted_by"] == HOTKEY

    result = runner.invoke(app, ["publish", "--version", "1.2.3", "--settings", str(settings_file)])
    assert result.exit_code == 2 and "out of scope" in result.output

    repo = tmp_path / "repo"
    args = ["publish", "--dry-run", "--version", "1.2.3", "--out", str(repo), "--warm-calls", "1", "--settings", str(settings_file)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "model.safetensors" in result.output and "model_card.json" in result.output
    assert "eager PyTorch (miner detector)" in result.output and "ONNX Runtime" in result.output and "p99" in result.output
    from curation.export.publish import check_bundle

    report = check_bundle(repo, warm_calls=1)
    assert report.passed and report.cold_latency_s < 9.0 and report.warm_latency_s < 9.0
    assert report.native is not None and report.native.calls == 1 and report.native.p99_s < 9.0
    assert not report.warnings  # trained, SS58-shaped submitted_by


FAKE_REGISTRY = '''
class Registry:
    """Mirrors the subnet's registry surface used by its detectors: register_module, `in`, [name]."""
    def __init__(self):
        self._modules = {}
    def register_module(self, module_name=None):
        def decorate(cls):
            if module_name in self._modules:
                raise KeyError(f"{module_name} is already registered")
            self._modules[module_name] = cls
            return cls
        return decorate
    def __contains__(self, name):
        return name in self._modules
    def __getitem__(self, name):
        return self._modules[name]

DETECTOR_REGISTRY = Registry()
'''

FAKE_FEATURE_DETECTOR = '''
from pathlib import Path
import yaml

class FeatureDetector:
    """The subnet's constructor sequence: YAML → attributes, load_model_config(), load_model()."""
    def __init__(self, model_name, config_name=None, device="cpu"):
        self.model_name = model_name
        self.device = device
        if config_name:
            self.set_class_attrs(config_name)
            self.load_model_config()
        self.load_model()
    def set_class_attrs(self, detector_config):
        path = Path(detector_config) if Path(detector_config).exists() else Path(__file__).parent / "configs" / detector_config
        for key, value in yaml.safe_load(path.read_text()).items():
            setattr(self, key, value)
    def load_model_config(self):
        raise RuntimeError("would download a config from the Hub")
'''


def test_detector_registers_with_the_subnet_registry(bundles, queries, tmp_path, monkeypatch):
    """With a `base_miner` package present, the detector registers as `Stage1Roadwork` and subclasses it."""
    import importlib.util

    fake = tmp_path / "subnet" / "base_miner"
    (fake / "detectors").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "registry.py").write_text(FAKE_REGISTRY)
    (fake / "detectors" / "__init__.py").write_text(FAKE_FEATURE_DETECTOR)
    monkeypatch.syspath_prepend(str(fake.parent))
    model, path = bundles["plain"]
    try:
        spec = importlib.util.spec_from_file_location("stage1_detector_under_test", path / "miner" / "roadwork_detector.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        registry = sys.modules["base_miner.registry"].DETECTOR_REGISTRY
        assert "Stage1Roadwork" in registry and registry["Stage1Roadwork"] is module.RoadworkDetector
        assert issubclass(module.RoadworkDetector, sys.modules["base_miner.detectors"].FeatureDetector)
        detector = registry["Stage1Roadwork"](config_name=str(path / "miner" / "roadwork_stage1.yaml"), device="cpu")
        cfg = model.config
        z = platform_raw(model, {"q1": queries["q1"]})["q1"] / cfg.temperature - math.log(cfg.threshold / (1 - cfg.threshold))
        assert detector(Image.open(queries["q1"])) == pytest.approx(1 / (1 + math.exp(-z)), abs=1e-4)
        assert detector.query_logger is None  # logging is opt-in
    finally:
        for name in [m for m in sys.modules if m == "base_miner" or m.startswith("base_miner.")]:
            del sys.modules[name]


def test_publish_times_eager_and_onnx_side_by_side_on_the_cnn_bundle(bundles, tmp_path):
    """The Lite0 bundle: both runtimes answer the same probability; p50 ≤ p99; the views are counted; a native
    1920×1080 frame is timed through the detector with a few warm calls, against the same timeout."""
    import shutil

    from curation.export.publish import NATIVE_WARM_CALLS, check_bundle, sample_frame

    _, path = bundles["cnn"]
    repo = tmp_path / "cnn"
    shutil.copytree(path, repo)
    report = check_bundle(repo, warm_calls=5, onnx=True)
    assert report.num_views == 5 and report.onnx is not None and report.onnx.calls == 5
    assert report.onnx.probability == pytest.approx(report.probability, abs=1e-4)
    assert report.warm_latency_s <= report.warm_p99_s and report.onnx.p50_s <= report.onnx.p99_s
    native = report.native
    assert native is not None and native.calls == NATIVE_WARM_CALLS and native.p50_s <= native.p99_s < report.timeout_s
    assert 0.0 <= native.probability <= 1.0 and report.latency_ok
    labels = [label for label, _ in report.latency_rows()]
    assert labels == ["224×224, eager PyTorch (miner detector)", "224×224, ONNX Runtime", "1920×1080, eager PyTorch (miner detector)"]
    assert Image.open(io.BytesIO(sample_frame())).size == (1920, 1080)
    assert not report.problems
