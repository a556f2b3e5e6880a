from __future__ import annotations

import pytest
import torch

from curation.errors import ConfigError, InputError
from curation.stage1.backbone import (
    available_presets,
    backbone_features,
    load_backbone,
    load_preset,
    random_backbone,
    tiny_random_backbone,
)

from .conftest import count_backbone_calls

HUB_IDS = {
    "vits16": "facebook/dinov3-vits16-pretrain-lvd1689m",
    "vitb16": "facebook/dinov3-vitb16-pretrain-lvd1689m",
    "vitl16": "facebook/dinov3-vitl16-pretrain-lvd1689m",
    "vith16plus": "facebook/dinov3-vith16plus-pretrain-lvd1689m",
    "vit7b16": "facebook/dinov3-vit7b16-pretrain-lvd1689m",
}


def test_presets_parse_with_hub_ids():
    assert set(HUB_IDS) | {"tiny-random"} <= set(available_presets())
    for name, hub_id in HUB_IDS.items():
        preset = load_preset(name)
        assert preset.hub_id == hub_id and preset.patch_size == 16
    assert load_preset("tiny-random").hidden_size == 32
    with pytest.raises(ConfigError, match="Did you mean `vitl16`"):
        load_preset("vitl61")


def test_bad_preset_key_is_rejected(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "odd.yaml").write_text("hidden_sise: 64\n")
    with pytest.raises(ConfigError, match="Did you mean `hidden_size`"):
        load_preset("odd", models_root=tmp_path)


@pytest.mark.parametrize(("name", "billions"), [("vit7b16", 6.716), ("vith16plus", 0.840), ("vitl16", 0.303)])
def test_large_presets_build_on_meta_device_only(name, billions):
    model = random_backbone(load_preset(name), device="meta")
    params = list(model.parameters())
    assert all(p.is_meta for p in params)
    assert sum(p.numel() for p in params) / 1e9 == pytest.approx(billions, rel=0.01)


def test_tiny_backbone_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = tiny_random_backbone(seed=0), tiny_random_backbone(seed=0), tiny_random_backbone(seed=1)
    assert torch.rand(1) == before
    pa, pb, pc = (m.embeddings.patch_embeddings.weight for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert a.config.pos_embed_rescale is None and not a.training


def test_features_are_cls_and_mean_patch_without_registers(tiny_backbone):
    views = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = tiny_backbone(pixel_values=views)
        feats = backbone_features(tiny_backbone, views, max_batch=8)
    assert feats.shape == (3, 64)
    torch.testing.assert_close(feats[:, :32], out.pooler_output)
    patches = out.last_hidden_state[:, 1 + 4 :, :]  # CLS + 4 registers skipped
    assert patches.shape[1] == 14 * 14
    torch.testing.assert_close(feats[:, 32:], patches.mean(dim=1))


def test_chunking_is_only_by_max_batch_and_does_not_change_values():
    views = torch.randn(7, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    backbone = tiny_random_backbone(seed=0)
    calls = count_backbone_calls(backbone)
    with torch.no_grad():
        whole = backbone_features(backbone, views, max_batch=64)
        assert calls == [7]
        chunked = backbone_features(backbone, views, max_batch=3)
    assert calls == [7, 3, 3, 1]
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError):
        backbone_features(backbone, views, max_batch=0)


def test_offline_load_from_local_directory(tmp_path, tiny_backbone, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny_backbone.save_pretrained(tmp_path / "dino")
    loaded = load_backbone(tmp_path / "dino", attn_implementation="eager")
    assert loaded.config._attn_implementation == "eager"
    views = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(
            backbone_features(loaded, views, max_batch=4), backbone_features(tiny_backbone, views, max_batch=4)
        )
    bf16 = load_backbone(tmp_path / "dino", dtype="bfloat16")
    assert bf16.embeddings.patch_embeddings.weight.dtype == torch.bfloat16


def test_load_errors_name_the_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        load_backbone(tmp_path / "empty")
    with pytest.raises(InputError, match="gated"):
        load_backbone("facebook/dinov3-not-cached-here")
    with pytest.raises(ConfigError, match="dtype"):
        load_backbone("tiny-random", dtype="float8")
