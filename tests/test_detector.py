"""Detector wrapper: config validation, hold-out draw, and train/propose end to end offline.

The end-to-end test trains a random-init YOLO11n for one epoch on a handful of generated 160 px
street-like images; it only checks that the pipeline ran, wrote its fields and card, and never
tried to reach the network. The card must say the model is demo quality.
"""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from curation.errors import ConfigError, InputError
from curation.label.detector import QUALITY_DEMO, DetectorConfig, holdout_mask, xyxy_to_xywh

W, H = 160, 128
LOOPBACK = ("127.", "::1", "localhost")


@pytest.fixture
def no_network(monkeypatch):
    """Raise on any connection or DNS lookup that is not loopback; record every attempt."""
    attempts: list[object] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def _remote(host: object) -> bool:
        return isinstance(host, str) and host != "" and not host.startswith(LOOPBACK)

    def connect(self, address):  # noqa: ANN001
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and _remote(host):
            attempts.append(address)
            raise OSError(f"network access attempted: {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001
        if _remote(host):
            attempts.append(host)
            raise OSError(f"DNS lookup attempted: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def draw_scene(path: Path, rng: random.Random, n_objects: int) -> list[tuple[str, list[float]]]:
    """A grey road with orange cones (triangles) and red/white barriers (bars); returns boxes."""
    image = Image.new("RGB", (W, H), (96, 96, 100))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, W, H // 3], fill=(150, 180, 220))
    boxes = []
    for _ in range(n_objects):
        w, h = rng.randint(14, 28), rng.randint(18, 30)
        x, y = rng.randint(2, W - w - 2), rng.randint(H // 3, H - h - 2)
        if rng.random() < 0.6:
            draw.polygon([(x, y + h), (x + w / 2, y), (x + w, y + h)], fill=(255, 120, 0))
            label = "cone"
        else:
            draw.rectangle([x, y, x + w, y + h // 2], fill=(220, 30, 30))
            draw.rectangle([x + w // 3, y, x + 2 * w // 3, y + h // 2], fill=(250, 250, 250))
            label, h = "barrier", h // 2
        boxes.append((label, [x / W, y / H, w / W, h / H]))
    image.save(path)
    return boxes


@pytest.fixture
def scenes(dataset, tmp_path):
    """8 ROADWork train images with boxes (two video groups), 3 unboxed NATIX images, 1 leak."""
    import fiftyone as fo

    rng = random.Random(0)
    samples = []
    for i in range(12):
        path = tmp_path / "img" / f"{i:02d}.jpg"
        path.parent.mkdir(exist_ok=True)
        boxes = draw_scene(path, rng, n_objects=2)
        sample = fo.Sample(filepath=str(path), split="train")
        if i < 9:
            sample["sources"] = ["roadwork"]
            sample["sequence_group"] = f"vid{i % 3}/seq0"
            sample["primitives"] = fo.Detections(
                detections=[fo.Detection(label=lab, bounding_box=box) for lab, box in boxes]
            )
            if i == 8:
                sample.tags.append("leak")
        else:
            sample["sources"] = ["natix"]
        samples.append(sample)
    dataset.add_samples(samples)
    return dataset


def test_config_rejects_bad_values_and_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match="'holdout_fraction' parameter"):
        DetectorConfig(holdout_fraction=1.0)
    with pytest.raises(ConfigError, match="Did you mean `cone`"):
        DetectorConfig(classes=("cones",))
    with pytest.raises(ConfigError, match="multiple of 32"):
        DetectorConfig(imgsz=100)
    path = tmp_path / "det.yaml"
    path.write_text("model: yolo11n.yaml\nepoch: 3\n")
    with pytest.raises(ConfigError, match="Did you mean `epochs`"):
        DetectorConfig.from_yaml(path)


def test_shipped_config_parses():
    from curation.assets import asset_dir

    config = DetectorConfig.from_yaml(asset_dir("models") / "detector" / "yolo11n.yaml", epochs=1)
    assert config.model == "yolo11n.yaml" and config.epochs == 1


def test_holdout_keeps_groups_together_and_both_parts_nonempty():
    groups = ["a", "a", "b", "c", "c", "d"]
    mask = holdout_mask(groups, 0.3, seed=1)
    assert mask == holdout_mask(groups, 0.3, seed=1)
    by_group = {g: {m for gg, m in zip(groups, mask) if gg == g} for g in groups}
    assert all(len(v) == 1 for v in by_group.values())
    assert any(mask) and not all(mask)
    assert any(holdout_mask(["x", "y"], 0.01)) and not all(holdout_mask(["x", "y"], 0.99))


def test_xyxy_to_xywh_clips():
    assert xyxy_to_xywh([-0.1, 0.25, 0.5, 1.5]) == [0.0, 0.25, 0.5, 0.75]


def test_train_and_propose_end_to_end_offline(scenes, tmp_path, no_network):
    from curation.label.detector import propose, train_detector

    config = DetectorConfig(epochs=1, imgsz=160, batch=4, holdout_fraction=0.34, seed=0)
    result = train_detector(scenes, tmp_path / "run", config, config_root=tmp_path / "yolo_cfg")

    assert result.weights.is_file() and result.weights.name == "detector.pt"
    card = json.loads(result.card_path.read_text())
    assert result.card_path.parent == result.weights.parent
    assert card["quality"] == QUALITY_DEMO and card["init"] == "random"
    assert card["n_train_images"] + card["n_holdout_images"] == 8  # the leak-tagged frame is left out
    assert card["n_holdout_images"] >= 1 and card["n_train_images"] >= 1
    assert set(card["metrics"]) >= {"map50", "map50_95"}
    assert 0.0 <= card["metrics"]["map50"] <= 1.0
    assert card["classes"][:2] == ["cone", "drum"]
    assert (tmp_path / "yolo_cfg" / "Ultralytics" / "Arial.ttf").is_file()

    out = propose(scenes, result.weights, conf=0.0, imgsz=160, max_det=5)
    assert out.n_samples == 3  # only the unboxed NATIX images
    natix = scenes.match_tags("leak", bool=False).exists("primitives", bool=False)
    for dets in natix.values("primitive_proposals"):
        assert dets is not None
        for det in dets.detections:
            assert 0.0 <= det.confidence <= 1.0 and det.label in config.classes
            x, y, w, h = det.bounding_box
            assert 0.0 <= x <= x + w <= 1.0 + 1e-9 and 0.0 <= y <= y + h <= 1.0 + 1e-9
    assert scenes.exists("primitives").exists("primitive_proposals").count() == 0
    assert no_network == []


def test_missing_weights_and_missing_image_are_named(scenes, tmp_path):
    from curation.label.detector import propose

    missing = tmp_path / "nope" / "detector.pt"
    with pytest.raises(InputError, match=str(missing)):
        propose(scenes, missing)

    from curation.label.detector import _resolve_model

    config = DetectorConfig(model=str(missing))  # the config is fine; loading refuses it
    with pytest.raises(InputError, match=f"checkpoint {missing} does not exist"):
        _resolve_model(config.model)

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"not read before the images are checked")
    gone = scenes.exists("primitives", bool=False).first()
    Path(gone.filepath).unlink()
    with pytest.raises(InputError, match=f"Sample {gone.id}"):
        propose(scenes, weights, config_root=tmp_path / "yolo_cfg")


def test_too_few_training_samples(dataset, tmp_path):
    from curation.label.detector import train_detector

    with pytest.raises(InputError, match="at least 2"):
        train_detector(dataset, tmp_path / "run", DetectorConfig(epochs=1, imgsz=160))


def test_cli_help_and_missing_weights_error(dataset, settings, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from curation.cli import app

    runner = CliRunner()
    for args in (["detector", "--help"], ["detector", "train", "--help"], ["detector", "propose", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output, (args, result.output)
    monkeypatch.setenv("CURATION_DATASET_NAME", settings.dataset_name)
    monkeypatch.setenv("CURATION_HOME", str(settings.home))
    missing = tmp_path / "gone.pt"
    result = runner.invoke(app, ["detector", "propose", str(missing)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert "gone.pt" in result.output and "does not exist" in result.output
