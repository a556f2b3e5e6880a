"""Stage-1 training: each mode lowers the loss, seeds fix weights, a killed run resumes exactly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from curation.errors import ConfigError, InputError
from curation.stage1.backbone import tiny_random_backbone
from curation.stage1.model import Stage1Config, Stage1Model
from curation.stage1.train import TrainConfig, disable_rope_augmentation, train_finetune, train_head
from curation.stage1.training_data import check_training_rows, data_fingerprint
from curation.stage1.views import ViewPolicy

POLICY = ViewPolicy(grid=1, size=32)  # 2 views of 4 patches: fast on CPU
HASHES = [f"{i:064x}" for i in range(64)]


class Killed(Exception):
    pass


def _model(aggregator: str = "topk_mean", **config) -> Stage1Model:
    return Stage1Model.build(Stage1Config(views=POLICY, aggregator=aggregator, **config), backbone=tiny_random_backbone(seed=0))


def _features(n: int = 64, views: int = POLICY.num_views, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable synthetic features: positives carry a shifted direction in one view."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    x = torch.randn(n, views, 64, generator=g)
    x[labels == 1, 0, :8] += 2.0
    return x.half(), labels


def _loss(model: Stage1Model, features: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model.head_forward(features.float())[1]
    return float(F.binary_cross_entropy_with_logits(logits, labels.float()))


def _head_state(model: Stage1Model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model._head_state().items()}


def _images(n: int = 8) -> tuple[list[Image.Image], list[int]]:
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(n):
        pixels = rng.integers(0, 90, (64, 64, 3), dtype=np.uint8)
        if i % 2:
            pixels[8:56, 8:56] = (255, 120, 0)
        images.append(Image.fromarray(pixels))
        labels.append(i % 2)
    return images, labels


def test_config_validation():
    with pytest.raises(ConfigError, match="Did you mean `epochs`"):
        TrainConfig.from_dict({"epoch": 3}, source="train.yaml")
    with pytest.raises(ConfigError, match="`mode`"):
        TrainConfig(mode="lorra")
    with pytest.raises(ConfigError, match="range"):
        TrainConfig(batch_size=0)
    assert TrainConfig.from_dict({"mode": "lora", "lr": "0.01"}, source="x").lr == 0.01
    assert TrainConfig().target_modules() == ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.mark.parametrize(
    ("aggregator", "extra", "fast"),
    [("topk_mean", {}, True), ("max", {}, True), ("attention", {}, False), ("topk_mean", {"head_hidden": 16}, False)],
)
def test_head_mode_lowers_the_loss(aggregator, extra, fast):
    features, labels = _features()
    model = _model(aggregator, **extra)
    before = _loss(model, features, labels)
    result = train_head(features, labels, TrainConfig(epochs=8, batch_size=16, lr=0.02), model=model)
    assert result.fast_path is fast and result.completed and result.steps == 32
    assert _loss(model, features, labels) < 0.7 * before
    assert not model.training and not model.config.trained


def test_fast_path_matches_the_autograd_path():
    features, labels = _features()
    states = []
    for fast in (True, False):
        model = _model("topk_mean")
        train_head(features, labels, TrainConfig(epochs=3, batch_size=16, lr=0.01, fast_head=fast), model=model)
        states.append(_head_state(model))
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], atol=2e-3, rtol=1e-2)


def test_losses_options_and_augmentation_axis():
    features, labels = _features(32)
    with_m = torch.stack([features, features.flip(0)], dim=1)  # [N, M=2, V, F]
    for config in (TrainConfig(epochs=1, batch_size=8, loss="focal"), TrainConfig(epochs=1, batch_size=8, class_weights="balanced")):
        result = train_head(with_m, labels, config, model=_model(), sample_weights=torch.ones(32))
        assert result.total_steps == 8  # 64 samples / 8
    with pytest.raises(InputError, match="labels"):
        train_head(features, labels[:-1], TrainConfig(epochs=1), model=_model())
    with pytest.raises(ConfigError, match="train_finetune"):
        train_head(features, labels, TrainConfig(mode="lora"), model=_model())


def test_same_seed_same_weights_other_seed_differs():
    features, labels = _features()
    states = []
    for seed in (3, 3, 4):
        model = _model("learned_weights", head_dropout=0.0)
        train_head(features, labels, TrainConfig(epochs=2, batch_size=16, seed=seed), model=model)
        states.append(_head_state(model))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_killed_head_run_resumes_to_the_same_weights(tmp_path):
    features, labels = _features()
    config = TrainConfig(epochs=3, batch_size=16, lr=0.02, checkpoint_every=5)
    reference = _model()
    train_head(features, labels, config, model=reference)

    def kill(step: int, loss: float) -> None:
        if step == 7:
            raise Killed

    model = _model()
    with pytest.raises(Killed):
        train_head(features, labels, config, model=model, checkpoint_dir=tmp_path, on_step=kill)
    resumed = _model()  # a fresh process: new model, same config
    result = train_head(features, labels, config, model=resumed, checkpoint_dir=tmp_path)
    assert result.resumed_from == 5 and result.steps == 12 and len(result.step_losses) == 7
    for key, value in _head_state(reference).items():
        assert torch.equal(value, _head_state(resumed)[key]), key
    with pytest.raises(InputError, match="different run"):
        train_head(features, labels, config.replace(lr=0.5), model=_model(), checkpoint_dir=tmp_path)


def test_mark_trained_only_after_a_complete_run_with_hashes():
    features, labels = _features()
    hashes = HASHES[: len(labels)]
    model = _model()
    train_head(features, labels, TrainConfig(epochs=2, batch_size=32), model=model, content_hashes=hashes, version="1.0.0", max_steps=1)
    assert not model.config.trained  # stopped early
    result = train_head(features, labels, TrainConfig(epochs=2, batch_size=32), model=model, content_hashes=hashes, version="1.0.0")
    assert model.config.trained and model.config.version == "1.0.0"
    assert model.config.data_fingerprint == result.data_fingerprint == data_fingerprint(hashes, labels.tolist())
    with pytest.raises(InputError, match="content_hashes"):
        train_head(features, labels, TrainConfig(epochs=1), model=_model(), version="1.0.0")


@pytest.mark.parametrize("mode", ["lora", "partial"])
def test_finetune_modes_lower_the_loss(mode):
    images, labels = _images()
    model = _model("max")
    config = TrainConfig(mode=mode, epochs=6, batch_size=4, lr=0.05, backbone_lr=0.02, validator_level=0, augmentations=1, last_n_blocks=1)
    frozen = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    result = train_finetune(images, labels, config, model=model, content_hashes=HASHES[:8], version="0.1.0")
    assert result.epoch_losses[-1] < 0.8 * result.epoch_losses[0]
    assert model.config.trained and type(model.backbone).__name__ == "DINOv3ViTModel"  # LoRA merged
    state = model.backbone.state_dict()
    assert set(state) == set(frozen)
    changed = {k for k in state if not torch.equal(state[k], frozen[k])}
    if mode == "partial":  # last block and final norm only; layer 0 frozen
        assert changed and all(k.startswith(("model.layer.1.", "norm.")) for k in changed)
    else:  # adapters merged into the attention projections
        assert changed and all(".attention." in k and k.endswith("weight") for k in changed)


def test_killed_lora_run_resumes_to_the_same_weights(tmp_path):
    images, labels = _images(4)
    config = TrainConfig(mode="lora", epochs=2, batch_size=2, lr=0.05, backbone_lr=0.02, checkpoint_every=1, augmentations=2)

    def run(**kwargs) -> Stage1Model:
        model = _model()
        try:
            train_finetune(images, labels, config, model=model, content_hashes=HASHES[:4], **kwargs)
        except Killed:
            pass
        return model

    reference = run()

    def kill(step: int, loss: float) -> None:
        if step == 3:
            raise Killed

    run(checkpoint_dir=tmp_path, on_step=kill)
    resumed = run(checkpoint_dir=tmp_path)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_rope_augmentation_is_switched_off():
    backbone = copy.deepcopy(tiny_random_backbone())
    backbone.config.pos_embed_rescale = 2.0
    assert disable_rope_augmentation(backbone) == ["pos_embed_rescale"]
    assert backbone.config.pos_embed_rescale is None


def test_training_rows_exclude_evaluation_splits_and_leaks():
    check_training_rows(["train", "train"], [[], ["hard_negative"]])
    with pytest.raises(InputError, match="split `val`"):
        check_training_rows(["train", "val"], ids=["a", "b"])
    with pytest.raises(InputError, match="leak"):
        check_training_rows(["train"], [["leak"]])


@pytest.mark.slow  # ~18 s corpus + ~2-3.5 min training on a 2-core CPU (the demo-recipe floor)
def test_held_out_auroc_floor_on_the_demo_corpus(tmp_path, artifacts_dir, request):
    """The demo recipe reaches AUROC >= 0.7 on >= 200 held-out demo images from unseen scenes.

    1,050 demo queries (each one an independent scene: its own sequence) train the ``tiny-demo``
    model through ``train_finetune`` at validator level 0; the last 200 are held out. The floor is
    asserted at level 0 (centre crop + resize + JPEG: the held-out image as it is); the AUROC with
    levels drawn per query like the validators is recorded alongside, not asserted.
    """
    import csv
    import json
    import os
    import time

    from curation.demo.corpus import CorpusSpec, write_corpus
    from curation.stage1.cache import CacheSpec, FeatureCache, cache_features
    from curation.stage1.demo_training import train_demo_model
    from curation.stage1.metrics import auroc

    request.addfinalizer(lambda threads=torch.get_num_threads(): torch.set_num_threads(threads))
    torch.set_num_threads(2)
    n_train, n_held = 1050, 200
    started = time.perf_counter()
    write_corpus(tmp_path / "demo", CorpusSpec(n_natix_train=0, n_natix_test=0, n_roadwork=0, n_roboflow=0, n_queries=n_train + n_held, seed=0))
    with (tmp_path / "demo" / "truth.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_train + n_held and {r["source"] for r in rows} == {"queries"}
    images = [str(tmp_path / "demo" / r["path"]) for r in rows]
    labels = [int(r["is_roadwork"]) for r in rows]
    hashes = [r["sha256"] for r in rows]
    train, held_out = slice(0, n_train), slice(n_train, n_train + n_held)
    # Demo queries are independent scenes (one frame per sequence), so the sequence group of a query
    # is its content hash: held-out groups must be unique and absent from training.
    assert len(set(hashes)) == len(hashes)
    assert not set(hashes[train]) & set(hashes[held_out])
    assert 0.3 <= np.mean(labels[held_out]) <= 0.7
    model, result = train_demo_model(images[train], labels[train], hashes[train], seed=0)
    assert model.config.trained and result.completed
    trained_s = time.perf_counter() - started

    y = np.array(labels[held_out])
    aurocs = {}
    for name, level in (("level_0", 0), ("drawn_level", None)):
        cache = FeatureCache(tmp_path / f"cache_{name}", CacheSpec.for_model(model, validator_level=level))
        held = cache_features(images[held_out], hashes[held_out], model, cache, augmentations=1, seed=99)
        with torch.no_grad():
            scores = model.head_forward(held.features[:, 0].float())[1]
        assert len(scores) == n_held
        aurocs[name] = round(float(auroc(y, scores.numpy())), 4)
    record = {
        "test": "test_held_out_auroc_floor_on_the_demo_corpus",
        "recipe": "curation.stage1.demo_training.train_demo_model (tiny-demo, 8 epochs, seed 0, level-0 queries)",
        "n_train": n_train, "n_held_out": n_held, "held_out_positive_share": float(y.mean()),
        "auroc_level_0": aurocs["level_0"], "auroc_drawn_level": aurocs["drawn_level"],
        "epoch_losses": [round(x, 4) for x in result.epoch_losses],
        "corpus_and_training_s": round(trained_s, 1), "total_s": round(time.perf_counter() - started, 1),
        "load_average": os.getloadavg(), "torch_threads": torch.get_num_threads(),
    }
    (artifacts_dir / "stage1_demo_auroc.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"held-out AUROC on {n_held} unseen demo scenes: level 0 {aurocs['level_0']:.3f}, drawn level {aurocs['drawn_level']:.3f}")
    assert aurocs["level_0"] >= 0.7
