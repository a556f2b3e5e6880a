"""Feature cache: hits cost no forward, only new keys are computed, damaged shards are recomputed."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from curation.errors import InputError
from curation.stage1.cache import INDEX, CacheSpec, FeatureCache, backbone_id, cache_features
from curation.stage1.model import Stage1Config, Stage1Model
from curation.stage1.training_data import augmentation_seed
from curation.stage1.validator_view import validator_query
from curation.stage1.views import ViewPolicy, build_views, pil_to_tensor

from .conftest import count_backbone_calls

POLICY = ViewPolicy(grid=1, size=32)


def _images(n: int, seed: int = 0) -> tuple[list[Image.Image], list[str]]:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(n)]
    return images, [f"{seed:02d}{i:062d}" for i in range(n)]


@pytest.fixture
def model() -> Stage1Model:
    from curation.stage1.backbone import tiny_random_backbone

    return Stage1Model.build(Stage1Config(views=POLICY), backbone=tiny_random_backbone(seed=0))


def test_miss_then_hit_and_only_new_keys_cost_a_forward(model, tmp_path):
    cache = FeatureCache(tmp_path, CacheSpec.for_model(model))
    calls = count_backbone_calls(model.backbone)
    images, hashes = _images(3)
    first = cache_features(images, hashes, model, cache, augmentations=2, batch_queries=4)
    assert first.features.shape == (3, 2, POLICY.num_views, 2 * model.hidden_size)
    assert first.features.dtype == torch.float16 and first.stats.shape[-1] == 4
    assert (first.report.hits, first.report.computed) == (0, 6)
    assert sum(calls) == 6 * POLICY.num_views and len(calls) == 2  # batched: 4 + 2 queries

    calls.clear()
    again = cache_features(images, hashes, model, FeatureCache(tmp_path, CacheSpec.for_model(model)), augmentations=2)
    assert calls == [] and again.report.computed == 0 and again.report.hits == 6
    assert torch.equal(again.features, first.features)

    more, more_hashes = _images(1, seed=1)
    grown = cache_features(images + more, hashes + more_hashes, model, FeatureCache(tmp_path, cache.spec), augmentations=2)
    assert grown.report.computed == 2 and sum(calls) == 2 * POLICY.num_views
    assert torch.equal(grown.features[:3], first.features)


def test_features_are_the_validator_view_then_the_views(model, tmp_path):
    images, hashes = _images(1)
    got = cache_features(images, hashes, model, FeatureCache(tmp_path, CacheSpec.for_model(model)), augmentations=2, seed=5)
    for m in range(2):
        query = validator_query(images[0], augmentation_seed(hashes[0], m, 5))
        assert query.size == (224, 224)
        with torch.inference_mode():
            want = model.features(build_views([pil_to_tensor(query)], POLICY))
        torch.testing.assert_close(got.features[0, m].float(), want.half().float())
    assert not torch.equal(got.features[0, 0], got.features[0, 1])  # seeds differ per m


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "delete"])
def test_damaged_shard_is_detected_and_recomputed(model, tmp_path, damage):
    images, hashes = _images(2)
    cache = FeatureCache(tmp_path, CacheSpec.for_model(model))
    clean = cache_features(images, hashes, model, cache, augmentations=1)
    shard = next(cache.directory.glob("shard-*.safetensors"))
    data = bytearray(shard.read_bytes())
    if damage == "flip_bytes":
        data[-10] ^= 0xFF
        shard.write_bytes(bytes(data))
    elif damage == "truncate":
        shard.write_bytes(bytes(data[: len(data) // 2]))
    else:
        shard.unlink()
    calls = count_backbone_calls(model.backbone)
    fresh = FeatureCache(tmp_path, cache.spec)
    again = cache_features(images, hashes, model, fresh, augmentations=1)
    assert again.report.computed == 2 and sum(calls) == 2 * POLICY.num_views
    assert again.report.dropped_shards == [shard.name]
    assert torch.equal(again.features, clean.features)
    index = json.loads((fresh.directory / INDEX).read_text())
    [(name, entry)] = index["shards"].items()
    assert (fresh.directory / name).stat().st_size == entry["size"]  # rewritten whole


def test_orphan_partial_write_is_ignored(model, tmp_path):
    images, hashes = _images(1)
    cache = FeatureCache(tmp_path, CacheSpec.for_model(model))
    cache_features(images, hashes, model, cache, augmentations=1)
    (cache.directory / "shard-0123.safetensors.tmp123").write_bytes(b"partial")
    assert FeatureCache(tmp_path, cache.spec).missing([(hashes[0], augmentation_seed(hashes[0], 0))]) == []


def test_key_parts_separate_namespaces(model, tmp_path):
    spec = CacheSpec.for_model(model)
    others = [
        CacheSpec.for_model(model, dtype="float32"),
        CacheSpec.for_model(model, validator_level=0),
        spec.__class__(**{**spec.to_dict(), "views": ViewPolicy(grid=2, size=32)}),
    ]
    assert len({spec.namespace(), *(o.namespace() for o in others)}) == 4
    changed = Stage1Model.build(Stage1Config(views=POLICY), backbone=copy.deepcopy(model.backbone))
    assert backbone_id(changed.backbone, "tiny-random") == spec.backbone_id
    with torch.no_grad():
        changed.backbone.norm.weight.add_(1.0)
    assert CacheSpec.for_model(changed).backbone_id != spec.backbone_id


def test_put_checks_shapes_and_skips_known_keys(model, tmp_path):
    cache = FeatureCache(tmp_path, CacheSpec.for_model(model), shard_bytes=1)
    feats = torch.randn(3, POLICY.num_views, 2 * model.hidden_size)
    cache.put([("a", 0), ("b", 0), ("c", 0)], feats)
    assert len(list(cache.directory.glob("shard-*.safetensors"))) == 3  # one row per shard at 1 byte
    cache.put([("a", 0)], feats[:1])
    assert len(cache) == 3
    got, stats, absent = cache.get([("c", 0), ("a", 0), ("zz", 1)])
    assert absent == [("zz", 1)]
    torch.testing.assert_close(got[:2].float(), feats[[2, 0]].half().float())
    with pytest.raises(InputError, match="must be"):
        cache.put([("d", 0)], torch.randn(1, 3, 5))
