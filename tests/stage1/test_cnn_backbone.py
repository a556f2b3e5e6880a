"""The ImageNet EfficientNet-Lite0 backbone: real weights, exact loading, the Stage-1 contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from curation.errors import ConfigError, InputError
from curation.stage1.backbone import backbone_features, load_backbone, load_preset
from curation.stage1.cnn_backbone import (
    CnnBackbone,
    CnnPreset,
    build_cnn_backbone,
    imagenet_classifier,
    load_cnn_backbone,
    lukemelas_to_timm,
    read_state_dict,
)
from curation.stage1.model import Stage1Config, Stage1Model
from curation.stage1.train import TrainConfig, train_finetune
from curation.stage1.views import IMAGENET_MEAN, IMAGENET_STD, ViewPolicy

LITE0 = "efficientnet-lite0"
BUS_CLASSES = {654, 779, 874}  # ImageNet minibus, school bus, trolleybus


@pytest.fixture(scope="module")
def lite0() -> CnnBackbone:
    return load_backbone(LITE0)


def _bus_tensor(mean, std) -> torch.Tensor:
    import importlib.util

    # Located without importing ultralytics: its import patches PIL.Image.open process-wide.
    package = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0])
    path = package / "assets" / "bus.jpg"
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0
    return ((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1))[None]


def test_preset_names_real_imagenet_weights():
    preset = load_preset(LITE0)
    assert isinstance(preset, CnnPreset) and preset.timm_model == "tf_efficientnet_lite0"
    assert preset.label == "efficientnet-lite0 (ImageNet-pretrained)"


def test_imagenet_weights_are_real_bus_is_a_bus():
    """Random weights put the bus nowhere near the top-5 bus classes with probability > 0.5."""
    preset = load_preset(LITE0)
    with torch.inference_mode():
        probs = imagenet_classifier(preset)(_bus_tensor(preset.mean, preset.std)).softmax(-1)[0]
    top5 = set(probs.topk(5).indices.tolist())
    assert top5 & BUS_CLASSES
    assert int(probs.argmax()) in BUS_CLASSES and float(probs.max()) > 0.5


def test_every_weight_is_loaded_exactly():
    preset = load_preset(LITE0)
    from curation.stage1.cnn_backbone import resolve_weights

    source = read_state_dict(resolve_weights(preset.weights))
    net = imagenet_classifier(preset)
    mapped = lukemelas_to_timm(source, [len(stage) for stage in net.blocks])
    assert len(mapped) == len(source) == len(net.state_dict()) == 296
    for key, tensor in mapped.items():
        assert torch.equal(net.state_dict()[key], tensor), key


def test_features_match_the_classifier_trunk_on_imagenet_normalised_views(lite0):
    """The backbone takes ImageNet-normalised views and converts to the weights' own normalisation."""
    preset = load_preset(LITE0)
    net = imagenet_classifier(preset)
    with torch.inference_mode():
        reference = net.forward_head(net.forward_features(_bus_tensor(preset.mean, preset.std)), pre_logits=True)  # [1, 1280]
        ours = backbone_features(lite0, _bus_tensor(IMAGENET_MEAN, IMAGENET_STD), max_batch=4)  # [1, 2560]
    assert ours.shape == (1, 2560)
    assert torch.allclose(ours[:, :1280], reference, atol=1e-4)
    assert torch.all(ours[:, 1280:] >= ours[:, :1280] - 1e-6)  # max pool ≥ average pool


def test_save_and_load_round_trip(tmp_path, lite0):
    lite0.layer[-1].conv_pwl.weight.data.mul_(1.5)  # a "fine-tuned" trunk
    try:
        lite0.save_pretrained(tmp_path / "bb")
        loaded = load_backbone(tmp_path / "bb")
        x = torch.randn(2, 3, 96, 96)
        with torch.inference_mode():
            assert torch.equal(loaded.view_features(x, max_batch=2), lite0.view_features(x, max_batch=2))
    finally:
        lite0.layer[-1].conv_pwl.weight.data.div_(1.5)


def test_wrong_weights_file_is_refused_by_name(tmp_path):
    bad = tmp_path / "wrong.safetensors"
    from safetensors.torch import save_file

    save_file({"conv_stem.weight": torch.zeros(1)}, str(bad))
    with pytest.raises(InputError, match="wrong.safetensors do not fit"):
        build_cnn_backbone(CnnPreset(name="x", timm_model="tf_efficientnet_lite0", weights=str(bad)))
    with pytest.raises(ConfigError, match="no model `no_such_net`"):
        build_cnn_backbone(CnnPreset(name="x", timm_model="no_such_net"))
    with pytest.raises(InputError, match="does not exist"):
        build_cnn_backbone(CnnPreset(name="x", timm_model="tf_efficientnet_lite0", weights=str(tmp_path / "none.pth")))


def test_pickled_code_in_a_weights_file_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pth"
    torch.save({"w": Exploit()}, path)
    with pytest.raises(InputError, match="weights_only"):
        read_state_dict(path)
    assert not marker.exists()


def test_stage1_multiview_predict_save_load(tmp_path, lite0):
    config = Stage1Config(backbone=LITE0, views=ViewPolicy(grid=2, size=96))
    model = Stage1Model.build(config, backbone=lite0)
    image = Image.new("RGB", (200, 150), "orange")
    pred = model.predict([image])[0]
    assert len(pred.view_probs) == 5 and pred.embedding.shape == (1280,)
    model.save(tmp_path / "m")
    again = Stage1Model.load(tmp_path / "m")  # rebuilt from the wheel: the backbone is not copied
    assert not (tmp_path / "m" / "backbone").exists()
    assert again.predict([image])[0].p_roadwork == pytest.approx(pred.p_roadwork, abs=1e-6)


def test_partial_finetune_trains_only_the_top_blocks_and_keeps_bn_statistics():
    model = Stage1Model.build(Stage1Config(backbone=LITE0, views=ViewPolicy(grid=0, size=64), aggregator="max"))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    images = [Image.new("RGB", (64, 64), color) for color in ("orange", "gray", "white", "black")]
    config = TrainConfig(mode="partial", last_n_blocks=1, epochs=1, batch_size=4, lr=1e-2, backbone_lr=1e-2, augmentations=1, validator_level=0)
    train_finetune(images, [1, 0, 1, 0], config, model=model, content_hashes=[f"{i:064x}" for i in range(4)], version="0.1.0")
    after = model.backbone.state_dict()
    top = len(model.backbone.layer) - 1
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "nothing trained"
    assert all(k.startswith((f"layer.{top}.", "norm.")) for k in changed), sorted(changed)[:5]
    assert not any("running_" in k for k in changed)  # batch-norm statistics stay ImageNet's
    assert model.config.trained


def test_cnn_loaded_from_a_saved_dir_keeps_its_preset(tmp_path, lite0):
    lite0.save_pretrained(tmp_path / "bb")
    assert load_cnn_backbone(tmp_path / "bb").config.preset == lite0.config.preset


def test_serving_model_serves_the_cnn(lite0):
    """ServingModel.setup once refused every CNN (no attention implementation) and read the
    backbone's `.dtype`, which CnnBackbone lacks; found by the H200 Lite0 run (issue 18)."""
    from curation.stage1.serving import ServingModel
    from curation.serving_config import ServingConfig

    config = Stage1Config(backbone=LITE0, views=ViewPolicy(grid=0, size=64))
    model = Stage1Model.build(config, backbone=lite0)
    views = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        _, expected = model.head_forward(model.features(views).view(2, 1, -1))  # image logits
    served = ServingModel(model, ServingConfig(mode="eager", path="bulk", dtype="float32", device="cpu"))
    assert served.setup().mode == "eager"
    out = served.forward_views(views)
    assert torch.allclose(out.image_logits, expected, atol=1e-6)
    blocks = ServingModel(model, ServingConfig(mode="compile", dtype="float32", device="cpu", compile_scope="blocks"))
    with pytest.raises(ConfigError, match="compile_scope: model"):
        blocks.setup()
