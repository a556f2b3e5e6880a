from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from curation.errors import ConfigError, InputError
from curation.stage1.backbone import random_backbone, tiny_random_backbone, tiny_random_preset
from curation.stage1.features import feature_names
from curation.stage1.model import CONFIG_FILE, WEIGHTS_FILE, Stage1Config, Stage1Model
from curation.stage1.views import ViewPolicy

from .conftest import count_backbone_calls


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(320, 180), (224, 224), (40, 60)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.fixture
def model(tiny_backbone) -> Stage1Model:
    return Stage1Model.build(Stage1Config(), backbone=tiny_backbone)


def test_config_validation():
    for bad in ({"version": "1.0"}, {"version": "v1.0.0"}, {"threshold": 1.0}, {"temperature": 0.0}, {"top_k": 0}):
        with pytest.raises(ConfigError):
            Stage1Config(**bad)
    with pytest.raises(ConfigError, match="data_fingerprint"):
        Stage1Config(trained=True)
    with pytest.raises(ConfigError, match="Did you mean `aggregator`"):
        Stage1Config.from_dict({"agregator": "max"}, source="test")
    parsed = Stage1Config.from_dict({"views": {"grid": 2, "flip": True}, "threshold": "0.4"}, source="test")
    assert parsed.views == ViewPolicy(grid=2, flip=True) and parsed.threshold == 0.4


def test_one_backbone_forward_for_all_views_of_all_images():
    backbone = tiny_random_backbone(seed=0)
    calls = count_backbone_calls(backbone)
    Stage1Model.build(Stage1Config(max_batch=64), backbone=backbone).predict(images())
    assert calls == [30]  # 3 images × 10 views, one forward
    Stage1Model.build(Stage1Config(max_batch=8), backbone=backbone).predict(images())
    assert calls[1:] == [8, 8, 8, 6]  # chunked only by max_batch


def test_batched_equals_one_image_at_a_time(model):
    together = model.predict(images())
    alone = [model.predict([im])[0] for im in images()]
    for a, b in zip(together, alone, strict=True):
        assert a.p_roadwork == pytest.approx(b.p_roadwork, abs=1e-5)
        np.testing.assert_allclose(a.view_probs, b.view_probs, atol=1e-5)


def test_prediction_fields_are_consistent(tiny_backbone):
    config = Stage1Config(threshold=0.3, temperature=2.0, top_k=3)
    model = Stage1Model.build(config, backbone=tiny_backbone)
    pil = images()
    preds = model.predict(pil)
    with torch.no_grad():
        out = model.forward_images([torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1) for im in pil])
    for i, pred in enumerate(preds):
        z = float(out.image_logits[i]) / 2.0
        assert pred.p_roadwork == pytest.approx(1 / (1 + math.exp(-z)), abs=1e-6)
        assert pred.label == ("roadwork" if pred.p_roadwork >= 0.3 else "no_roadwork")
        assert pred.confidence == pytest.approx(pred.p_roadwork if pred.label == "roadwork" else 1 - pred.p_roadwork)
        assert math.exp(pred.logits[0]) + math.exp(pred.logits[1]) == pytest.approx(1.0)
        assert pred.view_probs.shape == (10,) and pred.view_boxes.shape == (10, 4)
        assert len(pred.evidence_views) == 3
        assert pred.view_probs[pred.evidence_views[0]] == pred.view_probs.max()
        assert list(pred.gate_features) == list(feature_names(False))
        assert pred.gate_features["margin"] == pytest.approx(abs(pred.p_roadwork - 0.3))
        assert pred.embedding.shape == (32,) and not pred.trained and pred.model_version == "0.0.0"
    assert preds[0].view_boxes[0].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_tensor_level_matches_predict(model):
    pil = images()[:2]
    tensors = [torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1) for im in pil]
    from curation.stage1.views import build_views

    with torch.no_grad():
        feats = model.features(build_views(tensors, model.config.views)).view(2, 10, -1)  # a feature cache
        view_logits, image_logits = model.head_forward(feats)
    preds = model.predict(pil)
    assert [p.p_roadwork for p in preds] == pytest.approx(torch.sigmoid(image_logits).tolist(), abs=1e-6)
    with pytest.raises(InputError, match="view policy"):
        model.head_forward(feats[:, :4])


def test_untrained_is_visible_and_never_claimed(model, tiny_backbone):
    assert "UNTRAINED" in repr(model)
    with pytest.raises(ConfigError, match="freshly initialised"):
        Stage1Model.build(Stage1Config(trained=True, data_fingerprint="abc"), backbone=tiny_backbone)
    model.mark_trained(version="1.0.0", data_fingerprint="sha256:abc")
    assert model.config.trained and "UNTRAINED" not in repr(model)


@pytest.mark.parametrize("aggregator", ["max", "attention", "learned_weights"])
def test_save_load_round_trip_offline(tmp_path, monkeypatch, aggregator):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = Stage1Config(aggregator=aggregator, views=ViewPolicy(grid=2, flip=True), version="1.2.3")
    model = Stage1Model.build(config)  # tiny-random backbone: saved with the model
    if aggregator == "learned_weights":
        with torch.no_grad():
            model.aggregator.view_weights.scores.copy_(torch.linspace(-1, 1, 10))
    model.mark_trained(version="1.2.3", data_fingerprint="sha256:feed")
    model.set_calibration(threshold=0.42, temperature=1.5)
    model.save(tmp_path / "m")
    loaded = Stage1Model.load(tmp_path / "m")
    assert loaded.config == model.config and loaded.config.trained
    before, after = model.predict(images()), loaded.predict(images())
    for a, b in zip(before, after, strict=True):
        assert a.p_roadwork == pytest.approx(b.p_roadwork, abs=1e-6)
        assert a.gate_features == pytest.approx(b.gate_features, abs=1e-6)
        assert "flip_consistency" in a.gate_features and a.view_probs.shape == (10,)


def test_load_reports_every_mismatch(tmp_path, model):
    path = model.save(tmp_path / "m")
    with pytest.raises(ConfigError, match=r"backbone width 48 ≠ saved head width 32"):
        wide = dataclasses.replace(tiny_random_preset(), hidden_size=48, num_hidden_layers=1)
        Stage1Model.load(path, backbone=random_backbone(wide))

    weights = load_file(str(path / WEIGHTS_FILE))
    weights.pop("head.norm.weight")
    weights["head.mlp.1.weight"] = torch.zeros(1, 7)
    save_file(weights, str(path / WEIGHTS_FILE), metadata={"format": "curation.stage1/1", "version": "9.9.9"})
    with pytest.raises(ConfigError) as error:
        Stage1Model.load(path)
    message = str(error.value)
    assert "missing weights ['head.norm.weight']" in message
    assert "`head.mlp.1.weight` has shape (1, 7), expected (1, 64)" in message
    assert "weights are version '9.9.9' but the config says '0.0.0'" in message

    record = json.loads((path / CONFIG_FILE).read_text())
    record["config"]["version"] = "1.0"
    (path / CONFIG_FILE).write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="semantic X.Y.Z"):
        Stage1Model.load(path)
    with pytest.raises(ConfigError, match="missing stage1.json"):
        Stage1Model.load(tmp_path / "nowhere")
